"""Cloud mode against the real Turso sync server (tursodb --sync-server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.client import TursoClient, get_turso_client
from claude_parallel_logging.errors import SchemaVersionError
from claude_parallel_logging.schema.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
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
    left = [_leave_killed_replica(cloud, tmp_path)]  # its rows exist only in its replica
    log_session("next", 1)  # the next process starts, pushes its own and the stale replica
    assert cpl.flush(15)
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='killed'") == [(50,)]
    assert cloud.query("SELECT id FROM sessions ORDER BY id") == [("killed",), ("next",)]
    assert not left[0].exists()


def test_replica_of_killed_process_is_recovered_as_the_writer_starts(
    cloud: SyncServer, tmp_path: Path
) -> None:
    """No flush, no push interval to wait for: the first event starts the recovery."""
    left = _leave_killed_replica(cloud, tmp_path)
    cpl.configure(push_interval=3600)
    t0 = time.monotonic()
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="next", agent_type="a", model="m"))
    assert time.monotonic() - t0 < 0.25  # the caller is not delayed (by the recovery)
    deadline = time.monotonic() + 15
    while left.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left.exists()
    assert time.monotonic() - t0 < 5
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='killed'") == [(50,)]


def _leave_killed_replica(cloud: SyncServer, tmp_path: Path) -> Path:
    """A child logs with the server down (so it cannot push) and is SIGKILLed: its replica
    is left with rows nowhere else. The server is up again on return."""
    cloud.stop()
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
    return left[0]


def test_live_replica_of_another_client_in_this_process_is_left_alone(cloud: SyncServer) -> None:
    """Two clients of one process: the second one's recovery must not push and remove the
    first one's replica (it can open it, as no lock stops a process from opening its own)."""
    first = get_turso_client()
    assert first is not None
    a = cpl.ConversationLogger(first)
    a.start_session(cpl.SessionInfo(id="first", agent_type="a", model="m"))
    a.log_message("user", "1")
    assert first.flush(10)
    first_replica = first.writer.store.path  # type: ignore[union-attr]
    second = TursoClient(first.config, first.settings)
    try:
        b = cpl.ConversationLogger(second)
        b.start_session(cpl.SessionInfo(id="second", agent_type="a", model="m"))
        assert second.flush(10)
        assert os.path.exists(first_replica)
        a.log_message("user", "2")
        assert first.flush(10)
        assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='first'") == [(2,)]
    finally:
        assert second.shutdown(10)
    assert cloud.query("SELECT id FROM sessions ORDER BY id") == [("first",), ("second",)]


def test_writes_and_pushes_interleave_without_loss(cloud: SyncServer) -> None:
    """The writer and the push thread use two connections to one replica at the same time."""
    cpl.configure(push_interval=0.02, flush_interval=0.01, batch_size=50)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="mix", agent_type="a", model="m"))
    chunks = 0
    deadline = time.monotonic() + 30
    # At least 30 chunks, and on until pushes have run while writes went on: on a loaded
    # machine one push can outlast 30 chunks (bounded: 300 chunks or 30 s).
    while chunks < 30 or (
        cpl.stats()["pushes"] < 2 and chunks < 300 and time.monotonic() < deadline
    ):
        for i in range(100):
            lg.log_message("assistant", f"{chunks}-{i}")
        chunks += 1
        time.sleep(0.01)
    pushes_while_writing = cpl.stats()["pushes"]
    assert cpl.flush(20)
    st = cpl.stats()
    assert pushes_while_writing >= 2, repr(st)
    assert st["push_failures"] == 0 and st["last_error"] is None
    total = chunks * 100
    assert cloud.query("SELECT COUNT(*), COUNT(DISTINCT content) FROM messages") == [(total, total)]


def _prepare_remote(server: SyncServer, version: int, tmp_path: Path) -> None:
    """Give the remote a schema: ``version`` 1 is the original TypeScript tables only."""
    import turso.sync

    conn = turso.sync.connect(
        str(tmp_path / "prepare.db"), server.url, auth_token=SECRET_TOKEN, isolation_level=None
    )
    try:
        if version == 1:
            for step in MIGRATIONS[0].steps:
                assert isinstance(step, str)
                conn.execute(step)
            conn.execute("INSERT INTO schema_version (version) VALUES (1)")
            conn.execute("INSERT INTO sessions (id, agent_type, model) VALUES ('old', 'a', 'm')")
        else:
            migrate(conn)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.push()
    finally:
        conn.close()
    assert server.query("SELECT MAX(version) FROM schema_version") == [(version,)]


def test_remote_with_newer_schema_is_refused(cloud: SyncServer, tmp_path: Path) -> None:
    _prepare_remote(cloud, 99, tmp_path)
    with pytest.raises(SchemaVersionError, match="99"):
        cpl.initialize_schema()
    log_session("new")
    assert cpl.flush(5) is False
    st = cpl.stats()
    assert st["written"] == 0 and st["pending"] == 7 and st["pushes"] == 0
    assert "SchemaVersionError" in str(st["last_error"]) and SECRET_TOKEN not in str(st)
    assert cloud.query("SELECT COUNT(*) FROM sessions") == [(0,)]
    assert cloud.query("SELECT MAX(version) FROM schema_version") == [(99,)]
    assert list((tmp_path / "replicas").rglob("w-*.db")) == []  # not even a local copy


def test_newer_remote_learnt_after_start_is_never_pushed(cloud: SyncServer, tmp_path: Path) -> None:
    """Unreachable at start: rows go to the replica; once the remote answers with a newer
    version, nothing is pushed and writing stops."""
    _prepare_remote(cloud, 99, tmp_path)
    cloud.stop()
    log_session("early")
    deadline = time.monotonic() + 10
    while cpl.stats()["written"] < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cpl.stats()["written"] == 7  # safe in the local replica
    cloud.start()
    assert cpl.flush(10) is False
    assert "SchemaVersionError" in str(cpl.stats()["last_error"])
    log_session("late")
    assert cpl.flush(5) is False
    assert cpl.stats()["written"] == 7
    assert cloud.query("SELECT COUNT(*) FROM sessions") == [(0,)]
    assert cpl.shutdown(5) is False
    assert len(list((tmp_path / "replicas").rglob("w-*.db"))) == 1  # kept, never pushed


def test_version_1_remote_is_upgraded_in_place(cloud: SyncServer, tmp_path: Path) -> None:
    _prepare_remote(cloud, 1, tmp_path)
    assert cpl.initialize_schema() == SCHEMA_VERSION
    log_session("new")
    assert cpl.flush(10)
    assert cloud.query("SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert cloud.query("SELECT id FROM sessions ORDER BY id") == [("new",), ("old",)]
    assert cloud.query("SELECT cost_usd FROM sessions WHERE id = 'new'") == [(0.5,)]
    columns = {r[1] for r in cloud.query("PRAGMA table_info(messages)")}
    assert {"external_id", "parent_tool_use_id", "metadata"} <= columns


def test_replica_named_for_a_live_process_is_not_recovered(
    cloud: SyncServer, tmp_path: Path
) -> None:
    """Only replicas of dead processes are stale: one whose owner lives (it may be between
    creating the file and locking it) is left alone, and recovered once the owner is gone."""
    left = _leave_killed_replica(cloud, tmp_path)
    owner = subprocess.Popen(["sleep", "60"])
    try:
        tag = left.name.split("-", 2)[2]  # w-<pid>-<rand>.db -> keep <rand>.db
        live = left.with_name(f"w-{owner.pid}-{tag}")
        for path in left.parent.glob(left.name + "*"):
            path.rename(live.parent / path.name.replace(left.name, live.name))
        cpl.configure(database_url=cloud.url, auth_token=SECRET_TOKEN, flush_interval=0.05)
        lg = cpl.ConversationLogger()
        lg.start_session(cpl.SessionInfo(id="next", agent_type="a", model="m"))
        assert cpl.flush(10)
        assert live.exists()
        assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='killed'") == [(0,)]
    finally:
        owner.kill()
        owner.wait(5)
    cpl.reset_configuration()  # a new client: its first event recovers the now-dead replica
    cpl.configure(database_url=cloud.url, auth_token=SECRET_TOKEN, flush_interval=0.05)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="later", agent_type="a", model="m"))
    assert cpl.flush(10)
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='killed'") == [(50,)]
    assert not live.exists()


FORK_READER = """
import os, sys, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], auth_token=sys.argv[2], flush_interval=0.02)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="parent", agent_type="a", model="m"))
assert cpl.flush(10)
assert [s.id for s in cpl.list_sessions()] == ["parent"]  # the parent's read replica exists
client = cpl.get_turso_client()
parent_reader = client.reader().path
pid = os.fork()
if pid == 0:
    code = 1
    try:
        child_reader = client.reader().path
        ok = child_reader != parent_reader and [s.id for s in cpl.list_sessions()] == ["parent"]
        cpl.shutdown(5)  # the exit path: must not remove the parent's read replica
        code = 0 if ok else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert [s.id for s in cpl.list_sessions()] == ["parent"]  # the parent still reads
print("ok", flush=True)
"""


def test_a_forked_child_reads_through_its_own_replica(cloud: SyncServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", FORK_READER, cloud.url, SECRET_TOKEN],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
