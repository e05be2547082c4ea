"""Client-side ids: unique across processes, and cheap enough for the hot path."""

from __future__ import annotations

import itertools
import os
import uuid

_prefix = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def new_id() -> str:
    """A random per-process prefix plus a counter: no syscall, no lock (``next`` is atomic)."""
    return f"{_prefix}{next(_counter):08x}"


def new_session_id() -> str:
    return str(uuid.uuid4())


def _after_fork() -> None:
    global _prefix, _counter
    _prefix = uuid.uuid4().hex[:16]
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
