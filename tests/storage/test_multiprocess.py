"""Several processes logging into one local file at once: all succeed, no row lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SECRET_TOKEN, SyncServer, query

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


def run_children(code: str, args: list[list[str]], env: dict[str, str] | None = None) -> None:
    """Start one child per argument list at once; each must exit 0 having dropped nothing."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *a],
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in args
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "'dropped': 0" in out and SECRET_TOKEN not in out + err


def test_four_processes_one_file(db_path: Path) -> None:
    n = 200
    run_children(CHILD, [[str(db_path), f"p{k}", str(n)] for k in range(4)])
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


CLOUD_CHILD = """
import sys, claude_parallel_logging as cpl
url, token, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cpl.configure(database_url=url, auth_token=token, flush_interval=0.02, push_interval=0.2)
for s in range(3):
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=f"{name}-{s}", agent_type=name, model="m"))
    for i in range(n):
        lg.log_message("assistant", f"{name}-{s}-{i}")
    lg.end_session("completed")
assert cpl.flush(60), cpl.stats()
print(cpl.stats())
"""


def test_four_processes_cloud_mode(sync_server: SyncServer, tmp_path: Path) -> None:
    """Each process writes its own replica and pushes it; the server ends up with all rows and
    no replica is left behind."""
    n = 100
    replicas = tmp_path / "replicas"
    run_children(
        CLOUD_CHILD,
        [[sync_server.url, SECRET_TOKEN, f"c{k}", str(n)] for k in range(4)],
        {"CPL_REPLICA_DIR": str(replicas)},
    )
    assert sync_server.query("SELECT COUNT(*), SUM(status='completed') FROM sessions") == [(12, 12)]
    per_session = sync_server.query(
        "SELECT session_id, COUNT(*), MIN(sequence), MAX(sequence) FROM messages GROUP BY session_id"
    )
    assert len(per_session) == 12 and all(r[1:] == (n, 1, n) for r in per_session)
    left = [p.name for p in replicas.rglob("*") if p.is_file() and p.name.startswith("w-")]
    assert left == []  # every process pushed everything, then removed its replica
