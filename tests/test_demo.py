"""The main job (``./dev demo``): examples/demo.py runs the real Claude Code CLI against the
scripted local model, logs it into a database file and prints the logged session back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.conftest import query as db_query

pytestmark = pytest.mark.e2e


def run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_logs_a_real_agent_run_and_prints_it(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "agent-logs.db"
    proc = run_demo("--database", str(db))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "agent finished: There are 2 Python files: app.py and models.py." in out
    match = re.search(r"logged session (\S+) into (.+)", out)
    assert match is not None, out
    sid, where = match.groups()
    assert Path(where.strip()) == db.resolve()

    # the printed transcript (cpl show)
    assert f"Session {sid}" in out and "status: completed" in out
    assert "List the Python files in this directory with Bash" in out
    assert "1,200 in / 40 out" in out and "1,350 in / 25 out" in out  # final, not provisional
    assert re.search(r"tool Bash: completed, \d+ ms", out)
    assert "app.py" in out and "models.py" in out
    assert "tokens 2,550 in, 65 out, 900 cache read, 900 cache write" in out

    # and what is in the database
    ((agent, status, model, meta, tin, tout, cost, turns, ext),) = db_query(
        db,
        "SELECT agent_type, status, model, metadata, input_tokens, output_tokens, cost_usd,"
        " num_turns, external_id FROM sessions WHERE id=?",
        (sid,),
    )
    assert (agent, status, model) == ("implementation", "completed", "claude-sonnet-4-5")
    assert json.loads(meta)["demo"] is True and ext
    assert (tin, tout, turns) == (2550, 65, 2)
    expected = (2550 * 3 + 65 * 15 + 900 * 0.3 + 900 * 3.75) / 1e6  # list prices per MTok
    assert cost == pytest.approx(expected)
    ((tool, tstatus, tinput, toutput),) = db_query(
        db,
        "SELECT tool_name, status, input, output FROM tool_executions WHERE session_id=?",
        (sid,),
    )
    assert (tool, tstatus) == ("Bash", "completed")
    assert json.loads(tinput)["command"] == "ls *.py"
    assert toutput.split() == ["app.py", "models.py"]  # the CLI really ran ls
    assistant = db_query(
        db,
        "SELECT content, input_tokens, output_tokens FROM messages"
        " WHERE session_id=? AND role='assistant' ORDER BY sequence",
        (sid,),
    )
    assert assistant[0] == ("Let me look at the directory.", 1200, 40)
    assert assistant[-1] == ("There are 2 Python files: app.py and models.py.", 1350, 25)


def test_demo_refuses_the_real_api_without_a_key(tmp_path: Path) -> None:
    proc = run_demo("--real-api", "--database", str(tmp_path / "x.db"), timeout=60)
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_demo_ends_with_next_steps_that_run_as_printed(tmp_path: Path) -> None:
    """After the transcript, the demo prints the `./dev cpl` commands to browse the database
    (issue 11, item 16); each runs as printed, from the repository's root."""
    import shlex

    db = tmp_path / "agent-logs.db"
    proc = run_demo("--database", str(db))
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"logged session (\S+) into", proc.stdout)
    assert match is not None
    sid = match.group(1)
    tail = proc.stdout[proc.stdout.index("Next steps: browse what was logged") :]
    commands = [line.strip() for line in tail.splitlines() if line.startswith("  ./dev cpl")]
    prefix = f"./dev cpl --database {shlex.quote(str(db))}"
    assert [c.split(" ", 4)[-1] for c in commands] == [
        "sessions", f"show {sid}", "search 'Python files'", "stats --group-by model",
    ]  # fmt: skip
    assert all(c.startswith(prefix + " ") for c in commands)
    outputs = []
    for command in commands:
        done = subprocess.run(
            shlex.split(command), cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done.stdout)
    listed, shown, found, stats = outputs
    assert sid[:8] in listed and "implementation" in listed
    assert f"Session {sid}" in shown and "status: completed" in shown
    assert sid[:8] in found
    assert "claude-sonnet-4-5" in stats


def test_dev_cpl_runs_the_venv_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["./dev", "cpl", "--database", str(tmp_path / "none.db"), "sessions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"cpl: error: database file {tmp_path / 'none.db'} does not exist (check the path;"
        " it is created when the first session is logged into it)"
    )
