"""``@logged`` and ``logged_session``: a decorated call, or a ``with`` block, is one session."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import reprlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

from .session import LoggedSession, reset_current, set_current

F = TypeVar("F", bound=Callable[..., Any])


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
        token = set_current(session)
        try:
            session.start()
            agen = fn(*args, **kw)
        finally:
            reset_current(token)
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
                token = set_current(session)
                try:
                    if thrown is None:
                        item = await agen.asend(sent)
                    else:
                        exc, thrown = thrown, None
                        item = await agen.athrow(exc)
                except StopAsyncIteration:
                    return
                finally:
                    reset_current(token)
                try:
                    sent = yield item
                except GeneratorExit:
                    # The consumer stopped early (break + aclose, or garbage collection):
                    # close the agent's generator inside its session, then end as completed.
                    token = set_current(session)
                    try:
                        await agen.aclose()
                    finally:
                        reset_current(token)
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
