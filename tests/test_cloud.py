"""Cloud mode against the real Turso sync server (tursodb --sync-server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.schema import SCHEMA_VERSION
from tests.conftest import REPO, SECRET_TOKEN, SyncServer


def log_session(sid: str, n: int = 3) -> None:
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=sid, agent_type="planning", model="m"))
    for i in range(n):
        lg.log_message("assistant", f"{sid}-{i}")
    t = lg.log_tool_execution("Bash", "running", input={"command": "echo"})
    lg.finish_tool_execution(t, "completed", output="ok")
    lg.end_session("completed", cost_usd=0.5)


def test_rows_reach_the_server(cloud: SyncServer) -> None:
    log_session("c1", 10)
    assert cpl.flush(10)
    assert cloud.query("SELECT id, status, cost_usd FROM sessions") == [("c1", "completed", 0.5)]
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='c1'") == [(10,)]
    assert cloud.query("SELECT status, output FROM tool_executions") == [("completed", "ok")]
    assert cloud.query("SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    st = cpl.stats()
    assert st["pushes"] >= 1 and st["pending"] == 0


def test_background_push_without_flush(cloud: SyncServer) -> None:
    log_session("bg")
    deadline = time.monotonic() + 15
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        try:
            rows = cloud.query("SELECT COUNT(*) FROM messages")
        except Exception:  # the tables arrive with the first push
            rows = []
        if rows == [(3,)]:
            break
        time.sleep(0.3)
    assert rows == [(3,)]


def test_shutdown_pushes_and_removes_replica(cloud: SyncServer, tmp_path: Path) -> None:
    log_session("sd")
    assert cpl.shutdown(10)
    assert cloud.query("SELECT COUNT(*) FROM messages") == [(3,)]
    replicas = list((tmp_path / "replicas").rglob("w-*.db"))
    assert replicas == []


def test_server_down_then_back_loses_nothing(cloud: SyncServer) -> None:
    cloud.stop()
    log_session("down", 5)
    t0 = time.monotonic()
    assert cpl.flush(2) is False  # rows are in the replica, not on the server
    assert time.monotonic() - t0 < 2.5
    st = cpl.stats()
    assert st["written"] == 9 and st["push_failures"] >= 1
    assert "Connection refused" in str(st["last_error"]) and SECRET_TOKEN not in str(st)
    cloud.start()
    assert cpl.flush(10)
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='down'") == [(5,)]


def test_flush_and_shutdown_respect_timeouts_with_server_down(cloud: SyncServer) -> None:
    cloud.stop()
    log_session("t")
    t0 = time.monotonic()
    assert cpl.flush(0.5) is False
    assert time.monotonic() - t0 < 1.5
    t0 = time.monotonic()
    assert cpl.shutdown(1.0) is False
    assert time.monotonic() - t0 < 2.0


KILLED_CHILD = """
import os, sys, time, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], auth_token=sys.argv[2], flush_interval=0.01,
              push_interval=3600)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="killed", agent_type="a", model="m"))
for i in range(50):
    lg.log_message("assistant", str(i))
deadline = time.time() + 20
while cpl.stats()["written"] < 51 and time.time() < deadline:
    time.sleep(0.01)
print("written", flush=True)
time.sleep(60)
"""


def test_replica_of_killed_process_is_pushed_by_next_process(
    cloud: SyncServer, tmp_path: Path
) -> None:
    cloud.stop()  # the child cannot push: its rows exist only in its replica
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, cloud.url, SECRET_TOKEN],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "written"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    left = list((tmp_path / "replicas").rglob("w-*.db"))
    assert len(left) == 1
    cloud.start()
    log_session("next", 1)  # the next process starts, pushes its own and the stale replica
    assert cpl.flush(15)
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='killed'") == [(50,)]
    assert cloud.query("SELECT id FROM sessions ORDER BY id") == [("killed",), ("next",)]
    assert not left[0].exists()
