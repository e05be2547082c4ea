"""Cloud mode: a local replica per process, pushed to Turso Cloud (or ``tursodb --sync-server``).

The writer only ever writes to its replica (it never waits for the network); a push thread sends
what was committed, and a replica left behind by a dead process is pushed by the next one, then
removed (``replicas.py`` names, lists and opens them).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._log import log
from ..config import Settings, TursoConfig
from ..errors import SchemaVersionError
from ..schema.migrations import SCHEMA_VERSION
from .base import PushCallback, Store, is_lock_error
from .hrana import RemoteConnection
from .reader import ReadSlot, open_slot, read_slot, shared_read_replicas
from .remote import pull_and_compact, remote_schema_version, timed_push
from .replicas import (
    LIVE_REPLICAS,
    PUSH_BATCH,
    list_replicas,
    new_tag,
    open_replica,
    owned_by_another_live_process,
    pid_alive,
    remove_replica,
    replica_dir,
    replica_path,
)

_BUSY_RETRY_CAP = 0.05  # the longest wait between two pushes of a busy replica
_YIELD_WAIT = 0.25  # the longest a writer waits between two batches for a push that met it
# What every read asks first (``schema.migrations.current_version``): sent with the size probe
# of a remote read, so that it costs no round trip of its own.
_SCHEMA_PROBE: tuple[tuple[str, tuple[()]], ...] = (
    ("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'", ()),
    ("SELECT MAX(version) FROM schema_version", ()),
)


def megabytes(n: int) -> str:
    """A size for people: ``0.26 MB``, ``71.4 MB``, ``5,120 MB``."""
    mb = n / 1e6
    return f"{mb:,.2f} MB" if mb < 10 else f"{mb:,.1f} MB" if mb < 100 else f"{mb:,.0f} MB"


class CloudStore(Store):
    """A local replica per process, pushed to Turso Cloud (or ``tursodb --sync-server``).

    Two connections share the replica file: the writer thread's, which only writes (it never waits
    for the network), and a push thread's, which pushes what the other committed. The push thread
    starts with the first write; it first learns the remote's schema version (refusing a newer
    one), then pushes replicas left by dead processes, then serves ``request_push``.
    """

    mode = "cloud"
    # Seconds an HTTP request may wait for the remote (per socket operation) before it is given up
    # and retried later.
    network_timeout = 15.0
    # How long the first write waits to learn the remote's schema version; if the remote does not
    # answer by then, rows go to the replica anyway and are not pushed until it does.
    schema_wait = 2.0
    # Changes per push request (see replicas.PUSH_BATCH).
    push_batch = PUSH_BATCH
    # Seconds a push keeps retrying while the replica is busy (see ``_push_replica``).
    busy_timeout = 10.0

    def __init__(self, config: TursoConfig, settings: Settings) -> None:
        super().__init__(settings)
        self.config = config
        self.dir = replica_dir(config, settings)
        self._tag = new_tag()
        self.path = replica_path(self.dir, "w", self._tag)
        self._conn: Any = None  # the writer thread's
        self._push_conn: Any = None  # the push thread's
        self.last_read_path: str | None = None  # the read replica of the last read
        self.last_pull_bytes: int | None = None  # what its pull downloaded (None: unknown)
        self.last_read_remote = False  # the last read was answered on the remote
        self.remote_reads = 0  # reads answered on the remote so far
        self.remote_bytes = 0  # what they received
        self.remote_requests = 0  # their round trips
        self.remote_size: int | None = None  # the remote's size when last asked (bytes)
        self._read_lock = threading.Lock()
        self._push_idle = threading.Event()  # cleared while a push waits for the writer
        self._push_idle.set()
        self._stale_done = False
        # Push thread state.
        self._push_lock = threading.Lock()
        self._push_wanted = threading.Event()
        self._push_waiters: list[PushCallback] = []
        self._pusher: threading.Thread | None = None
        self._closing = False
        self._finished = threading.Event()
        self._final_ok = False
        self.last_error: BaseException | None = None
        # What we know of the remote.
        self._probed = threading.Event()
        self._remote_version: int | None = None
        self._refused: SchemaVersionError | None = None

    def _open(self, path: str) -> Any:
        return open_replica(self.config, path, self.push_batch)

    # ----- writer thread ----------------------------------------------------------------------

    def _writer_conn(self) -> Any:
        if self._refused is not None:
            raise self._refused
        if self._conn is None:
            self._start_pusher()
            self._probed.wait(self.schema_wait)
            if self._refused is not None:
                raise self._refused
            os.makedirs(self.dir, exist_ok=True)
            LIVE_REPLICAS.add(self.path)
            conn = self._open(self.path)
            try:
                self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write(self, apply: Callable[[Any], None] | None) -> None:
        conn = self._writer_conn()
        if apply is not None:
            try:
                apply(conn)
            except BaseException:
                del conn
                self._drop_writer_conn()  # state unknown after a failure: start afresh
                raise

    def _drop_writer_conn(self) -> None:
        """The next write opens a fresh connection to the replica (it costs ~1 ms)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def run(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self._writer_conn())

    def request_push(self, done: PushCallback | None = None) -> bool:
        """Ask for a push of everything written so far; returns at once.

        ``done(error)`` runs on the push thread when a push that started after this call ends
        (``error`` is ``None`` on success).
        """
        with self._push_lock:
            closed = self._closing
            if not closed and done is not None:
                self._push_waiters.append(done)
        if closed:
            if done is not None:
                done(RuntimeError("the store is closed"))
            return True
        self._start_pusher()
        self._push_wanted.set()
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Push what is left, waiting at most ``timeout`` (default ``shutdown_timeout``).

        True once the remote has everything; then our replica is removed. Otherwise the push
        thread keeps trying until its current attempt ends, and the replica stays for the next
        process (or ``cpl sync``) to push.
        """
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        wrote = self._conn is not None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None  # pyturso frees the file lock with the object
        with self._push_lock:
            self._closing = True
            running = self._pusher is not None
        ok = True
        if running:
            self._push_wanted.set()
            if wrote:
                ok = self._finished.wait(max(0.0, timeout)) and self._final_ok
        elif wrote:  # cannot happen (the first write starts the push thread): keep the replica
            ok = False
        if wrote and not ok:
            log.warning(
                "the final push has not finished (%s); %s keeps the rows "
                "and the next process (or `cpl sync`) will push them",
                self.redact(str(self.last_error or "the remote did not answer in time")),
                self.path,
            )
        return ok

    # ----- push thread ------------------------------------------------------------------------

    def _start_pusher(self) -> None:
        with self._push_lock:
            if self._pusher is not None or self._closing:
                return
            thread = threading.Thread(
                target=self._push_loop, name="claude-parallel-logging-push", daemon=True
            )
            self._pusher = thread
        thread.start()

    def _push_loop(self) -> None:
        try:
            self._startup()
            for _ in range(100_000_000):  # ~3 years of idle seconds
                self._push_wanted.wait(1.0)
                with self._push_lock:
                    self._push_wanted.clear()
                    waiters, self._push_waiters = self._push_waiters, []
                    closing = self._closing
                if waiters or closing:
                    error = self._push_once(recover=not closing)
                    for done in waiters:
                        try:
                            done(error)
                        except Exception:
                            log.debug("push callback", exc_info=True)
                    if closing:
                        self._finish(error)
                        return
        except BaseException:  # never let the thread die silently
            log.exception("push thread stopped unexpectedly")
        finally:
            with self._push_lock:
                waiters, self._push_waiters = self._push_waiters, []
            for done in waiters:
                done(RuntimeError("the push thread stopped"))
            self._finished.set()

    def _startup(self) -> None:
        """Before any push: the remote's schema version, then replicas of dead processes."""
        try:
            self._check_remote()
        except Exception as exc:
            self.last_error = exc
            self._report(exc)  # as a failed push: the writer counts it and warns
            return
        self._recover_stale_quietly()

    def _report(self, error: BaseException | None) -> None:
        if self.on_push is not None:
            try:
                self.on_push(error)
            except Exception:
                log.debug("push listener failed", exc_info=True)

    def _check_remote(self) -> None:
        """Raise ``SchemaVersionError`` when the remote was written by a newer version."""
        if self._refused is not None:
            raise self._refused
        if self._remote_version is None:
            try:
                found = remote_schema_version(self.config, self.network_timeout)
            finally:
                self._probed.set()
            if found > SCHEMA_VERSION:
                self._refused = SchemaVersionError(
                    f"remote database schema version {found} is newer than this "
                    f"claude-parallel-logging understands ({SCHEMA_VERSION}); upgrade the "
                    "package. Nothing is written to it."
                )
                raise self._refused
            self._remote_version = found

    def _push_once(self, recover: bool = True) -> BaseException | None:
        """Push our replica (if it exists); then retry dead processes' replicas if some are left."""
        error: BaseException | None = None
        if os.path.exists(self.path):
            error = self._push_replica()
            self._report(error)
        if error is None and recover and not self._stale_done:
            self._recover_stale_quietly()
        return error

    def _push_replica(self) -> BaseException | None:
        """Push our replica; a busy replica (the writer is committing) is retried, not failed.

        The push takes the replica's write lock for a moment, so it meets the writer's
        transactions now and then (``database is busy``): that is contention, so it is retried
        with a short, growing, jittered backoff for up to ``busy_timeout`` seconds.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.002
        try:
            for _ in range(100_000):  # bounded by the deadline long before
                try:
                    self._check_remote()
                    if self._push_conn is None:
                        self._push_conn = self._open(self.path)
                    timed_push(self._push_conn, self.network_timeout)
                    return None
                except Exception as exc:
                    self._drop_push_conn()  # a fresh one next time, whatever state it is in
                    if not is_lock_error(exc) or time.monotonic() + delay >= deadline:
                        self.last_error = exc
                        return exc
                self._push_idle.clear()  # the writer waits for us between its batches
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, _BUSY_RETRY_CAP)
            return TimeoutError("the replica stayed busy")
        finally:
            self._push_idle.set()

    def yield_to_push(self) -> None:
        """A writer with a backlog commits batch after batch, and a push retrying on a busy
        replica keeps missing the gaps: the remote would get nothing until the backlog is
        gone. So between batches the writer waits (a little) for a push that met it."""
        if not self._push_idle.is_set():
            self._push_idle.wait(_YIELD_WAIT)

    def _drop_push_conn(self) -> None:
        conn, self._push_conn = self._push_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _recover_stale_quietly(self) -> None:
        try:
            self._stale_done = self.recover_stale()
        except Exception as exc:
            log.debug("replica recovery failed: %s",
                      self.redact(str(exc)))  # fmt: skip

    def _finish(self, error: BaseException | None) -> None:
        """Last act of the push thread: close its connection; remove the replica if all is pushed.

        The writer's connection is closed before ``close`` asks for this, so nothing new can
        appear in the replica after the check.
        """
        ok = False
        conn, self._push_conn = self._push_conn, None
        if error is None and conn is not None:
            try:
                ok = int(conn.stats().cdc_operations) == 0
            except Exception as exc:
                self.last_error = exc
        elif error is None:
            ok = not os.path.exists(self.path)  # never written
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
            del conn  # frees the file lock (see LocalStore.write)
        LIVE_REPLICAS.discard(self.path)
        if ok:
            remove_replica(self.path)
        self._final_ok = ok

    # ----- other processes' replicas, reads ---------------------------------------------------

    def recover_stale(self) -> bool:
        """Push replicas left by processes that died, then remove them. True when all done.

        Read replicas (``r-*``) hold nothing unpushed: a dead process's are simply removed. Nothing
        is pushed to a remote whose schema is newer than ours (``SchemaVersionError``).
        """
        for path in list_replicas(self.dir, "r"):
            if not pid_alive(path):
                remove_replica(path)
        all_done = True
        for path in list_replicas(self.dir, "w"):
            if path == self.path or path in LIVE_REPLICAS or owned_by_another_live_process(path):
                continue
            self._check_remote()
            try:
                conn = self._open(path)
            except Exception as exc:
                if not is_lock_error(exc):  # a live process holds it: not stale
                    all_done = False
                    log.debug("cannot open replica %s: %s",
                              path, self.redact(str(exc)))  # fmt: skip
                continue
            try:
                timed_push(conn, self.network_timeout)
            except Exception as exc:
                log.debug("stale replica push failed: %s",
                          self.redact(str(exc)))  # fmt: skip
                conn.close()
                if "network error" in str(exc):
                    return False  # the remote is unreachable: the others would fail the same way
                all_done = False
                continue
            conn.close()
            del conn
            remove_replica(path)
            log.info("pushed and removed replica left by %s", path)
        return all_done

    @contextmanager
    def read(self, *, allow_remote: bool = False) -> Iterator[Any]:
        """A read replica brought up to date by a pull (``reader.py``: shared between processes,
        so a pull fetches only what changed since the last read on this machine).

        It is opened without pyturso's bootstrap (a download with no timeout) and filled by a
        pull, which is bounded like every other request. ``allow_remote``: when no read replica
        on this machine holds the database yet and the remote is at least
        ``remote_read_threshold`` bytes, the read is answered on the remote instead
        (``hrana.py``), downloading only what its statements return.
        """
        remote = self._remote_reader() if allow_remote else None
        if remote is not None:
            self.last_read_remote, self.last_read_path, self.last_pull_bytes = True, None, 0
            try:
                yield remote
            finally:
                self.remote_reads += 1
                self.remote_bytes += remote.bytes_received
                self.remote_requests += remote.requests
                remote.close()
            return
        self.last_read_remote = False
        with self._read_lock, read_slot(self.dir) as slot:
            conn = self._open_read_slot(slot)
            try:
                self.last_read_path = slot.path
                self.last_pull_bytes = pull_and_compact(conn, self.network_timeout)
                yield conn
            finally:
                conn.close()
                del conn  # pyturso frees the file lock with the object

    def _remote_reader(self) -> RemoteConnection | None:
        """A connection answering on the remote, or ``None`` to read a replica: one is there
        already (it pulls only what changed), or the remote is small (pulling it all is cheap
        and makes later reads local), or it does not tell its size."""
        if shared_read_replicas(self.dir):
            return None
        conn = RemoteConnection(self.config, self.network_timeout)
        try:
            size = conn.database_size(_SCHEMA_PROBE)
        except BaseException:
            conn.close()
            raise
        self.remote_size = size
        if size is None or size < self.settings.remote_read_threshold:
            conn.close()
            return None
        return conn

    def read_note(self) -> str | None:
        if not self.remote_reads:
            return None
        size = "?" if self.remote_size is None else megabytes(self.remote_size)
        threshold = megabytes(self.settings.remote_read_threshold)
        return (
            f"answered on the remote ({megabytes(self.remote_bytes)} received): this machine"
            f" has no read replica of this {size} database (CPL_REMOTE_READ_THRESHOLD:"
            f" {threshold}); `cpl sync` downloads one, then reads are local and pull"
            " only what changed"
        )

    def describe_reads(self) -> str:
        if self.last_read_remote:
            return (
                "answered on the remote: no read replica on this machine, and the database"
                f" holds {megabytes(self.remote_size or 0)} (at least CPL_REMOTE_READ_THRESHOLD,"
                f" {megabytes(self.settings.remote_read_threshold)}); `cpl sync` downloads a"
                " replica, after which reads are local"
            )
        pulled = self.last_pull_bytes
        return (
            f"local read replica {os.path.basename(self.last_read_path or '?')}"
            + ("" if pulled is None else f" ({pulled:,} bytes pulled now)")
            + ": later reads pull only what changed"
        )

    def _open_read_slot(self, slot: ReadSlot) -> Any:
        try:
            return open_slot(slot, self._open)
        except Exception as exc:
            if not (slot.shared and is_lock_error(exc)):
                raise
        # Still held by a connection object of another process: read through a private copy.
        slot.release()
        slot.path, slot.shared = replica_path(self.dir, "r", new_tag()), False
        return self._open(slot.path)
