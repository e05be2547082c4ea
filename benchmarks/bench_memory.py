"""Memory: resident growth while logging 1,000,000 events with default settings, and after
``flush()``.

Runs in a fresh interpreter (``measure`` below) so nothing else in the run shares its heap.
After a warm-up (writer thread started, schema created, 10,000 events written, ``gc``) the
baseline RSS is read from /proc/self/statm. Then, twice:

* log 1,000,000 events (the usual mix; every message has its own content string, as a real
  agent's would) as fast as the caller can, sampling RSS every 5,000 events. The caller is
  far faster than any database, so the queue fills up to its capacity (100,000 by default)
  and the rest is dropped and counted: this is the worst case the bound has to hold for;
* ``flush()``, ``gc.collect()``, read RSS again.

Reported: peak growth over the baseline (target < 64 MB: bounded by the queue capacity), the
growth left after each flush (information), and whether logging more keeps more (target: no).

RSS after a flush is not a leak detector: the allocators (CPython's arenas, glibc's per-thread
arenas) keep freed memory mapped for reuse, and a round that fills the queue to capacity while
dropping 900,000 events leaves it fragmented, so post-flush RSS creeps towards the peak over
the first rounds (measured: 23, 30, 36, 39 MB over four rounds, ``malloc_trim`` applied)
while nothing is held. What would show a leak is each round needing more than the one before:
so the no-growth row compares the last round's *peak* with the first's (< 2 MB), and counts
live Python objects (``sys.getallocatedblocks()``, < 1,000 more than after round one).
"""

from __future__ import annotations

import ctypes
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    TEXTS,
    Result,
    emit_mixed,
    ensure_package_importable,
    local_client,
    rss_bytes,
    run_isolated,
    size,
)

TARGET_PEAK_MB = 64.0
TARGET_LEAK_MB = 2.0
MB = 2**20


def _trim() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def measure(events: int, rounds: int, sample_every: int = 5_000) -> dict[str, Any]:
    """In the child: the numbers, as a dict of plain values."""
    from claude_parallel_logging import ConversationLogger, SessionInfo

    with tempfile.TemporaryDirectory(prefix="cpl-bench-mem-") as tmp:
        client = local_client(Path(tmp) / "mem.db")  # default settings
        lg = ConversationLogger(client)
        lg.start_session(SessionInfo(id="bench-memory", agent_type="bench-memory"))
        i = 0
        while i < 10_000:
            emit_mixed(lg, i)
            i += 1
        client.flush(120)
        gc.collect()
        _trim()
        base = rss_bytes()
        base_blocks = sys.getallocatedblocks()
        out: dict[str, Any] = {
            "baseline_mb": base / MB,
            "queue_capacity": client.settings.queue_capacity,
            "rounds": [],
        }
        texts = TEXTS
        for _ in range(rounds):
            before = client.stats()
            peak = rss_bytes()
            done = 0
            t0 = time.perf_counter()
            next_sample = sample_every
            while done < events:
                content = f"{texts[i % len(texts)]} [{i}]"  # a fresh string per message
                done += emit_mixed(lg, i, content)
                i += 1
                if done >= next_sample:
                    next_sample += sample_every
                    peak = max(peak, rss_bytes())
            log_s = time.perf_counter() - t0
            peak = max(peak, rss_bytes())
            t1 = time.perf_counter()
            flushed = client.flush(300)
            flush_s = time.perf_counter() - t1
            gc.collect()
            after = rss_bytes()
            _trim()
            trimmed = rss_bytes()
            stats = client.stats()
            out["rounds"].append(
                {
                    "events": done,
                    "log_seconds": log_s,
                    "flush_seconds": flush_s,
                    "flushed": flushed,
                    "peak_growth_mb": (peak - base) / MB,
                    "after_flush_growth_mb": (after - base) / MB,
                    "after_flush_trimmed_growth_mb": (trimmed - base) / MB,
                    "written": stats.written - before.written,
                    "dropped": stats.dropped - before.dropped,
                    "live_blocks_delta": sys.getallocatedblocks() - base_blocks,
                }
            )
        client.shutdown(60)
    return out


def run(quick: bool) -> list[Result]:
    root = ensure_package_importable()
    events = size(1_000_000, 300_000, 5_000, is_quick=quick)
    data = run_isolated(
        "bench_memory", "measure", {"events": events, "rounds": 3}, root, timeout=300
    )
    rounds = data["rounds"]
    peaks = [r["peak_growth_mb"] for r in rounds]
    afters = [r["after_flush_growth_mb"] for r in rounds]
    trimmed = [r["after_flush_trimmed_growth_mb"] for r in rounds]
    blocks = [r["live_blocks_delta"] for r in rounds]
    peak = max(peaks)
    peak_growth = peaks[-1] - peaks[0]
    more_objects = blocks[-1] - blocks[0]
    return [
        Result(
            name="memory.peak_growth",
            unit="MB RSS",
            median=peak,
            p99=peak,
            runs=len(rounds),
            target=f"< {TARGET_PEAK_MB:g} MB",
            passed=peak < TARGET_PEAK_MB,
            extra={
                "events_per_round": events,
                "queue_capacity": data["queue_capacity"],
                "baseline_mb": round(data["baseline_mb"], 1),
                "per_round": peaks,
                "rounds": rounds,
            },
        ),
        Result(
            name="memory.after_flush_growth",
            unit="MB RSS",
            median=afters[-1],
            p99=max(afters),
            runs=len(rounds),
            target="information",
            extra={
                "per_round": afters,
                "after_malloc_trim_per_round": trimmed,
                "live_blocks_delta_per_round": blocks,
            },
        ),
        Result(
            name="memory.no_growth_round_over_round",
            unit="MB RSS (peak, last - first)",
            median=peak_growth,
            p99=peak_growth,
            runs=len(rounds),
            target=f"< {TARGET_LEAK_MB:g} MB, < 1,000 live objects",
            passed=peak_growth < TARGET_LEAK_MB and more_objects < 1_000,
            extra={"peaks_per_round": peaks, "live_objects_added": more_objects},
        ),
    ]
