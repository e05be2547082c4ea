"""Message shapes the Claude mapper does not expect (hand-built messages, a user's own stream,
future SDK shapes): each becomes one bounded row, never a row per element; the consumer gets the
very same objects; the work per message is bounded; nothing is dropped.

Events are counted where the mapper hands them over: the real client's ``enqueue`` is wrapped
by a recorder that passes every event on to the real writer (so the database check still sees
all of them). Counts, not wall-clock time: the bound must hold on any machine."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk._internal.message_parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import claude_parallel_logging as cpl
from claude_parallel_logging.client import get_turso_client
from claude_parallel_logging.integrations.claude.blocks import MAX_BLOCKS
from claude_parallel_logging.integrations.claude.usage import reset_ledgers
from claude_parallel_logging.payload import TRUNCATED_MARK
from claude_parallel_logging.schema.ops import (
    MESSAGE_INSERT,
    MESSAGE_UPSERT,
    TOOL_INSERT,
    TOOL_UPSERT,
)
from claude_parallel_logging.testing.recorded import load_raw
from tests.conftest import query

DATA = Path(__file__).resolve().parents[2] / "data" / "claude"
RECORDINGS = sorted(p.name for p in DATA.glob("*.jsonl"))
# Events one message may cause: a row and a tool execution per mapped block, a summary row,
# usage/session updates. A constant: it does not grow with the message.
MAX_EVENTS_PER_MESSAGE = 2 * MAX_BLOCKS + 10
LIMIT = 262_144  # the default max_payload_chars


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    reset_ledgers()
    yield
    reset_ledgers()


class Events(list[Any]):
    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"<{len(self)} events>"


@pytest.fixture
def events(local_db: Path) -> list[Any]:
    """Every event the loggers hand to the real writer, in order (each is passed on)."""
    client = get_turso_client()
    assert client is not None
    seen = Events()
    real = client.enqueue

    def record(op: Any) -> bool:
        seen.append(op)
        return real(op)

    client.enqueue = record  # type: ignore[method-assign]  # loggers created from now on use it
    return seen


async def replay(messages: list[Any]) -> AsyncIterator[Any]:
    for m in messages:
        yield m


async def consume(messages: list[Any], events: list[Any]) -> tuple[str, list[Any], list[int]]:
    """Track ``messages``; what the consumer got, and the events each message caused."""
    got: list[Any] = []
    per_message: list[int] = []
    async with cpl.logged_session("hostile", instrument=False) as s:
        mark = len(events)
        async for m in s.track(replay(messages)):
            got.append(m)
            per_message.append(len(events) - mark)
            mark = len(events)
    return s.id, got, per_message


def assert_all_stored(db: Path, sid: str, events: list[Any]) -> None:
    """Nothing dropped or skipped, and every row handed over is in the database."""
    assert cpl.flush(30)
    stats = cpl.stats()
    assert stats["dropped"] == 0 and stats["discarded"] == 0 and stats["pending"] == 0
    assert stats["written"] == stats["enqueued"]
    msg_ids = {op[1][0] for op in events if op[0] in (MESSAGE_INSERT, MESSAGE_UPSERT)}
    tool_ids = {op[1][0] for op in events if op[0] in (TOOL_INSERT, TOOL_UPSERT)}
    stored = {r[0] for r in query(db, "SELECT id FROM messages WHERE session_id=?", (sid,))}
    stored_tools = {
        r[0] for r in query(db, "SELECT id FROM tool_executions WHERE session_id=?", (sid,))
    }
    assert stored == msg_ids and stored_tools == tool_ids


def rows(db: Path, sid: str) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT role, content, metadata FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )


# ----- the exact cases of issue 16 ----------------------------------------------------------


async def test_string_content_is_one_row_not_one_per_character(
    local_db: Path, events: list[Any]
) -> None:
    msg = AssistantMessage(content="A" * 300_000, model="claude-sonnet-4-5")  # type: ignore[arg-type]
    sid, got, per_message = await consume([msg], events)
    assert got == [msg] and got[0] is msg and msg.content == "A" * 300_000
    assert per_message == [1]
    assert_all_stored(local_db, sid, events)
    ((role, content, meta),) = rows(local_db, sid)
    assert role == "assistant"
    assert content == "A" * LIMIT + TRUNCATED_MARK.format(size=300_000)
    assert json.loads(meta) == {"unexpected_content": {"type": "str", "length": 300_000}}


@pytest.mark.parametrize(
    ("content", "shape"),
    [
        (
            {f"key{i}": i for i in range(100_000)},
            {"type": "dict", "length": 100_000, "keys": [f"key{i}" for i in range(8)]},
        ),
        (
            b"\xff" * 300_000,
            {"type": "bytes", "length": 300_000, "preview": "\ufffd" * 200},
        ),
        (bytearray(b"ok"), {"type": "bytearray", "length": 2, "preview": "ok"}),
        ({1, 2}, {"type": "set", "length": 2, "item_types": ["int", "int"]}),
        (42, {"type": "int", "value": 42}),
    ],
    ids=["dict", "bytes", "bytearray", "set", "int"],
)
async def test_user_content_of_another_shape_is_one_described_row(
    local_db: Path, events: list[Any], content: Any, shape: dict[str, Any]
) -> None:
    msg = UserMessage(content=content)
    sid, got, per_message = await consume([msg], events)
    assert got[0] is msg and msg.content is content
    assert per_message == [1]
    assert_all_stored(local_db, sid, events)
    ((role, text, meta),) = rows(local_db, sid)
    assert (role, text) == ("user", None)
    assert json.loads(meta) == {"unexpected_content": shape}


async def test_an_iterator_as_content_is_not_consumed(local_db: Path, events: list[Any]) -> None:
    """Iterating it would take the items away from the consumer."""
    items = iter(["first", "second"])
    msg = UserMessage(content=items)  # type: ignore[arg-type]
    sid, got, _ = await consume([msg], events)
    assert got[0] is msg and list(msg.content) == ["first", "second"]  # type: ignore[call-overload]
    assert_all_stored(local_db, sid, events)
    ((_, _, meta),) = rows(local_db, sid)
    assert json.loads(meta) == {"unexpected_content": {"type": "list_iterator"}}


async def test_many_blocks_are_capped_and_the_rest_summarised(
    local_db: Path, events: list[Any]
) -> None:
    blocks = [TextBlock(f"t{i}") for i in range(5_000)]
    results = [ToolResultBlock(f"toolu_{i}", "out") for i in range(3_000)]
    assistant = AssistantMessage(content=blocks, model="m", message_id="msg_1")  # type: ignore[arg-type]
    user = UserMessage(content=results)  # type: ignore[arg-type]
    sid, got, per_message = await consume([assistant, user], events)
    assert got == [assistant, user] and len(assistant.content) == 5_000
    assert per_message == [MAX_BLOCKS + 1, MAX_BLOCKS + 1]
    assert_all_stored(local_db, sid, events)
    stored = rows(local_db, sid)
    assert [r[1] for r in stored[:MAX_BLOCKS]] == [f"t{i}" for i in range(MAX_BLOCKS)]
    assert json.loads(stored[MAX_BLOCKS][2]) == {
        "omitted_blocks": 5_000 - MAX_BLOCKS,
        "total_blocks": 5_000,
        "omitted_block_types": ["TextBlock"] * 8,
    }
    assert [r[0] for r in stored[MAX_BLOCKS + 1 : -1]] == ["tool"] * MAX_BLOCKS
    assert json.loads(stored[-1][2])["omitted_blocks"] == 3_000 - MAX_BLOCKS


async def test_a_tool_result_with_many_parts_is_read_up_to_the_cap(
    local_db: Path, events: list[Any]
) -> None:
    use = AssistantMessage(
        content=[ToolUseBlock("toolu_1", "Bash", {"command": "ls"})], model="m", message_id="m1"
    )
    parts: list[Any] = [{"type": "text", "text": "line"}] * 10_000
    result = UserMessage(content=[ToolResultBlock("toolu_1", parts)])
    sid, _, per_message = await consume([use, result], events)
    assert per_message == [2, 2]  # a row and a tool execution, then the result row and its end
    assert_all_stored(local_db, sid, events)
    ((output,),) = query(local_db, "SELECT output FROM tool_executions WHERE session_id=?", (sid,))
    assert output == "\n".join(["line"] * MAX_BLOCKS + [f"[{10_000 - MAX_BLOCKS} more blocks]"])


async def test_result_with_wrong_types_still_logs_its_result_row(
    local_db: Path, events: list[Any]
) -> None:
    result = ResultMessage(
        subtype="error_during_execution", duration_ms="slow", duration_api_ms=None,  # type: ignore[arg-type]
        is_error=True, num_turns=float("inf"), session_id="sdk-1",  # type: ignore[arg-type]
        result=None, errors=["e"] * 1_000,
    )  # fmt: skip
    sid, _, per_message = await consume([result], events)
    assert max(per_message) <= MAX_EVENTS_PER_MESSAGE
    assert_all_stored(local_db, sid, events)
    assert [r[0] for r in rows(local_db, sid)] == ["result"]
    ((status, error, turns),) = query(
        local_db, "SELECT status, error_message, num_turns FROM sessions WHERE id=?", (sid,)
    )
    assert status == "error" and error == ", ".join(["e"] * 8) + " (+992 more)" and turns == 0


# ----- property: mutated recordings of the real CLI -----------------------------------------


@dataclasses.dataclass
class FutureMessage:
    """A message type this package has never heard of."""

    payload: Any


def _huge_text(n: int) -> str:
    return "A" * n


def _many_blocks(n: int) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "t"}] * n


def _big_dict(n: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(n)}


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.builds(_huge_text, st.integers(MAX_BLOCKS * 3, 300_000)),
    st.builds(_many_blocks, st.integers(MAX_BLOCKS * 3, 3_000)),
    st.builds(_big_dict, st.integers(0, 3_000)),
    st.binary(max_size=64),
    st.lists(st.integers(), max_size=5),
    st.just({"type": "hologram", "beam": "blue"}),  # an unknown block / message type
    st.just([{"type": "hologram"}, {"type": "text"}, {"no_type": 1}, "raw", 7]),
)


def _paths(node: Any, path: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    """Every place inside a frame a mutation can hit (bounded depth)."""
    if depth > 6 or not isinstance(node, (dict, list)):
        return
    items: Any = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in list(items)[:40]:
        yield (*path, key)
        yield from _paths(child, (*path, key), depth + 1)


def _mutate(frame: dict[str, Any], data: st.DataObject) -> None:
    paths = list(_paths(frame))
    if not paths:
        return
    path = data.draw(st.sampled_from(paths), label="path")
    parent: Any = frame
    for key in path[:-1]:
        parent = parent[key]
    op = data.draw(st.sampled_from(["drop", "replace", "unknown_type"]), label="op")
    if op == "drop":
        del parent[path[-1]]
    elif op == "unknown_type" and isinstance(parent, dict):
        parent["type"] = data.draw(st.sampled_from(["hologram", "", "assistant", "user"]))
    else:
        parent[path[-1]] = data.draw(HOSTILE, label="value")


def _parse(frame: dict[str, Any]) -> Any:
    """The SDK's own parser; a frame it rejects is handed on raw (what a user's stream may do)."""
    try:
        return parse_message(frame)
    except Exception:
        return frame


def mutated_stream(data: st.DataObject) -> list[Any]:
    frames = copy.deepcopy(load_raw(DATA / data.draw(st.sampled_from(RECORDINGS), label="file")))
    for _ in range(data.draw(st.integers(1, 4), label="frame mutations")):
        _mutate(frames[data.draw(st.integers(0, len(frames) - 1))], data)
    messages = [m for m in map(_parse, frames) if m is not None]
    for _ in range(data.draw(st.integers(0, 3), label="object mutations")):
        # Shapes no parser produces: hand-built messages and future SDK versions.
        i = data.draw(st.integers(0, len(messages) - 1))
        fields = (
            [f.name for f in dataclasses.fields(messages[i])]
            if dataclasses.is_dataclass(messages[i])
            else []
        )
        if fields:
            setattr(messages[i], data.draw(st.sampled_from(fields)), data.draw(HOSTILE))
    if data.draw(st.booleans(), label="insert unknown"):
        pos = data.draw(st.integers(0, len(messages)))
        messages.insert(pos, data.draw(st.sampled_from([FutureMessage({"x": 1}), 42, "text"])))
    return messages


@settings(
    max_examples=40,
    deadline=10_000,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one database for all examples, by design
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_mutated_recordings_are_logged_bounded_and_passed_through(
    local_db: Path, events: list[Any], data: st.DataObject
) -> None:
    messages = mutated_stream(data)
    before = [repr(m) for m in messages]
    events.clear()
    reset_ledgers()
    sid, got, per_message = asyncio.run(consume(messages, events))
    # the consumer gets exactly what it would without logging: the same objects, in order,
    # untouched
    assert len(got) == len(messages) and all(a is b for a, b in zip(got, messages, strict=True))
    assert [repr(m) for m in got] == before
    # per message a bounded number of events, however big the message
    assert max(per_message, default=0) <= MAX_EVENTS_PER_MESSAGE, per_message
    assert_all_stored(local_db, sid, events)
