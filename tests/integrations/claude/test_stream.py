"""A session that a stream creates for itself (what an instrumented ``query()`` outside any
block gets) ends however its consumer stops: fast checks without the CLI, on the real proxy
and mapper, with a replayed recording as the SDK stream."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.claude.mapper import ClaudeMapper
from claude_parallel_logging.integrations.claude.usage import reset_ledgers
from claude_parallel_logging.integrations.stream import TrackedStream
from claude_parallel_logging.testing.recorded import load_recorded
from tests.conftest import query

DATA = Path(__file__).resolve().parents[2] / "data" / "claude"
CLOSED = "stream closed by the consumer before the result"


@pytest.fixture(autouse=True)
def _fresh_ledgers() -> Iterator[None]:
    reset_ledgers()
    yield
    reset_ledgers()


async def sdk_stream(gate: asyncio.Event | None = None) -> AsyncIterator[Any]:
    """The recorded tool_bash run; waits on ``gate`` (if given) before the result."""
    recorded = load_recorded(DATA / "tool_bash.jsonl")
    for m in recorded[:-1]:
        yield m
    if gate is not None:
        await gate.wait()
    yield recorded[-1]


async def sdk_query(inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Like the SDK's ``query()``: an async generator around ``process_query`` (our proxy)."""
    async for message in inner:
        yield message


def own_stream(gate: asyncio.Event | None = None) -> tuple[AsyncIterator[Any], str]:
    """What an instrumented ``query()`` outside any session hands its caller."""
    session = cpl.logged_session("own", instrument=False).start()
    mapper = ClaudeMapper(session, owned=True)
    proxy = TrackedStream(sdk_stream(gate), mapper.observe, mapper.finish, watch_task=True)
    return sdk_query(proxy), session.id


async def status(db: Path, sid: str, timeout: float = 5.0) -> tuple[str, str | None]:
    """Bounded wait for the session to leave 'running' (some ends come from the loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await asyncio.sleep(0.01)
        assert cpl.flush(5)
        ((st, err),) = query(db, "SELECT status, error_message FROM sessions WHERE id=?", (sid,))
        if st != "running" or loop.time() > deadline:
            return st, err


async def test_read_to_the_end_is_completed(local_db: Path) -> None:
    stream, sid = own_stream()
    out = [m async for m in stream]
    assert len(out) == 6
    assert await status(local_db, sid) == ("completed", None)


async def test_consumer_task_cancelled_in_its_loop_body(local_db: Path) -> None:
    stream, sid = own_stream()
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in stream:
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await status(local_db, sid) == ("error", "cancelled")


async def test_consumer_exception_kept_alive_by_the_caller(local_db: Path) -> None:
    stream, sid = own_stream()

    async def consume() -> None:
        async for _ in stream:
            raise ValueError("consumer bug")

    with pytest.raises(ValueError, match="consumer bug") as kept:
        await asyncio.create_task(consume())
    # ``kept`` (and ``stream``) still reference the frames: no garbage collection helps here
    assert await status(local_db, sid) == ("error", "ValueError: consumer bug")
    assert kept.value.args == ("consumer bug",)


async def test_gather_return_exceptions(local_db: Path) -> None:
    stream, sid = own_stream()

    async def consume() -> None:
        async for _ in stream:
            raise KeyError("k")

    (exc,) = await asyncio.gather(consume(), return_exceptions=True)
    assert isinstance(exc, KeyError)
    assert await status(local_db, sid) == ("error", "KeyError: 'k'")


async def test_break_and_drop_while_the_task_goes_on(local_db: Path) -> None:
    sid_box: list[str] = []

    async def consume() -> None:
        stream, sid = own_stream()
        sid_box.append(sid)
        async for _ in stream:
            break
        del stream  # dropped: asyncio closes it, which ends the session; the task goes on

    await consume()
    gc.collect()
    assert await status(local_db, sid_box[0]) == ("error", CLOSED)


async def test_stream_handed_to_another_task(local_db: Path) -> None:
    """The first consumer's task ends; the stream lives on in another task's hands."""
    gate = asyncio.Event()
    stream, sid = own_stream(gate)

    async def first_part() -> None:
        await anext(stream)

    await asyncio.create_task(first_part())
    await asyncio.sleep(0.01)
    assert await status(local_db, sid, timeout=0.05) == ("running", None)

    async def rest() -> int:
        gate.set()
        return len([m async for m in stream])

    assert await asyncio.create_task(rest()) == 5
    assert await status(local_db, sid) == ("completed", None)


async def test_unretrieved_task_exception_is_still_reported(local_db: Path) -> None:
    """Reading the consumer task's exception must not mark it retrieved: asyncio still warns."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx["message"]))
    try:
        box = list(own_stream())
        sid = box[1]

        async def consume() -> None:
            async for _ in box.pop(0):
                raise ValueError("never retrieved")

        task = asyncio.create_task(consume())
        for _ in range(100):  # bounded
            if task.done():
                break
            await asyncio.sleep(0.01)
        assert await status(local_db, sid) == ("error", "ValueError: never retrieved")
        del task
        for _ in range(5):
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert "Task exception was never retrieved" in reported
