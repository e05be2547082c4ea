"""``cpl sync``: local mode, progress on stderr, and in cloud mode the replicas of killed
processes pushed (with ``doctor`` finding them), against the real tursodb sync server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.schema.migrations import SCHEMA_VERSION
from tests.cli.helpers import (
    ANSI,
    Cli,
    Result,
    assert_one_line_error,
    run_cli,
)
from tests.conftest import REPO, SECRET_TOKEN, SyncServer, query
from tests.populate import (
    Populated,
    expected_search,
    expected_usage,
    newest_first,
    populate,
)


def test_doctor_and_sync_local(populated: Populated, cli: Cli) -> None:
    db = ["--database", str(populated.path)]
    r = cli(*db, "doctor")
    assert r.code == 0, r
    assert "[OK  ] schema" in r.out and f"version {SCHEMA_VERSION} (current)" in r.out
    assert "300 sessions" in r.out and "local file" in r.out
    r = cli(*db, "doctor", "--json")
    data = r.json()
    assert isinstance(data, dict) and data["ok"] is True
    assert {c["check"] for c in data["checks"]} >= {"database", "connectivity", "schema"}
    r = cli(*db, "sync")
    assert r.code == 0 and "nothing to push" in r.out
    r = cli(*db, "sync", "--json")
    data = r.json()
    assert isinstance(data, dict) and data["ok"] is True and data["mode"] == "local"
    assert data["stats"]["pending"] == 0


def test_sync_progress_of_this_process_goes_to_stderr(tmp_path: Path, cli: Cli) -> None:
    """Events this process still holds are written with a progress bar, on stderr only."""
    pytest.importorskip("rich")
    path = tmp_path / "pending.db"
    cpl.configure(database_url=str(path), flush_interval=60, batch_size=100)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="pending", agent_type="a", model="m"))
    for i in range(2000):
        lg.log_message("user", f"message {i}")
    assert cpl.stats()["pending"] > 1000  # not written yet: the flush interval is long
    r = cli("sync", "--color", "always")
    assert r.code == 0, r
    report = ANSI.sub("", r.out).splitlines()
    assert report[1] == "this process: 2,001 written, 0 pending, 0 pushes, 0 push failures"
    bar = ANSI.sub("", r.err)
    total = re.search(r"writing this process's events .*?(\d+)/(\d+) events", bar)
    assert total is not None and int(total.group(2)) > 1000
    assert f"{total.group(2)}/{total.group(2)} events" in bar  # and it finished
    assert "━" not in r.out
    r = cli("sync", "--json", "--color", "always")  # nothing pending now, still pure JSON
    assert r.json()["stats"]["written"] == 2001 and r.err == ""
    assert query(path, "SELECT COUNT(*) FROM messages") == [(2000,)]


STALE_CHILD = """
import sys, time, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], auth_token=sys.argv[2], flush_interval=0.01,
              push_interval=3600)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="pushed-before-kill", agent_type="child", model="m"))
lg.end_session()
assert cpl.flush(15)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="stale-only", agent_type="child", model="m"))
lg.log_message("user", "only in the replica of a killed process")
lg.end_session()
written = cpl.stats()["written"]
deadline = time.time() + 20
while cpl.stats()["written"] < 5 and time.time() < deadline:
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)
"""


def test_cloud_mode_end_to_end(cloud: SyncServer, tmp_path: Path) -> None:
    """Populate through the shared cloud client, then use the CLI in other processes (their own
    replicas): everything they show came from the remote. Then a replica left by a killed
    process is found by ``doctor`` and pushed by ``sync``. The token never appears."""
    writer = cpl.get_turso_client()
    assert writer is not None
    sessions = populate(writer, 200, seed=9)
    env = {
        "TURSO_DATABASE_URL": cloud.url,
        "TURSO_AUTH_TOKEN": SECRET_TOKEN,
        "CPL_REPLICA_DIR": str(tmp_path / "cli-replicas"),
    }
    outputs: list[Result] = []

    def run(*argv: str) -> Result:
        r = run_cli(*argv, env=env)
        outputs.append(r)
        return r

    r = run("sessions", "--json", "--limit", "1000")
    assert r.code == 0, r.err
    assert [s["id"] for s in r.json()["sessions"]] == [s.id for s in newest_first(sessions)]
    one = sessions[5]
    r = run("show", one.external_id)
    assert r.code == 0 and r.out.startswith(f"Session {one.id}")
    r = run("search", "snake_case", "--json", "--limit", "100")
    got = [h["session"]["id"] for h in r.json()["hits"]]
    assert got == expected_search(sessions, "snake_case")
    r = run("stats", "--group-by", "day", "--json")
    expected = expected_usage(sessions, "day")
    rows = r.json()["rows"]
    assert {row["group"]: row["sessions"] for row in rows} == {
        k: v["sessions"] for k, v in expected.items()
    }
    r = run("doctor")
    assert r.code == 0, r.out
    assert "cloud" in r.out and "pulled from the remote" in r.out and "200 sessions" in r.out
    assert f"<secret: {len(SECRET_TOKEN)} chars>" in r.out
    r = run("sync")
    assert r.code == 0 and "0 found" in r.out

    # A process killed before pushing leaves its replica behind: doctor sees it, sync pushes it.
    child = subprocess.Popen(
        [sys.executable, "-c", STALE_CHILD, cloud.url, SECRET_TOKEN],
        env={**os.environ, "PYTHONPATH": str(REPO), "CPL_REPLICA_DIR": env["CPL_REPLICA_DIR"]},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        r = run("doctor", "--json")
        replicas = next(c for c in r.json()["checks"] if c["check"] == "pending (replicas)")
        assert "1 in use by running processes" in replicas["detail"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    r = run("sessions", "--json", "--agent-type", "child")
    assert [s["id"] for s in r.json()["sessions"]] == ["pushed-before-kill"]
    r = run("doctor")
    assert r.code == 0 and "[WARN] pending (replicas)" in r.out and "1 left by exited" in r.out
    r = run("sync", "--color", "always")
    assert r.code == 0, r.err
    report = ANSI.sub("", r.out)
    assert re.search(r"1 found, 1 pushed \(\d+ changes\), 0 in use by running processes", report)
    assert "━" not in r.out  # the progress bar is on stderr, the report alone on stdout
    bar = ANSI.sub("", r.err)
    assert "pushing 1 replica(s) of exited processes" in bar and "1/1 replicas" in bar
    assert re.search(r"(\d+)/\1 changes", bar)
    r = run("sessions", "--json", "--agent-type", "child")
    assert [s["id"] for s in r.json()["sessions"]] == ["stale-only", "pushed-before-kill"]
    r = run("search", "ONLY IN THE REPLICA")
    assert r.code == 0 and "stale-only" in r.out
    r = run("sync", "--json")
    assert r.json()["replicas"] == {"found": 0, "pushed": 0, "changes": 0, "in_use": 0, "failed": 0}

    # Errors in cloud mode are one line too, and never show the token.
    r = run("--auth-token", SECRET_TOKEN, "sessions", "--limit", SECRET_TOKEN)
    assert_one_line_error(r, "[REDACTED]", code=2)
    r = run("show", "missing-session")
    assert_one_line_error(r, "no session")
    cloud.stop()
    r = run("sessions")
    assert_one_line_error(r, "cannot open database", cloud.url)
    r = run("sync")
    assert_one_line_error(r, "cannot reach")
    r = run("doctor")
    assert r.code == 1 and "[FAIL] connectivity" in r.out
    for result in outputs:
        assert SECRET_TOKEN not in result.out + result.err
        assert "Traceback" not in result.err


def test_sync_json_stays_json_on_a_terminal(cloud: SyncServer, tmp_path: Path) -> None:
    """``sync --json`` with a replica to push and colour forced: stdout is one JSON document
    (no progress bar in it, nothing on stderr), and the replica's rows reach the server."""
    replicas = str(tmp_path / "json-replicas")
    child = subprocess.Popen(
        [sys.executable, "-c", STALE_CHILD, cloud.url, SECRET_TOKEN],
        env={**os.environ, "PYTHONPATH": str(REPO), "CPL_REPLICA_DIR": replicas},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    assert cloud.query("SELECT id FROM sessions WHERE id = 'stale-only'") == []
    env = {
        "TURSO_DATABASE_URL": cloud.url,
        "TURSO_AUTH_TOKEN": SECRET_TOKEN,
        "CPL_REPLICA_DIR": replicas,
    }
    r = run_cli("sync", "--json", "--color", "always", env=env)
    assert (r.code, r.err) == (0, ""), r
    data = json.loads(r.out)  # the whole output parses: nothing else was drawn on stdout
    assert data["ok"] is True and data["mode"] == "cloud"
    pushed = data["replicas"]
    assert (pushed["found"], pushed["pushed"], pushed["in_use"], pushed["failed"]) == (1, 1, 0, 0)
    assert pushed["changes"] >= 2  # the session and its message, at least
    assert SECRET_TOKEN not in r.out
    assert cloud.query("SELECT id FROM sessions WHERE id = 'stale-only'") == [("stale-only",)]
    rows = cloud.query("SELECT content FROM messages WHERE session_id = 'stale-only'")
    assert rows == [("only in the replica of a killed process",)]
