"""A transparent async-iterator proxy that lets a logged session observe an SDK stream.

The caller gets the very same objects in the same order; ``asend``/``athrow``/``aclose``, early
``break`` and cancellation behave as without it. Observation never raises into the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import wrapt

log = logging.getLogger("claude_parallel_logging")

Observer = Callable[[Any], None]
Finisher = Callable[[BaseException | str | None], None]


def _safe(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # logging must never break the agent
        log.debug("claude-parallel-logging: observer failed", exc_info=True)


class TrackedStream(wrapt.ObjectProxy):  # type: ignore[misc, type-arg]
    """Proxy over an async iterator/generator: every item goes to ``observe``; the end (normal,
    error, cancellation, ``aclose`` or garbage collection) goes to ``finish`` exactly once."""

    def __init__(self, wrapped: Any, observe: Observer, finish: Finisher) -> None:
        super().__init__(wrapped)
        self._self_observe = observe
        self._self_finish = finish
        self._self_done = False
        self._self_iter: Any = None

    def _self_end(self, outcome: BaseException | str | None) -> None:
        if not self._self_done:
            self._self_done = True
            _safe(self._self_finish, outcome)

    def _self_target(self) -> Any:
        if self._self_iter is None:
            wrapped = self.__wrapped__
            self._self_iter = wrapped if hasattr(wrapped, "__anext__") else wrapped.__aiter__()
        return self._self_iter

    async def _self_step(self, coro: Any) -> Any:
        try:
            item = await coro
        except StopAsyncIteration:
            self._self_end(None)
            raise
        except asyncio.CancelledError:
            self._self_end("cancelled")
            raise
        except GeneratorExit:
            self._self_end("closed")
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        _safe(self._self_observe, item)
        return item

    def __aiter__(self) -> TrackedStream:
        return self

    def __anext__(self) -> Any:
        return self._self_step(self._self_target().__anext__())

    def asend(self, value: Any) -> Any:
        return self._self_step(self.__wrapped__.asend(value))

    def athrow(self, *args: Any) -> Any:
        return self._self_step(self.__wrapped__.athrow(*args))

    async def aclose(self) -> None:
        try:
            closer = getattr(self._self_target(), "aclose", None)
            if closer is not None:
                await closer()
        finally:
            self._self_end("closed")

    def __del__(self) -> None:
        # A consumer that broke out of its loop and dropped the stream: end the session anyway.
        if not self._self_done:
            self._self_end("closed")
