"""``ClaudeSDKClient``: what instrumentation knows about each client, and the wrappers of its
``connect``/``query``/``receive_messages``/``disconnect``/``__aexit__``.

A client's turns go to the logged session current while each is read; outside any, to a session
of the client's own, opened for the first thing to log and ended at ``disconnect()`` (or when
the client is garbage collected without it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..._log import guard, log
from ..session import LoggedSession, current_session
from ..stream import TrackedStream
from ._wrappers import new_session, with_prompt
from .blocks import message_kind
from .mapper import ClaudeMapper


@dataclass
class _ClientState:
    """What instrumentation knows about one ``ClaudeSDKClient`` (never references it)."""

    owned: LoggedSession | None = None  # its own session, opened for the first thing to log
    mappers: dict[str, ClaudeMapper] = field(default_factory=dict)
    failure: BaseException | str | None = None  # why the owned session should end as error
    open_turn: bool = False  # a prompt was sent and its result not seen yet
    connecting: bool = False
    finalizer: Any = None


_clients_lock = threading.Lock()
_clients: weakref.WeakKeyDictionary[Any, _ClientState] = weakref.WeakKeyDictionary()


def _state_of(client: Any) -> _ClientState:
    with _clients_lock:
        state = _clients.get(client)
        if state is None:
            state = _clients[client] = _ClientState()
        return state


def _client_session(client: Any) -> tuple[LoggedSession, ClaudeMapper] | None:
    """The session a ``ClaudeSDKClient`` logs into now: the current one, else its own (opened
    here, so a client that only connects or only serves other sessions opens none)."""
    state = _state_of(client)
    session = current_session()
    if session is None:
        if state.owned is None or state.owned.ended:
            state.owned = new_session(getattr(client, "options", None))
            if state.owned is not None:
                state.failure, state.open_turn = None, False
                if state.finalizer is not None:
                    state.finalizer.detach()
                state.finalizer = weakref.finalize(client, _client_dropped, state)
        session = state.owned
    if session is None:
        return None
    mapper = state.mappers.get(session.id)
    if mapper is None:
        mapper = ClaudeMapper(session)
        state.mappers = {session.id: mapper}
    return session, mapper


def _resolver(client: Any) -> Callable[[], LoggedSession | None]:
    ref = weakref.ref(client)

    def resolve() -> LoggedSession | None:
        target = ref()
        found = _client_session(target) if target is not None else None
        if found is None:
            return None
        if target is not None:
            _state_of(target).open_turn = True
        return found[0]

    return resolve


def _end_owned(state: _ClientState, outcome: BaseException | str | None) -> None:
    owned = state.owned
    if owned is None or owned.ended:
        return
    if outcome is None:
        outcome = state.failure
    if outcome is None and state.open_turn:
        outcome = "disconnected before the result"
    owned.end(outcome)
    state.failure, state.open_turn = None, False
    if state.finalizer is not None:
        state.finalizer.detach()
        state.finalizer = None


def _client_dropped(state: _ClientState) -> None:
    """The client was garbage collected without ``disconnect()``."""
    if state.failure is None and state.open_turn:
        state.failure = "client dropped before the result"
    _end_owned(state, None)


def _connect_failed(client: Any, exc: BaseException) -> None:
    """Outside any session a failed start is worth a session of its own, ended as error;
    inside one the exception reaches the block (which records it if it lets it through)."""
    session = current_session()
    if session is not None:
        session.logger.log_message(
            "event", f"{type(exc).__name__}: {exc}", metadata={"type": "connect_failed"}
        )
        return
    state = _state_of(client)
    if _client_session(client) is not None:
        _end_owned(state, exc)


async def connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    state: _ClientState | None = None
    try:
        state = _state_of(instance)
        args, kwargs = with_prompt(tuple(args), dict(kwargs), _resolver(instance))
        state.connecting = True
    except Exception:
        log.debug("instrumentation failed", exc_info=True)
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        if state is not None:
            state.connecting = False
            guard(_connect_failed, instance, exc)
        raise
    finally:
        if state is not None:
            state.connecting = False


async def query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        args, kwargs = with_prompt(tuple(args), dict(kwargs), _resolver(instance))
    except Exception:
        log.debug("instrumentation failed", exc_info=True)
    return await wrapped(*args, **kwargs)


def receive_messages(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    stream = wrapped(*args, **kwargs)
    try:
        ref = weakref.ref(instance)
        state = _state_of(instance)
        last: list[LoggedSession | None] = [None]

        def observe(msg: Any) -> None:
            # Resolved per message: each turn goes to the session current while it is read.
            client = ref()
            found = _client_session(client) if client is not None else None
            if found is None:
                return
            session, mapper = found
            last[0] = session
            if message_kind(msg) == "ResultMessage":
                state.open_turn = False
                if not getattr(msg, "is_error", False) and session is state.owned:
                    state.failure = None  # a later turn succeeded: the client went on
            mapper.observe(msg)

        def finish(outcome: BaseException | str | None) -> None:
            # A turn's stream ends after each response, or is left after the result (normal);
            # cancellation or an error is remembered and ends the own session at disconnect.
            if outcome is None or outcome == "closed":
                return
            if last[0] is not None and last[0] is state.owned:
                state.failure = outcome
            elif last[0] is None and current_session() is None:
                state.failure = outcome

        return TrackedStream(stream, observe, finish)
    except Exception:
        log.debug("instrumentation failed", exc_info=True)
        return stream


def _disconnected(client: Any, exc: BaseException | None) -> None:
    state = _clients.get(client)
    if state is None or state.connecting:  # a failed connect() disconnects: handled there
        return
    _end_owned(state, exc)


async def disconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        guard(_disconnected, instance, exc)
        raise
    guard(_disconnected, instance, None)
    return result


def _note_exit(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    exc = args[1] if len(args) > 1 else kwargs.get("exc_val")
    state = _clients.get(client)
    if isinstance(exc, BaseException) and state is not None:
        state.failure = exc


async def aexit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``async with ClaudeSDKClient()`` left by an exception: its own session ends with it
    (``__aexit__`` then disconnects, which ends the session)."""
    guard(_note_exit, instance, tuple(args), dict(kwargs))
    return await wrapped(*args, **kwargs)
