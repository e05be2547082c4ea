"""Writing realistic content (issue 15): sessions of real size (``realistic.py``: ~20 messages of
200-2,000 characters, ~6 tool calls of 100-3,000 characters) logged through the public API into a
local file, in events/s and MB/s of content, beside the engine's own best.

* Logger: every session through ``ConversationLogger`` as fast as the caller can, timed from the
  first call to ``flush()`` returning (the queue is large enough to hold them all).
* Engine (the physical reference): the very rows that run stored, read back and inserted again
  into an empty database with the same schema and indexes, by pyturso ``executemany`` in one
  transaction. No conversion, redaction or truncation checks: what the engine needs to store them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from common import Budget, Result, interleaved, local_client, median, paired_ratio, size, summarize
from realistic import log_session, payload_chars, session_payload

TABLES = ("sessions", "messages", "tool_executions")


def logger_run(path: Path, payloads: list[dict[str, Any]]) -> tuple[float, int]:
    """Seconds to log and flush every session; the number of events."""
    client = local_client(path, queue_capacity=1_000_000)
    try:
        client.flush(30)  # the writer's first open is not what is measured
        events = 0
        t0 = time.perf_counter()
        for p in payloads:
            events += log_session(client, p)
        if not client.flush(300):
            raise RuntimeError(f"flush did not finish: {client.stats()}")
        return time.perf_counter() - t0, events
    finally:
        client.shutdown(60)


def _rows(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    import turso

    conn = turso.connect(str(path))
    try:
        out = {}
        for table in TABLES:
            cur = conn.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            out[table] = (cols, list(cur.fetchall()))
        return out
    finally:
        conn.close()


def engine_run(path: Path, rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> float:
    """Seconds for pyturso to insert ``rows`` into a fresh schema in one transaction."""
    import turso

    from claude_parallel_logging.schema.migrations import migrate

    conn = turso.connect(str(path), isolation_level=None)
    try:
        migrate(conn)
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for table in TABLES:
            cols, values = rows[table]
            marks = ", ".join("?" for _ in cols)
            conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", values)
        conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


def run(quick: bool) -> list[Result]:
    n = size(1000, 300, 20, is_quick=quick)
    reps = size(3, 2, 1, is_quick=quick)
    payloads = [session_payload(i) for i in range(n)]
    mb = sum(payload_chars(p) for p in payloads) / 1e6
    events_seen: list[int] = []
    with tempfile.TemporaryDirectory(prefix="cpl-bench-realistic-") as tmp:
        root = Path(tmp)
        counter = [0]
        rows: dict[str, Any] = {}

        def ours() -> float:
            counter[0] += 1
            path = root / f"logger-{counter[0]}.db"
            seconds, events = logger_run(path, payloads)
            events_seen.append(events)
            if not rows:
                rows.update(_rows(path))
            return seconds

        def engine() -> float:
            if not rows:
                ours()
            counter[0] += 1
            return engine_run(root / f"engine-{counter[0]}.db", rows)

        logger_s, engine_s = interleaved(reps, ours, engine, Budget(300 if not quick else 120))
    events = events_seen[0]
    ratio = paired_ratio([events / s for s in logger_s], [events / s for s in engine_s])
    extra = {
        "sessions": n,
        "events": events,
        "content_mb": round(mb, 2),
        "engine_events_per_s": round(median([events / s for s in engine_s])),
        "engine_mb_per_s": round(median([mb / s for s in engine_s]), 1),
        "note": "ratio: logger / engine (executemany of the same rows in one transaction)",
    }
    return [
        summarize("realistic_write.logger", "events/s", [events / s for s in logger_s],
                  higher_is_better=True, target="information", ratio=ratio, extra=extra),
        summarize("realistic_write.logger_mb", "MB/s of content", [mb / s for s in logger_s],
                  higher_is_better=True, target="information"),
        summarize("realistic_write.engine", "events/s", [events / s for s in engine_s],
                  higher_is_better=True, target="information (physical reference)"),
        summarize("realistic_write.engine_mb", "MB/s of content", [mb / s for s in engine_s],
                  higher_is_better=True, target="information (physical reference)"),
    ]  # fmt: skip
