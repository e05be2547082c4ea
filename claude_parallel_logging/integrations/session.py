"""Logged sessions: :class:`LoggedSession` and the context that instrumented SDK calls attach to.

SDK-agnostic: a stream is mapped by the mapper given to :meth:`LoggedSession.track`; without one,
the Claude mapper, loaded by dotted name (``DEFAULT_MAPPER``) the first time it is needed.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import importlib
import threading
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._log import log
from ..client import TursoClient
from ..ids import new_session_id
from ..logger import _DEFAULT, ConversationLogger, SessionInfo
from .instrument import instrument_if_available
from .prompts import PromptLog, message_prompt_text
from .stream import Outcome, TrackedStream

if TYPE_CHECKING:
    from .decorators import LoggedCall

_current: contextvars.ContextVar[LoggedSession | None] = contextvars.ContextVar(
    "claude_parallel_logging_session", default=None
)

# What ``track()`` maps a stream with when no mapper is given (``module:attribute``).
DEFAULT_MAPPER = "claude_parallel_logging.integrations.claude.mapper:ClaudeMapper"


class StreamMapper(Protocol):
    """Maps the items of one SDK stream into a session (an SDK integration provides one)."""

    def observe(self, msg: Any) -> None: ...

    def finish(self, outcome: Outcome) -> None: ...


_default_mapper: Callable[[LoggedSession], StreamMapper] | None = None


def _mapper_for(session: LoggedSession) -> StreamMapper:
    global _default_mapper
    if _default_mapper is None:
        module, _, name = DEFAULT_MAPPER.partition(":")
        _default_mapper = getattr(importlib.import_module(module), name)
    return _default_mapper(session)


_SEEN_WINDOW = 512

TOTAL_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "num_turns",
    "duration_ms",
)


def current_session() -> LoggedSession | None:
    """The logged session the running code belongs to, if any."""
    return _current.get()


def set_current(session: LoggedSession | None) -> contextvars.Token[LoggedSession | None]:
    """Make ``session`` the current one (what instrumented calls attach to)."""
    return _current.set(session)


def reset_current(token: contextvars.Token[LoggedSession | None]) -> None:
    """Undo :func:`set_current`; in another context than it was set in, clear it instead."""
    try:
        _current.reset(token)
    except ValueError:  # reset in another context (e.g. a different task)
        _current.set(None)


def _exit_status(exc: BaseException | str | None) -> tuple[str, str | None]:
    if exc is None:
        return "completed", None
    if isinstance(exc, str):
        return "error", exc
    if isinstance(exc, asyncio.CancelledError):
        return "error", "cancelled"
    if isinstance(exc, KeyboardInterrupt):
        return "error", "interrupted (KeyboardInterrupt)"
    if isinstance(exc, GeneratorExit):
        return "error", "closed"
    try:
        text = str(exc)
    except Exception:  # the agent's exception must propagate as it is, whatever its __str__ does
        text = "<exception text unavailable>"
    return "error", f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LoggedSession:
    """One logged session. Use as ``with``/``async with``; SDK streams attach via ``track``."""

    def __init__(
        self,
        agent_type: str,
        model: str | None = None,
        provider: str | None = "anthropic",
        metadata: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        client: TursoClient | None = _DEFAULT,
        instrument: bool = True,
    ) -> None:
        self.id = session_id or new_session_id()
        self.agent_type = agent_type
        self.model = model
        self.provider = provider
        self.metadata = dict(metadata or {})
        self.logger = ConversationLogger(client)
        self._auto_instrument = instrument
        self._lock = threading.Lock()
        self._started = False
        self._token: contextvars.Token[LoggedSession | None] | None = None
        self._source_totals: dict[Any, dict[str, Any]] = {}
        self._sdk_session_ids: list[str] = []  # every CLI session this session ran, in order
        self._result_error: str | None = None
        self._seen: dict[int, Any] = {}
        self._seen_order: collections.deque[int] = collections.deque()
        self._recent_prompts: collections.deque[str] = collections.deque(maxlen=32)
        # A prompt seen both by track(prompt=...) and by an instrumented call is logged once,
        # whichever sees it first (query() starts lazily; ClaudeSDKClient.query() does not).
        self._tracked_prompts: collections.deque[str] = collections.deque(maxlen=32)
        self._sdk_prompts: collections.deque[str] = collections.deque(maxlen=32)
        self.call: LoggedCall | None = None  # set by ``@logged``: recorded if nothing else is
        self.ended = False

    # ----- lifecycle --------------------------------------------------------------------------

    def start(self) -> LoggedSession:
        with self._lock:
            if self._started:
                return self
            self._started = True
        try:
            if self._auto_instrument:
                # Sessions log SDK calls made inside them without ``track``: patch the SDKs once.
                instrument_if_available()
            self.logger.start_session(
                SessionInfo(
                    id=self.id,
                    agent_type=self.agent_type,
                    model=self.model,
                    provider=self.provider,
                    metadata=self.metadata or None,
                )
            )
        except Exception:
            log.debug("start_session failed", exc_info=True)
        return self

    def end(self, outcome: BaseException | str | None = None) -> None:
        """End once: ``completed``, or ``error`` with the exception text (or a failed result)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
        call, self.call = self.call, None
        if call is not None:
            try:
                call.record(self)
            except Exception:
                log.debug("cannot log the decorated call", exc_info=True)
        try:
            status, message = _exit_status(outcome)
            if status == "completed" and self._result_error is not None:
                status, message = "error", self._result_error
            extra: dict[str, Any] = {}
            with self._lock:
                durations = [
                    t["duration_ms"] for t in self._source_totals.values() if t.get("duration_ms")
                ]
            if durations:
                extra["duration_ms"] = sum(durations)
        except Exception:
            log.debug("cannot describe the outcome", exc_info=True)
            status, message, extra = "error", "unknown outcome", {}
        try:
            self.logger.end_session(status, message, **extra)
        except Exception:
            log.debug("end_session failed", exc_info=True)

    def __enter__(self) -> LoggedSession:
        self.start()
        self._token = set_current(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._reset_context()
        self.end(exc)

    async def __aenter__(self) -> LoggedSession:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _reset_context(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            reset_current(token)

    # ----- what integrations call -------------------------------------------------------------

    def track(
        self,
        stream: Any,
        prompt: Any = None,
        *,
        mapper: StreamMapper | None = None,
    ) -> Any:
        """Log every message of an SDK stream into this session; returns a transparent proxy.

        ``prompt`` logs the prompt that started the stream (a bare stream cannot see it): a
        string, a message dict, or a list of them. A streamed prompt (an async iterable) is read
        by the SDK, not by this stream: pass it through :meth:`logged_prompts` before handing it
        to the SDK (instrumented calls inside this session do that themselves).

        Cost and tokens stay right when ``stream`` is one turn of a ``ClaudeSDKClient``
        (``receive_response()``): the client's cumulative figures are turned into per-turn ones
        per SDK session, however many ``track`` calls or sessions see its turns.
        """
        if not self._started:
            self.start()
        if prompt is not None:
            try:
                self._track_prompt(prompt)
            except Exception:  # logging must never raise into the agent
                log.debug("cannot log the prompt", exc_info=True)
        if mapper is None:
            mapper = _mapper_for(self)
        return TrackedStream(stream, mapper.observe, mapper.finish)

    def _track_prompt(self, prompt: Any) -> None:
        if isinstance(prompt, (list, tuple)):
            for item in prompt:
                self._track_prompt(item)
            return
        if isinstance(prompt, AsyncIterable):
            # Our PromptLog logs as the SDK reads it; any other one is not observable from here.
            if not isinstance(prompt, PromptLog):
                log.debug(
                    "a streamed prompt given to track() is logged only"
                    " when passed through session.logged_prompts() (or an instrumented call)"
                )
            return
        text = prompt if isinstance(prompt, str) else message_prompt_text(prompt)
        if text is not None:
            with self._lock:
                if text in self._sdk_prompts:  # an instrumented call already logged it
                    self._sdk_prompts.remove(text)
                    return
                self._tracked_prompts.append(text)
        self.log_prompt(prompt)

    def logged_prompts(self, prompts: Any) -> Any:
        """A pass-through of a streamed prompt (``AsyncIterable`` of message dicts) that logs
        each message into this session as the SDK reads it; the SDK gets the same items."""
        if isinstance(prompts, PromptLog):
            return prompts
        return PromptLog(prompts, lambda: self)

    def first_sight(self, obj: Any) -> bool:
        """True once per object: a stream tracked twice (``track`` over an instrumented call)
        must not log its messages twice."""
        key = id(obj)
        seen = self._seen
        if key in seen:
            return False
        # Hold a reference while the id is remembered, so the id cannot be reused meanwhile.
        # No lock: a stream is consumed by one task; dict/deque operations are atomic.
        seen[key] = obj
        order = self._seen_order
        order.append(key)
        if len(order) > _SEEN_WINDOW:
            seen.pop(order.popleft(), None)
        return True

    def is_prompt_echo(self, text: str) -> bool:
        """The CLI may echo a prompt we already logged from the call itself."""
        with self._lock:
            if text in self._recent_prompts:
                self._recent_prompts.remove(text)
                return True
        return False

    def log_prompt(self, prompt: Any, *, from_sdk: bool = False) -> None:
        """Log a prompt (a string or a streamed message dict) as a ``user`` message.

        A dict's text blocks are joined into ``content`` so search finds them; other blocks
        (images, documents) are kept in ``metadata``. ``from_sdk``: seen by instrumentation,
        which skips a prompt ``track(stream, prompt=...)`` already logged.
        """
        if isinstance(prompt, str):
            text: str | None = prompt
        elif isinstance(prompt, dict):
            text = message_prompt_text(prompt)
        else:
            return
        if from_sdk and text is not None:
            with self._lock:
                if text in self._tracked_prompts:  # track(stream, prompt=...) logged it
                    self._tracked_prompts.remove(text)
                    return
                self._sdk_prompts.append(text)
        if text is not None:
            with self._lock:
                self._recent_prompts.append(text)
        if isinstance(prompt, str):
            self.logger.log_message("user", prompt)
            return
        message = prompt.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        metadata: dict[str, Any] | None = None
        if isinstance(content, (list, tuple)) and any(
            not (isinstance(b, dict) and b.get("type") == "text") for b in content
        ):
            metadata = {"content": list(content)}
        elif not isinstance(message, dict):
            metadata = {"prompt": prompt}
        parent = prompt.get("parent_tool_use_id")
        self.logger.log_message(
            "user",
            text,
            parent_tool_use_id=parent if isinstance(parent, str) else None,
            metadata=metadata,
        )

    def set_source_totals(self, source: Any, totals: dict[str, Any]) -> None:
        """Totals reported by one stream source (a CLI process); the session holds their sum.

        Called at every turn's result, on the agent's thread: the usual single source takes
        the short path.
        """
        with self._lock:
            self._source_totals[source] = totals
            every = list(self._source_totals.values())
        summed: dict[str, Any] = {}
        for key in TOTAL_KEYS:
            if len(every) == 1:
                total = totals.get(key)
            else:
                values = [v for v in (t.get(key) for t in every) if v is not None]
                total = sum(values) if values else None
            if total is not None:
                summed[key] = round(total, 10) if key == "cost_usd" else total
        if summed:
            self.logger.update_session(**summed)

    def add_sdk_session(self, sid: str) -> list[str] | None:
        """Record a CLI session id; the full list when it is new (first one first), else None.

        Kept here, not per stream: a logged session that runs several ``query()`` calls keeps
        the first id as ``external_id`` and every id in ``metadata.sdk_session_ids``.
        """
        with self._lock:
            if sid in self._sdk_session_ids:
                return None
            self._sdk_session_ids.append(sid)
            return list(self._sdk_session_ids)

    def note_result_error(self, message: str | None) -> None:
        self._result_error = message or "the agent reported an error"

    def clear_result_error(self) -> None:
        self._result_error = None
