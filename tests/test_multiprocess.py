"""Several processes logging into one local file at once: all succeed, no row lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, query

CHILD = """
import sys, claude_parallel_logging as cpl
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cpl.configure(database_url=path, flush_interval=0.01, batch_size=50)
for s in range(5):
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=f"{name}-{s}", agent_type=name, model="m"))
    for i in range(n):
        lg.log_message("assistant", f"{name}-{s}-{i}")
        t = lg.log_tool_execution("Bash", "running", input={"i": i})
        lg.finish_tool_execution(t, "completed", output=str(i))
    lg.end_session("completed")
assert cpl.flush(60), cpl.stats()
print(cpl.stats())
"""


def test_four_processes_one_file(db_path: Path) -> None:
    n = 200
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db_path), f"p{k}", str(n)],
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "'dropped': 0" in out
    assert query(db_path, "SELECT COUNT(*), SUM(status='completed') FROM sessions") == [(20, 20)]
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(4 * 5 * n,)]
    assert query(db_path, "SELECT COUNT(*) FROM tool_executions WHERE status='completed'") == [
        (4 * 5 * n,)
    ]
    per_session = query(
        db_path, "SELECT session_id, COUNT(*), MIN(sequence), MAX(sequence) FROM messages"
        " GROUP BY session_id"
    )  # fmt: skip
    assert all(r[1:] == (n, 1, n) for r in per_session) and len(per_session) == 20
