"""The background writer: the agent's thread only appends to a bounded queue.

A daemon thread takes batches off the queue and writes each as one transaction, retrying lock,
disk and network errors with backoff. Nothing accepted is dropped unless the queue is full (then
the drop is counted and warned about); a batch the database rejects as data is split so that only
the offending operation is discarded, and counted.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .._log import RateLimitedWarning, log
from ..config import Settings
from ..errors import SchemaVersionError
from ..redact import REDACTED
from ..schema.ops import Op
from ..storage.base import Store
from .batch import applier, compile_ops
from .values import ValueConverter

_DATA_ERRORS = ("IntegrityError", "ProgrammingError", "DataError", "InterfaceError")
_MAX_BACKOFF = 5.0
_MAX_PUSH_BACKOFF = 60.0
_CALL_LINGER = 0.02  # seconds the connection is kept after a ``call`` (see ``_linger``)

T = TypeVar("T")


class _BadData(Exception):
    """Internal: a batch could not even be turned into SQL; only splitting it can help."""


class FlushBarrier:
    """Placed in the queue by ``flush``: set once everything before it is written (and pushed)."""

    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = True


class _Call:
    """Placed in the queue by ``call``: a callable run on the writer thread with its store."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Store], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, store: Store) -> None:
        try:
            self.result = self.fn(store)
        except BaseException as exc:  # handed to the caller, never kills the writer
            self.error = exc
        self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


@dataclass(frozen=True)
class WriterStats:
    enqueued: int
    written: int
    dropped: int
    failed_batches: int
    discarded: int
    pending: int
    pushes: int
    push_failures: int
    last_error: str | None
    last_push_at: float | None


class Writer:
    """Bounded queue + one daemon thread. Thread-safe; never blocks or raises on ``enqueue``."""

    def __init__(self, store_factory: Callable[[], Store], settings: Settings) -> None:
        self._store_factory = store_factory
        self._settings = settings
        self._capacity = settings.queue_capacity
        self._batch_size = settings.batch_size
        self._interval = settings.flush_interval
        self._warn = RateLimitedWarning()
        self._converter: ValueConverter | None = None  # made with the store, kept after a fork
        self._init_state()
        _live_writers.add(self)

    def _init_state(self) -> None:
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._drop_lock = threading.Lock()
        # Held while the store's connection is in use; fork() waits for it (see _before_fork).
        self._io_lock = threading.Lock()
        self._forking = False
        self._thread: threading.Thread | None = None
        self._store: Store | None = None
        self._closed = False
        self._taken = 0
        self._written = 0
        self._dropped = 0
        self._failed_batches = 0
        self._discarded = 0
        self._pushes = 0
        self._push_failures = 0
        self._last_error: str | None = None
        self._last_push_at: float | None = None
        self._pushed_written = 0  # ``_written`` when the last successful push was asked for
        self._push_in_flight = False  # a periodic push was asked for and has not ended
        self._next_push = 0.0
        self._push_backoff = 0.0
        self._stop_deadline: float | None = None
        self._final_ok = False
        self._refused: SchemaVersionError | None = None
        self._dropped_before = 0  # ``dropped`` at the previous flush
        self._barriers_closed = False  # the writer thread has stopped reaching barriers
        self._last_call_at: float | None = None  # when the last ``call`` ended (see _linger)

    # ----- caller side (hot path) -------------------------------------------------------------

    def enqueue(self, op: Op) -> bool:
        """Hand one operation over. O(1), no lock on the common path, never raises."""
        q = self._queue
        if len(q) >= self._capacity or self._closed:
            self._drop()
            return False
        q.append(op)
        if self._thread is None:
            self._start()
        elif len(q) == self._batch_size:
            self._wake.set()
        return True

    def _drop(self) -> None:
        with self._drop_lock:
            self._dropped += 1
        self._warn(
            "drop",
            "queue full or writer closed (capacity %d); dropping log events (%d dropped so far)",
            self._capacity,
            self._dropped,
        )

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                t = threading.Thread(target=self._run, name="claude-parallel-logging-writer")
                t.daemon = True
                self._thread = t
                t.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged before this call is written (and pushed, in cloud mode).

        False on time-out, or when an event was dropped (queue full) or skipped (rejected as
        data) since the previous flush: then not everything that was logged is stored.
        """
        dropped = self._dropped
        lost = dropped != self._dropped_before
        self._dropped_before = dropped
        thread = self._thread
        if thread is None or not thread.is_alive():
            # Never started, or stopped (shut down): nothing will reach a barrier.
            return self._pending_count() == 0 and not lost and self._final_ok_or_idle()
        barrier = FlushBarrier()
        self._queue.append(barrier)
        self._wake.set()
        if self._barriers_closed:  # the thread stopped meanwhile: it will never reach the barrier
            self._fail_barriers()
        if not barrier.event.wait(timeout):
            return False
        return barrier.ok and not lost

    def call(self, fn: Callable[[Store], T], timeout: float | None = None) -> T:
        """Run ``fn(store)`` on the writer thread, after what is queued, and return its result.

        The store's connection is the writer's own, so other users of the database in this
        process (e.g. the session store) never contend with the writer for the file lock. The
        writer does not look at what ``fn`` does; an exception it raises is raised here.
        ``TimeoutError`` after ``timeout`` seconds (``fn`` may still run later).
        """
        item = _Call(fn)
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the writer is shut down")
        self._queue.append(item)
        if self._thread is None:
            self._start()
        self._wake.set()
        if self._barriers_closed:  # the thread stopped meanwhile: nobody will run it
            self._fail_barriers()
        if not item.done.wait(timeout):
            raise TimeoutError(f"the database writer did not run the call within {timeout} s")
        if item.error is not None:
            raise item.error
        result: T = item.result
        return result

    def _final_ok_or_idle(self) -> bool:
        return self._thread is None or self._final_ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Write what is queued, push, close the store; return within ``timeout``."""
        timeout = self._settings.shutdown_timeout if timeout is None else timeout
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return len(self._queue) == 0
        deadline = time.monotonic() + timeout
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        return not thread.is_alive() and self._final_ok

    def stats(self) -> WriterStats:
        return WriterStats(
            enqueued=self._taken + self._pending_count(),
            written=self._written,
            dropped=self._dropped,
            failed_batches=self._failed_batches,
            discarded=self._discarded,
            pending=self._unwritten(),
            pushes=self._pushes,
            push_failures=self._push_failures,
            last_error=self._last_error,
            last_push_at=self._last_push_at,
        )

    def _unwritten(self) -> int:
        """Events accepted and neither written nor skipped: queued, or in a batch being tried."""
        return self._pending_count() + (self._taken - self._written - self._discarded)

    def _pending_count(self) -> int:
        return sum(1 for item in list(self._queue) if not isinstance(item, (FlushBarrier, _Call)))

    @property
    def store(self) -> Store | None:
        return self._store

    # ----- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for _ in range(100_000_000):  # ~230 days at the default interval
                try:
                    self._wake.wait(self._interval)
                    self._wake.clear()
                    self._drain()
                    if self._linger():
                        continue  # more work came: the same connection writes it
                    self._release_store()  # idle now: other processes may have the file
                    self._maybe_push(force=False)
                    if self._stop.is_set():
                        self._drain()
                        # Events taken off the queue but not written count as well: the
                        # last batch may have been given up at the deadline.
                        self._final_ok = self._close_store() and self._unwritten() == 0
                        return
                except Exception as exc:  # a bug or a resource error: keep the writer alive
                    self._record_error(exc)
                    self._warn("loop", "writer error (%s)", exc)
                    self._stop.wait(0.5)
        except BaseException as exc:  # never let the thread die silently
            self._record_error(exc)
            log.exception("writer thread stopped unexpectedly")
        finally:
            self._barriers_closed = True  # first: a flush appending after this fails its own
            self._fail_barriers()  # a flush waiting for a barrier that will never be reached

    def _fail_barriers(self) -> None:
        for item in list(self._queue):
            if isinstance(item, FlushBarrier) and not item.event.is_set():
                item.ok = False
                item.event.set()
            elif isinstance(item, _Call):
                item.fail(RuntimeError("the database writer has stopped"))

    def _drain(self) -> None:
        q = self._queue
        for _ in range(1_000_000):  # bounded: ~1e9 events at the default batch size
            if not q:
                return
            ops: list[Op] = []
            barriers: list[FlushBarrier] = []
            call: _Call | None = None
            while q and len(ops) < self._batch_size:
                item = q.popleft()
                if isinstance(item, FlushBarrier):
                    barriers.append(item)
                    break
                if isinstance(item, _Call):
                    call = item
                    break
                ops.append(item)
            self._taken += len(ops)
            ok = self._write(ops) if ops else True
            # Not only when idle: under a sustained stream the queue never empties, and the
            # remote would get nothing until it did (a cheap check between two batches).
            self._maybe_push(force=False)
            if self._store is not None:
                self._store.yield_to_push()
            if call is not None:
                self._run_call(call)
            if barriers:
                self._release_store()  # whoever flushed is likely to read next
            for b in barriers:
                b.ok = ok and self._taken == self._written + self._discarded
                if not self._maybe_push(force=True, barrier=b):
                    b.event.set()  # else the push completes it
            if self._gave_up():
                return

    def _linger(self) -> bool:
        """After a ``call`` (the session store's ``append``), keep the connection up to
        ``_CALL_LINGER`` seconds for the next one; True when work came meanwhile.

        Appends come in bursts (the SDK's eager mode, a batch per message; a resume writing
        back): a burst then opens the file and closes it (a checkpoint) once, not per call,
        which halves a 500-entry append. Other processes wait at most that long more."""
        since, self._last_call_at = self._last_call_at, None
        if since is None or self._stop.is_set():
            return False
        if not self._queue and not self._wake.wait(
            max(0.0, since + _CALL_LINGER - time.monotonic())
        ):
            return False
        self._wake.set()  # the loop drains at once
        return not self._stop.is_set()

    def _run_call(self, call: _Call) -> None:
        try:
            store = self._get_store()
        except BaseException as exc:
            call.fail(exc)
            return
        with self._io_lock:
            call.run(store)
        self._last_call_at = time.monotonic()

    def _gave_up(self) -> bool:
        return self._stop_deadline is not None and time.monotonic() >= self._stop_deadline

    def _get_store(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _values(self) -> ValueConverter:
        if self._converter is None:
            self._converter = ValueConverter(self._settings)
        return self._converter

    def _write(self, ops: Sequence[Op]) -> bool:
        """Write one batch; retries until written, split on data errors, or shutdown gives up."""
        backoff = 0.05
        for _ in range(10_000_000):
            if self._gave_up() or self._refused is not None:
                return False
            try:
                store = self._get_store()
                try:
                    compiled = compile_ops(ops, self._values())
                except Exception as exc:  # the data itself: retrying cannot help
                    raise _BadData(exc) from exc
                with self._io_lock:
                    store.write(applier(compiled))
                self._written += len(ops)
                return True
            except _BadData as bad:
                self._failed_batches += 1
                self._record_error(bad.__cause__ or bad)
                return self._write_one_by_one(ops)
            except SchemaVersionError as exc:
                # Retrying cannot help: this database belongs to a newer version. Keep the
                # events counted as pending and write nothing.
                self._failed_batches += 1
                self._record_error(exc)
                self._refused = exc
                log.error("%s", exc)
                return False
            except Exception as exc:
                self._failed_batches += 1
                self._record_error(exc)
                if type(exc).__name__ in _DATA_ERRORS or isinstance(exc, (TypeError, ValueError)):
                    return self._write_one_by_one(ops)
                self._warn(
                    "write",
                    "cannot write to the database %s yet (%s); retrying, %d events waiting",
                    self._where(),
                    self._last_error,
                    len(ops) + self._pending_count(),
                )
            if self._gave_up():
                return False
            wait = backoff
            if self._stop_deadline is not None:
                wait = min(wait, max(0.0, self._stop_deadline - time.monotonic()))
            if self._stop.is_set():
                time.sleep(min(wait, 0.05))
            else:
                self._stop.wait(wait)
            backoff = min(backoff * 2, _MAX_BACKOFF)
        return False

    def _write_one_by_one(self, ops: Sequence[Op]) -> bool:
        if len(ops) == 1:
            self._discarded += 1
            self._warn(
                "discard",
                "the database rejected a log event (%s); it was skipped",
                self._last_error,
            )
            return False
        ok = True
        for op in ops:
            ok = self._write([op]) and ok
        return ok

    def _maybe_push(self, force: bool, barrier: FlushBarrier | None = None) -> bool:
        """Ask for a push (cloud mode) every ``push_interval``, and for each flush barrier.

        The push runs on the store's push thread (``Store.request_push``): the writer never
        waits for the network, so rows keep reaching the local replica whatever the remote does.
        Returns True when a push was asked for; the barrier given, if any, is then completed by
        it. A store with nothing to push to (local mode) declines: then False.
        """
        store = self._store
        if store is None:
            return False
        if not force and (
            self._push_in_flight
            or self._written <= self._pushed_written
            or time.monotonic() < self._next_push
        ):
            return False
        if store.on_push is None:
            store.on_push = self._push_attempted
        written = self._written
        if barrier is None:
            self._push_in_flight = True

        def done(error: BaseException | None) -> None:  # on the push thread
            if error is None and written > self._pushed_written:
                self._pushed_written = written
            if barrier is None:
                self._push_in_flight = False
            else:
                barrier.ok = barrier.ok and error is None
                barrier.event.set()

        if store.request_push(done):
            return True
        if barrier is None:
            self._push_in_flight = False
        return False

    def _push_attempted(self, error: BaseException | None) -> None:
        """Told by the push thread of every push of our replica: counters and retry schedule."""
        now = time.monotonic()
        if error is None:
            self._pushes += 1
            self._push_backoff = 0.0
            self._last_push_at = time.time()
            self._next_push = now + self._settings.push_interval
            return
        self._push_failures += 1
        self._record_error(error)
        self._push_backoff = min(
            max(self._push_backoff * 2, self._settings.push_interval), _MAX_PUSH_BACKOFF
        )
        self._next_push = now + self._push_backoff
        if isinstance(error, SchemaVersionError):  # the store refuses to push: nothing to retry
            self._warn("refused", "%s", self._last_error)
            return
        self._warn(
            "push",
            "push to the remote failed (%s); rows are safe in the "
            "local replica and will be pushed later",
            self._last_error,
        )

    def _release_store(self) -> None:
        store = self._store
        if store is not None:
            try:
                with self._io_lock:
                    store.release()
            except Exception as exc:
                self._record_error(exc)

    def _close_store(self) -> bool:
        store = self._store
        if store is None:
            return True
        try:  # cloud mode waits for the final push until shutdown's deadline
            deadline = self._stop_deadline
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return store.close(left)
        except Exception as exc:
            self._record_error(exc)
            return False

    def _where(self) -> str:
        """The database, as messages name it: its path, or its URL without credentials."""
        config = self._settings.config
        return config.display if config is not None else "(none configured)"

    def _record_error(self, exc: BaseException) -> None:
        store = self._store
        text = f"{type(exc).__name__}: {exc}"
        if store is not None:
            text = store.redact(text)
        else:
            token = self._settings.config.auth_token if self._settings.config else None
            if token:
                text = text.replace(token, REDACTED)
        self._last_error = text[:500]

    # ----- fork -------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """The child starts empty: what the parent had queued is the parent's to write.

        The parent's store, and the connection it may hold, are dropped: pyturso's file lock is a
        POSIX lock, which belongs to the process that took it, so the child neither holds it nor
        can release it, and keeping the inherited connection would only block the child's own.
        """
        self._init_state()


_live_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


_FORK_WAIT = 5.0  # seconds fork() waits for a writer to finish its batch


def _before_fork() -> None:
    """fork() while the writer is inside pyturso would copy its state mid-operation into the
    child (a database the child then cannot open): wait for the batch, close the connection."""
    for w in list(_live_writers):
        if w._io_lock.acquire(timeout=_FORK_WAIT):
            w._forking = True
            store = w._store
            if store is not None:
                try:
                    store.release()
                except Exception:
                    pass


def _after_fork_in_parent() -> None:
    for w in list(_live_writers):
        if getattr(w, "_forking", False):
            w._forking = False
            w._io_lock.release()


def _reset_writers_after_fork() -> None:
    for w in list(_live_writers):
        w._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_reset_writers_after_fork,
    )
