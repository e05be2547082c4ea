"""End to end: wall time of a scripted Claude query through the real CLI, with and without
logging, interleaved (the order swaps every pair); the ratio is the median of the per-pair
ratios (the ratio of the medians is in the JSON).

Each run starts a fresh ``ScriptedAnthropicServer`` (one Bash tool call, then a text answer:
six SDK messages, as in ``tests/e2e/test_claude.py``) and a fresh CLI home, outside the timer.
Timed: iterating ``query()`` to the end. With logging, the timed region also holds the whole
``logged_session`` block and ``session.track(stream, prompt=...)`` (the same proxy and mapper
that instrumentation installs), logging into a real local Turso file; the final ``flush()``
runs after the timer stops, so no writing spills into the next run.

Also reported: the time the caller's thread spent inside our mapper per run (``observe``,
timed from outside), which bounds what logging can add to the wall time independently of the
CLI's run-to-run noise.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Budget, Result, local_client, median, paired_ratio, size, summarize

TARGET_RATIO = 1.02
PROMPT = "Say hello with Bash"
RUN_TIMEOUT_S = 60.0


def _script() -> list[Any]:
    from claude_parallel_logging.testing.anthropic import Usage, text_turn, tool_turn

    echo = {"command": "echo hello-from-tool", "description": "Print a greeting"}
    return [
        tool_turn("Bash", echo, text="Running it.", usage=Usage(100, 20, 30, 40)),
        text_turn("It printed hello-from-tool.", usage=Usage(200, 50, 60, 70)),
    ]


def run(quick: bool) -> list[Result]:
    from claude_agent_sdk import query

    from claude_parallel_logging import logged_session
    from claude_parallel_logging.integrations.claude.mapper import ClaudeMapper
    from claude_parallel_logging.testing.anthropic import ScriptedAnthropicServer
    from claude_parallel_logging.testing.claude import scripted_claude_options

    pairs = size(20, 4, 1, is_quick=quick)
    budget = Budget(60.0 if not quick else 25.0)

    class TimedMapper(ClaudeMapper):
        spent_ns = 0

        def observe(self, msg: Any) -> None:
            t0 = time.perf_counter_ns()
            try:
                super().observe(msg)
            finally:
                TimedMapper.spent_ns += time.perf_counter_ns() - t0

    with tempfile.TemporaryDirectory(prefix="cpl-bench-e2e-") as tmp:
        root = Path(tmp)
        client = local_client(root / "e2e.db")
        counter = [0]

        async def one(logged: bool) -> tuple[float, int, int]:
            counter[0] += 1
            with ScriptedAnthropicServer(_script()) as server:
                options = scripted_claude_options(server, root / f"run{counter[0]}")
                messages = 0
                TimedMapper.spent_ns = 0
                t0 = time.perf_counter()
                if logged:
                    async with logged_session(
                        "bench-e2e", client=client, instrument=False
                    ) as session:
                        stream = query(prompt=PROMPT, options=options)
                        async for _ in session.track(
                            stream, prompt=PROMPT, mapper=TimedMapper(session)
                        ):
                            messages += 1
                else:
                    async for _ in query(prompt=PROMPT, options=options):
                        messages += 1
                elapsed = time.perf_counter() - t0
            if logged:
                client.flush(60)
            return elapsed, messages, TimedMapper.spent_ns

        def timed(logged: bool) -> tuple[float, int, int]:
            return asyncio.run(asyncio.wait_for(one(logged), RUN_TIMEOUT_S))

        try:
            timed(False)  # warm-up: the CLI's first start (disk cache) is slower
            timed(True)
            on: list[float] = []
            off: list[float] = []
            spent_ms: list[float] = []
            counts: set[int] = set()
            for i in range(pairs):
                if i and budget.over():
                    break
                order = (True, False) if i % 2 else (False, True)
                for logged in order:
                    elapsed, messages, spent = timed(logged)
                    counts.add(messages)
                    if logged:
                        on.append(elapsed)
                        spent_ms.append(spent / 1e6)
                    else:
                        off.append(elapsed)
            stats = client.stats()
        finally:
            client.shutdown(30)

    # Each pair ran back to back (order swapped every pair), so the median of the per-pair
    # ratios cancels the CLI's drift between pairs, as every other ratio here does.
    ratio = paired_ratio(on, off)
    return [
        summarize(
            "e2e.query_logged",
            "s/query",
            on,
            target=f"<= {TARGET_RATIO}x unlogged",
            ratio=ratio,
            passed=ratio <= TARGET_RATIO,
            extra={
                "unlogged_median_s": median(off),
                "ratio_of_medians": median(on) / median(off),
                "messages_per_query": sorted(counts),
                "written": stats.written,
                "dropped": stats.dropped,
            },
        ),
        summarize("e2e.query_unlogged", "s/query", off),
        summarize(
            "e2e.mapper_time",
            "ms/query",
            spent_ms,
            target="information",
            ratio=median(spent_ms) / 1000 / median(off),
            extra={"note": "caller-thread time inside ClaudeMapper.observe per query"},
        ),
    ]
