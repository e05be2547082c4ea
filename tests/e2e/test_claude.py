"""End to end: the real Claude Code CLI (bundled in claude-agent-sdk) against a scripted model
server on 127.0.0.1, logged by every entry point; assertions on database rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (  # imported BEFORE instrument()
    ClaudeSDKClient,
    ResultError,
    ResultMessage,
    query,
)

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
    """The SDK yields an is_error result, then raises ResultError: the caller sees exactly that,
    and the session ends as error with the API's message."""
    results: list[ResultMessage] = []
    with ScriptedAnthropicServer(
        [error_turn(400, "invalid_request_error", "scripted bad request")]
    ) as server:
        with pytest.raises(ResultError) as excinfo:
            async for msg in query(
                prompt="fail", options=scripted_claude_options(server, tmp_path)
            ):
                if isinstance(msg, ResultMessage):
                    results.append(msg)
    assert "API Error: 400 scripted bad request" in str(excinfo.value)
    (result,) = results
    assert result.is_error and result.api_error_status == 400
    assert cpl.flush(10)
    ((sid, status, err),) = db_query(local_db, "SELECT id, status, error_message FROM sessions")
    assert status == "error"
    assert err.startswith("ResultError: ") and "API Error: 400 scripted bad request" in err
    msgs = db_query(
        local_db,
        "SELECT role, content, metadata FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    assert [m[0] for m in msgs] == ["user", "assistant", "result"]
    assert msgs[0][1] == "fail"
    assert "API Error: 400 scripted bad request" in msgs[1][1]
    assert json.loads(msgs[1][2])["error"]
    meta = json.loads(msgs[2][2])
    assert meta["is_error"] is True and meta["api_error_status"] == 400
    assert msgs[2][1] == result.result


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
        await settle_sdk()
    assert cpl.flush(10)
    (status, err) = db_query(local_db, "SELECT status, error_message FROM sessions")[0]
    assert status != "running"
    assert (status, err) == ("error", "stream closed by the consumer before the result")


# ----- the README's pattern: a block around plain SDK calls ------------------------------------


async def test_logged_session_logs_plain_query_without_track(
    local_db: Path, tmp_path: Path
) -> None:
    cpl.uninstrument()  # the block itself must turn instrumentation on
    try:
        with ScriptedAnthropicServer(tool_script()) as server:
            result = None
            async with cpl.logged_session("review", metadata={"pr": 42}) as s:
                async for msg in query(
                    prompt="Review the diff", options=scripted_claude_options(server, tmp_path)
                ):
                    if isinstance(msg, ResultMessage):
                        result = msg
    finally:
        cpl.uninstrument()
    assert result is not None
    assert cpl.flush(10)
    assert db_query(local_db, "SELECT id, agent_type FROM sessions") == [(s.id, "review")]
    assert_tool_session(local_db, s.id, result)
    (meta,) = db_query(local_db, "SELECT metadata FROM sessions")[0]
    assert json.loads(meta)["pr"] == 42
    assert db_query(
        local_db, "SELECT content FROM messages WHERE role='user' ORDER BY sequence"
    ) == [("Review the diff",)]


# ----- streamed prompts ---------------------------------------------------------------------------


def prompt_message(text: str) -> dict[str, Any]:
    return {
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": text}]},
        "parent_tool_use_id": None,
        "session_id": "default",
    }


async def test_streamed_prompt_is_logged_with_its_text(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    sent = [prompt_message("streamed hello, list the files")]
    consumed: list[Any] = []

    async def prompts() -> Any:
        for item in sent:
            consumed.append(item)
            yield item

    with ScriptedAnthropicServer([text_turn("Nothing to list.", usage=Usage(5, 3))]) as server:
        out = [
            m
            async for m in query(
                prompt=prompts(), options=scripted_claude_options(server, tmp_path)
            )
        ]
    assert consumed == sent and isinstance(out[-1], ResultMessage)
    # the CLI got exactly what the generator yielded
    assert "streamed hello, list the files" in json.dumps(server.main_requests[0]["messages"])
    assert cpl.flush(10)
    (sid,) = db_query(local_db, "SELECT id FROM sessions")[0]
    rows = db_query(
        local_db,
        "SELECT role, content FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    assert rows[0] == ("user", "streamed hello, list the files")
    assert rows[-1] == ("result", "Nothing to list.")
    (hit,) = cpl.search_sessions("list the files")
    assert hit.session.id == sid and hit.role == "user"


# ----- a query() outside any session: its own session ends however the consumer stops --------


async def settle_sdk(timeout: float = 10.0) -> None:
    """Let asyncio finish closing abandoned SDK generators (which stops the CLI process) before
    the test's loop closes; bounded. Uses the loop's private set of live async generators."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        live = [
            g.__qualname__
            for g in list(getattr(loop, "_asyncgens", ()))
            if g.__qualname__.split(".")[0] in ("InternalClient", "Query", "SubprocessCLITransport")
        ]
        if not live:
            return
        await asyncio.sleep(0.05)


async def wait_ended(db: Path, timeout: float = 10.0) -> list[tuple[Any, ...]]:
    """Bounded wait until no session is running (ends may come from the event loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await asyncio.sleep(0.02)
        assert cpl.flush(5)
        rows = db_query(db, "SELECT status, error_message FROM sessions")
        if rows and all(r[0] != "running" for r in rows):
            await settle_sdk()
            return rows
        if asyncio.get_running_loop().time() > deadline:
            return rows


async def test_consumer_cancelled_in_its_loop_body(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    started = asyncio.Event()
    with ScriptedAnthropicServer(tool_script()) as server:
        options = scripted_claude_options(server, tmp_path)

        async def consume() -> None:
            async for _msg in query(prompt="slow consumer", options=options):
                started.set()
                await asyncio.sleep(60)  # cancelled here, not inside the stream

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_ended(local_db) == [("error", "cancelled")]


@pytest.mark.parametrize("how", ["awaited", "gathered"])
async def test_exception_in_loop_body_kept_by_the_caller(
    local_db: Path, tmp_path: Path, instrumented: None, how: str
) -> None:
    """The caller keeps the exception (and so the stream) alive: the consumer's task ending
    still ends the session, with the exception's text."""
    with ScriptedAnthropicServer(tool_script()) as server:
        options = scripted_claude_options(server, tmp_path)

        async def consume() -> None:
            async for _msg in query(prompt="buggy consumer", options=options):
                raise ValueError("consumer bug")

        if how == "awaited":
            with pytest.raises(ValueError, match="consumer bug") as kept:
                await asyncio.create_task(consume())
            assert isinstance(kept.value, ValueError)
        else:
            (kept_exc,) = await asyncio.gather(consume(), return_exceptions=True)
            assert isinstance(kept_exc, ValueError)
        assert await wait_ended(local_db) == [("error", "ValueError: consumer bug")]


async def test_exception_in_loop_body_in_the_same_task(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    """Caught in the task that iterated: the stream only sees that it was let go."""
    with ScriptedAnthropicServer(tool_script()) as server:
        with pytest.raises(ValueError, match="consumer bug"):
            async for _msg in query(
                prompt="buggy", options=scripted_claude_options(server, tmp_path)
            ):
                raise ValueError("consumer bug")
        assert await wait_ended(local_db) == [
            ("error", "stream closed by the consumer before the result")
        ]


async def test_break_without_aclose_ends_the_session(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:

        async def consume() -> str:
            async for msg in query(
                prompt="first only", options=scripted_claude_options(server, tmp_path)
            ):
                return type(msg).__name__
            return "nothing"

        assert await consume() == "SystemMessage"
        assert await wait_ended(local_db) == [
            ("error", "stream closed by the consumer before the result")
        ]


async def test_asend_athrow_on_instrumented_query(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:
        options = scripted_claude_options(server, tmp_path)
        stream = query(prompt="step by step", options=options)
        first = await stream.__anext__()
        second = await stream.asend(None)
        assert type(first).__name__ == "SystemMessage" and second is not first
        with pytest.raises(KeyError, match="stop here"):
            await stream.athrow(KeyError("stop here"))  # the SDK does not catch it
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()  # a finished generator, as without logging
        assert await wait_ended(local_db) == [
            ("error", "stream closed by the consumer before the result")
        ]
        # the messages read before the throw were logged
        roles = db_query(local_db, "SELECT role FROM messages ORDER BY sequence")
        assert roles[0] == ("user",) and len(roles) >= 2


async def test_read_to_the_result_then_aclose_is_completed(
    local_db: Path, tmp_path: Path, instrumented: None
) -> None:
    with ScriptedAnthropicServer(tool_script()) as server:
        stream = query(prompt="all of it", options=scripted_claude_options(server, tmp_path))
        async for msg in stream:
            if isinstance(msg, ResultMessage):
                break
        await stream.aclose()
        assert await wait_ended(local_db) == [("completed", None)]
