"""The shared client: one store and one writer per process, created lazily, flushed at exit.

It also creates the schema on demand (``initialize_schema``: it needs a client), and resets the
shared client whenever the configuration changes (registered with ``config.on_change``).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import asdict, replace
from typing import Any

from ._log import guard, log
from .config import Settings, TursoConfig, get_settings, on_change
from .schema.migrations import SCHEMA_VERSION
from .schema.ops import Op
from .storage import Store, open_store
from .write import Writer, WriterStats


class TursoClient:
    """A database to log into: the store (SQL) behind a fire-and-forget writer."""

    def __init__(self, config: TursoConfig, settings: Settings | None = None) -> None:
        base = settings or get_settings()
        if base.config != config:
            base = replace(base, config=config)
        self.config = config
        self.settings = base
        self._read_store: Store | None = None
        self._read_lock = threading.Lock()
        self.writer = Writer(lambda: open_store(config, base), base)
        _live_clients.add(self)

    def enqueue(self, op: Op) -> bool:
        return self.writer.enqueue(op)

    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` for asyncio code: waits in a worker thread, not on the event loop."""
        import asyncio  # here: 40 ms of start-up that ``cpl`` and sync programs never need

        return await asyncio.to_thread(self.writer.flush, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        ok = self.writer.shutdown(timeout)
        with self._read_lock:
            if self._read_store is not None:
                self._read_store.close()
                self._read_store = None
        return ok

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def reader(self) -> Store:
        """A store for queries, separate from the writer's (its own connection or replica)."""
        with self._read_lock:
            if self._read_store is None:
                self._read_store = open_store(self.config, self.settings)
            return self._read_store

    def __repr__(self) -> str:
        return f"TursoClient({self.config!r})"


_live_clients: weakref.WeakSet[TursoClient] = weakref.WeakSet()


def _forget_readers_after_fork() -> None:
    """A forked child must not read through (and at exit remove) the parent's read replica, nor
    wait on a lock a parent thread held at the fork: it opens its own when it reads."""
    for client in list(_live_clients):
        client._read_store = None
        client._read_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_readers_after_fork)

_shared: TursoClient | None = None
_shared_lock = threading.Lock()
_shared_resolved = False


def get_turso_client() -> TursoClient | None:
    """The process's shared client, or ``None`` when logging is off. Cheap after the first call."""
    global _shared, _shared_resolved
    if _shared_resolved:
        return _shared
    with _shared_lock:
        if not _shared_resolved:
            settings = get_settings()
            if settings.config is not None:
                _shared = TursoClient(settings.config, settings)
            _shared_resolved = True
    return _shared


def _reset_shared_client() -> None:
    """After ``configure``: the next call builds a client from the new settings."""
    global _shared, _shared_resolved
    with _shared_lock:
        old, _shared, _shared_resolved = _shared, None, False
    if old is not None:
        old.shutdown()


on_change(_reset_shared_client)


def initialize_schema(client: TursoClient | None = None) -> int | None:
    """Create or upgrade the schema now (it also happens on first write); returns the version.

    ``None`` when logging is off. Raises ``SchemaVersionError`` for a database from the future.
    """
    client = client if client is not None else get_turso_client()
    if client is None:
        return None
    store = open_store(client.config, client.settings)
    try:
        store.initialize()
    finally:
        store.close()
    return SCHEMA_VERSION


def flush(timeout: float | None = 5.0) -> bool:
    """Wait until every event logged so far is in the database (pushed, in cloud mode)."""
    client = _shared if _shared_resolved else None
    return True if client is None else client.flush(timeout)


async def aflush(timeout: float | None = 5.0) -> bool:
    import asyncio  # see TursoClient.aflush

    return await asyncio.to_thread(flush, timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush, push and stop the writer; later log calls are dropped (and counted)."""
    client = _shared if _shared_resolved else None
    return True if client is None else client.shutdown(timeout)


def stats() -> dict[str, Any]:
    """Counters of the shared writer: enqueued, written, dropped, failed batches, pending, ..."""
    client = _shared if _shared_resolved else None
    if client is None:
        return {"enabled": False}
    return {"enabled": True, **asdict(client.stats())}


@atexit.register
def _flush_at_exit() -> None:
    client = _shared if _shared_resolved else None
    if client is not None:
        guard(_shutdown_and_report, client)


def _shutdown_and_report(client: TursoClient) -> None:
    if client.shutdown():
        return
    s = client.stats()
    error = f" (last error: {s.last_error})" if s.last_error else ""
    if s.pending:
        log.warning(
            "exiting with %d log event%s not written to %s%s",
            s.pending,
            "" if s.pending == 1 else "s",
            client.config.display,
            error,
        )
    elif client.config.is_remote:
        log.warning(
            "exiting with log events written to the local replica but not pushed yet to %s%s;"
            " the next process that logs (or `cpl sync`) pushes them",
            client.config.display,
            error,
        )
