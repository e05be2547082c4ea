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
import operator
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .config import Settings, TursoConfig
from .errors import SchemaVersionError, StoreBusy
from .remote import remote_schema_version, timed_pull, timed_push
from .schema import SCHEMA_VERSION, migrate
from .serialize import (
    REDACT_MARGIN,
    build_redactor,
    clean_text,
    cut_json,
    cut_text,
    iso_utc,
    redact_values,
    to_json,
    to_jsonable,
    to_text,
)

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


_HOLD_SECONDS = 0.1  # local mode: the longest one connection (the file lock) is kept busy
_RETRY_CAP = 0.02  # local mode: the longest wait between two attempts to open a locked file
_BUSY_RETRY_CAP = 0.05  # cloud mode: the longest wait between two pushes of a busy replica


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text or "locking error" in text


# What each kind of row operation does with the columns it names: (table, columns, conflict
# clause, columns a conflict never changes). ``None`` conflict: a plain INSERT (fresh id).
_ROW_KINDS: dict[int, tuple[str, tuple[str, ...], str | None, frozenset[str]]] = {
    SESSION_INSERT: ("sessions", SESSION_COLS, "NOTHING", frozenset()),
    MESSAGE_INSERT: ("messages", MESSAGE_COLS, None, frozenset()),
    TOOL_INSERT: ("tool_executions", TOOL_COLS, None, frozenset()),
    MESSAGE_UPSERT: (
        "messages", MESSAGE_COLS, "UPDATE", frozenset({"id", "session_id", "sequence", "created_at"})
    ),
    TOOL_UPSERT: ("tool_executions", TOOL_COLS, "UPDATE", frozenset({"id", "session_id", "started_at"})),
}  # fmt: skip


def _row_sql(
    kind: int, mask: tuple[bool, ...]
) -> tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    """The INSERT for one kind of row naming only its non-NULL columns.

    Binding a NULL costs as much as binding a value, and most rows leave half their columns
    empty, so naming only the others makes inserts ~30% faster. The meaning is unchanged: an
    omitted column takes its default, and an upsert never overwrites a known value with NULL
    (it only sets the columns it names, through ``COALESCE``).
    """
    table, all_cols, conflict, keep = _ROW_KINDS[kind]
    idx = [i for i, present in enumerate(mask) if present]
    cols = [all_cols[i] for i in idx]
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    sets = ", ".join(f"{c} = COALESCE(excluded.{c}, {table}.{c})" for c in cols if c not in keep)
    if conflict == "NOTHING" or (conflict == "UPDATE" and not sets):
        sql += " ON CONFLICT(id) DO NOTHING"
    elif conflict == "UPDATE":
        sql += f" ON CONFLICT(id) DO UPDATE SET {sets}"
    if len(idx) == 1:
        i = idx[0]
        return sql, lambda row: (row[i],)
    return sql, operator.itemgetter(*idx)


class Preparer:
    """Converts Python values to column values (timestamps, JSON, limits, redaction).

    This runs for every value the writer stores, so each column gets one specialised function
    and the common cases (``None``, short ASCII text, ints) take the shortest path.
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.config.auth_token if settings.config else None
        self.redact = build_redactor(settings.redact, settings.redact_defaults, [token])
        self._custom = settings.redact is not None
        self._builtin = (
            build_redactor(None, settings.redact_defaults, [token]) if self._custom else self.redact
        )
        self.limit = settings.max_payload_chars
        self._converters: dict[str, Callable[[Any], Any]] = {}
        self._rows: dict[tuple[str, ...], _RowFunction] = {}

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
                if not v.isascii() or "\x00" in v:
                    v = clean_text(v)
                if len(v) > cap or v.endswith(" chars]"):  # too long, or cut by the caller
                    return cut_text(v, cap, redact)
                return redact(v)

            return text

        if col in _TIMESTAMP:
            return _timestamp
        if col in _JSON:
            return self._json_fn()
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

    def _json_fn(self) -> Callable[[Any], str]:
        """Valid JSON, redacted, within the limit (a longer value becomes a marker object)."""
        limit, builtin, hook = self.limit, self._builtin, self.redact if self._custom else None
        keep = limit + REDACT_MARGIN

        def json_value(v: Any) -> str:
            if hook is not None:  # the user's hook sees each string, not JSON escapes
                v = redact_values(to_jsonable(v), hook)
            text = to_json(v)
            if not text.isascii() or "\x00" in text:
                text = clean_text(text)
            text = builtin(text)  # patterns never span a quote: the JSON stays valid
            return text if len(text) <= limit else cut_json(text, limit, keep)

        return json_value

    def row(self, cols: Sequence[str], values: Sequence[Any]) -> tuple[Any, ...]:
        """The stored values of one row, in ``cols`` order."""
        return self.masked_row(cols, values)[1]

    def masked_row(
        self, cols: Sequence[str], values: Sequence[Any]
    ) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
        """``(which values are not NULL, the stored values)``: for inserts that name only those."""
        fn = self._function(cols, values)
        try:
            return fn(values)
        except Exception:
            return self._slow_row(cols, values)

    def _slow_row(
        self, cols: Sequence[str], values: Sequence[Any]
    ) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
        """One value could not be converted: store a marker for it, keep the rest of the row."""
        out: list[Any] = []
        for col, v in zip(cols, values):
            try:
                out.append(None if v is None else self.converter(col)(v))
            except Exception as exc:
                out.append(_unstorable(col, v, exc))
        row = tuple(out)
        return tuple(v is not None for v in row), row

    def _function(self, cols: Sequence[str], values: Sequence[Any]) -> _RowFunction:
        key = cols if type(cols) is tuple else tuple(cols)
        fn = self._rows.get(key)
        if fn is None:
            fn = self._rows[key] = self._row_function(key)
        if len(values) != len(key):
            raise ValueError(f"{len(values)} values for {len(key)} columns")
        return fn

    def _row_function(self, cols: tuple[str, ...]) -> _RowFunction:
        """A function made for one column tuple: no per-value loop, zip or dispatch.

        It runs for every row the writer stores; generating it (as ``namedtuple`` does) costs
        half of a generic loop over converters.
        """
        n = len(cols)
        env: dict[str, Any] = {"_to_int": _to_int}
        lines = [
            "def row(v):",
            f"    {', '.join(f'a{i}' for i in range(n))}{',' if n == 1 else ''} = v",
        ]
        for i, col in enumerate(cols):
            if col in _INT:
                lines.append(f"    b{i} = a{i} if type(a{i}) is int else _to_int(a{i})")
            else:
                env[f"f{i}"] = self.converter(col)
                lines.append(f"    b{i} = None if a{i} is None else f{i}(a{i})")
        mask = ", ".join(f"b{i} is not None" for i in range(n))
        vals = ", ".join(f"b{i}" for i in range(n))
        lines.append(f"    return ({mask},), ({vals},)")
        exec(compile("\n".join(lines) + "\n", f"<row {','.join(cols)}>", "exec"), env)
        fn: _RowFunction = env["row"]
        return fn


_RowFunction = Callable[[Sequence[Any]], tuple[tuple[bool, ...], tuple[Any, ...]]]


def _timestamp(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return iso_utc(v)
        except (OverflowError, ValueError, OSError):  # inf, nan, year 10000
            return f"invalid timestamp: {v!r}"
    return clean_text(str(v))[:64]


def _unstorable(col: str, value: Any, exc: BaseException) -> Any:
    if col in _INT or col in _REAL:
        return None
    return f"<unstorable {type(value).__name__}: {type(exc).__name__}>"


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


Compiled = list[tuple[str, list[tuple[Any, ...]]]]


def compile_ops(ops: Sequence[Op], prep: Preparer) -> Compiled:
    """Turn a batch into as few ``executemany`` groups, and rows, as order allows.

    Preparing a statement costs as much as writing a row, and a real batch interleaves messages,
    tool starts and ends, and session updates, so grouping only neighbours would prepare almost
    every row. These rules keep the result identical to applying ``ops`` in order (operations on
    different rows commute; those on one row keep their order):

    * A fresh insert (an id minted when the event was enqueued, or a session's first insert,
      which never overwrites) cannot be referenced by any earlier operation, so all of them go
      first, one group per statement.
    * An update of a row freshly inserted in this batch is folded into that insert (a tool that
      ends soon after it starts is one row written, not two), until an upsert of the same id.
    * Other updates of one row are merged into one (each column takes its last value), until an
      upsert of the same row; their columns are put in one order so that equal sets share a
      statement. A session updated at every turn is one statement per batch, and its metadata is
      serialised once, not at every update.
    * Any other operation joins the latest group with its SQL only if no later group touches the
      same row; otherwise it starts a new group.
    """
    fresh: list[tuple[int, list[Any]]] = []  # (kind, values) of fresh inserts, in order
    foldable: dict[tuple[str, Any], list[Any]] = {}  # (table, id) -> values of a fresh insert
    # In order: an upsert as (key, sql, params), or a merged update as (key, None, columns).
    pending: list[tuple[tuple[str, Any], str | None, Any]] = []
    merging: dict[tuple[str, Any], dict[str, Any]] = {}  # row -> columns of its open update
    started: set[Any] = set()  # session ids inserted in this batch
    for op in ops:
        kind = op[0]
        if kind in _FRESH:
            values = list(op[1])
            if kind == SESSION_INSERT:
                # It never overwrites, so only the first insert of an id counts; a later one
                # in the same batch must not run first.
                if values[0] in started:
                    continue
                started.add(values[0])
            else:  # a session may exist already (its insert does nothing): never folded into
                foldable[(_ROW_KINDS[kind][0], values[0])] = values
            fresh.append((kind, values))
            continue
        spec = _ROW_KINDS.get(kind)
        if spec is not None:  # an upsert: explicit id, may exist
            mask, full = prep.masked_row(spec[1], op[1])
            sql, pick = _row_statement(kind, mask)
            key = (spec[0], full[0])
            foldable.pop(key, None)  # later updates must follow this upsert, not the insert
            merging.pop(key, None)
            pending.append((key, sql, pick(full)))
        elif kind in _UPDATES:
            table, allowed = _UPDATES[kind]
            target = foldable.get((table, op[1]))
            if target is not None:
                index = _COLUMN_INDEX[table]
                for c, v in zip(op[2], op[3]):
                    if c in allowed:
                        target[index[c]] = v
                continue
            key = (table, str(op[1]))
            columns = merging.get(key)
            if columns is None:
                columns = merging[key] = {}
                pending.append((key, None, columns))
            for c, v in zip(op[2], op[3]):
                if c in allowed:
                    columns[c] = v
    rest: Compiled = []
    last_group: dict[str, int] = {}  # SQL -> index in rest of its latest group
    last_touch: dict[tuple[str, Any], int] = {}  # (table, row id) -> index of its latest group
    for key, statement, payload in pending:
        if statement is None:
            if not payload:
                continue
            cols = sorted(payload)
            statement = f"UPDATE {key[0]} SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?"
            params = (*prep.row(cols, [payload[c] for c in cols]), key[1])
        else:
            params = payload
        g = last_group.get(statement)
        if g is None or last_touch.get(key, -1) > g:
            g = len(rest)
            rest.append((statement, [params]))
            last_group[statement] = g
        else:
            rest[g][1].append(params)
        last_touch[key] = g
    inserts: dict[str, list[tuple[Any, ...]]] = {}
    for kind, values in fresh:
        mask, full = prep.masked_row(_ROW_KINDS[kind][1], values)
        sql, pick = _row_statement(kind, mask)
        rows = inserts.get(sql)
        if rows is None:
            inserts[sql] = [pick(full)]
        else:
            rows.append(pick(full))
    return [*inserts.items(), *rest]


_FRESH = frozenset({SESSION_INSERT, MESSAGE_INSERT, TOOL_INSERT})
_COLUMN_INDEX = {
    "messages": {c: i for i, c in enumerate(MESSAGE_COLS)},
    "tool_executions": {c: i for i, c in enumerate(TOOL_COLS)},
}


def _row_statement(
    kind: int, mask: tuple[bool, ...]
) -> tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    cached = _SQL_CACHE.get((kind, mask))
    if cached is None:
        cached = _SQL_CACHE[(kind, mask)] = _row_sql(kind, mask)
    return cached


_SQL_CACHE: dict[
    tuple[int, tuple[bool, ...]], tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]
] = {}


def apply_compiled(conn: Any, compiled: Compiled) -> None:
    """One transaction for the whole batch; after any failure, no transaction is left open.

    The ``BEGIN`` is inside the ``try``: pyturso's ``BEGIN IMMEDIATE`` can fail (``database is
    locked``, e.g. while the push thread holds the replica) after it has opened the transaction,
    and a connection left inside it fails every later ``BEGIN`` ("cannot start a transaction
    within a transaction"), so nothing would be written again.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql, rows in compiled:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: Any) -> bool:
    """End whatever transaction ``conn`` is in; True when it is known to be in none now."""
    try:
        conn.execute("ROLLBACK")
    except Exception:
        pass  # "no transaction is active", or a connection beyond repair (see in_transaction)
    try:
        return not conn.in_transaction
    except Exception:
        return False


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

    def write_compiled(self, compiled: Compiled) -> None:
        raise NotImplementedError

    def push(self) -> None:
        """Send what is local to the remote (cloud mode); nothing to do locally."""

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(conn)`` on the connection the writer writes with (call it on the writer thread)."""
        raise NotImplementedError

    def release(self) -> None:
        """Let go of what other processes may be waiting for (local mode: the file lock)."""

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
        self._conn: Any = None
        self._held_since = 0.0

    def connect(self, timeout: float | None = None) -> Any:
        """Open the file, retrying while another process holds it (bounded by ``timeout``).

        Retries come every few milliseconds (capped at ``_RETRY_CAP``): a busy writer elsewhere
        releases the file between its transactions for about as long as it takes to prepare the
        next one, and a slow poll would keep missing that window.
        """
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
                delay = min(delay * 2, _RETRY_CAP)

    def write_compiled(self, compiled: Compiled) -> None:
        """One transaction; the file stays open for the writer's next batch (see ``release``).

        Opening costs ~0.6 ms, loading the schema on a fresh connection ~1.3 ms and closing
        (a checkpoint) ~2 ms: per 1,000-event batch that is a third of the write time, so
        consecutive batches share a connection for up to ``_HOLD_SECONDS``.
        """
        if not compiled and self._schema_checked:
            return
        if self._conn is None:
            self._conn = self.connect()
            self._held_since = time.monotonic()
        try:
            self._ensure_schema(self._conn)
            apply_compiled(self._conn, compiled)
        except BaseException:
            self.release()  # state unknown after a failure: start again from a fresh connection
            raise
        if time.monotonic() - self._held_since >= _HOLD_SECONDS:
            self.release()

    def run(self, fn: Callable[[Any], Any]) -> Any:
        if self._conn is None:
            self._conn = self.connect()
            self._held_since = time.monotonic()
        try:
            self._ensure_schema(self._conn)
            return fn(self._conn)
        except BaseException:
            self.release()  # as in write_compiled: start again from a fresh connection
            raise

    def release(self) -> None:
        """Close the file so other processes can write; the writer calls this when idle."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            # pyturso releases the file lock when the connection object is freed, not on
            # close(): keep no other reference to it (not even a local a traceback could hold).
            self._conn = None

    def close(self) -> bool:
        self.release()
        return True

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


# ----- cloud mode ---------------------------------------------------------------------------------

# Writer replicas opened by live stores of this process. Another store of the same process (a
# second client, `cpl sync`) can open them without a lock error, so it must be told not to push and
# remove them. A replica whose store closed without pushing everything leaves this set and is then
# recovered like a dead process's.
_LIVE_REPLICAS: set[str] = set()

if hasattr(os, "register_at_fork"):  # a child's stores are its own; the parent's stay locked by it
    os.register_at_fork(after_in_child=_LIVE_REPLICAS.clear)


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


def _owned_by_another_live_process(path: str) -> bool:
    """A writer replica of a live process is not stale, even if it can be opened: its owner
    may be between creating the file and taking its lock. (A pid reused by an unrelated
    process only delays recovery until that process ends.)"""
    try:
        pid = int(os.path.basename(path).split("-")[1])
    except (IndexError, ValueError):
        return False
    return pid != os.getpid() and _pid_alive(path)


def _remove_replica(path: str) -> None:
    for p in _replica_files(path):
        try:
            os.remove(p)
        except OSError:
            pass


PushCallback = Callable[[BaseException | None], None]


class CloudStore(BaseStore):
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
    # Changes per push request, so a backlog is sent in parts that each finish within the timeout
    # (a transaction, i.e. one writer batch, is never split).
    push_batch = 1000
    # Seconds a push keeps retrying while the replica is busy (see ``_push_replica``).
    busy_timeout = 10.0

    def __init__(self, config: TursoConfig, settings: Settings) -> None:
        super().__init__(settings)
        self.config = config
        digest = hashlib.sha256(config.url.encode()).hexdigest()[:16]
        self.dir = os.path.join(settings.resolved_replica_dir(), digest)
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = os.path.join(self.dir, f"w-{self._tag}.db")
        self._conn: Any = None  # the writer thread's
        self._push_conn: Any = None  # the push thread's
        self._read_conn: Any = None
        self._read_lock = threading.Lock()
        self._stale_done = False
        # Push thread state.
        self._push_lock = threading.Lock()
        self._push_wanted = threading.Event()
        self._push_waiters: list[PushCallback] = []
        self._pusher: threading.Thread | None = None
        self._closing = False
        self._finished = threading.Event()
        self._final_ok = False
        self.on_push: PushCallback | None = None  # told of every push attempt of our replica
        self.last_error: BaseException | None = None
        # What we know of the remote.
        self._probed = threading.Event()
        self._remote_version: int | None = None
        self._refused: SchemaVersionError | None = None

    def _open(self, path: str, bootstrap: bool) -> Any:
        import turso.sync

        return turso.sync.connect(
            path,
            self.config.url,
            auth_token=self.config.auth_token,
            client_name="claude-parallel-logging",
            bootstrap_if_empty=bootstrap,
            isolation_level=None,
            push_operations_threshold=self.push_batch,
        )

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
            _LIVE_REPLICAS.add(self.path)
            conn = self._open(self.path, bootstrap=False)
            try:
                self._ensure_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def write_compiled(self, compiled: Compiled) -> None:
        conn = self._writer_conn()
        if compiled:
            try:
                apply_compiled(conn, compiled)
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

    def request_push(self, done: PushCallback | None = None) -> None:
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
            return
        self._start_pusher()
        self._push_wanted.set()

    def push(self) -> None:
        """Push now and wait for it (at most a few network timeouts); raises on failure."""
        result: list[BaseException | None] = []
        done = threading.Event()

        def finished(error: BaseException | None) -> None:
            result.append(error)
            done.set()

        self.request_push(finished)
        if not done.wait(3 * self.network_timeout + 1):
            raise TimeoutError("push did not finish in time")
        if result[0] is not None:
            raise result[0]

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
        # A read in progress (a pull from a silent remote) must not hold up shutdown: then the
        # read replica stays, and is removed by the next process (its owner is gone by then).
        if self._read_lock.acquire(timeout=max(0.05, min(1.0, timeout))):
            try:
                if self._read_conn is not None:
                    try:
                        self._read_conn.close()
                    except Exception:
                        pass
                    self._read_conn = None
                    _remove_replica(os.path.join(self.dir, f"r-{self._tag}.db"))
            finally:
                self._read_lock.release()
        if wrote and not ok:
            log.warning(
                "claude-parallel-logging: the final push has not finished (%s); %s keeps the rows "
                "and the next process (or `cpl sync`) will push them",
                self.prep.redact(str(self.last_error or "the remote did not answer in time")),
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
                            log.debug("claude-parallel-logging: push callback", exc_info=True)
                    if closing:
                        self._finish(error)
                        return
        except BaseException:  # never let the thread die silently
            log.exception("claude-parallel-logging: push thread stopped unexpectedly")
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
                log.debug("claude-parallel-logging: push listener failed", exc_info=True)

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
        for _ in range(100_000):  # bounded by the deadline long before
            try:
                self._check_remote()
                if self._push_conn is None:
                    self._push_conn = self._open(self.path, bootstrap=False)
                timed_push(self._push_conn, self.network_timeout)
                return None
            except Exception as exc:
                self._drop_push_conn()  # a fresh one next time, whatever state this one is in
                if not is_lock_error(exc) or time.monotonic() + delay >= deadline:
                    self.last_error = exc
                    return exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BUSY_RETRY_CAP)
        return TimeoutError("the replica stayed busy")

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
            log.debug("claude-parallel-logging: replica recovery failed: %s",
                      self.prep.redact(str(exc)))  # fmt: skip

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
            del conn  # frees the file lock (see LocalStore.write_compiled)
        _LIVE_REPLICAS.discard(self.path)
        if ok:
            _remove_replica(self.path)
        self._final_ok = ok

    # ----- other processes' replicas, reads ---------------------------------------------------

    def recover_stale(self) -> bool:
        """Push replicas left by processes that died, then remove them. True when all done.

        Read replicas (``r-*``) hold nothing unpushed: a dead process's are simply removed. Nothing
        is pushed to a remote whose schema is newer than ours (``SchemaVersionError``).
        """
        for path in glob.glob(os.path.join(glob.escape(self.dir), "r-*.db")):
            if not path.endswith(f"r-{self._tag}.db") and not _pid_alive(path):
                _remove_replica(path)
        all_done = True
        for path in sorted(glob.glob(os.path.join(glob.escape(self.dir), "w-*.db"))):
            if path == self.path or path in _LIVE_REPLICAS or _owned_by_another_live_process(path):
                continue
            self._check_remote()
            try:
                conn = self._open(path, bootstrap=False)
            except Exception as exc:
                if not is_lock_error(exc):  # a live process holds it: not stale
                    all_done = False
                    log.debug("claude-parallel-logging: cannot open replica %s: %s",
                              path, self.prep.redact(str(exc)))  # fmt: skip
                continue
            try:
                timed_push(conn, self.network_timeout)
            except Exception as exc:
                log.debug("claude-parallel-logging: stale replica push failed: %s",
                          self.prep.redact(str(exc)))  # fmt: skip
                conn.close()
                if "network error" in str(exc):
                    return False  # the remote is unreachable: the others would fail the same way
                all_done = False
                continue
            conn.close()
            del conn
            _remove_replica(path)
            log.info("claude-parallel-logging: pushed and removed replica left by %s", path)
        return all_done

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A separate read replica, pulled fresh from the remote on every read.

        It is opened without pyturso's bootstrap (a download with no timeout) and filled by a
        pull, which is bounded like every other request (a pull into an empty replica fetches
        everything).
        """
        with self._read_lock:
            if self._read_conn is None:
                os.makedirs(self.dir, exist_ok=True)
                path = os.path.join(self.dir, f"r-{self._tag}.db")
                self._read_conn = self._open(path, bootstrap=False)
            conn = self._read_conn
            timed_pull(conn, self.network_timeout)
            yield conn

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
