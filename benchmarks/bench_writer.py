"""Writer throughput: sustained events per second into a local file and into ``tursodb
--sync-server`` (cloud mode), with default settings, and a check that the queue never
overflows at that rate.

* Throughput (closed loop): the caller logs the usual mix (two messages per tool start+end,
  realistic payloads) through ``ConversationLogger``, keeping the writer's queue between
  1,000 and 2,000 events (one or two batches) for a fixed time; the figure is events / (time
  from the first event to ``flush()`` returning), so the last batch, and in cloud mode the
  push to the server, count.
* Sustained (open loop): the caller then logs at 90 % of the median throughput for a few
  seconds, paced in 10 ms ticks, and the deepest the queue got and the drop counter are
  recorded. Passing needs zero drops.
* Engine ceiling (information): the same batches compiled beforehand and written by the store
  alone, so the gap between the two shows what the Python side of the writer costs.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    TINY,
    Budget,
    Result,
    cloud_client,
    emit_mixed,
    find_tursodb,
    local_client,
    median,
    size,
    summarize,
    sync_server,
)

TARGET_LOCAL = 50_000.0
LOW, HIGH = 1_000, 2_000


def _logger(client: Any, sid: str) -> Any:
    from claude_parallel_logging import ConversationLogger, SessionInfo

    lg = ConversationLogger(client)
    lg.start_session(SessionInfo(id=sid, agent_type="bench-writer", model="claude-sonnet-4-5"))
    return lg


def _thread_cpu(native_id: int | None) -> float | None:
    """CPU seconds a thread of this process has used (Linux ``/proc``), or None."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


CPU: dict[str, list[float]] = {"caller": [], "writer": []}  # µs per event, per closed-loop run


def closed_loop(client: Any, lg: Any, seconds: float, start_i: int) -> tuple[float, int, int]:
    """Keep the queue fed for ``seconds``; returns (events/s, events, next index).

    Also records the CPU each thread spent per event (``CPU``): the caller's producing the
    events, the writer's writing them. They share one GIL, so their sum bounds the rate.
    """
    queue = client.writer._queue  # read-only peek at the depth, to stay below capacity
    events = 0
    i = start_i
    thread = client.writer._thread
    writer_id = thread.native_id if thread is not None else None
    writer0 = _thread_cpu(writer_id)
    caller0 = time.thread_time()
    t0 = time.perf_counter()
    end = t0 + seconds
    for _ in range(100_000_000):
        if time.perf_counter() >= end:
            break
        if len(queue) >= LOW:
            time.sleep(0.0005)
            continue
        for _ in range(HIGH - LOW):
            events += emit_mixed(lg, i)
            i += 1
    ok = client.flush(120)
    elapsed = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"flush did not finish: {client.stats()}")
    writer1 = _thread_cpu(writer_id)
    if events and writer0 is not None and writer1 is not None:
        CPU["writer"].append((writer1 - writer0) / events * 1e6)
        CPU["caller"].append((time.thread_time() - caller0) / events * 1e6)
    return events / elapsed, events, i


def open_loop(
    client: Any, lg: Any, rate: float, seconds: float, start_i: int
) -> tuple[int, int, float, int]:
    """Log at ``rate`` events/s; returns (events, deepest queue, achieved rate, next index)."""
    queue = client.writer._queue
    events = 0
    deepest = 0
    i = start_i
    t0 = time.perf_counter()
    tick = 0.01
    for k in range(1, int(seconds / tick) + 1):
        due = int(rate * tick * k)
        while events < due:
            events += emit_mixed(lg, i)
            i += 1
        deepest = max(deepest, len(queue))
        sleep = t0 + tick * k - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)
    achieved = events / (time.perf_counter() - t0)
    client.flush(120)
    return events, deepest, achieved, i


STANDALONE: dict[str, list[float]] = {"compile": [], "engine": []}  # µs per event


def engine_ceiling(store_client: Any, batches: int) -> float:
    """Events/s of the store alone on batches compiled beforehand (no Python conversion).

    Also records, per event, the writer thread's two parts measured alone (``STANDALONE``):
    compiling the batch (conversion, redaction, JSON) and the SQL engine writing it.
    """
    from claude_parallel_logging import ConversationLogger, SessionInfo
    from claude_parallel_logging.storage import open_store
    from claude_parallel_logging.write.batch import applier, compile_ops
    from claude_parallel_logging.write.values import ValueConverter

    settings = store_client.settings
    store = open_store(settings.config, settings)
    converter = ValueConverter(settings)
    capture = ConversationLogger(None)
    sink: list[Any] = []
    capture._enqueue = sink.append  # the same tuples the real logger queues
    capture.start_session(SessionInfo(id="ceiling", agent_type="bench-writer"))
    i = 0
    while len(sink) < batches * settings.batch_size:
        emit_mixed(capture, i)
        i += 1
    step = settings.batch_size
    c0 = time.thread_time()
    compiled = [compile_ops(sink[k : k + step], converter) for k in range(0, len(sink), step)]
    STANDALONE["compile"].append((time.thread_time() - c0) / len(sink) * 1e6)
    store.initialize()
    t0 = time.perf_counter()
    c0 = time.thread_time()
    for c in compiled:
        store.write(applier(c))
    STANDALONE["engine"].append((time.thread_time() - c0) / len(sink) * 1e6)
    elapsed = time.perf_counter() - t0
    store.close()
    return len(sink) / elapsed


def _measure(
    label: str, client: Any, reps: int, seconds: float, sustain: float, budget: Budget
) -> tuple[Result, Result]:
    lg = _logger(client, f"bench-writer-{label}")
    i = 0
    _, _, i = closed_loop(client, lg, min(seconds, 0.5), i)  # warm-up
    for v in CPU.values():
        v.clear()
    rates: list[float] = []
    for r in range(reps):
        if r and budget.over():
            break
        gc.collect()
        rate, _, i = closed_loop(client, lg, seconds, i)
        rates.append(rate)
    med = median(rates)
    events, deepest, achieved, i = open_loop(client, lg, 0.9 * med, sustain, i)
    stats = client.stats()
    capacity = client.settings.queue_capacity
    no_overflow = stats.dropped == 0 and deepest < capacity
    extra = {
        "mode": label,
        "run_seconds": seconds,
        "sustain_rate": round(achieved, 1),
        "sustain_events": events,
        "sustain_max_queue_depth": deepest,
        "queue_capacity": capacity,
        "dropped": stats.dropped,
        "written": stats.written,
        "failed_batches": stats.failed_batches,
        "pushes": stats.pushes,
    }
    throughput = summarize(
        f"writer.{label}",
        "events/s",
        rates,
        higher_is_better=True,
        target=f">= {TARGET_LOCAL:,.0f}/s" if label == "local" else "no overflow",
        passed=(med >= TARGET_LOCAL and no_overflow) if label == "local" else no_overflow,
        extra=extra,
    )
    sustained = Result(
        name=f"writer.{label}.sustained_90pct",
        unit="max queue depth",
        median=float(deepest),
        p99=float(deepest),
        runs=1,
        target=f"0 dropped, depth < {capacity:,}",
        passed=no_overflow,
        extra={"rate": round(achieved, 1), "events": events, "dropped": stats.dropped},
    )
    return throughput, sustained


def run(quick: bool) -> list[Result]:
    reps = size(3, 2, 1, is_quick=quick)
    seconds = 0.3 if TINY else (2.0 if quick else 4.0)
    sustain = 0.3 if TINY else (1.5 if quick else 3.0)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cpl-bench-writer-") as tmp:
        root = Path(tmp)
        client = local_client(root / "local.db")
        try:
            results.extend(
                _measure("local", client, reps, seconds, sustain, Budget(40 if not quick else 15))
            )
        finally:
            client.shutdown(60)
        local_cpu = {k: list(v) for k, v in CPU.items()}
        ceiling = [engine_ceiling(client, size(20, 10, 2, is_quick=quick)) for _ in range(reps)]
        results.append(
            summarize(
                "writer.local.engine_ceiling",
                "events/s",
                ceiling,
                higher_is_better=True,
                extra={"note": "store.write on pre-compiled batches (no conversion)"},
            )
        )
        if local_cpu["writer"]:
            writer_cpu, caller_cpu = median(local_cpu["writer"]), median(local_cpu["caller"])
            compile_us, engine_us = median(STANDALONE["compile"]), median(STANDALONE["engine"])
            results.append(
                Result(
                    name="writer.local.cpu_per_event",
                    unit="µs CPU/event (writer)",
                    median=writer_cpu,
                    p99=max(local_cpu["writer"]),
                    runs=len(local_cpu["writer"]),
                    target="information",
                    extra={
                        "note": "where the time goes: the caller and the writer share one GIL, "
                        "so 1e6 / (caller + writer) bounds events/s in one process",
                        "writer_cpu_us_per_event_in_loop": round(writer_cpu, 2),
                        "caller_cpu_us_per_event_in_loop": round(caller_cpu, 2),
                        "bound_events_per_s": round(1e6 / (writer_cpu + caller_cpu)),
                        "alone_compile_us_per_event": round(compile_us, 2),
                        "alone_engine_us_per_event": round(engine_us, 2),
                    },
                )
            )
        binary = find_tursodb()
        if binary is None:
            raise RuntimeError("tursodb not found: run ./dev setup or set CPL_TURSODB_BIN")
        with sync_server(binary, root) as server:
            client = cloud_client(server.url, root / "replicas")
            try:
                results.extend(
                    _measure(
                        "cloud", client, reps, seconds, sustain, Budget(40 if not quick else 15)
                    )
                )
            finally:
                client.shutdown(60)
    return results
