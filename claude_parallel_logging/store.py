"""The store: turns queued operations into SQL transactions on a Turso database.

Local mode opens a short-lived connection per batch (a pyturso file is locked by one process at a
time, and opening costs ~0.2 ms), so several processes share one file by taking turns. Cloud mode
keeps one local replica per process (``turso.sync``) and pushes it to the remote in the background;
a replica left behind by a dead process is pushed by the next one, then removed.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .config import Settings, TursoConfig
from .schema import migrate
from .serialize import build_redactor, clean_text, iso_utc, to_json, to_text, truncate

log = logging.getLogger("claude_parallel_logging")

# Operation kinds. An operation is a plain tuple so that enqueueing one costs almost nothing.
SESSION_INSERT = 0  # (kind, SESSION_COLS values)
SESSION_UPDATE = 1  # (kind, session_id, column names, values)
MESSAGE_UPSERT = 2  # (kind, MESSAGE_COLS values)
TOOL_UPSERT = 3  # (kind, TOOL_COLS values)
TOOL_UPDATE = 4  # (kind, tool_execution_id, column names, values)
MESSAGE_UPDATE = 5  # (kind, message_id, column names, values)
MESSAGE_INSERT = 6  # (kind, MESSAGE_COLS values): a fresh id, so a plain (faster) INSERT
TOOL_INSERT = 7  # (kind, TOOL_COLS values): a fresh id

Op = tuple[Any, ...]

SESSION_COLS = (
    "id", "agent_type", "model", "provider", "started_at", "status", "metadata", "external_id",
)  # fmt: skip
MESSAGE_COLS = (
    "id", "session_id", "sequence", "role", "content", "tool_name", "tool_input", "tool_output",
    "created_at", "token_count", "external_id", "model", "input_tokens", "output_tokens",
    "parent_tool_use_id", "metadata",
)  # fmt: skip
TOOL_COLS = (
    "id", "session_id", "message_id", "tool_name", "status", "input", "output", "error",
    "started_at", "ended_at", "duration_ms", "tool_use_id", "parent_tool_use_id",
)  # fmt: skip

SESSION_UPDATABLE = frozenset(
    {
        "agent_type", "model", "provider", "ended_at", "status", "error_message", "metadata",
        "external_id", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "cost_usd", "duration_ms", "num_turns",
    }
)  # fmt: skip
MESSAGE_UPDATABLE = frozenset(
    {
        "content", "tool_name", "tool_input", "tool_output", "token_count", "external_id",
        "model", "input_tokens", "output_tokens", "metadata", "role",
    }
)  # fmt: skip
TOOL_UPDATABLE = frozenset(
    {"status", "output", "error", "ended_at", "duration_ms", "message_id", "input"}
)

_TIMESTAMP = frozenset({"started_at", "ended_at", "created_at"})
_JSON = frozenset({"metadata", "tool_input", "tool_output", "input"})
_PAYLOAD = frozenset({"content", "output", "error", "error_message"})
_INT = frozenset(
    {
        "sequence", "token_count", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "duration_ms", "num_turns",
    }
)  # fmt: skip
_REAL = frozenset({"cost_usd"})
_ID = frozenset({"id", "session_id", "message_id"})
_SHORT_LIMIT = 4096


class StoreBusy(Exception):
    """The database is locked by another process right now; try again later."""


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text or "locking error" in text


def _upsert_sql(table: str, cols: Sequence[str], keep: Sequence[str]) -> str:
    """Insert, or update the given columns in place; ``NULL`` never overwrites a known value."""
    placeholders = ", ".join("?" for _ in cols)
    sets = ", ".join(f"{c} = COALESCE(excluded.{c}, {table}.{c})" for c in cols if c not in keep)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders}) "
        f"ON CONFLICT(id) DO UPDATE SET {sets}"
    )


_SESSION_INSERT_SQL = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLS)}) VALUES "
    f"({', '.join('?' for _ in SESSION_COLS)}) ON CONFLICT(id) DO NOTHING"
)
_MESSAGE_SQL = _upsert_sql("messages", MESSAGE_COLS, ("id", "session_id", "sequence", "created_at"))
_MESSAGE_INSERT_SQL = _MESSAGE_SQL.split(" ON CONFLICT")[0]
_TOOL_INSERT_SQL = _upsert_sql("tool_executions", TOOL_COLS, ()).split(" ON CONFLICT")[0]
_TOOL_SQL = _upsert_sql("tool_executions", TOOL_COLS, ("id", "session_id", "started_at"))


class Preparer:
    """Converts Python values to column values (timestamps, JSON, limits, redaction).

    This runs for every value the writer stores, so each column gets one specialised function
    and the common cases (``None``, short ASCII text, ints) take the shortest path.
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.config.auth_token if settings.config else None
        self.redact = build_redactor(settings.redact, settings.redact_defaults, [token])
        self.limit = settings.max_payload_chars
        self._converters: dict[str, Callable[[Any], Any]] = {}
        self._rows: dict[tuple[str, ...], tuple[Callable[[Any], Any], ...]] = {}

    def converter(self, col: str) -> Callable[[Any], Any]:
        fn = self._converters.get(col)
        if fn is None:
            fn = self._make(col)
            self._converters[col] = fn
        return fn

    def _make(self, col: str) -> Callable[[Any], Any]:
        redact = self.redact

        def text_fn(cap: int) -> Callable[[Any], Any]:
            def text(v: Any) -> str:
                if type(v) is not str:
                    v = to_text(v)
                if len(v) > cap:
                    v = truncate(v, cap)
                if not v.isascii() or "\x00" in v:
                    v = clean_text(v)
                return redact(v)

            return text

        if col in _TIMESTAMP:
            return lambda v: iso_utc(v) if isinstance(v, (int, float)) else clean_text(str(v))
        if col in _JSON:
            json_text = text_fn(self.limit)
            return lambda v: json_text(to_json(v))
        if col in _PAYLOAD:
            return text_fn(self.limit)
        if col in _INT:
            return _to_int
        if col in _REAL:
            return _to_float
        if col in _ID:
            return lambda v: (
                v if type(v) is str and v.isascii() else clean_text(str(v))[:_SHORT_LIMIT]
            )
        return text_fn(_SHORT_LIMIT)

    def row(self, cols: Sequence[str], values: Sequence[Any]) -> tuple[Any, ...]:
        fns = self._rows.get(tuple(cols)) if type(cols) is tuple else None
        if fns is None:
            fns = tuple(self.converter(c) for c in cols)
            if type(cols) is tuple:
                self._rows[cols] = fns
        return tuple([None if v is None else f(v) for f, v in zip(fns, values)])


def _to_int(v: Any) -> int | None:
    if type(v) is int:
        return v
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _to_float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


_UPDATES = {
    SESSION_UPDATE: ("sessions", SESSION_UPDATABLE),
    TOOL_UPDATE: ("tool_executions", TOOL_UPDATABLE),
    MESSAGE_UPDATE: ("messages", MESSAGE_UPDATABLE),
}


def compile_ops(ops: Sequence[Op], prep: Preparer) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Group consecutive operations with the same SQL so each group is one ``executemany``."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    for op in ops:
        kind = op[0]
        if kind == MESSAGE_INSERT:
            sql, params = _MESSAGE_INSERT_SQL, prep.row(MESSAGE_COLS, op[1])
        elif kind == TOOL_INSERT:
            sql, params = _TOOL_INSERT_SQL, prep.row(TOOL_COLS, op[1])
        elif kind == MESSAGE_UPSERT:
            sql, params = _MESSAGE_SQL, prep.row(MESSAGE_COLS, op[1])
        elif kind == TOOL_UPSERT:
            sql, params = _TOOL_SQL, prep.row(TOOL_COLS, op[1])
        elif kind == SESSION_INSERT:
            sql, params = _SESSION_INSERT_SQL, prep.row(SESSION_COLS, op[1])
        elif kind in _UPDATES:
            table, allowed = _UPDATES[kind]
            cols = [c for c in op[2] if c in allowed]
            if not cols:
                continue
            vals = [v for c, v in zip(op[2], op[3]) if c in allowed]
            sql = f"UPDATE {table} SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?"
            params = (*prep.row(cols, vals), str(op[1]))
        else:
            continue
        if out and out[-1][0] == sql:
            out[-1][1].append(params)
        else:
            out.append((sql, [params]))
    return out


def apply_compiled(conn: Any, compiled: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    """One transaction for the whole batch."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in compiled:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except Exception:
            pass
        raise


class BaseStore:
    """Shared by both modes: schema once per process, batch writes."""

    mode = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prep = Preparer(settings)
        self._schema_checked = False

    def _ensure_schema(self, conn: Any) -> None:
        if not self._schema_checked:
            migrate(conn)
            self._schema_checked = True

    def write(self, ops: Sequence[Op]) -> None:
        self.write_compiled(compile_ops(ops, self.prep))

    def initialize(self) -> None:
        """Run the migrations now."""
        self.write_compiled([])

    def write_compiled(self, compiled: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        raise NotImplementedError

    def push(self) -> None:
        """Send what is local to the remote (cloud mode); nothing to do locally."""

    def read(self) -> Any:
        raise NotImplementedError

    def close(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode}


class LocalStore(BaseStore):
    """One database file shared by every process on the machine, taken in turns."""

    mode = "local"

    def __init__(self, config: TursoConfig, settings: Settings) -> None:
        super().__init__(settings)
        self.path = config.local_path

    def connect(self, timeout: float | None = None) -> Any:
        """Open the file, retrying while another process holds it (bounded by ``timeout``)."""
        import turso

        deadline = time.monotonic() + (self.settings.lock_timeout if timeout is None else timeout)
        delay = 0.002
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        while True:
            try:
                return turso.connect(self.path, isolation_level=None)
            except Exception as exc:
                if not is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"database {self.path} is locked by another process") from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)

    def write_compiled(self, compiled: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        if not compiled and self._schema_checked:
            return
        conn = self.connect()
        try:
            self._ensure_schema(conn)
            apply_compiled(conn, compiled)
        finally:
            conn.close()
            # pyturso releases the file lock when the connection object is freed, not on
            # close(): drop our reference even while an exception (and its frames) lives on.
            del conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        conn = self.connect(timeout=max(self.settings.lock_timeout, 10.0))
        try:
            self._ensure_schema(conn)
            yield conn
        finally:
            conn.close()
            del conn  # frees the file lock (see write_compiled)

    def describe(self) -> dict[str, Any]:
        return {"mode": "local", "path": self.path}


def _replica_files(path: str) -> list[str]:
    return [p for p in glob.glob(glob.escape(path) + "*") if p == path or p[len(path)] == "-"]


def _pid_alive(path: str) -> bool:
    """Replica names start with the owner's pid (``r-<pid>-<rand>.db``)."""
    try:
        pid = int(os.path.basename(path).split("-")[1])
    except (IndexError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_replica(path: str) -> None:
    for p in _replica_files(path):
        try:
            os.remove(p)
        except OSError:
            pass


class CloudStore(BaseStore):
    """A local replica per process, pushed to Turso Cloud (or ``tursodb --sync-server``)."""

    mode = "cloud"

    def __init__(self, config: TursoConfig, settings: Settings) -> None:
        super().__init__(settings)
        self.config = config
        digest = hashlib.sha256(config.url.encode()).hexdigest()[:16]
        self.dir = os.path.join(settings.resolved_replica_dir(), digest)
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = os.path.join(self.dir, f"w-{self._tag}.db")
        self._conn: Any = None
        self._read_conn: Any = None
        self._read_lock = threading.Lock()
        self._stale_done = False
        self.last_push: float | None = None

    def _open(self, path: str, bootstrap: bool) -> Any:
        import turso.sync

        return turso.sync.connect(
            path,
            self.config.url,
            auth_token=self.config.auth_token,
            client_name="claude-parallel-logging",
            bootstrap_if_empty=bootstrap,
            isolation_level=None,
        )

    def _writer_conn(self) -> Any:
        if self._conn is None:
            os.makedirs(self.dir, exist_ok=True)
            conn = self._open(self.path, bootstrap=False)
            try:
                self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write_compiled(self, compiled: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._writer_conn()
        if compiled:
            apply_compiled(conn, compiled)

    def push(self) -> None:
        conn = self._writer_conn()
        conn.push()
        self.last_push = time.time()
        if not self._stale_done:
            self._stale_done = self.recover_stale()

    def pending_changes(self) -> int | None:
        if self._conn is None:
            return 0
        try:
            return int(self._conn.stats().cdc_operations)
        except Exception:
            return None

    def recover_stale(self) -> bool:
        """Push replicas left by processes that died, then remove them. True when all done.

        Read replicas (``r-*``) hold nothing unpushed: a dead process's are simply removed.
        """
        for path in glob.glob(os.path.join(glob.escape(self.dir), "r-*.db")):
            if not path.endswith(f"r-{self._tag}.db") and not _pid_alive(path):
                _remove_replica(path)
        all_done = True
        for path in sorted(glob.glob(os.path.join(glob.escape(self.dir), "w-*.db"))):
            if path == self.path:
                continue
            try:
                conn = self._open(path, bootstrap=False)
            except Exception as exc:
                if not is_lock_error(exc):  # a live process holds it: not stale
                    all_done = False
                    log.debug("claude-parallel-logging: cannot open replica %s: %s", path, exc)
                continue
            try:
                conn.push()
            except Exception as exc:
                all_done = False
                log.debug("claude-parallel-logging: stale replica push failed: %s", exc)
                conn.close()
                continue
            conn.close()
            _remove_replica(path)
            log.info("claude-parallel-logging: pushed and removed replica left by %s", path)
        return all_done

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A separate read replica, pulled fresh from the remote on every read."""
        with self._read_lock:
            if self._read_conn is None:
                os.makedirs(self.dir, exist_ok=True)
                path = os.path.join(self.dir, f"r-{self._tag}.db")
                self._read_conn = self._open(path, bootstrap=True)
            conn = self._read_conn
            conn.pull()
            yield conn

    def close(self) -> bool:
        """Push what is left; remove our replica only once the remote has everything."""
        ok = True
        if self._conn is not None:
            try:
                self._conn.push()
                ok = self.pending_changes() == 0
            except Exception as exc:
                ok = False
                log.warning(
                    "claude-parallel-logging: final push failed (%s); %s keeps the rows and the "
                    "next process will push them",
                    self.prep.redact(str(exc)),
                    self.path,
                )
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
            if ok:
                _remove_replica(self.path)
        with self._read_lock:
            if self._read_conn is not None:
                try:
                    self._read_conn.close()
                except Exception:
                    pass
                self._read_conn = None
                _remove_replica(os.path.join(self.dir, f"r-{self._tag}.db"))
        return ok

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "cloud",
            "url": self.config.url.split("?", 1)[0],
            "replica": self.path,
            "replica_dir": self.dir,
        }


def open_store(config: TursoConfig, settings: Settings) -> BaseStore:
    if config.is_remote:
        return CloudStore(config, settings)
    return LocalStore(config, settings)
