"""End to end: the real Claude Code CLI (bundled in claude-agent-sdk) against a scripted model
server on 127.0.0.1, logged by every entry point; assertions on database rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeSDKClient, ResultMessage, query  # imported BEFORE instrument()

import claude_parallel_logging as cpl
from claude_parallel_logging.testing.anthropic import (
    ScriptedAnthropicServer,
    Usage,
    error_turn,
    text_turn,
    tool_turn,
)
from claude_parallel_logging.testing.claude import scripted_claude_options
from tests.conftest import query as db_query

pytestmark = pytest.mark.e2e

ECHO = {"command": "echo hello-from-tool", "description": "Print a greeting"}


@pytest.fixture
def instrumented() -> Iterator[None]:
    cpl.instrument(agent_type="claude-standalone")
    yield
    cpl.uninstrument()


def tool_script() -> list[Any]:
    return [
        tool_turn("Bash", ECHO, text="Running it.", usage=Usage(100, 20, 30, 40)),
        text_turn("It printed hello-from-tool.", usage=Usage(200, 50, 60, 70)),
    ]


def assert_tool_session(db: Path, sid: str, result: ResultMessage) -> None:
    (s,) = db_query(
        db,
        "SELECT status, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,"
        " cost_usd, num_turns, external_id, model FROM sessions WHERE id=?",
        (sid,),
    )
    usage = result.usage or {}
    assert s[0] == "completed"
    assert s[1:5] == (
        usage["input_tokens"], usage["output_tokens"], usage["cache_read_input_tokens"],
        usage["cache_creation_input_tokens"],
    )  # fmt: skip
    assert s[1:5] == (300, 70, 90, 110)  # what the script said the model used
    assert s[5] == pytest.approx(result.total_cost_usd) and s[5] > 0
    assert s[6] == result.num_turns and s[7] == result.session_id
    assert s[8] == "claude-sonnet-4-5"
    (t,) = db_query(
        db,
        "SELECT tool_name, status, input, output, duration_ms FROM tool_executions"
        " WHERE session_id=?",
        (sid,),
    )
    assert t[0:2] == ("Bash", "completed") and json.loads(t[2])["command"] == ECHO["command"]
    assert "hello-from-tool" in t[3] and t[4] >= 0
    roles = [
        r[0]
        for r in db_query(
            db, "SELECT role FROM messages WHERE session_id=? ORDER BY sequence", (sid,)
        )
    ]
    assert roles[0] == "user" and roles[-1] == "result" and "tool" in roles


async def test_instrumented_query_imported_before_instrument(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:
        result = None
        async for msg in query(
            prompt="Say hello with Bash", options=scripted_claude_options(server, tmp_path)
        ):
            if isinstance(msg, ResultMessage):
                result = msg
    assert result is not None and not result.is_error
    assert cpl.flush(10)
    (sid,) = db_query(local_db, "SELECT id FROM sessions WHERE agent_type='claude-standalone'")[0]
    assert_tool_session(local_db, sid, result)
    prompt = db_query(
        local_db, "SELECT content FROM messages WHERE role='user' AND session_id=?", (sid,)
    )
    assert prompt[0] == ("Say hello with Bash",)


async def test_logged_session_track(local_db: Path, tmp_path: Path) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:
        result = None
        async with cpl.logged_session("implementation") as s:
            stream = query(prompt="Say hello", options=scripted_claude_options(server, tmp_path))
            async for msg in s.track(stream, prompt="Say hello"):
                if isinstance(msg, ResultMessage):
                    result = msg
    assert result is not None
    assert cpl.flush(10)
    assert db_query(local_db, "SELECT COUNT(*) FROM sessions") == [(1,)]  # no second session
    assert_tool_session(local_db, s.id, result)
    # the prompt is logged once even though both track() and instrumentation saw it
    assert db_query(
        local_db, "SELECT COUNT(*) FROM messages WHERE role='user' AND session_id=?", (s.id,)
    ) == [(1,)]


async def test_logged_decorator(local_db: Path, tmp_path: Path) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:

        @cpl.logged(agent_type="review")
        async def review(prompt: str) -> ResultMessage | None:
            found = None
            async for msg in query(
                prompt=prompt, options=scripted_claude_options(server, tmp_path)
            ):
                if isinstance(msg, ResultMessage):
                    found = msg
            return found

        result = await review("Review this")
    assert result is not None
    assert cpl.flush(10)
    (sid,) = db_query(local_db, "SELECT id FROM sessions WHERE agent_type='review'")[0]
    assert_tool_session(local_db, sid, result)


async def test_client_two_turns(local_db: Path, tmp_path: Path, instrumented: None) -> None:
    script = [
        text_turn("First answer.", usage=Usage(10, 4, 0, 100)),
        tool_turn("Bash", ECHO, usage=Usage(20, 5, 100, 0)),
        text_turn("Second answer.", usage=Usage(30, 9, 100, 10)),
    ]
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer(script) as server:
        async with ClaudeSDKClient(options=scripted_claude_options(server, tmp_path)) as client:
            await client.query("first question")
            async for msg in client.receive_response():
                if isinstance(msg, ResultMessage):
                    results.append(msg)
            await client.query("second question")
            async for msg in client.receive_response():
                if isinstance(msg, ResultMessage):
                    results.append(msg)
    assert len(results) == 2
    assert cpl.flush(10)
    (s,) = db_query(
        local_db,
        "SELECT id, status, input_tokens, output_tokens, cost_usd, num_turns FROM sessions",
    )
    assert s[1] == "completed"
    assert s[2] == sum(r.usage["input_tokens"] for r in results) == 60
    assert s[3] == sum(r.usage["output_tokens"] for r in results) == 18
    assert s[4] == pytest.approx(results[-1].total_cost_usd)  # cumulative in the client
    assert s[5] == sum(r.num_turns for r in results)
    prompts = db_query(local_db, "SELECT content FROM messages WHERE role='user' ORDER BY sequence")
    assert prompts == [("first question",), ("second question",)]
    assert db_query(local_db, "SELECT status FROM tool_executions") == [("completed",)]


async def test_api_error_run(local_db: Path, tmp_path: Path, instrumented: None) -> None:
    with ScriptedAnthropicServer(
        [error_turn(400, "invalid_request_error", "scripted bad request")]
    ) as server:
        results = []
        try:
            async for msg in query(
                prompt="fail", options=scripted_claude_options(server, tmp_path)
            ):
                if isinstance(msg, ResultMessage):
                    results.append(msg)
        except Exception:
            pass  # some SDK versions raise after the error result
    assert cpl.flush(10)
    (status, err) = db_query(local_db, "SELECT status, error_message FROM sessions")[0]
    assert status == "error" and err


async def test_consumer_breaks_after_first_message(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    import gc

    with ScriptedAnthropicServer(tool_script()) as server:
        stream = query(prompt="stop early", options=scripted_claude_options(server, tmp_path))
        async for _msg in stream:
            break
        await stream.aclose()
        del stream
        gc.collect()
    assert cpl.flush(10)
    (status, err) = db_query(local_db, "SELECT status, error_message FROM sessions")[0]
    assert status != "running"
    assert (status, err) == ("error", "stream closed by the consumer before the result")


def test_uninstrument_restores_originals() -> None:
    from claude_agent_sdk._internal.client import InternalClient

    before = (InternalClient.__dict__["process_query"], ClaudeSDKClient.__dict__["query"])
    cpl.instrument()
    cpl.instrument()  # idempotent: not wrapped twice
    wrapped = InternalClient.__dict__["process_query"]
    assert wrapped is not before[0] and wrapped.__wrapped__ is before[0]
    cpl.uninstrument()
    assert (InternalClient.__dict__["process_query"], ClaudeSDKClient.__dict__["query"]) == before
