"""``instrument()`` / ``uninstrument()``: wrapt patches of the SDKs, saved and restored.

Claude: ``InternalClient.process_query`` (what every ``query()`` runs, so a ``query`` imported
before ``instrument()`` is logged too); ``ClaudeSDKClient.connect/query/receive_messages/
disconnect/__aexit__`` (class attributes: existing imports of the class are covered); and the
SDK's ``parse_message`` (both import sites), only to read the CLI's per-turn usage delta that
the parsed ``ResultMessage`` leaves out.

OpenCode: ``SessionResource.chat`` and ``AsyncSessionResource.chat`` (see ``opencode.py``).

Our patches are recognised by their own wrapper type, so a foreign wrapt patch of the same
attribute is wrapped (and restored) rather than mistaken for ours, and ours is never stacked.
"""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

import wrapt

from .claude import ClaudeMapper, message_kind, remember_raw_result
from .session import LoggedSession, PromptLog, current_session
from .stream import TrackedStream

log = logging.getLogger("claude_parallel_logging")


class _Switch:
    """Turns one patch of ours on or off (off: wrapt calls the original directly)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True

    def __call__(self) -> bool:
        return self.on


class _Patch(wrapt.FunctionWrapper):  # type: ignore[misc, type-arg]
    """Our wrapper type: the marker that tells our patches from anyone else's."""

    _self_cpl_switch: _Switch


@dataclass
class _Applied:
    owner: Any
    attr: str
    original: Any
    patch: _Patch


_lock = threading.Lock()
_patches: list[_Applied] = []
_settings: dict[str, Any] = {"agent_type": "claude", "opencode_agent_type": "opencode"}


def _attribute(owner: Any, attr: str) -> Any:
    return owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)


# The C proxy base of every wrapt wrapper (wrapt 2 names it BaseObjectProxy; in wrapt 1 it is
# ObjectProxy itself): FunctionWrapper derives from it, not from wrapt 2's ObjectProxy.
_PROXY_BASE: type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)


def _ours_in(obj: Any) -> _Patch | None:
    """Our patch in a chain of wrapt wrappers (ours or foreign, in any order), if any.

    ``type()``, not ``isinstance``: a wrapt proxy reports its wrapped object's ``__class__``.
    """
    for _ in range(32):
        kind = type(obj)
        if issubclass(kind, _Patch):
            return obj  # type: ignore[no-any-return]
        if not issubclass(kind, _PROXY_BASE):
            return None
        obj = obj.__wrapped__
    return None


def _patch(module: str, path: str, wrapper: Callable[..., Any]) -> None:
    owner_name, _, attr = path.rpartition(".")
    mod = importlib.import_module(module)
    owner = getattr(mod, owner_name) if owner_name else mod
    current = _attribute(owner, attr)
    ours = _ours_in(current)
    if ours is not None:  # already patched (maybe under someone else's patch): switch it on
        ours._self_cpl_switch.on = True
        if not any(a.patch is ours for a in _patches):
            _patches.append(_Applied(owner, attr, ours.__wrapped__, ours))
        return
    switch = _Switch()
    patch = _Patch(current, wrapper, enabled=switch)
    patch._self_cpl_switch = switch
    setattr(owner, attr, patch)
    _patches.append(_Applied(owner, attr, current, patch))


def instrument(agent_type: str = "claude", *, opencode_agent_type: str = "opencode") -> list[str]:
    """Patch the installed SDKs so every call is logged; idempotent. Returns what was patched.

    Inside ``logged_session``/``@logged`` calls attach to that session; outside, each
    ``query()`` (or each ``ClaudeSDKClient``, or each OpenCode session) gets its own session.
    """
    with _lock:
        _settings["agent_type"] = agent_type
        _settings["opencode_agent_type"] = opencode_agent_type
        done: list[str] = []
        if not _patches:
            for name, fn in (
                ("claude_agent_sdk", _instrument_claude),
                ("opencode_ai", _instrument_opencode),
            ):
                try:
                    importlib.import_module(name)
                except ImportError:
                    continue
                try:
                    fn()
                    done.append(name)
                except Exception:
                    log.warning(
                        "claude-parallel-logging: cannot instrument %s", name, exc_info=True
                    )
            _instrument_extra(done)
        else:
            done = sorted(
                {getattr(a.owner, "__module__", None) or a.owner.__name__ for a in _patches}
            )
            done = sorted({name.split(".")[0] for name in done})
        return done


def _instrument_extra(done: list[str]) -> None:
    """Other SDKs register here (OpenCode)."""
    for hook in _extra_instrumenters:
        try:
            name = hook()
        except Exception:
            log.warning("claude-parallel-logging: instrumentation hook failed", exc_info=True)
            continue
        if name:
            done.append(name)


_extra_instrumenters: list[Callable[[], str | None]] = []


def uninstrument() -> None:
    """Restore every original exactly as it was.

    A patch of ours that someone else has wrapped since cannot be taken out of the middle of
    their chain: it is switched off instead (calls pass straight through) and switched back on
    by the next ``instrument()``.
    """
    with _lock:
        while _patches:
            applied = _patches.pop()
            try:
                current = _attribute(applied.owner, applied.attr)
            except (KeyError, AttributeError):
                current = None
            if current is applied.patch:
                setattr(applied.owner, applied.attr, applied.original)
            else:
                applied.patch._self_cpl_switch.on = False


def is_instrumented() -> bool:
    return bool(_patches)


def instrument_if_available() -> None:
    if not _patches:
        instrument(_settings["agent_type"], opencode_agent_type=_settings["opencode_agent_type"])


def _instrument_opencode() -> None:
    from .opencode import instrument_opencode

    instrument_opencode(_patch)


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    """Run logging code; a failure is logged at debug level and never reaches the agent."""
    try:
        return fn(*args)
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
        return None


# ----- Claude -------------------------------------------------------------------------------


def _instrument_claude() -> None:
    client = "claude_agent_sdk.client"
    _patch("claude_agent_sdk._internal.client", "InternalClient.process_query", _process_query)
    _patch(client, "ClaudeSDKClient.connect", _client_connect)
    _patch(client, "ClaudeSDKClient.query", _client_query)
    _patch(client, "ClaudeSDKClient.receive_messages", _client_receive)
    _patch(client, "ClaudeSDKClient.disconnect", _client_disconnect)
    _patch(client, "ClaudeSDKClient.__aexit__", _client_aexit)
    # Optional: only adds exactness to per-turn figures; an SDK that moved it still works.
    for module in (
        "claude_agent_sdk._internal.message_parser",
        "claude_agent_sdk._internal.client",
    ):
        try:
            _patch(module, "parse_message", _parse_message)
        except Exception:
            log.debug("claude-parallel-logging: parse_message not patched", exc_info=True)


def _parse_message(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    message = wrapped(*args, **kwargs)
    if message is not None and message_kind(message) == "ResultMessage":
        _guard(remember_raw_result, message, args[0] if args else kwargs.get("data"))
    return message


def _model_of(options: Any) -> str | None:
    model = getattr(options, "model", None)
    return model if isinstance(model, str) else None


def _new_session(options: Any) -> LoggedSession | None:
    session = LoggedSession(
        _settings["agent_type"],
        model=_model_of(options),
        provider="anthropic",
        instrument=False,
    )
    if not session.logger.enabled:
        return None
    session.start()
    return session


def _prompt_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Any]:
    if "prompt" in kwargs:
        return True, kwargs["prompt"]
    if args:
        return True, args[0]
    return False, None


def _replace_prompt(
    args: tuple[Any, ...], kwargs: dict[str, Any], prompt: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if "prompt" in kwargs:
        return args, {**kwargs, "prompt": prompt}
    return (prompt, *args[1:]), kwargs


def _with_prompt(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    resolve: Callable[[], LoggedSession | None],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Log a string prompt now; pass a streamed one through :class:`PromptLog` (same items),
    which logs each message as the SDK reads it into the session ``resolve`` names then."""
    found, prompt = _prompt_arg(args, kwargs)
    if not found or prompt is None:
        return args, kwargs
    if isinstance(prompt, str):
        session = resolve()
        if session is not None:
            session.log_prompt(prompt, from_sdk=True)
    elif isinstance(prompt, AsyncIterable) and not isinstance(prompt, PromptLog):
        return _replace_prompt(args, kwargs, PromptLog(prompt, resolve, from_sdk=True))
    return args, kwargs


def _process_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        session = current_session()
        owned = False
        if session is None:
            options = kwargs.get("options", args[1] if len(args) > 1 else None)
            session = _new_session(options)
            owned = True
        if session is None:
            return wrapped(*args, **kwargs)
        fixed = session
        new_args, new_kwargs = _with_prompt(tuple(args), dict(kwargs), lambda: fixed)
        mapper = ClaudeMapper(session, owned=owned)
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
        return wrapped(*args, **kwargs)
    # A session of its own ends with the stream, or with the consumer's task if that ends first.
    stream = wrapped(*new_args, **new_kwargs)
    return TrackedStream(stream, mapper.observe, mapper.finish, watch_task=owned)


# ----- ClaudeSDKClient ------------------------------------------------------------------------


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


def _state(client: Any) -> _ClientState:
    with _clients_lock:
        state = _clients.get(client)
        if state is None:
            state = _clients[client] = _ClientState()
        return state


def _client_session(client: Any) -> tuple[LoggedSession, ClaudeMapper] | None:
    """The session a ``ClaudeSDKClient`` logs into now: the current one, else its own (opened
    here, so a client that only connects or only serves other sessions opens none)."""
    state = _state(client)
    session = current_session()
    if session is None:
        if state.owned is None or state.owned.ended:
            state.owned = _new_session(getattr(client, "options", None))
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
            _state(target).open_turn = True
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
    state = _state(client)
    if _client_session(client) is not None:
        _end_owned(state, exc)


async def _client_connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    state: _ClientState | None = None
    try:
        state = _state(instance)
        args, kwargs = _with_prompt(tuple(args), dict(kwargs), _resolver(instance))
        state.connecting = True
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        if state is not None:
            state.connecting = False
            _guard(_connect_failed, instance, exc)
        raise
    finally:
        if state is not None:
            state.connecting = False


async def _client_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        args, kwargs = _with_prompt(tuple(args), dict(kwargs), _resolver(instance))
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
    return await wrapped(*args, **kwargs)


def _client_receive(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    stream = wrapped(*args, **kwargs)
    try:
        ref = weakref.ref(instance)
        state = _state(instance)
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
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
        return stream


def _disconnected(client: Any, exc: BaseException | None) -> None:
    state = _clients.get(client)
    if state is None or state.connecting:  # a failed connect() disconnects: handled there
        return
    _end_owned(state, exc)


async def _client_disconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _guard(_disconnected, instance, exc)
        raise
    _guard(_disconnected, instance, None)
    return result


def _note_exit(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    exc = args[1] if len(args) > 1 else kwargs.get("exc_val")
    state = _clients.get(client)
    if isinstance(exc, BaseException) and state is not None:
        state.failure = exc


async def _client_aexit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``async with ClaudeSDKClient()`` left by an exception: its own session ends with it
    (``__aexit__`` then disconnects, which ends the session)."""
    _guard(_note_exit, instance, tuple(args), dict(kwargs))
    return await wrapped(*args, **kwargs)
