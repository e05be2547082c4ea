"""``TursoSessionStore``: the Claude Agent SDK's ``SessionStore`` in this package's database.

The SDK mirrors every session transcript to it (``ClaudeAgentOptions(session_store=...)``) and
resumes, forks and lists sessions from it, so a session started on one machine resumes on
another through Turso Cloud.

Every statement runs on the logger's writer thread with the writer's connection
(``Writer.call``): the store and the logger of one process never contend for the file lock, and
nothing runs on the event loop. ``append`` returns once the entries are durable where another
machine can load them: committed to the file (local mode), or committed to the replica and
pushed (cloud mode; if the push fails, it raises and the entries stay in the replica, pushed
later). Reads in cloud mode pull first, through the client's read replica.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar, cast

from claude_agent_sdk import fold_session_summary
from claude_agent_sdk.types import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
)

from ...client import TursoClient, get_turso_client
from ...config import TursoConfig, configuration_problem, get_settings
from ...errors import DatabaseUnavailable, LoggingNotConfigured
from ...schema.migrations import current_version
from ...storage import transcripts as sql
from ...storage.base import Store
from ...transaction import transaction

T = TypeVar("T")

_Key = tuple[str, str, str]


def _key(key: SessionKey | SessionListSubkeysKey) -> _Key:
    subpath = key.get("subpath") or sql.MAIN
    return (str(key["project_key"]), str(key["session_id"]), str(subpath))


class TursoSessionStore:
    """A ``SessionStore`` (claude-agent-sdk >= 0.2.189) in the configured Turso database.

    ``TursoSessionStore()`` uses the database logging is configured with (``TURSO_DATABASE_URL``
    / ``configure``) and its writer; ``TursoSessionStore(database_url=..., auth_token=...)``
    another database, with a client of its own (closed by ``close()`` or at exit).
    ``timeout``: seconds an ``append`` (write and push) or a read may take before it raises.
    """

    def __init__(
        self,
        database_url: str | None = None,
        auth_token: str | None = None,
        *,
        client: TursoClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._owned = False
        if client is None and database_url is not None:
            client = TursoClient(TursoConfig(url=database_url, auth_token=auth_token))
            self._owned = True
            _owned_clients.add(client)
        elif client is None:
            client = get_turso_client()
            if client is None:
                raise LoggingNotConfigured(configuration_problem())
        self.client = client
        self.timeout = timeout
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        self._tag = uuid.uuid4().hex[:16] + "-"  # in the ids of entries without uuid
        # Keys this store appended to (cloud mode): its writer replica holds their latest
        # ``seq`` and, for a main key, the latest fold of the summary.
        self._seen: set[_Key] = set()

    def __repr__(self) -> str:
        return f"TursoSessionStore({self.client.config!r})"

    @property
    def _cloud(self) -> bool:
        return self.client.config.is_remote

    # ----- the SessionStore protocol ----------------------------------------------------------

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Store ``entries`` after the key's earlier ones; a ``uuid`` already stored under the
        key is skipped (the SDK retries failed batches). Returns once durable (see module)."""
        if not entries:
            return
        await asyncio.to_thread(self._append, _key(key), list(entries))

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        texts = await asyncio.to_thread(self._read, lambda c: sql.select_entries(c, _key(key)), [])
        if not texts:
            return None
        return await asyncio.to_thread(sql.decode_entries, texts)

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        rows = await asyncio.to_thread(self._read, lambda c: sql.list_sessions(c, project_key), [])
        return [{"session_id": s, "mtime": m} for s, m in rows]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        rows = await asyncio.to_thread(self._read, lambda c: sql.list_summaries(c, project_key), [])
        return [
            {"session_id": r["session_id"], "mtime": r["mtime"], "data": r["data"]} for r in rows
        ]

    async def delete(self, key: SessionKey) -> None:
        """A main key takes its subagent transcripts and summary with it."""
        project_key, session_id, subpath = _key(key)
        elsewhere: list[sql.RowRef] | None = None
        if self._cloud:  # what other machines pushed, to be deleted as well (see delete_key)
            elsewhere = await asyncio.to_thread(
                self._read, lambda c: sql.rows_of(c, project_key, session_id, subpath or None), []
            )

        def delete(conn: Any) -> None:
            sql.delete_key(conn, project_key, session_id, subpath or None, elsewhere)

        await asyncio.to_thread(self._write, delete)
        self._seen = {k for k in self._seen if k[:2] != (project_key, session_id)}

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        project_key, session_id, _ = _key(key)
        return await asyncio.to_thread(
            self._read, lambda c: sql.list_subkeys(c, project_key, session_id), []
        )

    # ----- lifetime ---------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Stop the client this store created (pushes what is left); the shared one stays."""
        if not self._owned:
            return True
        _owned_clients.discard(self.client)
        return self.client.shutdown(timeout)

    async def aclose(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.close, timeout)

    # ----- off the event loop -----------------------------------------------------------------

    def _append(self, key: _Key, entries: list[Any]) -> None:
        texts = [sql.encode_entry(e) for e in entries]  # fails loudly, before any write
        project_key, session_id, subpath = key
        main = subpath == sql.MAIN
        remote_prev: dict[str, Any] | None = None
        remote_seq = 0
        fold = main
        known = True  # what the remote holds under the key is known (or irrelevant)
        if self._cloud and key not in self._seen:
            # The writer's replica holds only what this process wrote. What other machines
            # pushed under the key comes first: new entries get a ``seq`` after theirs (a
            # session resumed here sorts after its history whatever the clocks say), and the
            # summary is folded onto theirs. If the remote cannot be read, the entries are
            # still stored (then the push fails and raises) without a fold: a summary older
            # than its session is one the SDK re-reads.
            nothing: tuple[dict[str, Any] | None, int] = (None, 0)
            try:
                remote_prev, remote_seq = self._read(
                    lambda c: (
                        sql.select_summary(c, project_key, session_id) if main else None,
                        sql.max_seq(c, key),
                    ),
                    nothing,
                )
            except Exception:
                fold = known = False

        def write(conn: Any) -> None:
            mtime = sql.now_ms()
            with self._seq_lock:
                min_seq = max(self._last_seq + 1, remote_seq + 1, time.time_ns() // 1000 * 1000)
            new, last = sql.insert_entries(conn, key, entries, texts, mtime, min_seq, self._tag)
            with self._seq_lock:
                self._last_seq = max(self._last_seq, last)
            if fold and new:
                prev = sql.select_summary(conn, project_key, session_id)
                if remote_prev is not None and (
                    prev is None or remote_prev["mtime"] > prev["mtime"]
                ):
                    prev = remote_prev
                summary: dict[str, Any] = dict(
                    fold_session_summary(
                        cast("SessionSummaryEntry | None", prev),
                        {"project_key": project_key, "session_id": session_id},
                        new,
                    )
                )
                summary["mtime"] = mtime  # storage time, the clock of list_sessions
                sql.upsert_summary(conn, project_key, summary)

        self._write(write)
        if known:
            self._seen.add(key)

    def _write(self, fn: Callable[[Any], None]) -> None:
        """``fn(conn)`` in one transaction on the writer thread; in cloud mode, then a push."""
        deadline = time.monotonic() + self.timeout
        self.client.writer.call(
            lambda store: store.run(lambda conn: _transaction(conn, fn)), self.timeout
        )
        if self._cloud:
            self._push(max(0.1, deadline - time.monotonic()))

    def _push(self, timeout: float) -> None:
        store = self.client.writer.store
        done = threading.Event()
        errors: list[BaseException | None] = []

        def finished(error: BaseException | None) -> None:
            errors.append(error)
            done.set()

        if store is None or not store.request_push(finished):  # pragma: no cover - cloud mode
            raise RuntimeError("no replica to push")
        if not done.wait(timeout):
            raise TimeoutError(
                f"the push to {_where(self.client)} did not finish within {timeout:.0f} s; the "
                "entries are in the local replica and will be pushed later"
            )
        if errors[0] is not None:
            text = store.redact(f"{type(errors[0]).__name__}: {errors[0]}")
            raise ConnectionError(
                f"cannot push to {_where(self.client)} ({text}); the entries are in the local "
                "replica and will be pushed later"
            )

    def _read(self, fn: Callable[[Any], T], empty: T) -> T:
        """``fn(conn)``; ``empty`` when the database has no store tables yet.

        Local mode: on the writer thread, like writes. Cloud mode: the client's read replica,
        pulled first (each request bounded by the network timeout)."""
        if not self._cloud:
            return self.client.writer.call(lambda store: _run_read(store, fn, empty), self.timeout)
        store = self.client.reader()
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(store.read())
            except Exception as exc:  # as the query API reports it
                text = " ".join(store.redact(str(exc)).split())[:300] or type(exc).__name__
                where = _where(self.client)
                raise DatabaseUnavailable(f"cannot open database {where}: {text}") from exc
            if current_version(conn) < sql.TRANSCRIPT_SCHEMA:
                return empty
            return fn(conn)


def _run_read(store: Store, fn: Callable[[Any], T], empty: T) -> T:
    result: T = store.run(lambda conn: fn(conn) if sql.has_tables(conn) else empty)
    return result


def _transaction(conn: Any, fn: Callable[[Any], None]) -> None:
    with transaction(conn):  # serialises the summary's read-fold-write across processes
        fn(conn)


def _where(client: TursoClient) -> str:
    return client.config.url.split("?", 1)[0]


_owned_clients: weakref.WeakSet[TursoClient] = weakref.WeakSet()


@atexit.register
def _close_owned_clients() -> None:
    timeout = get_settings().shutdown_timeout
    for client in list(_owned_clients):
        try:
            client.shutdown(timeout)
        except Exception:
            pass
