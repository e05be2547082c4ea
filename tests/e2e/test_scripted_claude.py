"""The real bundled Claude Code CLI, driven offline by ScriptedAnthropicServer.

The e2e tests spawn the CLI (~1 s each); the server-only tests talk HTTP directly.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_parallel_logging.testing.anthropic import (
    ScriptedAnthropicServer,
    ToolCall,
    Turn,
    Usage,
    error_turn,
    text_turn,
    thinking_turn,
    tool_turn,
)
from claude_parallel_logging.testing.claude import SCRIPTED_MODEL, scripted_claude_options

sdk = pytest.importorskip("claude_agent_sdk")
from claude_agent_sdk import (  # noqa: E402
    AssistantMessage,
    ClaudeSDKClient,
    Message,
    ResultError,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
    query,
)

RUN_TIMEOUT_S = 60.0
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "claude"

# claude-sonnet-4-5 list prices in USD per token, as the CLI applies them.
PRICE_IN = 3e-6
PRICE_OUT = 15e-6
PRICE_CACHE_READ = 0.3e-6
PRICE_CACHE_WRITE = 3.75e-6


def _cost(*usages: Usage) -> float:
    return sum(
        u.input_tokens * PRICE_IN
        + u.output_tokens * PRICE_OUT
        + u.cache_read_input_tokens * PRICE_CACHE_READ
        + u.cache_creation_input_tokens * PRICE_CACHE_WRITE
        for u in usages
    )


@pytest.fixture
def server() -> Iterator[ScriptedAnthropicServer]:
    srv = ScriptedAnthropicServer().start()
    try:
        yield srv
    finally:
        srv.stop()


async def _collect(stream: AsyncIterator[Message]) -> list[Message]:
    out: list[Message] = []

    async def drain() -> None:
        async for message in stream:
            out.append(message)

    await asyncio.wait_for(drain(), RUN_TIMEOUT_S)
    return out


def _of(messages: list[Message], cls: type[Any]) -> list[Any]:
    return [m for m in messages if isinstance(m, cls)]


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for msg in body["messages"]
        if isinstance(msg.get("content"), list)
        for block in msg["content"]
        if block.get("type") == "tool_result"
    ]


# -- e2e: real CLI ------------------------------------------------------------------


@pytest.mark.e2e
async def test_query_runs_bash_tool_for_real(
    server: ScriptedAnthropicServer, tmp_path: Path
) -> None:
    server.add_turns(
        [
            tool_turn("Bash", {"command": "echo hello-from-tool"}, text="Running it."),
            text_turn("All done."),
        ]
    )
    options = scripted_claude_options(server, tmp_path)
    messages = await _collect(query(prompt="Run echo", options=options))

    init = messages[0]
    assert isinstance(init, SystemMessage) and init.subtype == "init"
    assert init.data["model"] == SCRIPTED_MODEL
    assert init.data["cwd"] == str(options.cwd)
    assert "Bash" in init.data["tools"]
    session_id = init.data["session_id"]

    # One AssistantMessage per content block; blocks of one API message share id and usage.
    assistants = _of(messages, AssistantMessage)
    assert [type(a.content[0]) for a in assistants] == [TextBlock, ToolUseBlock, TextBlock]
    assert all(len(a.content) == 1 for a in assistants)
    assert assistants[0].message_id == assistants[1].message_id != assistants[2].message_id
    assert assistants[0].usage == assistants[1].usage
    assert all(a.session_id == session_id and a.parent_tool_use_id is None for a in assistants)
    tool_use = assistants[1].content[0]
    assert tool_use.name == "Bash" and tool_use.input == {"command": "echo hello-from-tool"}
    assert tool_use.id.startswith("toolu_")

    (user,) = _of(messages, UserMessage)
    (result_block,) = user.content
    assert isinstance(result_block, ToolResultBlock)
    assert result_block.tool_use_id == tool_use.id
    assert "hello-from-tool" in str(result_block.content)
    assert result_block.is_error is False
    assert user.tool_use_result["stdout"] == "hello-from-tool"

    result = messages[-1]
    assert isinstance(result, ResultMessage)
    assert result.is_error is False and result.subtype == "success"
    assert result.result == "All done." and result.num_turns == 2
    assert result.session_id == session_id

    # The second model request really carries the executed tool's output.
    assert len(server.main_requests) == 2
    (sent,) = _tool_results(server.main_requests[1])
    assert sent["tool_use_id"] == tool_use.id
    assert "hello-from-tool" in json.dumps(sent["content"])
    assert server.remaining_turns == 0


@pytest.mark.e2e
async def test_client_two_turns_usage_is_per_turn_cost_is_cumulative(
    server: ScriptedAnthropicServer, tmp_path: Path
) -> None:
    u1, u2, u3 = Usage(10, 4, 0, 100), Usage(20, 6, 100, 0), Usage(30, 8, 100, 10)
    server.add_turns(
        [
            text_turn("First answer.", u1),
            tool_turn("Bash", {"command": "echo second-turn"}, usage=u2),
            text_turn("Second answer.", u3),
        ]
    )
    results: list[ResultMessage] = []
    inits: list[SystemMessage] = []
    async with ClaudeSDKClient(scripted_claude_options(server, tmp_path)) as client:
        for prompt in ("first question", "second question"):
            await client.query(prompt)
            turn = await _collect(client.receive_response())
            inits.extend(m for m in _of(turn, SystemMessage) if m.subtype == "init")
            results.extend(_of(turn, ResultMessage))

    assert len(results) == 2 and len(inits) == 2  # one init per query()
    first, second = results
    assert first.session_id == second.session_id == inits[0].data["session_id"]
    assert (first.result, second.result) == ("First answer.", "Second answer.")
    assert (first.num_turns, second.num_turns) == (1, 2)
    # ResultMessage.usage covers only this query() ...
    assert second.usage is not None
    assert second.usage["input_tokens"] == u2.input_tokens + u3.input_tokens
    assert second.usage["output_tokens"] == u2.output_tokens + u3.output_tokens
    # ... while model_usage and total_cost_usd are session-cumulative.
    assert second.model_usage is not None
    assert second.model_usage[SCRIPTED_MODEL]["inputTokens"] == 60
    assert second.model_usage[SCRIPTED_MODEL]["outputTokens"] == 18
    assert first.total_cost_usd == pytest.approx(_cost(u1))
    assert second.total_cost_usd == pytest.approx(_cost(u1, u2, u3))
    # Turn two's request carries turn one's exchange.
    contents = json.dumps(server.main_requests[1]["messages"])
    assert "First answer." in contents and "second question" in contents


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(500, "api_error"), (529, "overloaded_error"), (400, "invalid_request_error")],
)
async def test_api_error_ends_run_with_error_result_then_raises(
    server: ScriptedAnthropicServer, tmp_path: Path, status: int, error_type: str
) -> None:
    """The SDK yields an is_error ResultMessage, then query() raises ResultError."""
    server.add_turns([error_turn(status, error_type, "scripted failure"), text_turn("never")])
    messages: list[Message] = []
    started = time.monotonic()

    async def drain() -> None:
        async for message in query(
            prompt="fail", options=scripted_claude_options(server, tmp_path)
        ):
            messages.append(message)

    with pytest.raises(ResultError) as excinfo:
        await asyncio.wait_for(drain(), RUN_TIMEOUT_S)
    assert time.monotonic() - started < 30

    result = messages[-1]
    assert isinstance(result, ResultMessage)
    assert result.is_error is True and result.subtype == "success"
    assert result.api_error_status == status
    assert result.terminal_reason == "api_error"
    assert result.total_cost_usd == 0
    assert "scripted failure" in (result.result or "")
    (synthetic,) = _of(messages, AssistantMessage)
    assert synthetic.model == "<synthetic>" and synthetic.error is not None
    assert "scripted failure" in str(excinfo.value)
    assert server.remaining_turns == 1  # 400 re-sends were sticky, "never" not consumed


@pytest.mark.e2e
async def test_usage_and_cost_sum_scripted_numbers(
    server: ScriptedAnthropicServer, tmp_path: Path
) -> None:
    u1, u2 = Usage(100, 20, 30, 40), Usage(200, 50, 60, 70)
    server.add_turns(
        [tool_turn("Bash", {"command": "true"}, usage=u1), text_turn("finished", usage=u2)]
    )
    messages = await _collect(
        query(prompt="count", options=scripted_claude_options(server, tmp_path))
    )
    result = messages[-1]
    assert isinstance(result, ResultMessage) and result.usage is not None
    assert result.usage["input_tokens"] == 300
    assert result.usage["output_tokens"] == 70
    assert result.usage["cache_read_input_tokens"] == 90
    assert result.usage["cache_creation_input_tokens"] == 110
    assert result.model_usage is not None
    per_model = result.model_usage[SCRIPTED_MODEL]
    assert (per_model["inputTokens"], per_model["outputTokens"]) == (300, 70)
    assert per_model["costUSD"] == pytest.approx(result.total_cost_usd)
    assert result.total_cost_usd == pytest.approx(_cost(u1, u2))

    # Per-block AssistantMessages carry the message_start usage: final input/cache
    # numbers, but output_tokens is the provisional start value, not the total.
    first = _of(messages, AssistantMessage)[0]
    assert first.usage is not None
    assert first.usage["input_tokens"] == 100
    assert first.usage["cache_read_input_tokens"] == 30
    assert first.usage["output_tokens"] == 1


@pytest.mark.e2e
async def test_thinking_block_is_surfaced(server: ScriptedAnthropicServer, tmp_path: Path) -> None:
    server.add_turns([thinking_turn("pondering", "42")])
    messages = await _collect(
        query(prompt="think", options=scripted_claude_options(server, tmp_path))
    )
    blocks = [a.content[0] for a in _of(messages, AssistantMessage)]
    assert isinstance(blocks[0], ThinkingBlock) and blocks[0].thinking == "pondering"
    assert isinstance(blocks[1], TextBlock) and blocks[1].text == "42"
    assert any(isinstance(m, SystemMessage) and m.subtype == "thinking_tokens" for m in messages)


# -- server only: no CLI --------------------------------------------------------------


def _post(
    server: ScriptedAnthropicServer, path: str, body: dict[str, Any]
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers.items())


def _sse_events(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]


MAIN = {"model": "m", "max_tokens": 10, "tools": [{"name": "Bash"}], "messages": []}


def test_side_requests_do_not_consume_turns(server: ScriptedAnthropicServer) -> None:
    server.add_turns([text_turn("scripted")])
    title = {
        "model": "m",
        "tools": [],
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {
            "format": {
                "type": "json_schema",
                "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
            }
        },
    }
    status, body, _ = _post(server, "/v1/messages", title)
    assert status == 200
    assert json.loads(json.loads(body)["content"][0]["text"]) == {"title": "Scripted session"}
    assert server.remaining_turns == 1

    status, body, _ = _post(server, "/v1/messages?beta=true", MAIN)
    assert json.loads(body)["content"] == [{"type": "text", "text": "scripted"}]
    status, body, _ = _post(server, "/v1/messages", MAIN)
    assert json.loads(body)["content"] == [{"type": "text", "text": "done"}]
    assert [r["tools"] == [] for r in server.requests] == [True, False, False]
    assert len(server.main_requests) == 2


def test_streaming_events_and_usage(server: ScriptedAnthropicServer) -> None:
    server.add_turns(
        [
            Turn(
                thinking="hmm",
                text="hi",
                tool_calls=(ToolCall("Bash", {"command": "ls"}, id="toolu_fixed"),),
                usage=Usage(7, 9, 3, 2),
            )
        ]
    )
    status, text, headers = _post(server, "/v1/messages", dict(MAIN, stream=True))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = _sse_events(text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    partial = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"command": "ls"}
    delta = events[-2]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {
        "input_tokens": 7,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
        "output_tokens": 9,
    }


def test_errors_count_tokens_and_unknown_paths(server: ScriptedAnthropicServer) -> None:
    server.add_turns([error_turn(529, "overloaded_error", "busy"), text_turn("after")])
    status, body, headers = _post(server, "/v1/messages", MAIN)
    assert status == 529 and headers.get("x-should-retry") == "false"
    assert json.loads(body)["error"] == {"type": "overloaded_error", "message": "busy"}
    # Same session + same message count = a re-send: still the error, no turn consumed.
    assert _post(server, "/v1/messages", MAIN)[0] == 529
    assert server.remaining_turns == 1
    status, body, _ = _post(server, "/v1/messages", dict(MAIN, messages=[{"role": "user"}]))
    assert status == 200 and "after" in body

    status, body, _ = _post(server, "/v1/messages/count_tokens", MAIN)
    assert status == 200 and json.loads(body)["input_tokens"] > 0
    status, body, _ = _post(server, "/v1/nope", {})
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    assert "POST /v1/nope" in server.paths


# -- recorded fixtures -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "text_only",
        "tool_bash",
        "tool_bash_partial",
        "tool_error",
        "tool_parallel",
        "thinking",
        "subagent",
        "api_error",
        "client_two_turns",
    ],
)
def test_recorded_streams_parse(name: str) -> None:
    from claude_parallel_logging.testing.recorded import load_raw, load_recorded

    messages = load_recorded(DATA_DIR / f"{name}.jsonl")
    assert len(messages) == len(load_raw(DATA_DIR / f"{name}.jsonl"))
    assert isinstance(messages[0], SystemMessage) and messages[0].subtype == "init"
    assert isinstance(messages[-1], ResultMessage)
    assert messages[-1].is_error is (name == "api_error")
