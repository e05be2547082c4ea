"""ClaudeSDKClient end to end (the real CLI against the scripted server): per-turn cost and
tokens through track() and instrumentation, one client across sessions, and how its own
session ends when the client fails, is cancelled or never starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeSDKClient, CLINotFoundError, ResultMessage

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.instrument import is_instrumented
from claude_parallel_logging.testing.anthropic import (
    ScriptedAnthropicServer,
    Turn,
    Usage,
    text_turn,
    tool_turn,
)
from claude_parallel_logging.testing.claude import scripted_claude_options
from tests.conftest import query as db_query

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
ECHO = {"command": "echo hello-from-tool", "description": "Print a greeting"}
# claude-sonnet-4-5 list prices per token, as the CLI applies them
PRICES = (3e-6, 15e-6, 0.3e-6, 3.75e-6)


def cost(*usages: Usage) -> float:
    return sum(
        u.input_tokens * PRICES[0]
        + u.output_tokens * PRICES[1]
        + u.cache_read_input_tokens * PRICES[2]
        + u.cache_creation_input_tokens * PRICES[3]
        for u in usages
    )


U1, U2, U3 = Usage(10, 4, 0, 100), Usage(20, 6, 100, 0), Usage(30, 8, 100, 10)


def two_turn_script() -> list[Any]:
    return [text_turn("First answer.", usage=U1), tool_turn("Bash", ECHO, usage=U2),
            text_turn("Second answer.", usage=U3)]  # fmt: skip


@pytest.fixture
def instrumented() -> Iterator[None]:
    cpl.instrument(agent_type="client-own")
    yield
    cpl.uninstrument()


@pytest.fixture
def not_instrumented() -> Iterator[None]:
    cpl.uninstrument()
    yield
    cpl.uninstrument()


def sessions(db: Path) -> list[dict[str, Any]]:
    cols = ["id", "agent_type", "status", "error_message", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_creation_tokens", "cost_usd", "num_turns"]  # fmt: skip
    rows = db_query(db, f"SELECT {', '.join(cols)} FROM sessions ORDER BY started_at")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def roles(db: Path, sid: str) -> list[tuple[str, Any]]:
    return [
        (r[0], r[1])
        for r in db_query(
            db, "SELECT role, content FROM messages WHERE session_id=? ORDER BY sequence", (sid,)
        )
    ]


async def read_turn(client: ClaudeSDKClient, results: list[ResultMessage]) -> None:
    async def drain() -> None:
        async for msg in client.receive_response():
            if isinstance(msg, ResultMessage):
                results.append(msg)

    await asyncio.wait_for(drain(), TIMEOUT)


async def track_two_turns(
    session: cpl.LoggedSession, client: ClaudeSDKClient, results: list[ResultMessage]
) -> None:
    """Ask both questions, each turn's response read through ``session.track()``."""
    for prompt in ("first question", "second question"):
        await client.query(prompt)

        async def drain(p: str = prompt) -> None:
            async for msg in session.track(client.receive_response(), prompt=p):
                if isinstance(msg, ResultMessage):
                    results.append(msg)

        await asyncio.wait_for(drain(), TIMEOUT)


async def test_track_receive_response_once_per_turn(
    local_db: Path, tmp_path: Path, not_instrumented: None
) -> None:
    """Without instrumentation: track() each turn's stream; the client's cumulative cost is
    counted once (0.0009225 for this script, not 0.0013875)."""
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer(two_turn_script()) as server:
        async with cpl.logged_session("chat", instrument=False) as s:
            async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
                await track_two_turns(s, client, results)
    assert not is_instrumented()  # only track() logged this
    assert len(results) == 2
    assert results[-1].total_cost_usd == pytest.approx(cost(U1, U2, U3))
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert row["status"] == "completed"
    assert row["cost_usd"] == pytest.approx(cost(U1, U2, U3))  # = the last cumulative report
    assert (row["input_tokens"], row["output_tokens"]) == (60, 18)
    assert (row["cache_read_tokens"], row["cache_creation_tokens"]) == (200, 110)
    assert row["num_turns"] == sum(r.num_turns for r in results) == 3
    got = roles(local_db, s.id)
    assert [c for r, c in got if r == "user"] == ["first question", "second question"]
    assert [c for r, c in got if r == "result"] == ["First answer.", "Second answer."]
    assert db_query(local_db, "SELECT tool_name, status FROM tool_executions") == [
        ("Bash", "completed")
    ]


async def test_track_receive_response_with_instrumentation_logs_once(
    local_db: Path, tmp_path: Path
) -> None:
    """The default block (instrumentation on) plus track(): every message and prompt once."""
    results: list[ResultMessage] = []
    try:
        with ScriptedAnthropicServer(two_turn_script()) as server:
            async with cpl.logged_session("chat") as s:
                async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
                    await track_two_turns(s, client, results)
    finally:
        cpl.uninstrument()
    assert cpl.flush(10)
    (row,) = sessions(local_db)  # no session of the client's own
    assert row["id"] == s.id and row["status"] == "completed"
    assert row["cost_usd"] == pytest.approx(results[-1].total_cost_usd)
    assert (row["input_tokens"], row["output_tokens"]) == (60, 18)
    got = roles(local_db, s.id)
    assert [c for r, c in got if r == "user"] == ["first question", "second question"]
    assert [r for r, _ in got].count("result") == 2
    assert [c for r, c in got if r == "assistant" and c] == ["First answer.", "Second answer."]


async def test_one_client_across_two_logged_sessions(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    """Instrumentation is on before the client connects (outside any session): each session
    gets its own turn's share of the cumulative cost, and no empty session is left behind."""
    u1, u2 = Usage(10, 4), Usage(30, 9)
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer([text_turn("one", u1), text_turn("two", u2)]) as server:
        async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
            for name in ("turn-first", "turn-second"):
                async with cpl.logged_session(name):
                    await client.query(name)
                    await read_turn(client, results)
    assert [r.total_cost_usd for r in results] == pytest.approx([cost(u1), cost(u1, u2)])
    assert cpl.flush(10)
    rows = sessions(local_db)
    assert [(r["agent_type"], r["status"]) for r in rows] == [
        ("turn-first", "completed"),
        ("turn-second", "completed"),
    ]
    assert [r["cost_usd"] for r in rows] == pytest.approx([cost(u1), cost(u2)])  # 9e-05, 2.25e-4
    assert [(r["input_tokens"], r["output_tokens"]) for r in rows] == [(10, 4), (30, 9)]
    for r, prompt in zip(rows, ("turn-first", "turn-second"), strict=True):
        assert roles(local_db, r["id"])[0] == ("user", prompt)


async def test_client_own_session_across_turns(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer(two_turn_script()) as server:
        async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
            for prompt in ("first question", "second question"):
                await client.query(prompt)
                await read_turn(client, results)
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert (row["agent_type"], row["status"], row["error_message"]) == (
        "client-own", "completed", None,
    )  # fmt: skip
    assert row["cost_usd"] == pytest.approx(cost(U1, U2, U3))
    assert (row["input_tokens"], row["output_tokens"]) == (60, 18)


async def test_client_body_exception_ends_its_session_as_error(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer([text_turn("a", Usage(1, 1))]) as server:
        with pytest.raises(ValueError, match="user code failed"):
            async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
                await client.query("hi")
                await read_turn(client, results)
                raise ValueError("user code failed")
    assert len(results) == 1
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert (row["status"], row["error_message"]) == ("error", "ValueError: user code failed")
    assert [r for r, _ in roles(local_db, row["id"])] == ["user", "assistant", "result"]


async def test_client_cancelled_mid_turn_ends_as_cancelled(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    started = asyncio.Event()
    with ScriptedAnthropicServer([text_turn("a", Usage(1, 1))]) as server:

        async def run() -> None:
            async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
                await client.query("hi")
                async for msg in client.receive_messages():  # never ends by itself
                    if isinstance(msg, ResultMessage):
                        started.set()

        task = asyncio.create_task(run())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert (row["status"], row["error_message"]) == ("error", "cancelled")
    assert ("result", "a") in roles(local_db, row["id"])


async def test_client_stream_cancelled_then_disconnected(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    """A turn whose reading was cancelled (a timeout), then a plain disconnect(): error."""
    with ScriptedAnthropicServer([Turn(text="slow", usage=Usage(1, 1), delay_s=3.0)]) as server:
        client = ClaudeSDKClient(scripted_claude_options(server, tmp_path))
        await client.connect()
        await client.query("take your time")
        with pytest.raises(asyncio.TimeoutError):
            await read_turn_with_timeout(client, 0.5)
        await client.disconnect()
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert (row["status"], row["error_message"]) == ("error", "cancelled")


async def read_turn_with_timeout(client: ClaudeSDKClient, timeout: float) -> None:
    async def drain() -> None:
        async for _ in client.receive_response():
            pass

    await asyncio.wait_for(drain(), timeout)


async def test_failed_connect_is_a_session_with_the_error(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with ScriptedAnthropicServer([]) as server:
        options = scripted_claude_options(server, tmp_path, cli_path="/nonexistent/claude")
        with pytest.raises(CLINotFoundError) as excinfo:
            async with ClaudeSDKClient(options):
                pytest.fail("connected without a CLI")
        # inside a block: no session of its own; the block records what reached it
        block = cpl.logged_session("block")
        with pytest.raises(CLINotFoundError):
            async with block:
                await ClaudeSDKClient(options).connect("never sent")
    assert cpl.flush(10)
    own, inside = sessions(local_db)
    assert (own["agent_type"], own["status"]) == ("client-own", "error")
    assert own["error_message"] == f"CLINotFoundError: {excinfo.value}"
    assert "/nonexistent/claude" in own["error_message"]
    assert (inside["id"], inside["status"]) == (block.id, "error")
    assert inside["error_message"] == own["error_message"]
    assert roles(local_db, block.id) == [
        ("user", "never sent"),
        ("event", own["error_message"]),
    ]


async def test_connect_without_a_turn_logs_nothing(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with cpl.logged_session("marker", instrument=False):
        pass  # so the database exists and has one known session
    with ScriptedAnthropicServer([]) as server:
        async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)):
            pass
        async with cpl.logged_session("inside"):
            async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)):
                pass
    assert cpl.flush(10)
    assert [(r["agent_type"], r["status"]) for r in sessions(local_db)] == [
        ("marker", "completed"),
        ("inside", "completed"),
    ]


async def test_client_streamed_prompt_is_logged(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    async def prompts() -> Any:
        yield {
            "type": "user",
            "message": {
                "role": "user",
                "content": [{"type": "text", "text": "streamed to a client"}],
            },
        }

    results: list[ResultMessage] = []
    with ScriptedAnthropicServer([text_turn("heard you", Usage(2, 2))]) as server:
        async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
            await client.query(prompts())
            await read_turn(client, results)
    assert "streamed to a client" in json.dumps(server.main_requests[0]["messages"])
    assert cpl.flush(10)
    (row,) = sessions(local_db)
    assert row["status"] == "completed"
    assert roles(local_db, row["id"])[0] == ("user", "streamed to a client")
