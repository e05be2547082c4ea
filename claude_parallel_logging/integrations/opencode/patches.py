"""OpenCode SDK instrumentation: ``session.chat`` (and ``session.prompt``), sync and async.

The prompt is logged before the call, and the whole turn is reconciled from the server when it
returns (no monitor needed). Loaded by name by the registry (``integrations/instrument.py``),
which calls :func:`install`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._log import log
from ...client import get_turso_client
from .fields import as_dict
from .router import OpencodeRouter, client_target, router_for
from .state import SessionState

if TYPE_CHECKING:
    from ..instrument import Patcher


def _prompt_text(parts: Any) -> str | None:
    if not isinstance(parts, (list, tuple)):
        return None
    texts = [
        str(p.get("text"))
        for p in parts
        if isinstance(p, dict) and p.get("type") == "text" and not p.get("synthetic")
    ]
    return "\n".join(texts) if texts else None


def _chat_model(kwargs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Current servers read ``model {providerID, modelID}`` (often sent via ``extra_body``)."""
    nested = as_dict(as_dict(kwargs.get("extra_body")).get("model")) or as_dict(kwargs.get("model"))
    model = nested.get("modelID", kwargs.get("model_id"))
    provider = nested.get("providerID", kwargs.get("provider_id"))
    return (
        model if isinstance(model, str) else None,
        provider if isinstance(provider, str) else None,
    )


@dataclass
class _Call:
    router: OpencodeRouter
    state: SessionState


def _begin_call(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Call | None:
    """Never raises: a logging failure must not change the call."""
    try:
        if get_turso_client() is None:
            return None
        sid = args[0] if args else kwargs.get("id")
        client = getattr(instance, "_client", None)
        if not isinstance(sid, str) or client is None:
            return None
        base_url, headers = client_target(client)
        router = router_for(base_url, headers)
        model, provider = _chat_model(kwargs)
        message_id = kwargs.get("message_id")
        state = router.begin_chat(
            sid,
            _prompt_text(kwargs.get("parts")),
            model=model,
            provider=provider,
            message_id=message_id if isinstance(message_id, str) else None,
        )
        return None if state is None else _Call(router, state)
    except Exception:
        log.debug("OpenCode chat instrumentation failed", exc_info=True)
        return None


def _end_call(call: _Call, exc: BaseException | None) -> None:
    try:
        call.router.end_chat(call.state, exc)
    except Exception:
        log.debug("OpenCode chat reconcile failed", exc_info=True)


def _chat_sync(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _begin_call(instance, tuple(args), kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if call is not None:
            _end_call(call, exc)
        raise
    if call is not None:
        _end_call(call, None)
    return result


async def _chat_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _begin_call(instance, tuple(args), kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except Exception as exc:
        if call is not None:
            await asyncio.to_thread(_end_call, call, exc)
        raise
    except BaseException as exc:  # cancelled: do not hold the task up
        if call is not None:
            threading.Thread(target=_end_call, args=(call, exc), daemon=True).start()
        raise
    if call is not None:
        await asyncio.to_thread(_end_call, call, None)
    return result


def install(patch: Patcher) -> None:
    """Patch ``session.chat`` (and ``session.prompt`` where the SDK has it), sync and async."""
    from opencode_ai.resources import session as resources

    module = resources.__name__
    for cls, wrapper in (("SessionResource", _chat_sync), ("AsyncSessionResource", _chat_async)):
        owner = getattr(resources, cls, None)
        for method in ("chat", "prompt"):
            if owner is not None and method in owner.__dict__:
                patch(module, f"{cls}.{method}", wrapper)
