"""Fault injection with real processes, real files and the real tursodb server (bounded in time).

The promise under test: logging never slows or breaks the agent and never loses what it
accepted (short of a full queue, which is counted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.conftest import REPO, query

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def agent_work(logger: cpl.ConversationLogger, n: int) -> None:
    for i in range(n):
        logger.log_message("assistant", f"step {i}")
        t = logger.log_tool_execution("Bash", "running", input={"i": i})
        logger.finish_tool_execution(t, "completed", output=f"out {i}")


def test_sigkill_after_local_flush_keeps_every_row(db_path: Path) -> None:
    code = f"""
import os, signal, claude_parallel_logging as cpl
cpl.configure(database_url={str(db_path)!r})
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id='k', agent_type='a', model='m'))
for i in range(300):
    lg.log_message('assistant', str(i))
assert cpl.flush(10)
lg.log_message('assistant', 'after flush, maybe lost')
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # the next start finds every flushed row and the file is intact
    assert query(
        db_path, "SELECT COUNT(*) FROM messages WHERE content != 'after flush, maybe lost'"
    ) == [(300,)]
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="next", agent_type="a", model="m"))
    assert cpl.flush(5)
    assert query(db_path, "SELECT id FROM sessions ORDER BY id") == [("k",), ("next",)]


def test_lock_held_by_another_process_delays_but_loses_nothing(db_path: Path) -> None:
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    assert cpl.initialize_schema()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import turso,time,sys; c=turso.connect({str(db_path)!r}); print('held', flush=True); time.sleep(3)"],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    lg = cpl.ConversationLogger()
    t0 = time.perf_counter()
    lg.start_session(cpl.SessionInfo(id="locked", agent_type="a", model="m"))
    agent_work(lg, 100)
    lg.end_session()
    caller_time = time.perf_counter() - t0
    assert caller_time < 0.5  # the agent did not wait for the lock
    time.sleep(0.5)
    assert query_count_while_locked(db_path) is None  # still locked: nothing could be written
    assert cpl.flush(15)
    holder.wait(10)
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(100,)]
    assert query(db_path, "SELECT COUNT(*) FROM tool_executions WHERE status='completed'") == [
        (100,)
    ]
    assert cpl.stats()["failed_batches"] >= 1


def query_count_while_locked(path: Path) -> int | None:
    import turso

    try:
        conn = turso.connect(str(path))
    except Exception:
        return None
    conn.close()
    return 0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        cpl.shutdown(2)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_agent_unaffected_errors_counted(
    small_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = small_tmpfs / "full.db"
    cpl.configure(database_url=str(db), flush_interval=0.02, queue_capacity=5_000)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="full", agent_type="a", model="m"))
    t0 = time.perf_counter()
    for i in range(2_000):
        lg.log_message("assistant", "x" * 2_000 + str(i))
    lg.end_session()
    assert time.perf_counter() - t0 < 2.0  # the agent ran to the end at full speed
    assert cpl.flush(3) is False
    st = cpl.stats()
    assert st["failed_batches"] >= 1 and st["last_error"]
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # warned, rate-limited
    # space comes back: everything that waited is written, nothing was skipped
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    assert cpl.flush(20)
    st = cpl.stats()
    assert st["discarded"] == 0 and st["dropped"] == 0 and st["pending"] == 0, st
    assert query(db, "SELECT COUNT(*), MIN(sequence), MAX(sequence) FROM messages") == [
        (2000, 1, 2000)
    ]
    assert query(db, "SELECT status FROM sessions") == [("completed",)]


def test_read_only_database_directory(small_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    cpl.configure(database_url=str(small_tmpfs / "ro.db"), flush_interval=0.02)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="ro", agent_type="a", model="m"))
    t0 = time.perf_counter()
    agent_work(lg, 50)
    lg.end_session()
    assert time.perf_counter() - t0 < 0.5  # 150 log calls: the agent never waits
    assert cpl.flush(1) is False
    st = cpl.stats()
    assert st["written"] == 0 and st["failed_batches"] >= 2  # retried ...
    assert "readonly" in str(st["last_error"]).lower().replace("-", "")
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1  # ... but warned once (rate-limited to one per 30 s)
    # writable again, with room for the schema's tables and indexes (256 KiB is for the disk-full test)
    subprocess.run(["mount", "-o", "remount,rw,size=64m", str(small_tmpfs)], check=True)
    assert cpl.flush(20), cpl.stats()
    assert query(small_tmpfs / "ro.db", "SELECT COUNT(*) FROM messages") == [(50,)]
    assert query(small_tmpfs / "ro.db", "SELECT COUNT(*) FROM tool_executions") == [(50,)]


READ_ONLY_CHILD = """
import sys, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], flush_interval=0.02, shutdown_timeout=1.0)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id='ro', agent_type='a', model='m'))
lg.log_message('user', 'hello')
lg.log_message('assistant', 'hi')
# normal exit: the atexit hook tries for shutdown_timeout, then says what was not written
"""


def test_exit_on_a_read_only_database_warns_with_count_and_path(small_tmpfs: Path) -> None:
    """Issue 11 item 12: a read-only file system (root cannot write to it either). The retry
    warning names the database; at exit the process waits ``shutdown_timeout`` at most, then
    warns how many events were not written, and where."""
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    db = small_tmpfs / "ro.db"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", READ_ONLY_CHILD, str(db)],
        env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 1.0 + 3  # shutdown_timeout, plus interpreter start and exit
    assert f"cannot write to the database {db} yet (IoError" in proc.stderr
    assert "ReadOnlyFilesystem" in proc.stderr
    assert f"exiting with 3 log events not written to {db} (last error: " in proc.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], check=True)
    assert not db.exists()


def test_100_sessions_in_threads(local_db: Path) -> None:
    def run(k: int) -> None:
        lg = cpl.ConversationLogger()
        lg.start_session(cpl.SessionInfo(id=f"t{k}", agent_type="threads", model="m"))
        agent_work(lg, 10)
        lg.end_session()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert cpl.flush(15)
    assert query(local_db, "SELECT COUNT(*) FROM sessions WHERE status='completed'") == [(100,)]
    assert query(local_db, "SELECT COUNT(*) FROM messages") == [(1000,)]
    # sessions never mix: each holds exactly its own ten steps, in order, and its own tools
    for k in (0, 37, 99):
        rows = query(
            local_db, "SELECT sequence, content FROM messages WHERE session_id=? ORDER BY sequence",
            (f"t{k}",),
        )  # fmt: skip
        assert rows == [(i + 1, f"step {i}") for i in range(10)]
    per_session = query(
        local_db, "SELECT session_id, COUNT(*) FROM tool_executions GROUP BY session_id"
    )
    assert len(per_session) == 100 and all(n == 10 for _, n in per_session)
    assert query(
        local_db,
        "SELECT COUNT(*) FROM (SELECT session_id FROM messages GROUP BY session_id "
        "HAVING COUNT(DISTINCT sequence) != 10 OR MIN(sequence) != 1 OR MAX(sequence) != 10)",
    ) == [(0,)]


INTERRUPTED = """
import asyncio, sys, time, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], flush_interval=30, shutdown_timeout=3)

async def agent():
    async with cpl.logged_session("interrupted", instrument=False) as s:
        for i in range(100):
            s.logger.log_message("assistant", str(i))
        print("running", flush=True)
        await asyncio.sleep(60)

asyncio.run(agent())
"""


def test_ctrl_c_ends_session_and_flushes_without_hanging(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(db_path)], env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(15)  # never hangs at exit
    assert time.monotonic() - t0 < 10
    assert "KeyboardInterrupt" in (proc.stderr.read() if proc.stderr else "")
    (status, err) = query(db_path, "SELECT status, error_message FROM sessions")[0]
    assert status == "error" and err in ("cancelled", "interrupted (KeyboardInterrupt)")
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(100,)]


def test_server_stopped_mid_run_agent_never_notices(cloud: object) -> None:
    from tests.conftest import SyncServer

    assert isinstance(cloud, SyncServer)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="mid", agent_type="a", model="m"))
    agent_work(lg, 20)
    assert cpl.flush(10)
    cloud.stop()
    t0 = time.perf_counter()
    agent_work(lg, 20)
    lg.end_session()
    assert time.perf_counter() - t0 < 0.5
    assert cpl.flush(1) is False
    time.sleep(1.0)  # background pushes fail meanwhile
    cloud.start()
    assert cpl.flush(15)
    assert cloud.query("SELECT COUNT(*) FROM messages WHERE session_id='mid'") == [(40,)]
    assert cloud.query("SELECT status FROM sessions") == [("completed",)]
