"""The wrappers of ``query()`` (``InternalClient.process_query``) and of the SDK's
``parse_message``, and what the ``ClaudeSDKClient`` wrappers share with them: opening a session
of its own for a call made outside any, and logging the prompt a call is given."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Any

from ..._log import guard, log
from ..prompts import PromptLog
from ..session import LoggedSession, current_session
from ..settings import agent_types
from ..stream import TrackedStream
from .blocks import message_kind
from .mapper import ClaudeMapper
from .usage import remember_raw_result


def parse_message(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    message = wrapped(*args, **kwargs)
    if message is not None and message_kind(message) == "ResultMessage":
        guard(remember_raw_result, message, args[0] if args else kwargs.get("data"))
    return message


def _model_of(options: Any) -> str | None:
    model = getattr(options, "model", None)
    return model if isinstance(model, str) else None


def new_session(options: Any) -> LoggedSession | None:
    """A session of its own for a call made outside any (``None`` when logging is off)."""
    session = LoggedSession(
        agent_types.claude,
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


def with_prompt(
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


def process_query(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        session = current_session()
        owned = False
        if session is None:
            options = kwargs.get("options", args[1] if len(args) > 1 else None)
            session = new_session(options)
            owned = True
        if session is None:
            return wrapped(*args, **kwargs)
        fixed = session
        new_args, new_kwargs = with_prompt(tuple(args), dict(kwargs), lambda: fixed)
        mapper = ClaudeMapper(session, owned=owned)
    except Exception:
        log.debug("instrumentation failed", exc_info=True)
        return wrapped(*args, **kwargs)
    # A session of its own ends with the stream, or with the consumer's task if that ends first.
    stream = wrapped(*new_args, **new_kwargs)
    return TrackedStream(stream, mapper.observe, mapper.finish, watch_task=owned)
