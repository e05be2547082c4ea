"""A transparent async-iterator proxy that lets a logged session observe an SDK stream.

The caller gets the very same objects in the same order; ``asend``/``athrow``/``aclose``, early
``break`` and cancellation behave as without it. Observation never raises into the caller.

How a stream that its consumer abandons still gets an end (``watch_task=True``, used for the
session a ``query()`` creates for itself):

* the consumer's task is cancelled or fails: a done-callback on that task ends it with
  ``"cancelled"`` or the task's exception. This covers an exception kept alive by its caller
  (``pytest.raises``, ``gather(return_exceptions=True)``), whose traceback keeps the proxy from
  being collected. A task that returns normally ends nothing: a stream it handed to another task
  is still being read, one it dropped has already ended;
* the proxy is garbage collected first (``break`` without ``aclose``): it ends then, as
  ``"closed"`` (or ``"cancelled"`` while its task is being cancelled). The SDK's ``query()``
  generator holds this proxy, and asyncio closes a dropped generator in a task of its own, so
  when the consumer's task fails the done-callback has usually reported why by then.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any

import wrapt

from .._log import guard, log

Outcome = BaseException | str | None
Observer = Callable[[Any], None]
Finisher = Callable[[Outcome], None]


def task_outcome(task: asyncio.Future[Any]) -> Outcome:
    """Why a finished task ended, read without marking its exception as retrieved (asyncio's
    "exception was never retrieved" warning must stay exactly as it would be without us)."""
    if task.cancelled():
        return "cancelled"
    exc = getattr(task, "_exception", None)
    return exc if isinstance(exc, BaseException) else "closed"


def _cancelling(task: asyncio.Task[Any]) -> bool:
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    try:
        return bool(cancelling()) if cancelling is not None else False
    except Exception:
        return False


class StreamEnd:
    """The end of one tracked stream, reported to ``finish`` exactly once.

    Shared by the proxy and the task callback; it never references the proxy, so the proxy can
    still be collected (and end the session) while its task runs on.
    """

    __slots__ = ("__weakref__", "_finish", "_lock", "_task", "done")

    def __init__(self, finish: Finisher) -> None:
        self._finish = finish
        self._lock = threading.Lock()
        self._task: weakref.ref[asyncio.Task[Any]] | None = None
        self.done = False

    def end(self, outcome: Outcome) -> None:
        with self._lock:
            if self.done:
                return
            self.done = True
            task_ref, self._task = self._task, None
        task = task_ref() if task_ref is not None else None
        if task is not None:
            try:  # a long-lived task must not collect one callback per finished stream
                task.remove_done_callback(self._on_task_done)
            except Exception:
                log.debug("cannot detach", exc_info=True)
        guard(self._finish, outcome)

    def watch_current_task(self) -> None:
        """End with the consumer's task if the stream has not ended by then. Called on every
        step, so a stream handed to another task follows its new consumer."""
        if self.done:
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            return
        old = self._task() if self._task is not None else None
        if task is None or task is old:
            return
        if old is not None:
            old.remove_done_callback(self._on_task_done)
        self._task = weakref.ref(task)
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        outcome = task_outcome(task)
        if outcome == "closed":
            # Returned normally: its frames are gone, so a stream it dropped has ended already
            # (``dropped``); one it handed on is still being read elsewhere.
            self._task = None
            return
        self.end(outcome)

    def dropped(self) -> None:
        """The proxy was collected before the stream ended: its consumer let go of it."""
        if self.done:
            return
        task = self._task() if self._task is not None else None
        if task is not None and task.done():
            self.end(task_outcome(task))
        elif task is not None and _cancelling(task):
            self.end("cancelled")
        else:
            self.end("closed")


class TrackedStream(wrapt.ObjectProxy):  # type: ignore[misc, type-arg]
    """Proxy over an async iterator/generator: every item goes to ``observe``; the end (normal,
    error, cancellation, ``aclose``, the consumer's task ending, or garbage collection) goes to
    ``finish`` exactly once."""

    def __init__(
        self, wrapped: Any, observe: Observer, finish: Finisher, *, watch_task: bool = False
    ) -> None:
        super().__init__(wrapped)
        self._self_observe = observe
        self._self_ending = StreamEnd(finish)
        self._self_watch_task = watch_task
        self._self_iter: Any = None

    def _self_end(self, outcome: Outcome) -> None:
        self._self_ending.end(outcome)

    def _self_target(self) -> Any:
        if self._self_iter is None:
            wrapped = self.__wrapped__
            self._self_iter = wrapped if hasattr(wrapped, "__anext__") else wrapped.__aiter__()
        return self._self_iter

    async def _self_step(self, coro: Any) -> Any:
        if self._self_watch_task:
            self._self_ending.watch_current_task()
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
        guard(self._self_observe, item)
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
        ending = getattr(self, "_self_ending", None)
        if ending is not None and not ending.done:
            ending.dropped()
