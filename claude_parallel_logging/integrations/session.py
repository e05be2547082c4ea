"""Logged sessions: the ``with`` block, the decorator, and the context that instrumented SDK
calls attach to."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import inspect
import json
import logging
import reprlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

from ..client import TursoClient
from ..ids import new_session_id
from ..logger import _DEFAULT, ConversationLogger, SessionInfo
from .claude import ClaudeMapper, prompt_text
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
                _auto_instrument()
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
        call, self.call = self.call, None
        if call is not None:
            try:
                call.record(self)
            except Exception:
                log.debug("claude-parallel-logging: cannot log the decorated call", exc_info=True)
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
            log.debug("claude-parallel-logging: cannot describe the outcome", exc_info=True)
            status, message, extra = "error", "unknown outcome", {}
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

    def track(
        self,
        stream: Any,
        prompt: Any = None,
        *,
        mapper: ClaudeMapper | None = None,
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
                log.debug("claude-parallel-logging: cannot log the prompt", exc_info=True)
        if mapper is None:
            mapper = ClaudeMapper(self)
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
                    "claude-parallel-logging: a streamed prompt given to track() is logged only"
                    " when passed through session.logged_prompts() (or an instrumented call)"
                )
            return
        text = prompt if isinstance(prompt, str) else _dict_prompt_text(prompt)
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
            text = _dict_prompt_text(prompt)
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
    """Decorate an agent function (async, sync or async generator): each call is one session.

    The wrapper is of the same kind as the function (``inspect.iscoroutinefunction`` /
    ``isasyncgenfunction`` hold) and keeps its name, docstring and signature. A generator whose
    consumer stops early (``break``, ``aclose()``) ends ``completed``: the consumer chose to stop,
    the agent did not fail.
    """

    def decorate(fn: F) -> F:
        def new() -> LoggedSession:
            return LoggedSession(agent_type, model, provider, metadata, **kwargs)

        if inspect.isasyncgenfunction(fn):
            return _generator_wrapper(fn, new)  # type: ignore[return-value]

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kw: Any) -> Any:
                async with new() as session:
                    session.call = call = LoggedCall(fn, args, kw)
                    result = await fn(*args, **kw)
                    call.returned(result)
                    return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kw: Any) -> Any:
            with new() as session:
                session.call = call = LoggedCall(fn, args, kw)
                result = fn(*args, **kw)
                call.returned(result)
                return result

        return sync_wrapper  # type: ignore[return-value]

    return decorate


def _restore(token: contextvars.Token[LoggedSession | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # reset in another context than it was set in
        _current.set(None)


def _generator_wrapper(
    fn: Callable[..., AsyncGenerator[Any, Any]], new: Callable[[], LoggedSession]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """A real async generator function that runs ``fn``'s generator inside one session.

    It delegates by hand (``asend``/``athrow``/``aclose``, as ``yield from`` would) so that the
    session is current only while the agent's body runs, not while the consumer handles an
    item. The session starts on the first iteration and ends when the generator finishes.
    """

    @functools.wraps(fn)
    async def agen_wrapper(*args: Any, **kw: Any) -> AsyncGenerator[Any, Any]:
        session = new()
        session.call = LoggedCall(fn, args, kw)  # its input; a generator returns nothing
        token = _current.set(session)
        try:
            session.start()
            agen = fn(*args, **kw)
        finally:
            _restore(token)
        outcome: BaseException | str | None = None
        # A CancelledError thrown in while the generator waits at ``yield`` did not interrupt the
        # agent: the consumer stopped. That is how an unfinished generator's ``aclose()`` ends
        # when ``asyncio.run`` returns right after a ``break`` (the loop cancels the pending
        # close task): it ends ``completed``, like ``aclose()`` itself.
        stopped: BaseException | None = None
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = _current.set(session)
                try:
                    if thrown is None:
                        item = await agen.asend(sent)
                    else:
                        exc, thrown = thrown, None
                        item = await agen.athrow(exc)
                except StopAsyncIteration:
                    return
                finally:
                    _restore(token)
                try:
                    sent = yield item
                except GeneratorExit:
                    # The consumer stopped early (break + aclose, or garbage collection):
                    # close the agent's generator inside its session, then end as completed.
                    token = _current.set(session)
                    try:
                        await agen.aclose()
                    finally:
                        _restore(token)
                    raise
                except BaseException as exc:  # athrow(): pass it on to the agent's generator
                    thrown = exc
                    if isinstance(exc, asyncio.CancelledError):
                        stopped = exc
        except GeneratorExit:
            outcome = None
            raise
        except BaseException as exc:
            outcome = None if exc is stopped else exc
            raise
        finally:
            session.end(outcome)

    return agen_wrapper


_NO_RESULT: Any = object()
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 6, 100, 100, 100
_REPR.maxset, _REPR.maxstring, _REPR.maxother = 100, 100_000, 10_000


class LoggedCall:
    """A ``@logged`` call: its arguments and return value, kept (not converted) until the
    session ends, and logged only when the body logged no message itself (a custom agent
    without SDK calls); otherwise the SDK calls' own prompts and answers are the transcript."""

    __slots__ = ("args", "fn", "kwargs", "result", "started")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.result: Any = _NO_RESULT
        self.started = time.time()

    def returned(self, result: Any) -> None:
        self.result = result

    def record(self, session: LoggedSession) -> None:
        logger = session.logger
        if not logger.enabled or logger.messages_logged() != 0:
            return
        logger.log_message(
            "user",
            self.prompt(),
            created_at=self.started,
            metadata={"logged_call": getattr(self.fn, "__qualname__", repr(self.fn))},
        )
        if self.result is not _NO_RESULT and self.result is not None:
            logger.log_message("assistant", _text(self.result), metadata={"logged_call": "return"})

    def prompt(self) -> str:
        """A ``prompt`` argument that is a string, else the first string argument, else the
        arguments as JSON (their repr when they are not JSON)."""
        try:
            bound = inspect.signature(self.fn).bind_partial(*self.args, **self.kwargs).arguments
        except (TypeError, ValueError):  # no signature, or a call the body rejected
            bound = {**{f"arg{i}": a for i, a in enumerate(self.args)}, **self.kwargs}
        if isinstance(bound.get("prompt"), str):
            return str(bound["prompt"])
        for value in bound.values():
            if isinstance(value, str):
                return value
        return _text({k: v for k, v in bound.items() if k not in ("self", "cls")})


def _text(value: Any) -> str:
    """A value as message text: a string as it is, else JSON, else a bounded repr."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=_REPR.repr)
    except (TypeError, ValueError, RecursionError):
        return _REPR.repr(value)


class PromptLog:
    """A streamed prompt passed through to the SDK: the same items, in the same order; each
    message is logged (as a ``user`` row) when the SDK reads it."""

    def __init__(
        self,
        source: AsyncIterable[Any],
        resolve: Callable[[], LoggedSession | None],
        *,
        from_sdk: bool = False,
    ) -> None:
        self._source = source
        self._resolve = resolve
        self._from_sdk = from_sdk
        self._iter: AsyncIterator[Any] | None = None

    def __aiter__(self) -> PromptLog:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._source.__aiter__()
        item = await self._iter.__anext__()
        try:
            session = self._resolve()
            if session is not None:
                session.log_prompt(item, from_sdk=self._from_sdk)
        except Exception:  # logging must never raise into the agent
            log.debug("claude-parallel-logging: cannot log a streamed prompt", exc_info=True)
        return item

    async def aclose(self) -> None:
        closer = getattr(self._iter if self._iter is not None else self._source, "aclose", None)
        if closer is not None:
            await closer()


def _dict_prompt_text(prompt: Any) -> str | None:
    if not isinstance(prompt, dict):
        return None
    message = prompt.get("message")
    return prompt_text(message.get("content") if isinstance(message, dict) else None)


def _auto_instrument() -> None:
    """Sessions log SDK calls made inside them without ``track``: patch the SDKs once."""
    from .instrument import instrument_if_available

    instrument_if_available()
