"""Stream wrapper: per-message cost of ``session.track()`` over a realistic Claude stream.

The stream is the real CLI output recorded in ``tests/data/claude/*.jsonl`` (every file, in
order), replayed until it holds 10,000 messages. Each pass is read again by
``testing.recorded.load_recorded`` (the SDK's own ``parse_message``) with its ``msg_``/
``toolu_``/``req_`` ids suffixed, so every message is a distinct object with fresh ids, as in a
long real session (the mapper keys on both).

Each repetition iterates the same async generator bare, then through
``logged_session(..., instrument=False).track(...)`` (order swapped every repetition), logging
into a real local Turso file; the overhead is (tracked - bare) / messages. The session's start
and end are inside the timed region; the writer is flushed between repetitions, untimed.

The writer thread runs while the stream is consumed and competes for the GIL, so part of the
wall-time overhead is the caller waiting for the writer's batches. Two diagnostics separate
the parts: the caller thread's own CPU time (``time.thread_time``), and a row where the writer
is kept asleep during the stream (huge batch size and interval; flushed afterwards, untimed).
"""

from __future__ import annotations

import asyncio
import gc
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from common import REPO, Budget, Result, interleaved, local_client, median, size, summarize

TARGET_US = 10.0
RECORDINGS = REPO / "tests" / "data" / "claude"
_ID = re.compile(r'"((?:msg|toolu|req)_[0-9A-Za-z]+)"')


def build_stream(count: int) -> list[Any]:
    """``count`` SDK messages: the recordings replayed through ``load_recorded`` (the SDK's
    own parser), with fresh ids on every pass."""
    from claude_parallel_logging.testing.recorded import load_recorded

    files = sorted(RECORDINGS.glob("*.jsonl"))
    if not files:
        raise RuntimeError(f"no recordings in {RECORDINGS}")
    one_pass = "\n".join(f.read_text(encoding="utf-8").strip() for f in files) + "\n"
    messages: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="cpl-bench-stream-src-") as tmp:
        replay = Path(tmp) / "replay.jsonl"
        for rep in range(max(1, count)):  # bounded: every pass adds dozens of messages
            replay.write_text(
                _ID.sub(lambda m: f'"{m.group(1)}r{rep}"', one_pass),  # noqa: B023
                encoding="utf-8",
            )
            messages.extend(load_recorded(replay))
            if len(messages) >= count:
                break
    return messages[:count]


def _mix(messages: list[Any]) -> dict[str, int]:
    kinds = Counter(
        type(m).__name__ + (f"/{m.subtype}" if type(m).__name__ == "SystemMessage" else "")
        for m in messages
    )
    return dict(kinds.most_common())


def run(quick: bool) -> list[Result]:
    from claude_parallel_logging import logged_session

    count = size(10_000, 10_000, 300, is_quick=quick)
    reps = size(8, 4, 2, is_quick=quick)
    idle_reps = size(3, 2, 1, is_quick=quick)
    budget = Budget(30.0 if not quick else 15.0)
    messages = build_stream(count)
    n = len(messages)

    tmp = tempfile.TemporaryDirectory(prefix="cpl-bench-stream-")
    client = local_client(Path(tmp.name) / "stream.db")
    # the same, but the writer never wakes while the stream runs (only for the diagnostic row)
    idle = local_client(Path(tmp.name) / "idle.db", batch_size=10 * n, flush_interval=3600.0)

    async def source() -> AsyncIterator[Any]:
        for m in messages:
            yield m

    async def bare() -> None:
        async for _ in source():
            pass

    def tracked_into(target: Any) -> Any:
        async def tracked() -> None:
            async with logged_session("bench-stream", client=target, instrument=False) as s:
                async for _ in s.track(source()):
                    pass

        return tracked

    tracked = tracked_into(client)
    cpu: dict[str, list[float]] = {"bare": [], "tracked": [], "idle": []}

    def timed(fn: Any, label: str) -> float:
        """µs per message of wall time; the caller thread's CPU time goes into ``cpu``."""
        client.flush(120)
        idle.flush(120)
        gc.collect()
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        asyncio.run(fn())
        wall = time.perf_counter_ns() - t0
        cpu[label].append((time.thread_time_ns() - c0) / n / 1000)
        return wall / n / 1000

    try:
        before = client.stats().enqueued
        timed(tracked, "tracked")  # warm-up: schema, imports, first batch
        events_per_pass = client.stats().enqueued - before
        for values in cpu.values():
            values.clear()
        bare_us, tracked_us = interleaved(
            reps, lambda: timed(bare, "bare"), lambda: timed(tracked, "tracked"), budget
        )
        overhead = [t - b for t, b in zip(tracked_us, bare_us)]
        idle_us = [timed(tracked_into(idle), "idle") for _ in range(idle_reps)]
        idle_overhead = [t - median(bare_us) for t in idle_us]
        client.flush(120)
        stats = client.stats()
        med = median(overhead)
        cpu_overhead = [t - b for t, b in zip(cpu["tracked"], cpu["bare"])]
        return [
            summarize(
                "stream.track_overhead",
                "µs/message",
                overhead,
                target=f"< {TARGET_US:g} µs",
                passed=med < TARGET_US and stats.dropped == 0,
                extra={
                    "messages": n,
                    "bare_median_us": median(bare_us),
                    "tracked_median_us": median(tracked_us),
                    "caller_cpu_overhead_median_us": median(cpu_overhead),
                    "events_per_message": round(events_per_pass / n, 3),
                    "message_mix": _mix(messages),
                    "dropped": stats.dropped,
                },
            ),
            summarize(
                "stream.track_overhead_writer_idle",
                "µs/message",
                idle_overhead,
                target="information",
                extra={
                    "note": "same, with the writer asleep during the stream (no GIL contention)",
                    "caller_cpu_us": median(cpu["idle"]),
                },
            ),
        ]
    finally:
        client.shutdown(60)
        idle.shutdown(60)
        tmp.cleanup()
