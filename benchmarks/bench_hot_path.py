"""Hot path: time on the caller's thread per logged event, ours vs the OpenTelemetry SDK.

The same work both ways, interleaved in one process (the order swaps every repetition):

* a message: ``ConversationLogger.log_message`` with role, content, model, token counts and the
  API message id, vs one OTel span with those attributes (plus session id and sequence, which
  ours adds itself) started under the session's span and ended;
* a tool call: ``log_tool_execution(..., "running", input=dict)`` then
  ``finish_tool_execution(..., output=...)``, vs one span with the tool name, call id, session
  id and the input as a JSON string (serialised *before* the timer starts: OTel attributes
  cannot hold a dict, and we do not charge OTel for the ``json.dumps``), then the output and
  status set on it before ``end()``.

Ours writes into a real local Turso file through the default writer; OTel uses
``TracerProvider`` + ``BatchSpanProcessor(InMemorySpanExporter())``. Between repetitions (not
timed) our writer is flushed and the span processor force-flushed, so neither queue overflows
and neither background thread carries work into the other's repetition. Both background
threads run during their own repetitions, as in real use (they compete for the GIL).
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    MODEL,
    TEXTS,
    TOOL_CALLS,
    TOOL_INPUT_JSON,
    Budget,
    Result,
    interleaved,
    local_client,
    median,
    paired_ratio,
    size,
    summarize,
)

TARGET_RATIO = 0.2


def _otel() -> tuple[Any, Any, Any, Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    processor = BatchSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("claude-parallel-logging-bench")
    session_span = tracer.start_span("invoke_agent bench")
    ctx = trace.set_span_in_context(session_span)
    return provider, processor, exporter, (tracer, ctx)


def run(quick: bool) -> list[Result]:
    from claude_parallel_logging import ConversationLogger, SessionInfo

    n = size(1000, 500, 50, is_quick=quick)  # events per repetition
    reps = size(25, 8, 2, is_quick=quick)
    budget_s = 45.0 if not quick else 20.0

    tmp = tempfile.TemporaryDirectory(prefix="cpl-bench-hot-")
    client = local_client(Path(tmp.name) / "hot.db")
    provider, processor, exporter, (tracer, ctx) = _otel()
    try:
        logger = ConversationLogger(client)
        sid = "bench-session-hot-path"
        logger.start_session(SessionInfo(id=sid, agent_type="bench", model=MODEL))
        disabled = ConversationLogger(None)
        disabled.start_session(SessionInfo(id=sid, agent_type="bench"))
        texts, tools, inputs = TEXTS, TOOL_CALLS, TOOL_INPUT_JSON
        nt, nk = len(texts), len(tools)
        seq = [0]

        def settle() -> None:
            client.flush(120)
            processor.force_flush()
            exporter.clear()
            gc.collect()

        def ours_message(lg: Any = logger) -> float:
            settle()
            log = lg.log_message
            t0 = time.perf_counter_ns()
            for i in range(n):
                log(
                    "assistant",
                    texts[i % nt],
                    external_id="msg_01XYZ",
                    model=MODEL,
                    input_tokens=1200,
                    output_tokens=80,
                )
            return (time.perf_counter_ns() - t0) / n / 1000

        def otel_message() -> float:
            settle()
            start = tracer.start_span
            t0 = time.perf_counter_ns()
            for i in range(n):
                seq[0] += 1
                span = start(
                    "chat assistant",
                    context=ctx,
                    attributes={
                        "gen_ai.message.role": "assistant",
                        "gen_ai.message.content": texts[i % nt],
                        "session.id": sid,
                        "gen_ai.message.sequence": seq[0],
                        "gen_ai.response.id": "msg_01XYZ",
                        "gen_ai.response.model": MODEL,
                        "gen_ai.usage.input_tokens": 1200,
                        "gen_ai.usage.output_tokens": 80,
                    },
                )
                span.end()
            return (time.perf_counter_ns() - t0) / n / 1000

        def ours_tool(lg: Any = logger) -> float:
            settle()
            start, finish = lg.log_tool_execution, lg.finish_tool_execution
            t0 = time.perf_counter_ns()
            for i in range(n):
                name, inp, out = tools[i % nk]
                tid = start(name, "running", input=inp, tool_use_id="toolu_01ABC")
                finish(tid, "completed", output=out)
            return (time.perf_counter_ns() - t0) / n / 1000

        def otel_tool() -> float:
            settle()
            start = tracer.start_span
            t0 = time.perf_counter_ns()
            for i in range(n):
                name, _, out = tools[i % nk]
                span = start(
                    "execute_tool " + name,
                    context=ctx,
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": name,
                        "gen_ai.tool.call.id": "toolu_01ABC",
                        "session.id": sid,
                        "gen_ai.tool.call.arguments": inputs[i % nk],
                    },
                )
                span.set_attribute("gen_ai.tool.call.result", out)
                span.set_attribute("tool.status", "completed")
                span.end()
            return (time.perf_counter_ns() - t0) / n / 1000

        # warm up both sides (imports, first batch, schema) before anything is timed
        for fn in (ours_message, otel_message, ours_tool, otel_tool):
            fn()

        results: list[Result] = []
        workloads: list[tuple[str, str, Callable[..., float], Callable[[], float]]] = [
            ("message", "µs/message", ours_message, otel_message),
            ("tool", "µs/tool call (start+end)", ours_tool, otel_tool),
        ]
        for label, unit, ours_fn, otel_fn in workloads:
            budget = Budget(budget_s / 2)
            ours, theirs = interleaved(reps, ours_fn, otel_fn, budget)
            ratio = paired_ratio(ours, theirs)
            off = [ours_fn(disabled) for _ in range(max(1, min(5, reps)))]
            stats = client.stats()
            extra = {
                "events_per_rep": n,
                "otel_median_us": median(theirs),
                "ratio_of_medians": median(ours) / median(theirs),
                "logging_disabled_median_us": median(off),
                "dropped": stats.dropped,
            }
            results.append(
                summarize(
                    f"hot_path.{label}.ours",
                    unit,
                    ours,
                    target=f"<= {TARGET_RATIO}x OTel",
                    ratio=ratio,
                    passed=ratio <= TARGET_RATIO and stats.dropped == 0,
                    extra=extra,
                )
            )
            results.append(summarize(f"hot_path.{label}.otel", unit, theirs))
        return results
    finally:
        client.shutdown(30)
        provider.shutdown()
        tmp.cleanup()
