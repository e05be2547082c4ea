from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.conftest import query, run_python


def _iso(ts: str) -> datetime:
    assert ts.endswith("Z") and len(ts) == len("2026-01-01T00:00:00.000Z"), ts
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_full_session_reads_back_exactly(local_db: Path) -> None:
    logger = cpl.ConversationLogger()
    logger.start_session(
        cpl.SessionInfo(
            id="sess-1", agent_type="implementation", model="claude-sonnet-4-5",
            provider="anthropic", metadata={"cwd": "/w", "tools": ["Bash", "Read"]},
        )
    )  # fmt: skip
    m1 = logger.log_message("user", "List the files")
    m2 = logger.log_message(
        "assistant", "", tool_name="Bash", tool_input={"command": "ls"}, input_tokens=12,
        output_tokens=3, external_id="msg_01", model="claude-sonnet-4-5",
    )  # fmt: skip
    t1 = logger.log_tool_execution(
        "Bash", "running", input={"command": "ls"}, message_id=m2, tool_use_id="toolu_1"
    )
    logger.finish_tool_execution(t1, "completed", output="a.txt\nb.txt\n")
    t2 = logger.log_tool_execution(
        "Read", "running", input={"path": "/nope"}, tool_use_id="toolu_2"
    )
    logger.finish_tool_execution(t2, "error", error="file not found")
    m3 = logger.log_message(
        "tool", "a.txt\nb.txt\n", tool_name="Bash", tool_output="a.txt\nb.txt\n"
    )
    m4 = logger.log_message("assistant", "Two files.", token_count=4)
    logger.end_session(
        "completed", input_tokens=100, output_tokens=20, cache_read_tokens=5,
        cache_creation_tokens=7, cost_usd=0.0123, num_turns=2, external_id="sdk-session",
    )  # fmt: skip
    assert cpl.flush(5)

    (s,) = query(
        local_db,
        "SELECT id, agent_type, model, provider, status, error_message, metadata, external_id,"
        " input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd,"
        " num_turns, started_at, ended_at, duration_ms FROM sessions",
    )
    assert s[:14] == (
        "sess-1", "implementation", "claude-sonnet-4-5", "anthropic", "completed", None,
        json.dumps({"cwd": "/w", "tools": ["Bash", "Read"]}), "sdk-session",
        100, 20, 5, 7, 0.0123, 2,
    )  # fmt: skip
    assert _iso(s[14]) <= _iso(s[15]) and s[16] >= 0

    msgs = query(
        local_db,
        "SELECT id, sequence, role, content, tool_name, tool_input, tool_output, token_count,"
        " input_tokens, output_tokens, external_id, model, created_at FROM messages"
        " WHERE session_id='sess-1' ORDER BY sequence",
    )
    assert [m[:12] for m in msgs] == [
        (m1, 1, "user", "List the files", None, None, None, None, None, None, None, None),
        (m2, 2, "assistant", "", "Bash", '{"command": "ls"}', None, None, 12, 3, "msg_01",
         "claude-sonnet-4-5"),
        (m3, 3, "tool", "a.txt\nb.txt\n", "Bash", None, '"a.txt\\nb.txt\\n"', None, None, None,
         None, None),
        (m4, 4, "assistant", "Two files.", None, None, None, 4, None, None, None, None),
    ]  # fmt: skip
    times = [_iso(m[12]) for m in msgs]
    assert times == sorted(times)

    tools = query(
        local_db,
        "SELECT id, message_id, tool_name, status, input, output, error, tool_use_id,"
        " started_at, ended_at, duration_ms FROM tool_executions ORDER BY started_at, tool_use_id",
    )
    assert [t[:8] for t in tools] == [
        (t1, m2, "Bash", "completed", '{"command": "ls"}', "a.txt\nb.txt\n", None, "toolu_1"),
        (t2, None, "Read", "error", '{"path": "/nope"}', None, "file not found", "toolu_2"),
    ]
    for t in tools:
        assert _iso(t[8]) <= _iso(t[9]) and t[10] is not None and t[10] >= 0


def test_sequence_strictly_increasing_across_threads(local_db: Path) -> None:
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))

    def work() -> None:
        for i in range(200):
            logger.log_message("assistant", f"m{i}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cpl.flush(10)
    seqs = [r[0] for r in query(local_db, "SELECT sequence FROM messages ORDER BY sequence")]
    assert seqs == list(range(1, 801))


class Weird:
    def __repr__(self) -> str:
        return "Weird()"


def test_json_columns_hold_valid_json_for_anything(local_db: Path) -> None:
    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    logger = cpl.ConversationLogger()
    logger.start_session(
        cpl.SessionInfo(id="s", agent_type="a", model="m", metadata={"obj": Weird(), "n": 1})
    )
    logger.log_tool_execution("T", "completed", input=cyclic, output=b"\xff\xfebytes")
    logger.log_message("assistant", "x", tool_input={"set": {1}, "nan": float("nan")})
    logger.end_session()
    assert cpl.flush(5)
    (meta,) = query(local_db, "SELECT metadata FROM sessions")[0]
    assert json.loads(meta) == {"obj": "<Weird: Weird()>", "n": 1}
    (inp, out) = query(local_db, "SELECT input, output FROM tool_executions")[0]
    assert json.loads(inp) == {"a": 1, "self": "[circular reference]"}
    assert "bytes" in out
    (ti,) = query(local_db, "SELECT tool_input FROM messages")[0]
    assert json.loads(ti) == {"set": [1], "nan": "nan"}


def test_disabled_mode_leaves_no_trace(tmp_path: Path) -> None:
    # Threads an earlier test left may end meanwhile: what counts is that none is started here.
    before = {t.ident for t in threading.enumerate()}
    logger = cpl.ConversationLogger()
    assert not logger.enabled
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    assert isinstance(logger.log_message("user", "hi"), str)
    tid = logger.log_tool_execution("Bash", "running", input={"c": 1})
    logger.finish_tool_execution(tid, "completed", output="x")
    logger.end_session("completed")
    assert cpl.flush(1) and cpl.shutdown(1)
    assert cpl.stats() == {"enabled": False}
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []
    assert list(tmp_path.iterdir()) == []


def test_logger_never_raises_on_misuse(local_db: Path) -> None:
    logger = cpl.ConversationLogger()
    logger.log_message("user", "before start")  # warned, ignored
    logger.finish_tool_execution("unknown-id", "completed")
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model=None))
    logger.log_message(None, None)  # type: ignore[arg-type]
    logger.log_tool_execution(None, None)  # type: ignore[arg-type]
    logger.update_session(nonsense=1, model="late-model")
    logger.end_session("completed")
    logger.end_session("error")  # second end is ignored
    assert cpl.flush(5)
    assert query(local_db, "SELECT model, status FROM sessions") == [("late-model", "completed")]
    assert query(local_db, "SELECT role, content FROM messages") == [("unknown", None)]
    assert query(local_db, "SELECT tool_name, status, error FROM tool_executions") == [
        ("unknown", "error", "session ended before the tool finished")
    ]


def test_running_tools_closed_when_session_ends(local_db: Path) -> None:
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    logger.log_tool_execution("Bash", "running", input={})
    logger.end_session("error", "cancelled")
    assert cpl.flush(5)
    assert query(local_db, "SELECT status, error FROM tool_executions") == [
        ("error", "session ended before the tool finished")
    ]
    assert query(local_db, "SELECT status, error_message FROM sessions") == [("error", "cancelled")]


def test_explicit_client(tmp_path: Path) -> None:
    path = tmp_path / "explicit.db"
    client = cpl.TursoClient(cpl.TursoConfig(url=str(path)))
    logger = cpl.ConversationLogger(client)
    logger.start_session(cpl.SessionInfo(id="e", agent_type="a", model="m"))
    assert client.flush(5) and client.shutdown(5)
    assert query(path, "SELECT id FROM sessions") == [("e",)]


async def test_usable_from_asyncio_without_blocking(local_db: Path) -> None:
    async def agent(n: int) -> None:
        logger = cpl.ConversationLogger()
        logger.start_session(cpl.SessionInfo(id=f"a{n}", agent_type="review", model="m"))
        for i in range(20):
            logger.log_message("assistant", f"{n}-{i}")
            await asyncio.sleep(0)
        logger.end_session()

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(50):
            ticks += 1
            await asyncio.sleep(0.001)

    await asyncio.gather(ticker(), *(agent(n) for n in range(100)))
    assert await cpl.aflush(10)
    assert ticks == 50
    assert query(local_db, "SELECT COUNT(*) FROM sessions WHERE status='completed'") == [(100,)]
    assert query(local_db, "SELECT COUNT(*) FROM messages") == [(2000,)]
    for n in (0, 42, 99):  # interleaved on one loop, yet each session has only its own rows
        rows = query(
            local_db, "SELECT sequence, content FROM messages WHERE session_id=? ORDER BY sequence",
            (f"a{n}",),
        )  # fmt: skip
        assert rows == [(i + 1, f"{n}-{i}") for i in range(20)]


def test_queue_full_drops_are_counted_never_block(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cpl.configure(database_url=str(db_path), queue_capacity=10, flush_interval=5)
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    slowest = 0.0
    for i in range(100):
        t0 = time.perf_counter()
        logger.log_message("user", str(i))
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.05  # a full queue drops, it never makes the caller wait
    st = cpl.stats()
    assert st["dropped"] >= 80 and st["enqueued"] + st["dropped"] == 101
    drops = [r for r in caplog.records if "dropping log events" in r.getMessage()]
    assert len(drops) == 1  # warned once, not once per dropped event
    assert cpl.flush(5) is False  # honest: events were dropped since the last flush
    assert cpl.flush(5) is True  # ... and none since
    rows = query(db_path, "SELECT COUNT(*) FROM messages")[0][0]
    assert rows + 1 == cpl.stats()["written"]  # every accepted event was written


def test_fork_child_logs_its_own_rows(local_db: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="parent", agent_type="a", model="m"))
    logger.log_message("user", "from parent")
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            child = cpl.ConversationLogger()
            child.start_session(cpl.SessionInfo(id="child", agent_type="a", model="m"))
            child.log_message("user", "from child")
            child.end_session()
            code = 0 if cpl.flush(10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.end_session()
    assert cpl.flush(10)
    assert query(local_db, "SELECT id, status FROM sessions ORDER BY id") == [
        ("child", "completed"), ("parent", "completed"),
    ]  # fmt: skip
    assert sorted(r[0] for r in query(local_db, "SELECT content FROM messages")) == [
        "from child", "from parent",
    ]  # fmt: skip


def test_fork_while_the_parent_writer_is_busy(local_db: Path) -> None:
    """Fork while the parent's writer is writing (and most likely holds the file): the child
    must not close the parent's connection; both processes' rows all arrive."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    parent = cpl.ConversationLogger()
    parent.start_session(cpl.SessionInfo(id="busy-parent", agent_type="a", model="m"))
    for i in range(5_000):
        parent.log_message("assistant", f"p{i} " + "x" * 200)
    deadline = time.monotonic() + 10
    while cpl.stats()["written"] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # the writer has started writing the backlog
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            child = cpl.ConversationLogger()
            child.start_session(cpl.SessionInfo(id="busy-child", agent_type="a", model="m"))
            for i in range(200):
                child.log_message("user", f"c{i}")
            child.end_session()
            code = 0 if cpl.flush(20) else 2
        finally:
            os._exit(code)
    for i in range(5_000, 10_000):
        parent.log_message("assistant", f"p{i}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent.end_session()
    assert cpl.flush(20)
    assert cpl.stats()["failed_batches"] == 0 or cpl.stats()["pending"] == 0
    counts = dict(query(local_db, "SELECT session_id, COUNT(*) FROM messages GROUP BY session_id"))
    assert counts == {"busy-parent": 10_000, "busy-child": 200}


def test_atexit_flushes_on_normal_exit(db_path: Path) -> None:
    code = f"""
import claude_parallel_logging as cpl
cpl.configure(database_url={str(db_path)!r}, flush_interval=60)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id='exit', agent_type='a', model='m'))
for i in range(500):
    lg.log_message('assistant', str(i))
lg.end_session()
"""
    run_python(code)
    assert query(db_path, "SELECT status FROM sessions") == [("completed",)]
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(500,)]


def test_flush_after_shutdown_returns_at_once(db_path: Path) -> None:
    """A logger of a client that was shut down (``configure()`` replaced it) may still flush:
    it answers at once instead of waiting for a writer that is gone."""
    client = cpl.TursoClient(cpl.TursoConfig(str(db_path)))
    lg = cpl.ConversationLogger(client)
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a"))
    lg.log_message("user", "hi")
    assert client.shutdown(5)
    t0 = time.monotonic()
    assert client.flush(None) is True  # everything was written; no wait, no hang
    lg.log_message("user", "after shutdown")  # dropped: the writer is closed
    assert client.flush(2) is False  # ... and flush says so, at once
    assert time.monotonic() - t0 < 0.5
    assert query(db_path, "SELECT content FROM messages") == [("hi",)]


def test_end_session_with_its_own_ended_at_for_backfills(local_db: Path) -> None:
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="old", agent_type="import", started_at=1_700_000_000.0))
    lg.end_session("completed", ended_at=1_700_000_090.5, duration_ms=90_500)
    assert cpl.flush(5)
    assert query(local_db, "SELECT status, started_at, ended_at, duration_ms FROM sessions") == [
        ("completed", "2023-11-14T22:13:20.000Z", "2023-11-14T22:14:50.500Z", 90_500)
    ]
