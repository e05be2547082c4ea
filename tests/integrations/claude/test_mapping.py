"""The Claude mapping, table-tested with real SDK message objects recorded from the real CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.claude.mapper import ClaudeMapper
from claude_parallel_logging.integrations.claude.usage import reset_ledgers
from claude_parallel_logging.testing.recorded import load_raw, load_recorded
from tests.conftest import query

DATA = Path(__file__).resolve().parents[2] / "data" / "claude"


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    """Each test replays recordings as if their SDK sessions were new to the process."""
    reset_ledgers()
    yield
    reset_ledgers()


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


def rows(db: Path, sid: str, cols: str, where: str = "") -> list[dict[str, Any]]:
    names = [c.strip() for c in cols.split(",")]
    out = query(
        db,
        f"SELECT {cols} FROM messages WHERE session_id=? {where} ORDER BY sequence",
        (sid,),
    )
    return [dict(zip(names, r, strict=True)) for r in out]


def tools(db: Path, sid: str) -> list[dict[str, Any]]:
    names = ["tool_name", "status", "input", "output", "error", "tool_use_id", "parent_tool_use_id"]
    out = query(
        db,
        f"SELECT {', '.join(names)} FROM tool_executions WHERE session_id=? ORDER BY started_at",
        (sid,),
    )
    return [dict(zip(names, r, strict=True)) for r in out]


async def log_recording(name: str, agent_type: str = "any", prompt: Any = None) -> str:
    recorded = load_recorded(DATA / f"{name}.jsonl")
    async with cpl.logged_session(agent_type, instrument=False) as s:
        async for _ in s.track(replay(recorded), prompt=prompt):
            pass
    return s.id


def result_of(name: str) -> Any:
    return [m for m in load_recorded(DATA / f"{name}.jsonl") if type(m).__name__ == "ResultMessage"]


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

    msgs = messages(local_db, s.id)
    roles = [(r[0], r[2]) for r in msgs]
    assert roles == [
        ("user", None), ("assistant", None), ("assistant", "Bash"), ("tool", "Bash"),
        ("assistant", None), ("result", None),
    ]  # fmt: skip
    assert msgs[0][1] == "Run echo hello-from-tool"
    assert "hello-from-tool" in msgs[3][1]
    assert msgs[5][1] == result.result
    # usage counted once per API message id, not once per content block
    first_id = msgs[1][5]
    assert msgs[2][5] == first_id and msgs[1][3] == 100 and msgs[2][3] is None
    assert msgs[4][3] == 200
    # the per-block usage carries a provisional output count (1): never stored as if final;
    # two API messages in the turn, so the result's total cannot be split between them
    assert [r[4] for r in msgs[1:3]] == [None, None] and msgs[4][4] is None
    assert (msgs[5][3], msgs[5][4]) == (300, 70)

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


# ----- per-turn figures from cumulative reports ----------------------------------------------


def _client_halves() -> tuple[list[Any], list[Any], list[Any]]:
    recorded = load_recorded(DATA / "client_two_turns.jsonl")
    results = [m for m in recorded if type(m).__name__ == "ResultMessage"]
    cut = recorded.index(results[0]) + 1
    return recorded[:cut], recorded[cut:], results


async def test_client_turns_tracked_one_call_each_count_cost_once(local_db: Path) -> None:
    """``track(client.receive_response())`` once per turn: total_cost_usd and model_usage are
    cumulative in a ClaudeSDKClient, so the second turn adds only its own share."""
    first, second, results = _client_halves()
    async with cpl.logged_session("review", instrument=False) as s:
        async for _ in s.track(replay(first), prompt="First question"):
            pass
        async for _ in s.track(replay(second), prompt="Second question, use a tool"):
            pass
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert results[-1].total_cost_usd == pytest.approx(0.0009225)
    assert row["cost_usd"] == pytest.approx(0.0009225)  # not 0.000465 + 0.0009225
    assert (row["input_tokens"], row["output_tokens"]) == (60, 18)
    assert (row["cache_read_tokens"], row["cache_creation_tokens"]) == (200, 110)
    assert row["num_turns"] == sum(r.num_turns for r in results) == 3
    turn_rows = rows(local_db, s.id, "input_tokens, output_tokens, metadata", "AND role='result'")
    turns = [json.loads(r["metadata"]) for r in turn_rows]
    assert [t["turn_cost_usd"] for t in turns] == pytest.approx([0.000465, 0.0004575])
    assert [(r["input_tokens"], r["output_tokens"]) for r in turn_rows] == [(10, 4), (50, 14)]
    assert [t["turn_usage"]["source"] for t in turns] == ["model_usage", "model_usage"]
    prompts = rows(local_db, s.id, "content", "AND role='user'")
    assert [p["content"] for p in prompts] == ["First question", "Second question, use a tool"]


async def test_client_turns_in_two_sessions_split_the_cost(local_db: Path) -> None:
    """One client serving two logged sessions: each stores its own turn's share."""
    first, second, results = _client_halves()
    ids = []
    for part in (first, second):
        async with cpl.logged_session("turn", instrument=False) as s:
            async for _ in s.track(replay(part)):
                pass
        ids.append(s.id)
    assert cpl.flush(5)
    one, two = (session_row(local_db, i) for i in ids)
    assert one["cost_usd"] == pytest.approx(results[0].total_cost_usd)
    assert two["cost_usd"] == pytest.approx(results[1].total_cost_usd - results[0].total_cost_usd)
    assert (one["input_tokens"], two["input_tokens"]) == (10, 50)
    assert (one["output_tokens"], two["output_tokens"]) == (4, 14)


async def test_direct_mapper_and_replayed_results_keep_their_figures(local_db: Path) -> None:
    """A result seen twice (two loggers, or a replay) gets the figures it got the first time."""
    first, second, results = _client_halves()
    async with cpl.logged_session("review", instrument=False) as s:
        mapper = ClaudeMapper(s)
        s.log_prompt("first")
        for m in first:
            mapper.observe(m)
    async with cpl.logged_session("again", instrument=False) as again:
        async for _ in again.track(replay(first + second)):
            pass
    assert cpl.flush(5)
    assert session_row(local_db, s.id)["cost_usd"] == pytest.approx(results[0].total_cost_usd)
    row = session_row(local_db, again.id)
    assert row["cost_usd"] == pytest.approx(results[-1].total_cost_usd)
    assert (row["input_tokens"], row["output_tokens"]) == (60, 18)


async def test_subagent_tokens_are_in_the_session_totals(local_db: Path) -> None:
    (result,) = result_of("subagent")
    sid = await log_recording("subagent")
    assert cpl.flush(5)
    row = session_row(local_db, sid)
    main_thread = (result.usage["input_tokens"], result.usage["output_tokens"])
    all_calls = result.model_usage["claude-sonnet-4-5"]
    assert main_thread == (120, 22)
    assert (row["input_tokens"], row["output_tokens"]) == (165, 33)  # subagent included
    assert (all_calls["inputTokens"], all_calls["outputTokens"]) == (165, 33)
    assert row["cost_usd"] == pytest.approx(result.total_cost_usd)
    (res,) = rows(local_db, sid, "input_tokens, output_tokens, metadata", "AND role='result'")
    meta = json.loads(res["metadata"])
    assert (res["input_tokens"], res["output_tokens"]) == (165, 33)
    assert (meta["usage"]["input_tokens"], meta["usage"]["output_tokens"]) == (120, 22)
    assert meta["turn_usage"] == {
        "input_tokens": 165, "output_tokens": 33, "cache_read_tokens": 0,
        "cache_creation_tokens": 0, "source": "model_usage",
    }  # fmt: skip

    agent_id = "toolu_01789412d5ff3d40528e2a70"
    sub = rows(
        local_db, sid, "role, content, tool_name, parent_tool_use_id", "AND parent_tool_use_id!=''"
    )
    assert {r["parent_tool_use_id"] for r in sub} == {agent_id}
    assert [(r["role"], r["tool_name"]) for r in sub] == [
        ("user", None), ("assistant", "Bash"), ("tool", "Bash"),
    ]  # fmt: skip
    assert sub[0]["content"] == "Run echo from-subagent and report the output."
    assert sub[2]["content"] == "from-subagent"
    agent, bash = tools(local_db, sid)
    assert (agent["tool_name"], agent["status"], agent["tool_use_id"]) == (
        "Agent", "completed", agent_id,
    )  # fmt: skip
    assert agent["parent_tool_use_id"] is None and "from-subagent" in agent["output"]
    assert (bash["tool_name"], bash["status"], bash["output"]) == (
        "Bash", "completed", "from-subagent",
    )  # fmt: skip
    assert bash["parent_tool_use_id"] == agent_id
    assert json.loads(bash["input"])["command"] == "echo from-subagent"
    system = rows(local_db, sid, "content", "AND role='system'")
    assert [r["content"] for r in system] == [
        "task_started", "task_progress", "task_updated", "task_notification",
    ]  # fmt: skip


async def test_thinking_is_a_row_with_its_block_metadata(local_db: Path) -> None:
    raw = [f for f in load_raw(DATA / "thinking.jsonl") if f["type"] == "assistant"]
    signature = raw[0]["message"]["content"][0]["signature"]
    sid = await log_recording("thinking")
    assert cpl.flush(5)
    out = rows(
        local_db,
        sid,
        "role, content, input_tokens, output_tokens, external_id, metadata",
        "AND role='assistant'",
    )
    assert [r["content"] for r in out] == ["The user wants a short answer.", "42"]
    assert json.loads(out[0]["metadata"]) == {"block": "ThinkingBlock", "signature": signature}
    assert out[1]["metadata"] is None  # a plain text block
    assert out[0]["external_id"] == out[1]["external_id"]
    # one API message in the turn and its input adds up: the result's output is its own
    assert (out[0]["input_tokens"], out[0]["output_tokens"]) == (30, 15)
    assert (out[1]["input_tokens"], out[1]["output_tokens"]) == (None, None)
    thinking_tokens = rows(local_db, sid, "content, metadata", "AND role='system'")
    assert len(thinking_tokens) == 3
    assert json.loads(thinking_tokens[0]["metadata"])["data"]["estimated_tokens"] == 4


async def test_text_only_fills_the_final_output_count_from_the_result(local_db: Path) -> None:
    sid = await log_recording("text_only")
    assert cpl.flush(5)
    (assistant,) = rows(local_db, sid, "input_tokens, output_tokens", "AND role='assistant'")
    assert (assistant["input_tokens"], assistant["output_tokens"]) == (12, 7)


async def test_partial_messages_give_each_message_its_final_output(local_db: Path) -> None:
    """With include_partial_messages the message_delta event carries the final count."""
    sid = await log_recording("tool_bash_partial")
    assert cpl.flush(5)
    out = rows(local_db, sid, "content, tool_name, input_tokens, output_tokens, external_id",
               "AND role='assistant'")  # fmt: skip
    assert [(r["input_tokens"], r["output_tokens"]) for r in out] == [
        (100, 20), (None, None), (200, 50),
    ]  # fmt: skip
    assert out[0]["external_id"] == out[1]["external_id"] != out[2]["external_id"]
    assert sum(r["output_tokens"] or 0 for r in out) == 70  # = the result's output_tokens
    # stream events are not stored as rows of their own
    assert rows(local_db, sid, "role", "AND role='event'") == []


async def test_tool_error_closes_the_execution_as_error(local_db: Path) -> None:
    sid = await log_recording("tool_error")
    assert cpl.flush(5)
    (tool,) = tools(local_db, sid)
    assert (tool["tool_name"], tool["status"], tool["output"]) == ("Bash", "error", None)
    assert "/definitely/not/here" in tool["error"] and "No such file" in tool["error"]
    assert json.loads(tool["input"]) == {"command": "ls /definitely/not/here"}
    (msg,) = rows(local_db, sid, "content, tool_name, metadata", "AND role='tool'")
    assert msg["tool_name"] == "Bash" and msg["content"] == tool["error"]
    assert json.loads(msg["metadata"])["is_error"] is True
    assert session_row(local_db, sid)["status"] == "completed"  # the agent coped with it


async def test_parallel_tool_results_close_their_own_executions(local_db: Path) -> None:
    sid = await log_recording("tool_parallel")
    assert cpl.flush(5)
    by_command = {json.loads(t["input"])["command"]: t for t in tools(local_db, sid)}
    assert set(by_command) == {"echo one", "echo two"}
    assert [by_command[c]["output"] for c in ("echo one", "echo two")] == ["one", "two"]
    assert {t["status"] for t in by_command.values()} == {"completed"}
    results = rows(local_db, sid, "content, metadata", "AND role='tool'")
    assert [r["content"] for r in results] == ["two", "one"]  # the order the CLI sent them
    for r in results:
        use_id = json.loads(r["metadata"])["tool_use_id"]
        command = "echo one" if r["content"] == "one" else "echo two"
        assert by_command[command]["tool_use_id"] == use_id


async def test_api_error_run_ends_session_as_error(local_db: Path) -> None:
    (result,) = result_of("api_error")
    sid = await log_recording("api_error", prompt="hi")
    assert cpl.flush(5)
    row = session_row(local_db, sid)
    assert (row["status"], row["error_message"]) == ("error", result.result)
    assert "scripted internal error" in row["error_message"]
    synthetic = rows(local_db, sid, "content, input_tokens, metadata", "AND role='assistant'")
    assert synthetic[0]["content"] == result.result and synthetic[0]["input_tokens"] == 0
    assert json.loads(synthetic[0]["metadata"])["error"] == "server_error"


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.jsonl")))
async def test_every_recording_maps_without_loss(local_db: Path, name: str) -> None:
    recorded = load_recorded(DATA / name)
    async with cpl.logged_session("any", instrument=False) as s:
        async for _ in s.track(replay(recorded)):
            pass
    assert cpl.flush(5)
    assert cpl.stats()["discarded"] == 0
    results = [m for m in recorded if type(m).__name__ == "ResultMessage"]
    assert query(local_db, "SELECT COUNT(*) FROM messages WHERE role='result'") == [(len(results),)]
    tool_uses = [
        b
        for m in recorded
        if type(m).__name__ == "AssistantMessage"
        for b in m.content
        if type(b).__name__ == "ToolUseBlock"
    ]
    assert sorted(t["tool_use_id"] for t in tools(local_db, s.id)) == sorted(
        b.id for b in tool_uses
    )
    # every tool closed (completed/error) once its result arrived
    assert query(local_db, "SELECT COUNT(*) FROM tool_executions WHERE status='running'") == [(0,)]
    row = session_row(local_db, s.id)
    assert row["cost_usd"] == pytest.approx(results[-1].total_cost_usd)
    assert row["external_id"] == results[-1].session_id
    assert row["status"] == ("error" if results[-1].is_error else "completed")
    # every text block of the stream is stored as a row's content
    texts = [
        b.text
        for m in recorded
        if type(m).__name__ in ("AssistantMessage", "UserMessage") and isinstance(m.content, list)
        for b in m.content
        if type(b).__name__ == "TextBlock"
    ]
    stored = [r["content"] for r in rows(local_db, s.id, "content")]
    assert all(t in stored for t in texts)


# ----- unknown types --------------------------------------------------------------------------


class FutureMessage:
    """A message type this package has never heard of."""

    def __init__(self) -> None:
        self.payload = {"x": 1}


@dataclasses.dataclass
class HologramBlock:
    """A content block type a future SDK might add."""

    beam: str
    strength: int


class PlainBlock:
    def __init__(self) -> None:
        self.kind = "plain"
        self.items = [1, 2]


async def test_unknown_types_are_kept_as_json(local_db: Path) -> None:
    async with cpl.logged_session("any", instrument=False) as s:
        async for _ in s.track(replay([FutureMessage(), 42])):
            pass
    assert cpl.flush(5)
    out = query(local_db, "SELECT role, metadata FROM messages ORDER BY sequence")
    assert [r[0] for r in out] == ["event", "event"]
    assert json.loads(out[0][1]) == {
        "type": "FutureMessage", "data": {"__type__": "FutureMessage", "payload": {"x": 1}},
    }  # fmt: skip
    assert json.loads(out[1][1]) == {"type": "int", "data": 42}


async def test_unknown_blocks_in_assistant_and_user_messages_are_kept(local_db: Path) -> None:
    from claude_agent_sdk import AssistantMessage, TextBlock, UserMessage

    assistant = AssistantMessage(
        content=[TextBlock("before"), HologramBlock("blue", 3), PlainBlock()],
        model="claude-sonnet-4-5",
        message_id="msg_future",
        usage={"input_tokens": 5, "output_tokens": 1},
    )
    user = UserMessage(content=[HologramBlock("red", 9), {"type": "audio", "seconds": 2}])
    async with cpl.logged_session("any", instrument=False) as s:
        out = [m async for m in s.track(replay([assistant, user]))]
    assert out == [assistant, user]
    assert cpl.flush(5)
    stored = rows(local_db, s.id, "role, content, metadata")
    assert [(r["role"], r["content"]) for r in stored] == [
        ("assistant", "before"), ("assistant", None), ("assistant", None), ("user", None),
        ("user", None),
    ]  # fmt: skip
    metas = [json.loads(r["metadata"]) for r in stored[1:]]
    assert metas[0] == {
        "block": "HologramBlock",
        "data": {"__type__": "HologramBlock", "beam": "blue", "strength": 3},
    }
    assert metas[1] == {
        "block": "PlainBlock", "data": {"__type__": "PlainBlock", "kind": "plain", "items": [1, 2]},
    }  # fmt: skip
    assert metas[2]["block"] == "HologramBlock" and metas[2]["data"]["beam"] == "red"
    assert metas[3] == {"block": "dict", "data": {"type": "audio", "seconds": 2}}


# ----- prompts --------------------------------------------------------------------------------


def streamed(text: str, *extra: dict[str, Any]) -> dict[str, Any]:
    blocks = [{"type": "text", "text": text}, *extra]
    return {"type": "user", "message": {"role": "user", "content": blocks}}


async def test_streamed_prompts_are_logged_with_their_text(local_db: Path) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    sent = [streamed("first streamed line"), streamed("second, with a picture", image)]

    async def prompts() -> AsyncIterator[dict[str, Any]]:
        for item in sent:
            yield item

    recorded = load_recorded(DATA / "text_only.jsonl")
    async with cpl.logged_session("p", instrument=False) as s:
        passed = [m async for m in s.logged_prompts(prompts())]  # what the SDK would read
        async for _ in s.track(replay(recorded), prompt=s.logged_prompts(prompts())):
            pass  # already logged as read: track() does not log it again
    assert [id(m) for m in passed] == [id(m) for m in sent]  # the same items
    assert cpl.flush(5)
    users = rows(local_db, s.id, "content, metadata", "AND role='user'")
    assert [u["content"] for u in users] == ["first streamed line", "second, with a picture"]
    assert users[0]["metadata"] is None
    assert json.loads(users[1]["metadata"])["content"][1]["type"] == "image"
    hits = cpl.search_sessions("with a picture")
    assert [h.session.id for h in hits] == [s.id]


async def test_track_logs_message_dict_and_list_prompts(local_db: Path) -> None:
    recorded = load_recorded(DATA / "text_only.jsonl")
    async with cpl.logged_session("p", instrument=False) as s:
        async for _ in s.track(replay(recorded), prompt=[streamed("one"), "two"]):
            pass
    assert cpl.flush(5)
    assert [u["content"] for u in rows(local_db, s.id, "content", "AND role='user'")] == [
        "one",
        "two",
    ]


async def test_track_prompt_with_a_failing_logger_never_raises(
    local_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = load_recorded(DATA / "text_only.jsonl")

    def broken(*_a: Any, **_k: Any) -> str:
        raise RuntimeError("logger broke")

    async with cpl.logged_session("a", instrument=False) as s:
        monkeypatch.setattr(cpl.ConversationLogger, "log_message", broken)
        out = [m async for m in s.track(replay(recorded), prompt="hello")]
        out2 = [m async for m in s.track(replay(recorded), prompt=streamed("hi"))]
        monkeypatch.undo()
    assert out == recorded and out2 == recorded
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert row["status"] == "completed"  # the session itself was still recorded and ended
    assert rows(local_db, s.id, "role") == []  # every log_message failed, silently


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
        assert log == ["closed"]  # closed by aclose, before the block ends
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
    assert cpl.flush(5)
    assert session_row(local_db, s.id)["status"] == "completed"


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

    @cpl.logged(agent_type="sync-agent", instrument=False)
    def sync_agent(x: int, label: str = "x") -> int:
        """Double it."""
        s = cpl.current_session()
        assert s is not None
        s.logger.log_message("user", f"{label}={x}")
        return x * 2

    @cpl.logged(agent_type="gen-agent", instrument=False)
    async def gen_agent(limit: int, *, step: int = 1) -> AsyncIterator[int]:
        """Count up."""
        s = cpl.current_session()
        assert s is not None and s.agent_type == "gen-agent"
        s.logger.log_message("user", "from generator")
        for i in range(0, limit, step):
            yield i

    for fn, name, doc, params in (
        (plan, "plan", "Plan a task.", ["task", "depth"]),
        (sync_agent, "sync_agent", "Double it.", ["x", "label"]),
        (gen_agent, "gen_agent", "Count up.", ["limit", "step"]),
    ):
        assert (fn.__name__, fn.__doc__) == (name, doc)
        assert fn.__qualname__.endswith(f"<locals>.{name}") and fn.__module__ == __name__
        assert list(inspect.signature(fn).parameters) == params
    assert inspect.iscoroutinefunction(plan) and not inspect.isasyncgenfunction(plan)
    assert not inspect.iscoroutinefunction(sync_agent) and callable(sync_agent)
    assert inspect.isasyncgenfunction(gen_agent) and inspect.isasyncgen(gen_agent(1))
    assert str(inspect.signature(gen_agent)) == str(inspect.signature(gen_agent.__wrapped__))

    assert await plan("write a plan") == "ok"
    assert sync_agent(21) == 42
    assert [x async for x in gen_agent(3)] == [0, 1, 2]
    assert cpl.current_session() is None
    assert cpl.flush(5)
    out = query(local_db, "SELECT agent_type, status FROM sessions ORDER BY agent_type")
    assert out == [
        ("gen-agent", "completed"),
        ("planner", "completed"),
        ("sync-agent", "completed"),
    ]
    assert query(
        local_db,
        "SELECT m.content FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE s.agent_type='planner' AND m.role='user'",
    ) == [("write a plan",)]


async def test_decorated_generator_semantics(local_db: Path) -> None:
    """asend/athrow/aclose reach the agent's generator; the session is current only inside
    its body; an early stop ends it completed, an exception as error."""
    log: list[str] = []
    seen_inside: list[bool] = []

    @cpl.logged(agent_type="gen", instrument=False)
    async def agent(n: int) -> AsyncIterator[int]:
        seen_inside.append(cpl.current_session() is not None)
        inner = counting_gen(n, log)
        try:
            async for item in inner:
                seen_inside.append(cpl.current_session() is not None)
                yield item
        finally:
            await inner.aclose()

    gen = agent(5)
    assert await gen.__anext__() == 0
    assert cpl.current_session() is None  # not current while the consumer holds an item
    assert await gen.asend("hello") == 1
    await gen.aclose()
    assert log == ["closed"]  # asend's value reaches agent(), not counting_gen (as `async for`)

    log.clear()
    early = agent(10)
    async for item in early:
        if item == 2:
            break
    await early.aclose()
    assert log == ["closed"]

    @cpl.logged(agent_type="gen-throw", instrument=False)
    async def relay(n: int) -> AsyncIterator[int]:
        inner = counting_gen(n, log)
        try:
            value = await inner.__anext__()
            while True:
                try:
                    sent = yield value
                    value = await inner.asend(sent)
                except ValueError as exc:
                    value = await inner.athrow(exc)
        finally:
            await inner.aclose()

    log.clear()
    r = relay(5)
    assert await r.__anext__() == 0
    assert await r.asend("hi") == 1
    assert await r.athrow(ValueError("boom")) == -1
    with pytest.raises(KeyError, match="other"):
        await r.athrow(KeyError("other"))  # not caught by the agent: propagates unchanged
    assert log == ["sent hi", "thrown boom", "closed"]
    assert all(seen_inside)

    @cpl.logged(agent_type="gen-never", instrument=False)
    async def never() -> AsyncIterator[int]:
        yield 1

    unused = never()
    del unused
    gc.collect()
    assert cpl.flush(5)
    out = query(
        local_db, "SELECT agent_type, status, error_message FROM sessions ORDER BY agent_type"
    )
    assert out == [
        ("gen", "completed", None),
        ("gen", "completed", None),
        ("gen-throw", "error", "KeyError: 'other'"),
    ]  # a generator never iterated never started a session


async def test_decorated_generator_dropped_after_break_ends_completed(local_db: Path) -> None:
    @cpl.logged(agent_type="gen-drop", instrument=False)
    async def agent() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def consume() -> None:
        async for item in agent():
            if item == 1:
                break  # no aclose(): the event loop finalises the dropped generator

    await consume()
    for _ in range(50):  # bounded: the loop's asyncgen finaliser runs aclose() in a task
        gc.collect()
        await asyncio.sleep(0.01)
        if query_status(local_db) != [("running", None)]:
            break
    assert cpl.flush(5)
    assert query_status(local_db) == [("completed", None)]


def query_status(db: Path) -> list[tuple[Any, ...]]:
    assert cpl.flush(5)
    return query(db, "SELECT status, error_message FROM sessions")


def test_sync_block_error_propagates(local_db: Path) -> None:
    s = cpl.logged_session("sync", instrument=False)
    with pytest.raises(KeyError):
        with s:
            raise KeyError("missing")
    assert cpl.flush(5)
    assert session_row(local_db, s.id)["status"] == "error"


async def test_several_cli_runs_in_one_session_keep_every_sdk_id(local_db: Path) -> None:
    """Two ``query()`` runs in one logged session: the first CLI session id stays the
    ``external_id``, every id is listed in the metadata, and either finds the session."""
    first = load_recorded(DATA / "tool_bash.jsonl")
    second = load_recorded(DATA / "thinking.jsonl")
    ids = [
        next(m.data["session_id"] for m in run if type(m).__name__ == "SystemMessage")
        for run in (first, second)
    ]
    assert ids[0] != ids[1]
    async with cpl.logged_session("two-runs", instrument=False) as s:
        for run in (first, second):
            async for _ in s.track(replay(run)):
                pass
    assert cpl.flush(5)
    row = session_row(local_db, s.id)
    assert row["external_id"] == ids[0]
    assert json.loads(row["metadata"])["sdk_session_ids"] == ids
    for sid in ids:
        found = cpl.get_session(sid)
        assert found is not None and found.session.id == s.id


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_an_exception_whose_str_raises_propagates_unchanged(local_db: Path) -> None:
    with pytest.raises(_Unprintable):
        async with cpl.logged_session("x", instrument=False):
            raise _Unprintable()

    @cpl.logged(agent_type="y", instrument=False)
    def sync_agent() -> None:
        raise _Unprintable()

    with pytest.raises(_Unprintable):
        sync_agent()
    assert cpl.flush(5)
    rows = query(local_db, "SELECT agent_type, status, error_message FROM sessions ORDER BY agent_type")
    assert rows == [
        ("x", "error", "_Unprintable: <exception text unavailable>"),
        ("y", "error", "_Unprintable: <exception text unavailable>"),
    ]
