"""``instrument()`` / ``uninstrument()``: the registry of our wrapt patches, applied and restored.

It knows no SDK: each integration is a module named by a dotted string in ``INTEGRATIONS``
(imported only when its SDK is installed) whose ``install(patch)`` applies its patch table
through :func:`patch`. Claude: ``integrations/claude``; OpenCode: ``integrations/opencode/patches``.

Our patches are recognised by their own wrapper type, so a foreign wrapt patch of the same
attribute is wrapped (and restored) rather than mistaken for ours, and ours is never stacked.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wrapt

from .._log import log
from .settings import agent_types

# (the SDK's module, the integration module whose ``install(patch)`` patches it)
INTEGRATIONS: tuple[tuple[str, str], ...] = (
    ("claude_agent_sdk", "claude_parallel_logging.integrations.claude"),
    ("opencode_ai", "claude_parallel_logging.integrations.opencode.patches"),
)

Patcher = Callable[[str, str, Callable[..., Any]], None]
"""``patch(module, "Owner.attribute", wrapper)``: what an integration's ``install`` is given."""


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


def patch(module: str, path: str, wrapper: Callable[..., Any]) -> None:
    """Wrap ``module.path`` with ``wrapper`` (a wrapt wrapper), remembering the original."""
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
    ours = _Patch(current, wrapper, enabled=switch)
    ours._self_cpl_switch = switch
    setattr(owner, attr, ours)
    _patches.append(_Applied(owner, attr, current, ours))


def instrument(agent_type: str = "claude", *, opencode_agent_type: str = "opencode") -> list[str]:
    """Patch the installed SDKs so every call is logged; idempotent. Returns what was patched.

    Inside ``logged_session``/``@logged`` calls attach to that session; outside, each
    ``query()`` (or each ``ClaudeSDKClient``, or each OpenCode session) gets its own session.
    """
    with _lock:
        agent_types.claude = agent_type
        agent_types.opencode = opencode_agent_type
        if _patches:
            owners = {getattr(a.owner, "__module__", None) or a.owner.__name__ for a in _patches}
            return sorted({name.split(".")[0] for name in owners})
        done: list[str] = []
        for sdk, integration in INTEGRATIONS:
            try:
                importlib.import_module(sdk)
            except ImportError:
                continue
            try:
                importlib.import_module(integration).install(patch)
                done.append(sdk)
            except Exception:
                log.warning("cannot instrument %s", sdk, exc_info=True)
        return done


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
    """Whether our patches are applied (``instrument()`` ran and no ``uninstrument()`` since)."""
    return bool(_patches)


def instrument_if_available() -> None:
    """Patch the SDKs unless done already, keeping the agent types last given to ``instrument()``."""
    if not _patches:
        instrument(agent_types.claude, opencode_agent_type=agent_types.opencode)
