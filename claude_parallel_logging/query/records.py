"""What the read API returns: sessions with their totals, transcripts, search hits, usage rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..storage.transcripts import StoredTranscript
from .times import duration_ms


@dataclass(frozen=True)
class SessionSummary:
    """One session with its totals. Tokens fall back to the sum over its messages when the session
    itself has none yet (still running, or an agent that reports tokens per message only);
    ``result`` rows are left out of that sum since they repeat the turn's totals.

    Two durations, which differ: ``wall_duration_ms`` is ``ended_at - started_at`` (the session's
    wall time; ``None`` while running) and ``agent_duration_ms`` the duration the agent reported
    (the Claude CLI's ``duration_ms``, summed over turns; for an agent that reports none, the
    logger's own measure of the session). ``duration_ms`` is kept for compatibility: the agent's
    figure when there is one, else the wall time. ``cost_usd`` is rounded to 1e-9 dollars."""

    id: str
    agent_type: str
    model: str
    provider: str | None
    status: str
    started_at: str
    ended_at: str | None
    error_message: str | None
    external_id: str | None
    metadata: Any
    message_count: int
    tool_count: int
    tool_error_count: int
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    cost_usd: float | None
    duration_ms: int | None
    num_turns: int | None
    agent_duration_ms: int | None = None

    @property
    def wall_duration_ms(self) -> int | None:
        """``ended_at - started_at`` in milliseconds; ``None`` while the session runs."""
        return duration_ms(self.started_at, self.ended_at)

    @property
    def total_tokens(self) -> int | None:
        """Every token the model read or wrote: input + output + cache read + cache write;
        ``None`` when none is known."""
        parts = (
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_creation_tokens,
        )
        known = [p for p in parts if p is not None]
        return sum(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "wall_duration_ms": self.wall_duration_ms,
            "total_tokens": self.total_tokens,
        }


class SessionPage(list[SessionSummary]):
    """A page of sessions; ``next_cursor`` fetches the next one (``None`` on the last page)."""

    def __init__(
        self, items: Iterable[SessionSummary] = (), next_cursor: str | None = None
    ) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


@dataclass(frozen=True)
class MessageRecord:
    id: str
    session_id: str
    sequence: int
    role: str
    content: str | None
    tool_name: str | None
    tool_input: Any
    tool_output: Any
    created_at: str
    token_count: int | None
    external_id: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    parent_tool_use_id: str | None
    metadata: Any = None


@dataclass(frozen=True)
class ToolExecutionRecord:
    id: str
    session_id: str
    message_id: str | None
    tool_name: str
    status: str
    input: Any
    output: str | None
    error: str | None
    started_at: str
    ended_at: str | None
    duration_ms: int | None
    tool_use_id: str | None
    parent_tool_use_id: str | None


@dataclass(frozen=True)
class SessionDetail:
    session: SessionSummary
    messages: tuple[MessageRecord, ...]
    tool_executions: tuple[ToolExecutionRecord, ...]
    # Full-fidelity transcripts a ``TursoSessionStore`` holds for this session's SDK session ids.
    transcripts: tuple[StoredTranscript, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session.to_dict(),
            "messages": [asdict(m) for m in self.messages],
            "tool_executions": [asdict(t) for t in self.tool_executions],
            "transcripts": [asdict(t) for t in self.transcripts],
        }


@dataclass(frozen=True)
class SearchHit:
    """A matching session, with the first place it matched (see ``WHERE_*``) and text around it.

    For a JSON column the snippet starts with the key path of the value that matched. A hit is
    also usable as the session it found: ``hit.id``, ``hit.agent_type``, ``hit.total_tokens``
    and every other :class:`SessionSummary` attribute read through to ``hit.session``."""

    session: SessionSummary
    where: str
    snippet: str
    sequence: int | None = None
    role: str | None = None
    tool_name: str | None = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names the hit itself lacks; private and dunder names are not the
        # session's (copy/pickle probe them before ``session`` is set).
        if name.startswith("_") or name not in _SUMMARY_ATTRS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, "session"), name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_SUMMARY_ATTRS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session.to_dict(),
            "where": self.where,
            "snippet": self.snippet,
            "sequence": self.sequence,
            "role": self.role,
            "tool_name": self.tool_name,
        }


_SUMMARY_ATTRS = frozenset({*SessionSummary.__dataclass_fields__, "total_tokens"})

WHERE_MESSAGE = "message.content"
WHERE_MESSAGE_TOOL_INPUT = "message.tool_input"
WHERE_MESSAGE_TOOL_OUTPUT = "message.tool_output"
WHERE_TOOL_INPUT = "tool.input"
WHERE_TOOL_OUTPUT = "tool.output"
WHERE_TOOL_ERROR = "tool.error"
WHERE_SESSION_ERROR = "session.error_message"


@dataclass(frozen=True)
class UsageRow:
    """Figures for one group. Rates count finished sessions and tools only (not ``running``);
    percentiles interpolate linearly between ranks, over tools (sessions) with a known duration.
    ``cost_usd`` is summed in whole nano-dollars, so it is the exact decimal sum (no float noise).
    Session durations: ``p50_wall_ms`` over ``ended_at - started_at`` of finished sessions,
    ``p50_agent_ms`` over the durations the agents reported (see ``SessionSummary``)."""

    group: str
    sessions: int
    completed: int
    errors: int
    running: int
    success_rate: float | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float
    tool_calls: int
    tool_errors: int
    tool_error_rate: float | None
    p50_tool_ms: float | None
    p95_tool_ms: float | None
    p50_wall_ms: float | None = None
    p50_agent_ms: float | None = None

    @property
    def total_tokens(self) -> int:
        """Input + output + cache read + cache write."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_creation_tokens
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class ToolUsageRow:
    """Figures for one tool name: calls, errors, the error rate over finished calls (not
    ``running``) and p50/p95 duration over calls with a known duration (as ``UsageRow``)."""

    tool_name: str
    calls: int
    errors: int
    running: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
