"""ConversationLogger: the original plan's API, fire-and-forget.

Every method returns at once: it builds a tuple and hands it to the writer's queue. Nothing here
raises into the caller; with logging off every method is a cheap no-op.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ._log import RateLimitedWarning, log
from .client import TursoClient, get_turso_client
from .ids import new_id
from .payload import cut_for_queue
from .schema.ops import (
    MESSAGE_INSERT,
    MESSAGE_UPDATE,
    MESSAGE_UPSERT,
    SESSION_INSERT,
    SESSION_UPDATE,
    TOOL_INSERT,
    TOOL_UPDATE,
    TOOL_UPSERT,
)
from .schema.tables import MESSAGE_UPDATABLE, SESSION_UPDATABLE

SESSION_STATUSES = ("running", "completed", "error")
OPEN_TOOL_STATUSES = ("running", "pending")  # not ended yet: no ended_at, closed at session end
_DEFAULT: Any = object()


@dataclass
class SessionInfo:
    """What is known when a session starts. ``model`` may be filled in later by the SDK."""

    id: str
    agent_type: str
    model: str | None = None
    provider: str | None = None
    metadata: dict[str, Any] | None = None
    external_id: str | None = None
    started_at: float | None = None  # epoch seconds; now when not given (imports, backfills)


@dataclass
class _RunningTool:
    started_perf: float
    started_wall: float


@dataclass
class _SessionState:
    started_perf: float = field(default_factory=time.perf_counter)
    metadata: dict[str, Any] = field(default_factory=dict)
    ended: bool = False


class ConversationLogger:
    """Logs one session at a time into the shared store, or into ``client`` when given."""

    __slots__ = ("_client", "_enqueue", "_limit", "_lock", "_seq", "_state", "_tools", "session_id")

    def __init__(self, client: TursoClient | None = _DEFAULT) -> None:
        if client is _DEFAULT:
            client = get_turso_client()
        self._client = client
        self._enqueue = client.enqueue if client is not None else None
        self._limit = client.settings.max_payload_chars if client is not None else 0
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self._seq = itertools.count(1)
        self._tools: dict[str, _RunningTool] = {}
        self._state = _SessionState()

    @property
    def enabled(self) -> bool:
        return self._enqueue is not None

    @property
    def client(self) -> TursoClient | None:
        return self._client

    # ----- sessions ---------------------------------------------------------------------------

    def start_session(self, info: SessionInfo) -> None:
        try:
            self.session_id = str(info.id)
            self._seq = itertools.count(1)
            self._tools = {}
            self._state = _SessionState(metadata=_as_dict(info.metadata))
            if self._enqueue is None:
                return
            self._enqueue(
                (
                    SESSION_INSERT,
                    (
                        self.session_id,
                        info.agent_type or "unknown",
                        info.model or "unknown",
                        info.provider,
                        time.time() if info.started_at is None else info.started_at,
                        "running",
                        dict(self._state.metadata) if self._state.metadata else None,
                        info.external_id,
                    ),
                )
            )
        except Exception as exc:
            _bad_call("start_session", exc)

    def update_session(self, **fields: Any) -> None:
        """Set session columns (model, external_id, tokens, cost, ...); ``metadata`` is merged."""
        if self._enqueue is None or self.session_id is None:
            return
        try:
            self._update_session(fields)
        except Exception as exc:
            _bad_call("update_session", exc)

    def _update_session(self, fields: dict[str, Any]) -> None:
        assert self._enqueue is not None
        unknown = set(fields) - SESSION_UPDATABLE
        if unknown:
            log.warning("ignoring unknown session fields %s", unknown)
        cols: list[str] = []
        vals: list[Any] = []
        for key, value in fields.items():
            if key not in SESSION_UPDATABLE:
                continue
            if key == "metadata":
                if isinstance(value, dict):
                    with self._lock:
                        self._state.metadata.update(value)
                        value = dict(self._state.metadata)
            elif key == "error_message":
                value = cut_for_queue(value, self._limit) if self._limit else value
            cols.append(key)
            vals.append(value)
        if cols:
            self._enqueue((SESSION_UPDATE, self.session_id, tuple(cols), tuple(vals)))

    def end_session(
        self, status: str = "completed", error_message: str | None = None, **totals: Any
    ) -> None:
        """Mark the session finished; tools still running are closed as ``error``."""
        if self._enqueue is None or self.session_id is None:
            return
        with self._lock:
            if self._state.ended:
                return
            self._state.ended = True
            running = list(self._tools)
        try:
            for tool_id in running:
                self.finish_tool_execution(
                    tool_id, "error", error="session ended before the tool finished"
                )
            if status not in SESSION_STATUSES:
                status = str(status)
            totals.setdefault("ended_at", time.time())  # a backfill may give its own
            totals.setdefault(
                "duration_ms", round((time.perf_counter() - self._state.started_perf) * 1000)
            )
            totals["status"], totals["error_message"] = status, error_message
            self.update_session(**totals)
        except Exception as exc:
            self._state.ended = False  # nothing was recorded: a later end_session may succeed
            _bad_call("end_session", exc)

    @property
    def ended(self) -> bool:
        return self._state.ended

    def messages_logged(self) -> int | None:
        """How many messages this session has logged so far (``None`` if it cannot tell).

        Read from the sequence counter's repr (``count(N)``), which does not consume a number:
        ``log_message`` stays a bare ``next()``, with no extra bookkeeping on the hot path."""
        text = repr(self._seq)
        if text.startswith("count(") and text.endswith(")"):
            try:
                return int(text[6:-1]) - 1
            except ValueError:
                return None
        return None

    # ----- messages ---------------------------------------------------------------------------

    def log_message(
        self,
        role: str,
        content: Any,
        token_count: int | None = None,
        *,
        tool_name: str | None = None,
        tool_input: Any = None,
        tool_output: Any = None,
        external_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        parent_tool_use_id: str | None = None,
        message_id: str | None = None,
        created_at: float | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Append a message (or update it in place when ``message_id`` was logged before)."""
        kind = MESSAGE_INSERT if message_id is None else MESSAGE_UPSERT
        mid = message_id or new_id()
        if self._enqueue is None:
            return mid
        if self.session_id is None:
            log.warning("log_message called before start_session")
            return mid
        try:
            limit = self._limit
            if limit:
                if content is not None and (type(content) is not str or len(content) > limit):
                    content = cut_for_queue(content, limit)
                if tool_input is not None:
                    tool_input = cut_for_queue(tool_input, limit)
                if tool_output is not None:
                    tool_output = cut_for_queue(tool_output, limit)
            self._enqueue(
                (
                    kind,
                    (
                        mid,
                        self.session_id,
                        next(self._seq),
                        role or "unknown",
                        content,
                        tool_name,
                        tool_input,
                        tool_output,
                        time.time() if created_at is None else created_at,
                        token_count,
                        external_id,
                        model,
                        input_tokens,
                        output_tokens,
                        parent_tool_use_id,
                        metadata,
                    ),
                )
            )
        except Exception as exc:
            _bad_call("log_message", exc)
        return mid

    def update_message(self, message_id: str, **fields: Any) -> None:
        """Change columns of a logged message in place (tokens known later, final text, ...)."""
        if self._enqueue is None:
            return
        try:
            cols = tuple(k for k in fields if k in MESSAGE_UPDATABLE)
            if cols:
                vals = tuple(
                    cut_for_queue(fields[k], self._limit)
                    if self._limit and k in ("content", "tool_input", "tool_output")
                    else fields[k]
                    for k in cols
                )
                self._enqueue((MESSAGE_UPDATE, message_id, cols, vals))
        except Exception as exc:
            _bad_call("update_message", exc)

    # ----- tools ------------------------------------------------------------------------------

    def log_tool_execution(
        self,
        tool_name: str,
        status: str = "running",
        input: Any = None,
        output: Any = None,
        error: str | None = None,
        *,
        message_id: str | None = None,
        tool_use_id: str | None = None,
        parent_tool_use_id: str | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
        duration_ms: int | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Record a tool call. A ``running`` or ``pending`` one is finished later by its id."""
        kind = TOOL_INSERT if execution_id is None else TOOL_UPSERT
        tid = execution_id or new_id()
        if self._enqueue is None:
            return tid
        if self.session_id is None:
            log.warning("log_tool_execution called before start_session")
            return tid
        try:
            status = status or "running"
            now = time.time()
            start = now if started_at is None else started_at
            if status in OPEN_TOOL_STATUSES:
                with self._lock:
                    self._tools[tid] = _RunningTool(time.perf_counter(), start)
            elif ended_at is None:
                ended_at = now
            if duration_ms is None and ended_at is not None:
                duration_ms = _span_ms(start, ended_at)
            limit = self._limit
            if limit:
                if input is not None:
                    input = cut_for_queue(input, limit)
                if output is not None:
                    output = cut_for_queue(output, limit)
                if error is not None:
                    error = cut_for_queue(error, limit)
            self._enqueue(
                (
                    kind,
                    (
                        tid,
                        self.session_id,
                        message_id,
                        tool_name or "unknown",
                        status,
                        input,
                        output,
                        error,
                        start,
                        ended_at,
                        duration_ms,
                        tool_use_id,
                        parent_tool_use_id,
                    ),
                )
            )
        except Exception as exc:
            _bad_call("log_tool_execution", exc)
        return tid

    def finish_tool_execution(
        self,
        execution_id: str,
        status: str = "completed",
        output: Any = None,
        error: str | None = None,
        *,
        ended_at: float | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Close a running tool execution with its result, end time and duration."""
        if self._enqueue is None:
            return
        try:
            with self._lock:
                running = self._tools.pop(execution_id, None)
            end = time.time() if ended_at is None else ended_at
            if duration_ms is None and running is not None:
                if ended_at is None:
                    duration_ms = round((time.perf_counter() - running.started_perf) * 1000)
                else:
                    duration_ms = _span_ms(running.started_wall, ended_at)
            limit = self._limit
            if limit:
                if output is not None:
                    output = cut_for_queue(output, limit)
                if error is not None:
                    error = cut_for_queue(error, limit)
            self._enqueue(
                (TOOL_UPDATE, execution_id, _FINISH_COLS, (status, output, error, end, duration_ms))
            )
        except Exception as exc:
            _bad_call("finish_tool_execution", exc)

    def running_tools(self) -> list[str]:
        with self._lock:
            return list(self._tools)

    def flush(self, timeout: float | None = 5.0) -> bool:
        return True if self._client is None else self._client.flush(timeout)


_FINISH_COLS = ("status", "output", "error", "ended_at", "duration_ms")


def _span_ms(start: Any, end: Any) -> int | None:
    """Milliseconds between two epoch times; ``None`` when they are not usable numbers."""
    try:
        ms = round((float(end) - float(start)) * 1000)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0, ms)


def _as_dict(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if isinstance(metadata, dict):
        return dict(metadata)
    return {"value": metadata}  # a string or list given as metadata is kept, not rejected


_warn = RateLimitedWarning()


def _bad_call(method: str, exc: BaseException) -> None:
    """A logger call got arguments it cannot log: warn (at most every 30 s), never raise."""
    _warn("bad_call", "%s could not log its arguments (%s); skipped", method, type(exc).__name__)
