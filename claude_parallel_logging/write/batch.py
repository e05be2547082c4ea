"""A batch of operations compiled to as few SQL statements as order allows, then applied."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from ..schema.ops import (
    MESSAGE_INSERT,
    MESSAGE_UPDATE,
    MESSAGE_UPSERT,
    SESSION_INSERT,
    SESSION_UPDATE,
    TOOL_INSERT,
    TOOL_UPDATE,
    TOOL_UPSERT,
    Op,
)
from ..schema.tables import (
    JOURNAL,
    MESSAGE_COLS,
    MESSAGE_UPDATABLE,
    SESSION_COLS,
    SESSION_UPDATABLE,
    TOOL_COLS,
    TOOL_UPDATABLE,
)
from ..transaction import transaction
from .values import ValueConverter

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


_UPDATES = {
    SESSION_UPDATE: ("sessions", SESSION_UPDATABLE),
    TOOL_UPDATE: ("tool_executions", TOOL_UPDATABLE),
    MESSAGE_UPDATE: ("messages", MESSAGE_UPDATABLE),
}


Compiled = list[tuple[str, list[tuple[Any, ...]]]]


def compile_ops(ops: Sequence[Op], converter: ValueConverter) -> Compiled:
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
    * Every row updated or upserted (not a fresh insert) gets an entry in the ``row_changes``
      journal, last, in one statement: the derived read indexes re-read those rows.
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
            mask, full = converter.masked_row(spec[1], op[1])
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
    journal: dict[tuple[str, Any], None] = {}
    for key, statement, payload in pending:
        if statement is None:
            if not payload:
                continue
            cols = sorted(payload)
            statement = f"UPDATE {key[0]} SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?"
            params = (*converter.row(cols, [payload[c] for c in cols]), key[1])
        else:
            params = payload
        journal[key] = None
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
        mask, full = converter.masked_row(_ROW_KINDS[kind][1], values)
        sql, pick = _row_statement(kind, mask)
        rows = inserts.get(sql)
        if rows is None:
            inserts[sql] = [pick(full)]
        else:
            rows.append(pick(full))
    if journal:
        rest.append((_JOURNAL_SQL, [(JOURNAL[table], str(rid)) for table, rid in journal]))
    return [*inserts.items(), *rest]


_FRESH = frozenset({SESSION_INSERT, MESSAGE_INSERT, TOOL_INSERT})
_JOURNAL_SQL = "INSERT INTO row_changes (tbl, row_id) VALUES (?, ?)"
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
    """One transaction for the whole batch; after any failure, no transaction is left open."""
    with transaction(conn):
        for sql, rows in compiled:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)


def applier(compiled: Compiled) -> Callable[[Any], None] | None:
    """What ``Store.write`` runs for a compiled batch (``None``: nothing to write)."""
    if not compiled:
        return None
    return lambda conn: apply_compiled(conn, compiled)
