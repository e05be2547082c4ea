"""The Claude mapping, table-tested with real SDK message objects recorded from the real CLI."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.testing.recorded import load_recorded
from tests.conftest import query

DATA = Path(__file__).parent / "data" / "claude"


async def replay(messages: list[Any]) -> AsyncIterator[Any]:
    for m in messages:
        yield m


def session_row(db: Path, sid: str) -> dict[str, Any]:
    cols = [
        "status", "error_message", "model", "external_id", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_creation_tokens", "cost_usd", "num_turns", "duration_ms",
        "metadata", "agent_type", "provider",
    ]  # fmt: skip
    (row,) = query(db, f"SELECT {', '.join(cols)} FROM sessions WHERE id=?", (sid,))
    return dict(zip(cols, row, strict=True))


def messages(db: Path, sid: str) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT role, content, tool_name, input_tokens, output_tokens, external_id, metadata"
        " FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )


async def test_tool_call_stream_maps_exactly(local_db: Path) -> None:
    recorded = load_recorded(DATA / "tool_bash.jsonl")
    seen = []
    async with cpl.logged_session("implementation", instrument=False) as s:
        async for m in s.track(replay(recorded), prompt="Run echo hello-from-tool"):
            seen.append(m)
    assert [id(m) for m in seen] == [id(m) for m in recorded]  # the very same objects
    assert cpl.flush(5)

    result = recorded[-1]
    init = recorded[0]
    row = session_row(local_db, s.id)
    assert row["status"] == "completed" and row["error_message"] is None
    assert row["model"] == "claude-sonnet-4-5" and row["external_id"] == result.session_id
    assert (row["input_tokens"], row["output_tokens"]) == (300, 70)
    assert (row["cache_read_tokens"], row["cache_creation_tokens"]) == (90, 110)
    assert row["cost_usd"] == pytest.approx(result.total_cost_usd)
    assert (row["num_turns"], row["duration_ms"]) == (2, result.duration_ms)
    meta = json.loads(row["metadata"])
    assert meta["cwd"] == init.data["cwd"] and "Bash" in meta["tools"]

    rows = messages(local_db, s.id)
    roles = [(r[0], r[2]) for r in rows]
    assert roles == [
        ("user", None), ("assistant", None), ("assistant", "Bash"), ("tool", "Bash"),
        ("assistant", None), ("result", None),
    ]  # fmt: skip
    assert rows[0][1] == "Run echo hello-from-tool"
    assert "hello-from-tool" in rows[3][1]
    assert rows[5][1] == result.result
    # usage counted once per API message id, not once per content block
    first_id = rows[1][5]
    assert rows[2][5] == first_id and rows[1][3] == 100 and rows[2][3] is None
    assert rows[4][3] == 200

    (tool,) = query(
        local_db,
        "SELECT tool_name, status, input, output, error, tool_use_id, started_at <= ended_at,"
        " duration_ms >= 0, message_id FROM tool_executions WHERE session_id=?",
        (s.id,),
    )
    assert tool[:2] == ("Bash", "completed")
    assert json.loads(tool[2])["command"].startswith("echo hello-from-tool")
    assert tool[3] == "hello-from-tool" and tool[4] is None
    assert tool[5].startswith("toolu_") and tool[6] == 1 and tool[7] == 1
    tool_msg = query(
        local_db, "SELECT id FROM messages WHERE tool_name='Bash' AND role='assistant'"
    )
    assert tool[8] == tool_msg[0][0]


async def test_client_two_turns_cost_is_cumulative_usage_per_turn(local_db: Path) -> None:
    from claude_parallel_logging.integrations.claude import ClaudeMapper

    recorded = load_recorded(DATA / "client_two_turns.jsonl")
    results = [m for m in recorded if type(m).__name__ == "ResultMessage"]
    async with cpl.logged_session("review", instrument=False) as s:
        mapper = ClaudeMapper(s, cumulative_cost=True)
        s.log_prompt("first")
        for m in recorded[:3]:
            mapper.observe(m)
        s.log_prompt("second")
        for m in recorded[3:]:
            mapper.observe(m)
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert row["cost_usd"] == pytest.approx(results[-1].total_cost_usd)  # cumulative, not summed
    assert row["input_tokens"] == sum(r.usage["input_tokens"] for r in results)
    assert row["output_tokens"] == sum(r.usage["output_tokens"] for r in results)
    assert row["num_turns"] == sum(r.num_turns for r in results)
    turn_rows = query(
        local_db, "SELECT metadata FROM messages WHERE session_id=? AND role='result'", (s.id,)
    )
    turn_costs = [json.loads(r[0])["turn_cost_usd"] for r in turn_rows]
    assert turn_costs[0] == pytest.approx(results[0].total_cost_usd)
    assert sum(turn_costs) == pytest.approx(results[-1].total_cost_usd)


async def test_api_error_run_ends_session_as_error(local_db: Path) -> None:
    recorded = load_recorded(DATA / "api_error.jsonl")
    async with cpl.logged_session("planning", instrument=False) as s:
        async for _ in s.track(replay(recorded), prompt="hi"):
            pass
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert row["status"] == "error" and row["error_message"]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.jsonl")))
async def test_every_recording_maps_without_loss(local_db: Path, name: str) -> None:
    recorded = load_recorded(DATA / name)
    async with cpl.logged_session("any", instrument=False) as s:
        async for _ in s.track(replay(recorded)):
            pass
    assert cpl.flush(5)
    assert cpl.stats()["discarded"] == 0
    n_results = sum(type(m).__name__ == "ResultMessage" for m in recorded)
    assert query(local_db, "SELECT COUNT(*) FROM messages WHERE role='result'") == [(n_results,)]
    tool_uses = sum(
        type(b).__name__ == "ToolUseBlock"
        for m in recorded
        if type(m).__name__ == "AssistantMessage"
        for b in m.content
    )
    assert query(local_db, "SELECT COUNT(*) FROM tool_executions") == [(tool_uses,)]
    # every tool closed (completed/error) once its result arrived
    assert query(local_db, "SELECT COUNT(*) FROM tool_executions WHERE status='running'") == [(0,)]


class FutureMessage:
    """A message type this package has never heard of."""

    def __init__(self) -> None:
        self.payload = {"x": 1}


async def test_unknown_types_are_kept_as_json(local_db: Path) -> None:
    async with cpl.logged_session("any", instrument=False) as s:
        async for _ in s.track(replay([FutureMessage(), 42])):
            pass
    assert cpl.flush(5)
    rows = query(local_db, "SELECT role, metadata FROM messages ORDER BY sequence")
    assert [r[0] for r in rows] == ["event", "event"]
    assert json.loads(rows[0][1])["type"] == "FutureMessage"
    assert json.loads(rows[1][1]) == {"type": "int", "data": 42}


# ----- the caller must not notice -----------------------------------------------------------


async def counting_gen(n: int, log: list[str]) -> AsyncIterator[int]:
    try:
        for i in range(n):
            got = yield i
            if got is not None:
                log.append(f"sent {got}")
    except ValueError as exc:
        log.append(f"thrown {exc}")
        yield -1
    finally:
        log.append("closed")


async def test_early_break_and_aclose_end_the_session(local_db: Path) -> None:
    log: list[str] = []
    async with cpl.logged_session("a", instrument=False) as s:
        stream = s.track(counting_gen(10, log))
        async for item in stream:
            if item == 2:
                break
        await stream.aclose()
    assert log == ["closed"]
    assert cpl.flush(5)
    assert session_row(local_db, s.id)["status"] == "completed"


async def test_asend_athrow_pass_through(local_db: Path) -> None:
    log: list[str] = []
    async with cpl.logged_session("a", instrument=False) as s:
        stream = s.track(counting_gen(5, log))
        assert await stream.__anext__() == 0
        assert await stream.asend("hello") == 1
        assert await stream.athrow(ValueError("boom")) == -1
        await stream.aclose()
    assert log == ["sent hello", "thrown boom", "closed"]


async def test_exception_propagates_unchanged_and_session_errors(local_db: Path) -> None:
    class Boom(Exception):
        pass

    async def failing() -> AsyncIterator[int]:
        yield 1
        raise Boom("model exploded")

    s = cpl.logged_session("a", instrument=False)
    with pytest.raises(Boom, match="model exploded"):
        async with s:
            async for _ in s.track(failing()):
                pass
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert row["status"] == "error" and row["error_message"] == "Boom: model exploded"


async def test_cancellation_ends_session_as_cancelled(local_db: Path) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        yield 1
        started.set()
        await asyncio.sleep(30)
        yield 2

    holder: dict[str, str] = {}

    async def agent() -> None:
        async with cpl.logged_session("a", instrument=False) as s:
            holder["id"] = s.id
            async for _ in s.track(slow()):
                pass

    task = asyncio.create_task(agent())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cpl.flush(5)
    row = session_row(local_db, holder["id"])
    assert (row["status"], row["error_message"]) == ("error", "cancelled")


async def test_logging_failure_never_reaches_the_caller(
    local_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = load_recorded(DATA / "tool_bash.jsonl")
    async with cpl.logged_session("a", instrument=False) as s:

        def broken(*_a: Any, **_k: Any) -> str:
            raise RuntimeError("logger broke")

        monkeypatch.setattr(cpl.ConversationLogger, "log_message", broken)
        out = [m async for m in s.track(replay(recorded))]
    assert out == recorded


# ----- decorator ------------------------------------------------------------------------------


async def test_decorator_keeps_metadata_and_logs_one_session(local_db: Path) -> None:
    @cpl.logged(agent_type="planner", model="claude-x", instrument=False)
    async def plan(task: str, *, depth: int = 1) -> str:
        """Plan a task."""
        s = cpl.current_session()
        assert s is not None
        async for _ in s.track(replay(load_recorded(DATA / "text_only.jsonl")), prompt=task):
            pass
        return "ok"

    assert plan.__name__ == "plan" and plan.__doc__ == "Plan a task."
    assert list(inspect.signature(plan).parameters) == ["task", "depth"]
    assert inspect.iscoroutinefunction(plan)
    assert await plan("write a plan") == "ok"

    @cpl.logged(agent_type="sync-agent", instrument=False)
    def sync_agent(x: int) -> int:
        s = cpl.current_session()
        assert s is not None
        s.logger.log_message("user", f"x={x}")
        return x * 2

    assert sync_agent(21) == 42

    @cpl.logged(agent_type="gen-agent", instrument=False)
    async def gen_agent() -> AsyncIterator[int]:
        s = cpl.current_session()
        assert s is not None and s.agent_type == "gen-agent"
        s.logger.log_message("user", "from generator")
        yield 1
        yield 2

    assert inspect.isasyncgenfunction(gen_agent) or hasattr(gen_agent(), "__anext__")
    assert [x async for x in gen_agent()] == [1, 2]
    assert cpl.current_session() is None
    assert cpl.flush(5)
    rows = query(local_db, "SELECT agent_type, status FROM sessions ORDER BY agent_type")
    assert rows == [
        ("gen-agent", "completed"),
        ("planner", "completed"),
        ("sync-agent", "completed"),
    ]
    assert query(
        local_db,
        "SELECT m.content FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE s.agent_type='planner' AND m.role='user'",
    ) == [("write a plan",)]


def test_sync_block_error_propagates(local_db: Path) -> None:
    s = cpl.logged_session("sync", instrument=False)
    with pytest.raises(KeyError):
        with s:
            raise KeyError("missing")
    assert cpl.flush(5)
    assert session_row(local_db, s.id)["status"] == "error"
