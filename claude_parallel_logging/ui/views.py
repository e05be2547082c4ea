"""What the pages show, computed from the read API's records: the waterfall of a session, its
transcript entries, the swimlanes of ``/timeline``. Plain data (no web framework), so the
server's pages and the HTML export build the same thing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..query import MessageRecord, SessionDetail, SessionSummary, ToolExecutionRecord
from ..query.figures import fmt_tokens

FOLD_CHARS = 1500  # longer texts are folded, their full size shown
FOLD_LINES = 20
TRANSCRIPT_PAGE = 300  # entries per page of a transcript ("load more" fetches the next)

# Session metadata the integrations record (see ``cli/transcript.py``); the rest is the caller's.
RECORDED_METADATA = frozenset(
    {
        "cwd", "tools", "permission_mode", "claude_code_version", "api_key_source",
        "mcp_servers", "agents", "sdk_session_ids", "title", "directory", "opencode",
        "opencode_sessions", "sdk",
    }
)  # fmt: skip


def epoch_ms(iso: str | None) -> float | None:
    """Stored UTC text as milliseconds since the epoch (``None`` when missing or bad)."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def now_ms() -> float:
    return datetime.now(timezone.utc).timestamp() * 1000


def as_text(value: Any) -> str:
    """A stored value as text: strings as they are, anything else as pretty JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def tool_use_id_of(m: MessageRecord) -> str | None:
    """The tool call a message row belongs to (Claude: ``tool_use_id``; OpenCode: ``callID``)."""
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    value = meta.get("tool_use_id") or meta.get("callID")
    return value if isinstance(value, str) else None


@dataclass
class Text:
    """A text to show, folded when long: ``head`` is what shows folded, ``full`` the rest."""

    full: str

    @property
    def size(self) -> int:
        return len(self.full)

    @property
    def folded(self) -> bool:
        return len(self.full) > FOLD_CHARS or self.full.count("\n") > FOLD_LINES

    @property
    def head(self) -> str:
        lines = self.full.split("\n")[:FOLD_LINES]
        return "\n".join(lines)[:FOLD_CHARS]


@dataclass
class Entry:
    """One item of the transcript: a prompt, answer, thinking, tool call (with its execution's
    output), or a folded bookkeeping row."""

    anchor: str
    kind: str  # prompt, answer, thinking, tool, system
    role: str
    at: str
    text: Text | None = None
    tool_name: str | None = None
    tool: ToolExecutionRecord | None = None
    tool_input: Text | None = None
    tool_output: Text | None = None
    tool_error: Text | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    depth: int = 0
    sequence: int | None = None

    @property
    def tokens(self) -> str | None:
        """The token pair as every view shows it (a partial output count is not a figure)."""
        return fmt_tokens(self.input_tokens, self.output_tokens)


def _message_kind(m: MessageRecord) -> str:
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    if m.role == "user":
        return "prompt" if m.content and not m.tool_name else "system"
    if m.role == "assistant":
        if m.tool_name:
            return "tool"
        return "thinking" if meta.get("block") == "ThinkingBlock" else "answer"
    return "system"  # tool results shown with their call, result/status/system rows


def transcript(detail: SessionDetail) -> list[Entry]:
    """Every entry of the session in order. A tool call shows its execution (status, duration,
    output or error); the ``tool`` rows that repeat a call's result are left out when the call
    is shown; tool executions with no call row come where their start falls."""
    tools_by_message: dict[str, list[ToolExecutionRecord]] = {}
    tools_by_use: dict[str, ToolExecutionRecord] = {}
    for t in detail.tool_executions:
        if t.message_id:
            tools_by_message.setdefault(t.message_id, []).append(t)
        if t.tool_use_id:
            tools_by_use[t.tool_use_id] = t
    nest = nesting(detail)
    shown: set[str] = set()
    entries: list[Entry] = []
    for m in detail.messages:
        kind = _message_kind(m)
        use_id = tool_use_id_of(m)
        if m.role == "tool" and use_id in tools_by_use:
            continue  # its call shows the output
        depth = nest.depth.get(nest.messages.get(m.id, ""), 0)
        if kind == "tool":
            execs = tools_by_message.get(m.id) or (
                [tools_by_use[use_id]] if use_id in tools_by_use else []
            )
            for t in execs or [None]:  # type: ignore[list-item]
                if t is not None:
                    shown.add(t.id)
                entries.append(_tool_entry(m, t, depth))
            continue
        entries.append(
            Entry(
                anchor=f"m-{m.sequence}",
                kind=kind,
                role=m.role,
                at=m.created_at,
                text=Text(as_text(m.content if m.content is not None else m.tool_output)),
                tool_name=m.tool_name,
                model=m.model,
                input_tokens=m.input_tokens,
                output_tokens=m.output_tokens,
                depth=depth,
                sequence=m.sequence,
            )
        )
    for t in detail.tool_executions:
        if t.id not in shown:
            entries.append(_tool_entry(None, t, nest.depth.get(nest.tools.get(t.id, ""), 0)))
    entries.sort(key=lambda e: e.at)  # stable: rows logged at the same instant keep their order
    return entries


def _tool_entry(m: MessageRecord | None, t: ToolExecutionRecord | None, depth: int) -> Entry:
    anchor = f"t-{t.id}" if t is not None else f"m-{m.sequence if m else 0}"
    return Entry(
        anchor=anchor,
        kind="tool",
        role="assistant",
        at=(t.started_at if t is not None else m.created_at if m else ""),
        text=Text(m.content) if m is not None and m.content else None,
        tool_name=(t.tool_name if t is not None else m.tool_name if m else None),
        tool=t,
        tool_input=Text(as_text(t.input if t is not None else m.tool_input if m else None)),
        tool_output=Text(t.output) if t is not None and t.output else None,
        tool_error=Text(t.error) if t is not None and t.error else None,
        model=m.model if m else None,
        input_tokens=m.input_tokens if m else None,
        output_tokens=m.output_tokens if m else None,
        depth=depth,
        sequence=m.sequence if m else None,
    )


@dataclass
class Nesting:
    """Which tool call's subagent work each row belongs to (the ``tool_use_id`` of that call):
    Claude records it on the row (``parent_tool_use_id``); OpenCode runs a subagent as a child
    session whose rows join the parent's logged session tagged ``opencode_session_id``, and the
    ``task`` call that started it names it in its metadata (``tool_metadata.sessionId``)."""

    messages: dict[str, str]  # message id -> tool_use_id of the call that started its subagent
    tools: dict[str, str]  # tool execution id -> same
    depth: dict[str, int]  # tool_use_id -> how deep the work it started nests


def _meta_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _meta(m: MessageRecord) -> dict[str, Any]:
    return _meta_dict(m.metadata)


def _opencode_children(detail: SessionDetail) -> dict[str, str]:
    """``{child OpenCode session id: call id of the task call that started it}``."""
    child_of: dict[str, str] = {}
    for m in detail.messages:
        meta = _meta(m)
        tool_meta = meta.get("tool_metadata")
        child = tool_meta.get("sessionId") if isinstance(tool_meta, dict) else None
        call = meta.get("call_id")
        if (
            isinstance(child, str)
            and isinstance(call, str)
            and child != meta.get("opencode_session_id")
        ):
            child_of.setdefault(child, call)
    first_at: dict[str, float] = {}
    for m in detail.messages:
        oc = _meta(m).get("opencode_session_id")
        at = epoch_ms(m.created_at)
        if isinstance(oc, str) and oc not in child_of and at is not None:
            first_at[oc] = min(first_at.get(oc, at), at)
    if not first_at:
        return child_of
    # A task still running has no metadata stored yet: the child that the session's metadata
    # names as a child goes under the innermost task call running when its first row landed.
    info = _meta_dict(detail.session.metadata).get("opencode_sessions")
    children = {
        sid for sid, d in (info.items() if isinstance(info, dict) else ())
        if isinstance(d, dict) and d.get("parent_id")
    }  # fmt: skip
    oc_of_message = {m.id: _meta(m).get("opencode_session_id") for m in detail.messages}
    for child, at in first_at.items():
        if child not in children:
            continue
        best: tuple[float, str] | None = None
        for t in detail.tool_executions:
            start = epoch_ms(t.started_at)
            if t.tool_name != "task" or not t.tool_use_id or start is None or start > at:
                continue
            if oc_of_message.get(t.message_id or "") == child:
                continue
            end = start + t.duration_ms if t.duration_ms is not None else None
            if (end is None or end >= at) and (best is None or start > best[0]):
                best = (start, t.tool_use_id)
        if best is not None:
            child_of[child] = best[1]
    return child_of


def nesting(detail: SessionDetail) -> Nesting:
    child_of = _opencode_children(detail)
    messages: dict[str, str] = {}
    for m in detail.messages:
        oc = _meta(m).get("opencode_session_id")
        parent = m.parent_tool_use_id or (child_of.get(oc) if isinstance(oc, str) else None)
        if parent:
            messages[m.id] = parent
    tools: dict[str, str] = {}
    for t in detail.tool_executions:
        parent = t.parent_tool_use_id or messages.get(t.message_id or "")
        if parent and parent != t.tool_use_id:
            tools[t.id] = parent
    parent_of = {t.tool_use_id: tools.get(t.id) for t in detail.tool_executions if t.tool_use_id}
    depth: dict[str, int] = {}
    for use_id in parent_of:
        n, cur = 1, parent_of.get(use_id)
        for _ in range(50):  # bounded: a cycle in bad data must not hang a page
            if not cur or cur not in parent_of:
                break
            n, cur = n + 1, parent_of.get(cur)
        depth[use_id] = n
    return Nesting(messages, tools, depth)


@dataclass
class Bar:
    """One bar of the waterfall; ``children`` are the bars of the subagent work it started."""

    id: str
    kind: str  # step or tool
    label: str
    status: str
    start: float  # ms from the session's start
    duration: float
    anchor: str
    detail: str
    parent: str | None = None
    tokens: str | None = None
    children: list[Bar] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "status": self.status,
            "start": round(self.start, 1),
            "duration": round(self.duration, 1),
            "anchor": self.anchor,
            "detail": self.detail,
            "tokens": self.tokens,
            "children": [c.to_json() for c in self.children],
        }


def waterfall(detail: SessionDetail, at_ms: float | None = None) -> dict[str, Any]:
    """Every assistant step (one per API message: its bar runs from the row before it to its
    first row, the time the model took) and every tool execution (as long as its duration; a
    running one up to now), nested under the tool call that started their subagent
    (:class:`Nesting`)."""
    s = detail.session
    nest = nesting(detail)
    by_message = {m.id: m for m in detail.messages}
    # The axis starts at the earliest time logged: an integration may stamp rows with its
    # agent's clock (OpenCode's server), which can run ahead of the session's own start.
    starts = [epoch_ms(m.created_at) for m in detail.messages]
    starts += [epoch_ms(t.started_at) for t in detail.tool_executions]
    t0 = min([x for x in (epoch_ms(s.started_at), *starts) if x is not None] or [0.0])
    end = epoch_ms(s.ended_at) or at_ms or now_ms()
    bars: list[Bar] = []
    prev = t0
    seen_steps: set[str] = set()
    for m in detail.messages:
        at = epoch_ms(m.created_at) or prev
        if m.role == "assistant" and not m.tool_name:
            key = m.external_id or m.id
            if key not in seen_steps:
                seen_steps.add(key)
                text = as_text(m.content)
                bars.append(
                    Bar(
                        id=f"s-{m.sequence}",
                        kind="step",
                        label=("thinking" if _message_kind(m) == "thinking" else "assistant"),
                        status="completed",
                        start=prev - t0,
                        duration=max(0.0, at - prev),
                        anchor=f"m-{m.sequence}",
                        detail=text[:300],
                        parent=nest.messages.get(m.id),
                        tokens=fmt_tokens(m.input_tokens, m.output_tokens),
                    )
                )
        prev = max(prev, at)
    for t in detail.tool_executions:
        start = epoch_ms(t.started_at) or t0
        if t.duration_ms is not None:
            duration = float(t.duration_ms)
        else:
            duration = max(0.0, end - start)
        out = t.error if t.error else t.output
        call = by_message.get(t.message_id or "")
        bars.append(
            Bar(
                id=f"t-{t.id}",
                kind="tool",
                label=t.tool_name,
                status=t.status,
                start=start - t0,
                duration=duration,
                anchor=f"t-{t.id}",
                detail=(as_text(t.input)[:300] + ("\n→ " + out[:300] if out else "")),
                parent=nest.tools.get(t.id),
                tokens=fmt_tokens(call.input_tokens, call.output_tokens) if call else None,
            )
        )
    by_use = {t.tool_use_id: f"t-{t.id}" for t in detail.tool_executions if t.tool_use_id}
    by_id = {b.id: b for b in bars}
    roots: list[Bar] = []
    for b in sorted(bars, key=lambda b: (b.start, b.id)):
        owner = by_id.get(by_use.get(b.parent or "", ""))
        (owner.children if owner is not None and owner is not b else roots).append(b)
    span = max([end - t0, *(b.start + b.duration for b in bars)] or [0.0])
    return {"span": round(span, 1), "bars": [b.to_json() for b in roots], "count": len(bars)}


def caller_metadata(meta: Any) -> list[tuple[str, str]]:
    """The caller's own metadata (keys the integrations do not record), as text pairs."""
    if not isinstance(meta, dict):
        return [] if meta is None else [("metadata", as_text(meta))]
    return [(str(k), as_text(v)) for k, v in meta.items() if k not in RECORDED_METADATA]


@dataclass
class Lane:
    session: SessionSummary
    x: float
    width: float
    y: float


def swimlanes(
    sessions: list[SessionSummary], lo: float, hi: float, width: float = 1000.0
) -> dict[str, Any]:
    """Sessions as bars on a shared time axis, one row each, grouped by agent type."""
    span = max(hi - lo, 1.0)
    groups: dict[str, list[SessionSummary]] = {}
    for s in sorted(sessions, key=lambda s: (s.agent_type, s.started_at, s.id)):
        groups.setdefault(s.agent_type, []).append(s)
    out: list[dict[str, Any]] = []
    y = 0.0
    for agent, members in groups.items():
        lanes = []
        for s in members:
            a = epoch_ms(s.started_at) or lo
            b = epoch_ms(s.ended_at) or min(now_ms(), hi)
            x = (max(a, lo) - lo) / span * width
            w = max(2.0, (min(max(b, a), hi) - max(a, lo)) / span * width)
            lanes.append(Lane(s, round(x, 2), round(min(w, width - x), 2), y))
            y += 1
        out.append({"agent_type": agent, "lanes": lanes})
    return {"groups": out, "rows": int(y), "width": width}


def fingerprint(detail: SessionDetail) -> str:
    """Changes whenever a row lands or a tool or the session ends: what live updates compare."""
    s = detail.session
    done = sum(t.status != "running" for t in detail.tool_executions)
    return f"{len(detail.messages)}.{len(detail.tool_executions)}.{done}.{s.status}.{s.ended_at}"


def session_context(
    detail: SessionDetail, shown: int = TRANSCRIPT_PAGE, paged: bool = True
) -> dict[str, Any]:
    """What ``session.html`` needs: the session, its caller metadata, the waterfall, and the
    first ``shown`` transcript entries (all of them when not ``paged``: the HTML export)."""
    entries = transcript(detail)
    limit = max(shown, 1) if paged else len(entries)
    return {
        "s": detail.session,
        "metadata": caller_metadata(detail.session.metadata),
        "wf": waterfall(detail),
        "entries": entries[:limit],
        "total_entries": len(entries),
        "next_offset": limit if limit < len(entries) else None,
        "remaining": len(entries) - limit,
        "fingerprint": fingerprint(detail),
    }


def entries_page(
    detail: SessionDetail, offset: int, limit: int = TRANSCRIPT_PAGE
) -> dict[str, Any]:
    """One more page of transcript entries (the "load more" button)."""
    entries = transcript(detail)
    end = min(len(entries), offset + limit)
    return {
        "entries": entries[offset:end],
        "next_offset": end if end < len(entries) else None,
        "remaining": len(entries) - end,
    }
