"""A session as a reader wants it: the transcript in text (``cpl show``), or complete exports
as Markdown and JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ..query import MessageRecord, SessionDetail, SessionSummary, ToolExecutionRecord
from ..query.figures import fmt_tokens
from .format import as_text, clip, count_of, fmt_cost, fmt_int, fmt_ms, fmt_time
from .output import STATUS_STYLE


def _timeline(
    detail: SessionDetail,
) -> Iterator[tuple[MessageRecord | None, list[ToolExecutionRecord]]]:
    """Messages in order, each with the tool executions it asked for; tools not tied to a logged
    message come where their start time falls."""
    by_message: dict[str, list[ToolExecutionRecord]] = {}
    ids = {m.id for m in detail.messages}
    loose: list[ToolExecutionRecord] = []
    for t in detail.tool_executions:
        if t.message_id and t.message_id in ids:
            by_message.setdefault(t.message_id, []).append(t)
        else:
            loose.append(t)
    for m in detail.messages:
        early = [t for t in loose if t.started_at < m.created_at]
        if early:
            loose = [t for t in loose if t not in early]
            yield None, early
        yield m, by_message.get(m.id, [])
    if loose:
        yield None, loose


# Session metadata the integrations record; every other key is the caller's own.
_RECORDED_METADATA = frozenset(
    {
        "cwd", "tools", "permission_mode", "claude_code_version", "api_key_source",
        "mcp_servers", "agents", "sdk_session_ids", "title", "directory", "opencode",
        "opencode_sessions",
    }
)  # fmt: skip
_SHOWN_METADATA = ("cwd", "directory", "title", "permission_mode", "claude_code_version")


def _metadata_lines(meta: Any, everything: bool) -> list[tuple[str, str | None]]:
    """What a reader needs of the session's metadata: working directory, agent version,
    permission mode and the caller's own fields; the rest (tool lists, SDK ids, ...) is folded
    unless ``everything``."""
    if not meta:
        return []
    if everything or not isinstance(meta, dict):
        pretty = json.dumps(meta, ensure_ascii=False, indent=2, default=str)
        return [(x, "dim") for x in _indent(pretty, "  metadata: ")]
    opencode = meta.get("opencode")
    opencode = opencode if isinstance(opencode, dict) else {}
    cwd = meta.get("cwd") or meta.get("directory")
    version = None
    if meta.get("claude_code_version"):
        version = f"claude-code {meta['claude_code_version']}"
    elif opencode.get("version"):
        version = f"opencode {opencode['version']}"
    known = [
        ("cwd", cwd),
        ("version", version),
        ("permission mode", meta.get("permission_mode")),
        ("title", meta.get("title")),
    ]
    lines: list[tuple[str, str | None]] = []
    shown = "   ".join(f"{name}: {as_text(value)}" for name, value in known if value)
    if shown:
        lines.append((f"  {shown}", "dim"))
    own = {k: v for k, v in meta.items() if k not in _RECORDED_METADATA}
    if own:
        text = ", ".join(f"{k}: {as_text(v)}" for k, v in own.items())
        lines.append((f"  metadata: {text}", "dim"))
    folded = [k for k in meta if k in _RECORDED_METADATA and k not in _SHOWN_METADATA]
    if folded:
        lines.append((f"  (more metadata: {', '.join(folded)}; --metadata shows it)", "dim"))
    return lines


def _header_lines(s: SessionSummary, metadata: bool = False) -> list[tuple[str, str | None]]:
    lines: list[tuple[str, str | None]] = [(f"Session {s.id}", "bold")]
    if s.external_id:
        lines.append((f"  SDK session: {s.external_id}", None))
    provider = f" ({s.provider})" if s.provider else ""
    lines.append((f"  agent: {s.agent_type}   model: {s.model}{provider}", None))
    lines.append((f"  status: {s.status}", STATUS_STYLE.get(s.status)))
    if s.error_message:
        lines.append((f"  error: {s.error_message}", "red"))
    lines.append(
        (
            f"  started: {fmt_time(s.started_at, ms=True)} UTC   ended:"
            f" {fmt_time(s.ended_at, ms=True)}{' UTC' if s.ended_at else ''}",
            None,
        )
    )
    lines.append(
        (
            f"  wall time: {fmt_ms(s.wall_duration_ms)} (ended - started)"
            f"   agent-reported time: {fmt_ms(s.agent_duration_ms)}",
            None,
        )
    )
    return lines + _metadata_lines(s.metadata, metadata)


def totals_line(s: SessionSummary) -> str:
    """Session totals; figures the agent did not report are left out rather than shown as 0."""
    parts = [count_of(s.message_count, "message"), count_of(s.tool_count, "tool call")]
    if s.tool_error_count:
        parts[-1] += f" ({s.tool_error_count} failed)"
    tokens = [
        f"{fmt_int(n)} {label}"
        for n, label in (
            (s.input_tokens, "in"),
            (s.output_tokens, "out"),
            (s.cache_read_tokens, "cache read"),
            (s.cache_creation_tokens, "cache write"),
        )
        if n is not None
    ]
    if tokens:
        parts.append("tokens " + ", ".join(tokens))
    if s.cost_usd is not None:
        parts.append(f"cost {fmt_cost(s.cost_usd)}")
    if s.num_turns is not None:
        parts.append(count_of(s.num_turns, "turn"))
    if s.wall_duration_ms is not None:
        parts.append(f"wall time {fmt_ms(s.wall_duration_ms)}")
    if s.agent_duration_ms is not None:
        parts.append(f"agent-reported time {fmt_ms(s.agent_duration_ms)}")
    return "Totals: " + "; ".join(parts)


def _indent(text: str, prefix: str) -> list[str]:
    """``prefix`` on the first line, continuation lines aligned under the text."""
    pad = " " * len(prefix)
    return [(prefix if i == 0 else pad) + line for i, line in enumerate(text.splitlines() or [""])]


def _tool_lines(
    t: ToolExecutionRecord, limit: int, shown_input: Any = None
) -> list[tuple[str, str | None]]:
    style = STATUS_STYLE.get(t.status)
    head = f"    tool {t.tool_name}: {t.status}, {fmt_ms(t.duration_ms)}"
    if t.tool_use_id:
        head += f"  [{t.tool_use_id}]"
    lines: list[tuple[str, str | None]] = [(head, style)]
    if t.input is not None and t.input != shown_input:
        lines += [(x, None) for x in _indent(clip(as_text(t.input), limit), "      input: ")]
    if t.output is not None:
        head = f"      output ({len(t.output):,} chars): "
        lines += [(x, None) for x in _indent(clip(t.output, limit), head)]
    if t.error is not None:
        lines += [(x, "red") for x in _indent(clip(t.error, limit), "      error: ")]
    return lines


# Fields of a system row's payload that only identify it.
_SYSTEM_IDS = frozenset({"type", "subtype", "session_id", "uuid"})
_BOOKKEEPING_STATUS = ("requesting", None)  # the CLI calling the API: no news for a reader


def _system_fields(m: MessageRecord) -> dict[str, Any] | None:
    """The fields worth reading of an SDK system message's payload (``status: compacting``,
    ``compact_result: failed``); ``None`` for any other row."""
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    if m.role != "system" or meta.get("type") != "SystemMessage":
        return None
    data = meta.get("data")
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k not in _SYSTEM_IDS and v not in (None, "", [], {})}


def _bookkeeping(m: MessageRecord) -> bool:
    """A ``status`` row that only says the CLI is calling the API (or nothing at all)."""
    fields = _system_fields(m)
    return (
        fields is not None
        and m.content == "status"
        and set(fields) <= {"status"}
        and fields.get("status") in _BOOKKEEPING_STATUS
    )


def _step_usage(m: MessageRecord) -> str | None:
    """An assistant row without text or tool call that carries usage (an OpenCode step's
    figures): its one-line summary, else ``None``."""
    if m.role != "assistant" or m.content or m.tool_name or m.tool_input is not None:
        return None
    if m.input_tokens is None and m.output_tokens is None:
        return None
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    bits = [_token_pair(m)]
    for key, label in (("cache_read_tokens", "cache read"), ("cache_write_tokens", "cache write")):
        if isinstance(meta.get(key), int) and meta[key]:
            bits.append(f"{fmt_int(meta[key])} {label}")
    text = "step usage: " + ", ".join(bits)
    if isinstance(meta.get("cost_usd"), (int, float)):
        text += f"; cost {fmt_cost(meta['cost_usd'])}"
    if meta.get("finish"):
        text += f"; finish: {as_text(meta['finish'])}"
    return text


def _token_pair(m: MessageRecord) -> str:
    """``100 in / 20 out`` (``out: n/a (partial)`` while not final), as the viewer shows it."""
    return fmt_tokens(m.input_tokens, m.output_tokens) or "-"


def transcript_lines(
    detail: SessionDetail, limit: int, everything: bool = False, metadata: bool = False
) -> list[tuple[str, str | None]]:
    """The readable transcript: header, each message with its tool calls, then totals.

    Rows that add nothing are folded unless ``everything``: a tool result already shown under
    its tool call, and system rows of pure bookkeeping; their number is said at the end."""
    lines = _header_lines(detail.session, metadata)
    outputs: set[str] = set()
    repeats = statuses = 0
    for m, tools in _timeline(detail):
        if m is not None and not everything:
            if m.role == "tool" and m.content and m.content in outputs:
                repeats += 1
                continue
            if _bookkeeping(m):
                statuses += 1
                continue
        lines.append(("", None))
        if m is not None:
            usage = _step_usage(m)
            fields = _system_fields(m)
            title = f"#{m.sequence} {m.role}"
            if fields is not None and m.content:  # an SDK system message: its subtype
                title += f": {m.content}"
            bits = [title, fmt_time(m.created_at)]
            if m.model:
                bits.append(m.model)
            if usage is not None:
                bits.append(usage)
            elif m.input_tokens is not None or m.output_tokens is not None:
                bits.append(_token_pair(m))
            if m.parent_tool_use_id:
                bits.append(f"inside {m.parent_tool_use_id}")
            style = "dim" if usage is not None else "bold cyan" if m.role == "user" else "bold"
            lines.append((" | ".join(bits), style))
            if m.role == "tool" and m.content and m.content in outputs:
                name = f" {m.tool_name}" if m.tool_name else ""
                lines.append((f"  (result of{name}: the tool output shown above)", "dim"))
            elif fields:
                text = ", ".join(f"{k}: {as_text(v)}" for k, v in fields.items())
                lines += [(x, None) for x in _indent(clip(text, limit), "  ")]
            elif m.content and fields is None:
                lines += [(x, None) for x in _indent(clip(m.content, limit), "  ")]
            if m.tool_name and m.tool_input is not None:
                call = f"  -> {m.tool_name} "
                lines += [(x, "magenta") for x in _indent(clip(as_text(m.tool_input), limit), call)]
        for t in tools:
            lines += _tool_lines(t, limit, m.tool_input if m is not None else None)
            outputs.update(x for x in (t.output, t.error) if x)
    lines.append(("", None))
    if repeats or statuses:
        calls = "its tool call" if repeats == 1 else "their tool calls"
        kinds = [f"{count_of(repeats, 'tool result')} shown with {calls}"] if repeats else []
        if statuses:
            kinds.append(count_of(statuses, "status row") + " (requesting)")
        note = f"({count_of(repeats + statuses, 'row')} not shown: {', '.join(kinds)}; --all shows"
        lines.append((note + " every row)", "dim"))
    lines.append((totals_line(detail.session), "bold"))
    return lines


def _fence(text: str, info: str = "") -> str:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def transcript_markdown(detail: SessionDetail) -> str:
    """A complete export (nothing cut) that reads well on GitHub."""
    s = detail.session
    parts = [f"# Session `{s.id}`\n\n", "| | |\n|---|---|\n"]
    fields = [
        ("SDK session", s.external_id), ("agent", s.agent_type), ("model", s.model),
        ("provider", s.provider), ("status", s.status), ("error", s.error_message),
        ("started (UTC)", fmt_time(s.started_at, ms=True)),
        ("ended (UTC)", fmt_time(s.ended_at, ms=True)),
        ("wall time", fmt_ms(s.wall_duration_ms)),
        ("agent-reported time", fmt_ms(s.agent_duration_ms)),
        ("cost", fmt_cost(s.cost_usd)),
        ("tokens", f"{fmt_int(s.input_tokens)} in, {fmt_int(s.output_tokens)} out,"
                   f" {fmt_int(s.cache_read_tokens)} cache read,"
                   f" {fmt_int(s.cache_creation_tokens)} cache write"),
    ]  # fmt: skip
    for name, value in fields:
        if value:
            cell = str(value).replace("|", "\\|").replace("\n", " ")
            parts.append(f"| {name} | {cell} |\n")
    if s.metadata:
        parts.append(f"\nMetadata:\n\n{_fence(json.dumps(s.metadata, indent=2), 'json')}")
    for m, tools in _timeline(detail):
        if m is not None:
            title = f"\n## {m.sequence}. {m.role}"
            if m.tool_name:
                title += f" - `{m.tool_name}`"
            parts.append(f"{title}\n\n_{fmt_time(m.created_at, ms=True)} UTC_\n\n")
            if m.content:
                parts.append(m.content.rstrip() + "\n\n")
            if m.tool_input is not None:
                parts.append(_fence(json.dumps(m.tool_input, indent=2, ensure_ascii=False), "json"))
        for t in tools:
            parts.append(f"\n### Tool `{t.tool_name}`: {t.status}, {fmt_ms(t.duration_ms)}\n\n")
            if t.input is not None and (m is None or t.input != m.tool_input):
                parts.append("Input:\n\n")
                parts.append(_fence(json.dumps(t.input, indent=2, ensure_ascii=False), "json"))
            if t.output is not None:
                parts.append(f"\nOutput ({len(t.output):,} chars):\n\n{_fence(t.output)}")
            if t.error is not None:
                parts.append(f"\nError:\n\n{_fence(t.error)}")
    parts.append(f"\n---\n\n{totals_line(s)}\n")
    return "".join(parts)


def jsonl_records(detail: SessionDetail) -> Iterator[dict[str, Any]]:
    """One JSON object per line: the session, then messages and tool executions in order."""
    yield {"type": "session", **detail.session.to_dict()}
    for m, tools in _timeline(detail):
        if m is not None:
            yield {"type": "message", **asdict(m)}
        for t in tools:
            yield {"type": "tool_execution", **asdict(t)}
