"""Logged sessions: the ``with`` block, the decorator, and the context that instrumented SDK
calls attach to."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..client import TursoClient
from ..ids import new_session_id
from ..logger import _DEFAULT, ConversationLogger, SessionInfo
from .stream import TrackedStream

log = logging.getLogger("claude_parallel_logging")

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[LoggedSession | None] = contextvars.ContextVar(
    "claude_parallel_logging_session", default=None
)

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
    text = str(exc)
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
        self._result_error: str | None = None
        self._seen: dict[int, Any] = {}
        self._seen_order: collections.deque[int] = collections.deque()
        self._recent_prompts: collections.deque[str] = collections.deque(maxlen=32)
        self._tracked_prompts: collections.deque[str] = collections.deque(maxlen=32)
        self.ended = False

    # ----- lifecycle --------------------------------------------------------------------------

    def start(self) -> LoggedSession:
        with self._lock:
            if self._started:
                return self
            self._started = True
        if self._auto_instrument:
            _auto_instrument()
        try:
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
            log.debug("claude-parallel-logging: start_session failed", exc_info=True)
        return self

    def end(self, outcome: BaseException | str | None = None) -> None:
        """End once: ``completed``, or ``error`` with the exception text (or a failed result)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
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
        try:
            self.logger.end_session(status, message, **extra)
        except Exception:
            log.debug("claude-parallel-logging: end_session failed", exc_info=True)

    def __enter__(self) -> LoggedSession:
        self.start()
        self._token = _current.set(self)
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
            try:
                _current.reset(token)
            except ValueError:  # exited in another context (e.g. a different task)
                _current.set(None)

    # ----- what integrations call -------------------------------------------------------------

    def track(self, stream: Any, prompt: Any = None, *, mapper: Any = None) -> Any:
        """Log every message of an SDK stream into this session; returns a transparent proxy.

        ``prompt`` logs the prompt that started the stream (a bare stream cannot see it).
        """
        if not self._started:
            self.start()
        if prompt is not None:
            self.log_prompt(prompt)
            if isinstance(prompt, str):
                with self._lock:
                    self._tracked_prompts.append(prompt)
        if mapper is None:
            from .claude import ClaudeMapper

            mapper = ClaudeMapper(self)
        return TrackedStream(stream, mapper.observe, mapper.finish)

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
        """Log a prompt as a ``user`` message (``from_sdk``: seen by instrumentation, which
        skips a prompt ``track(stream, prompt=...)`` already logged)."""
        if from_sdk and isinstance(prompt, str):
            with self._lock:
                if prompt in self._tracked_prompts:
                    self._tracked_prompts.remove(prompt)
                    return
        if isinstance(prompt, str):
            with self._lock:
                self._recent_prompts.append(prompt)
            self.logger.log_message("user", prompt)
        elif isinstance(prompt, dict):
            message = prompt.get("message")
            content = message.get("content") if isinstance(message, dict) else prompt
            self.logger.log_message(
                "user",
                content if isinstance(content, str) else None,
                tool_input=None if isinstance(content, str) else content,
                parent_tool_use_id=prompt.get("parent_tool_use_id"),
            )

    def set_source_totals(self, source: Any, totals: dict[str, Any]) -> None:
        """Totals reported by one stream source (a CLI process); the session holds their sum."""
        with self._lock:
            self._source_totals[source] = dict(totals)
            summed: dict[str, Any] = {}
            for key in TOTAL_KEYS:
                values = [t[key] for t in self._source_totals.values() if t.get(key) is not None]
                if values:
                    summed[key] = round(sum(values), 10) if key == "cost_usd" else sum(values)
        if summed:
            self.logger.update_session(**summed)

    def note_result_error(self, message: str | None) -> None:
        self._result_error = message or "the agent reported an error"

    def clear_result_error(self) -> None:
        self._result_error = None


def logged_session(
    agent_type: str,
    model: str | None = None,
    provider: str | None = "anthropic",
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> LoggedSession:
    """``with``/``async with logged_session("review"):`` — everything inside is one session."""
    return LoggedSession(agent_type, model, provider, metadata, **kwargs)


def logged(
    agent_type: str,
    model: str | None = None,
    provider: str | None = "anthropic",
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Callable[[F], F]:
    """Decorate an agent function (async, sync or async generator): each call is one session."""

    def decorate(fn: F) -> F:
        def new() -> LoggedSession:
            return LoggedSession(agent_type, model, provider, metadata, **kwargs)

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            def agen_wrapper(*args: Any, **kw: Any) -> Any:
                return _SessionGenerator(fn(*args, **kw), new())

            return agen_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kw: Any) -> Any:
                async with new():
                    return await fn(*args, **kw)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kw: Any) -> Any:
            with new():
                return fn(*args, **kw)

        return sync_wrapper  # type: ignore[return-value]

    return decorate


class _SessionGenerator(TrackedStream):
    """An async generator run inside a session: the session is current while its body runs."""

    def __init__(self, agen: Any, session: LoggedSession) -> None:
        super().__init__(agen, lambda _item: None, session.end)
        self._self_session = session

    async def _self_step(self, coro: Any) -> Any:
        session: LoggedSession = self._self_session
        session.start()
        token = _current.set(session)
        try:
            return await super()._self_step(coro)
        finally:
            try:
                _current.reset(token)
            except ValueError:
                _current.set(None)

    async def aclose(self) -> None:
        session: LoggedSession = self._self_session
        token = _current.set(session)
        try:
            await super().aclose()
        finally:
            try:
                _current.reset(token)
            except ValueError:
                _current.set(None)


def _auto_instrument() -> None:
    """Sessions log SDK calls made inside them without ``track``: patch the SDKs once."""
    from .instrument import instrument_if_available

    instrument_if_available()
