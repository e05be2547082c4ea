"""``instrument()`` / ``uninstrument()``: wrapt patches of the SDKs, saved and restored.

Claude: ``InternalClient.process_query`` (what every ``query()`` runs, so a ``query`` imported
before ``instrument()`` is logged too) and ``ClaudeSDKClient.connect/query/receive_messages/
disconnect`` (class attributes: existing imports of the class are covered).

OpenCode: ``SessionResource.chat`` and ``AsyncSessionResource.chat`` (see ``opencode.py``).
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

from .claude import ClaudeMapper
from .session import LoggedSession, current_session
from .stream import TrackedStream

log = logging.getLogger("claude_parallel_logging")

_lock = threading.Lock()
_patches: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
_settings: dict[str, Any] = {"agent_type": "claude", "opencode_agent_type": "opencode"}


def _patch(module: str, path: str, wrapper: Callable[..., Any]) -> None:
    owner_name, _, attr = path.rpartition(".")
    mod = importlib.import_module(module)
    owner = getattr(mod, owner_name) if owner_name else mod
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    if isinstance(original, wrapt.FunctionWrapper):
        return  # already ours (or someone's wrapt patch): don't stack
    wrapt.wrap_function_wrapper(owner, attr, wrapper)
    _patches.append((owner, attr, original))


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
            done = sorted({getattr(o, "__module__", str(o)).split(".")[0] for o, _, _ in _patches})
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
    """Restore every original exactly as it was."""
    with _lock:
        while _patches:
            owner, attr, original = _patches.pop()
            setattr(owner, attr, original)


def is_instrumented() -> bool:
    return bool(_patches)


def instrument_if_available() -> None:
    if not _patches:
        instrument(_settings["agent_type"], opencode_agent_type=_settings["opencode_agent_type"])


def _instrument_opencode() -> None:
    from .opencode import instrument_opencode

    instrument_opencode(_patch)


# ----- Claude -------------------------------------------------------------------------------


def _instrument_claude() -> None:
    _patch("claude_agent_sdk._internal.client", "InternalClient.process_query", _process_query)
    _patch("claude_agent_sdk.client", "ClaudeSDKClient.connect", _client_connect)
    _patch("claude_agent_sdk.client", "ClaudeSDKClient.query", _client_query)
    _patch("claude_agent_sdk.client", "ClaudeSDKClient.receive_messages", _client_receive)
    _patch("claude_agent_sdk.client", "ClaudeSDKClient.disconnect", _client_disconnect)


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


async def _logged_prompts(prompts: AsyncIterable[Any], session: LoggedSession) -> Any:
    """Streaming-input prompts: log each message as the SDK sends it."""
    async for message in prompts:
        try:
            session.log_prompt(message)
        except Exception:
            log.debug("claude-parallel-logging: cannot log prompt", exc_info=True)
        yield message


def _with_prompt(args: tuple[Any, ...], kwargs: dict[str, Any], session: LoggedSession) -> Any:
    if "prompt" in kwargs:
        prompt = kwargs["prompt"]
    elif args:
        prompt = args[0]
    else:
        return args, kwargs
    if isinstance(prompt, str):
        session.log_prompt(prompt, from_sdk=True)
        return args, kwargs
    if isinstance(prompt, AsyncIterable):
        wrapped = _logged_prompts(prompt, session)
        if "prompt" in kwargs:
            kwargs = {**kwargs, "prompt": wrapped}
        else:
            args = (wrapped, *args[1:])
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
        args, kwargs = _with_prompt(tuple(args), dict(kwargs), session)
        mapper = ClaudeMapper(session, owned=owned)
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
        return wrapped(*args, **kwargs)
    return TrackedStream(wrapped(*args, **kwargs), mapper.observe, mapper.finish)


@dataclass
class _ClientState:
    owned: LoggedSession | None = None
    mappers: dict[str, ClaudeMapper] = field(default_factory=dict)


_clients: weakref.WeakKeyDictionary[Any, _ClientState] = weakref.WeakKeyDictionary()


def _client_session(client: Any) -> tuple[LoggedSession, ClaudeMapper] | None:
    """The session a ``ClaudeSDKClient`` logs into: the current one, or its own."""
    state = _clients.get(client)
    if state is None:
        state = _ClientState()
        _clients[client] = state
    session = current_session()
    if session is None:
        if state.owned is None or state.owned.ended:
            state.owned = _new_session(getattr(client, "options", None))
        session = state.owned
    if session is None:
        return None
    mapper = state.mappers.get(session.id)
    if mapper is None:
        mapper = ClaudeMapper(session, owned=False, cumulative_cost=True)
        state.mappers = {session.id: mapper}
    return session, mapper


async def _client_connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        found = _client_session(instance)
        if found is not None:
            args, kwargs = _with_prompt(tuple(args), dict(kwargs), found[0])
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
    return await wrapped(*args, **kwargs)


async def _client_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        found = _client_session(instance)
        if found is not None:
            args, kwargs = _with_prompt(tuple(args), dict(kwargs), found[0])
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
    return await wrapped(*args, **kwargs)


def _client_receive(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    stream = wrapped(*args, **kwargs)
    try:
        found = _client_session(instance)
        if found is None:
            return stream
        session, mapper = found

        def finish(outcome: BaseException | str | None) -> None:
            # A turn's stream ends after each response; the client's session ends at disconnect.
            if isinstance(outcome, BaseException) and session is _clients[instance].owned:
                session.end(outcome)

        return TrackedStream(stream, mapper.observe, finish)
    except Exception:
        log.debug("claude-parallel-logging: instrumentation failed", exc_info=True)
        return stream


async def _client_disconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        state = _clients.get(instance)
        if state is not None and state.owned is not None:
            state.owned.end(None)
