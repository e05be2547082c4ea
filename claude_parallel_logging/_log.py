"""The package's one internal logger, its rate limit, and its one never-raise guard.

Every message goes through ``log`` (the ``claude_parallel_logging`` logger), which adds the
``claude-parallel-logging: `` prefix, so no call site types it. Logging code that runs on the
agent's path runs inside ``guard``: a failure there is logged at debug level and never reaches
the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

PREFIX = "claude-parallel-logging: "
WARN_EVERY = 30.0  # seconds between two warnings of the same kind

T = TypeVar("T")


class _Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{PREFIX}{msg}", kwargs


log = _Prefixed(logging.getLogger("claude_parallel_logging"), {})


def guard(fn: Callable[..., T], *args: Any) -> T | None:
    """Run logging code for the agent's path: a failure is logged at debug level, never raised."""
    try:
        return fn(*args)
    except Exception:  # logging must never break the agent
        log.debug("%s failed", getattr(fn, "__qualname__", fn), exc_info=True)
        return None


class RateLimitedWarning:
    """``warn(key, msg, *args)`` logs a warning at most once every ``every`` seconds per key."""

    def __init__(self, every: float = WARN_EVERY) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self._every:
                return
            self._last[key] = now
        log.warning(msg, *args)
