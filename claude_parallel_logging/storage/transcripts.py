"""SQL and encoding of the session store's tables (``transcript_lines``, ``transcript_summaries``,
and ``transcript_entries``: rows appended before schema version 6, read but never added to).

Free of ``claude_agent_sdk`` so that the query API and ``cpl`` can read stored transcripts
without the SDK installed. Entries are stored verbatim (no truncation, no redaction): a
transcript must load back deep-equal for the SDK to resume it.

Why a row's ``id`` is its key and ``uuid`` (``row_id``), measured against ``tursodb
--sync-server`` with pyturso 0.8.3: a push sends the replica's changes as SQL in one
``/v2/pipeline`` batch, ``BEGIN IMMEDIATE``, one ``INSERT ... ON CONFLICT(<primary key>) DO
UPDATE SET <every column>`` per inserted row, the client's last change id, ``COMMIT``, each step
after ``BEGIN`` run only inside the transaction. Before version 6, two machines appending the
same entry stored it under two ids; the second push's insert then broke the unique ``uuid``
index: that one statement failed, the transaction stayed open and the rest of the batch (other
rows, the change id, ``COMMIT``) was applied, so the push reported an error (``append`` raised)
and the next one went on after it, the duplicate dropped. Nothing wedged and nothing else was
lost, but only by that partial apply. Now the second copy has the same ``id``: its upsert
rewrites the row in place and the push succeeds (the later push's ``seq`` and ``mtime`` win).
The speed is the same choice: the primary key is the ``uuid`` constraint, so the table has one
secondary index (the key and ``seq``) where ``transcript_entries`` has three.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAIN = ""  # the subpath column of a main transcript (the SDK's key omits ``subpath``)
TRANSCRIPT_SCHEMA = 4  # the schema version that created the tables
ENTRIES = "transcript_lines"  # where entries are appended (schema version 6)
LEGACY = "transcript_entries"  # entries appended before version 6: read, deleted, never added to

_KEY = "project_key = ? AND session_id = ? AND subpath = ?"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class StoredTranscript:
    """A transcript the session store holds for one Claude SDK session id."""

    project_key: str
    session_id: str
    entries: int
    subpaths: tuple[str, ...] = ()


def encode_entry(entry: Any) -> str:
    """Compact JSON; lone surrogates (not UTF-8) are kept as ``\\udXXX`` escapes, which
    ``json.loads`` turns back into the same string. Raises for what JSON cannot hold."""
    if not isinstance(entry, dict):
        raise TypeError(f"a transcript entry must be a JSON object, not {type(entry).__name__}")
    text: str = _ENCODER.encode(entry)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(entry, ensure_ascii=True, separators=(",", ":"))
    return text


def decode_entries(texts: Sequence[str]) -> list[Any]:
    """One ``json.loads`` for the whole list: several times faster than one per entry."""
    if not texts:
        return []
    decoded: list[Any] = json.loads("[" + ",".join(texts) + "]")
    return decoded


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _hash(*parts: str, n: int) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:n]


def key_prefix(key: tuple[str, str, str]) -> str:
    """The first 20 characters of every ``id`` under ``key``: 8 hex of the session id (a
    session's rows are one range of the primary key, found by ``transcripts_for``), then 12
    of the whole key (its rows are neighbours: an append writes few pages of the key index)."""
    return _hash(key[1], n=8) + _hash(*key, n=12)


def row_id(prefix: str, uuid: str | None, unique: str) -> str:
    """``prefix:uuid``: the same entry gets the same id in every process and on every machine,
    so the primary key is the per-key ``uuid`` constraint and two machines' copies are one row
    (a push replays an insert as an upsert on the primary key: the later copy overwrites the
    earlier, where a second unique index would refuse the push's statement). An entry without
    ``uuid`` gets ``prefix/unique`` (``unique`` to the appending store)."""
    return f"{prefix}:{uuid}" if uuid is not None else f"{prefix}/{unique}"


def tables(conn: Any) -> tuple[bool, bool]:
    """Whether the legacy and the current entries table exist (a cloud read replica may hold
    a remote at version 4 or 5)."""
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (LEGACY, ENTRIES),
        ).fetchall()
    }
    return LEGACY in names, ENTRIES in names


def has_tables(conn: Any) -> bool:
    return any(tables(conn))


def max_seq(conn: Any, key: tuple[str, str, str]) -> int:
    """The key's last ``seq`` (0: none) in both tables."""
    return max(_max_seqs(conn, key))


def _max_seqs(
    conn: Any, key: tuple[str, str, str], present: tuple[bool, bool] | None = None
) -> tuple[int, int]:
    """The key's last ``seq`` in the legacy and the current table (0: none)."""
    found = [0, 0]
    for i, (table, exists) in enumerate(zip((LEGACY, ENTRIES), present or tables(conn))):
        if exists:
            row = conn.execute(f"SELECT MAX(seq) FROM {table} WHERE {_KEY}", key).fetchone()
            found[i] = int(row[0] or 0) if row else 0
    return found[0], found[1]


def _legacy_uuids(conn: Any, key: tuple[str, str, str], uuids: set[str]) -> set[str]:
    """Which of ``uuids`` the key holds in the legacy table (through its unique index)."""
    rows = conn.execute(
        f"SELECT uuid FROM {LEGACY} WHERE {_KEY} AND uuid IN (SELECT value FROM json_each(?))",
        (*key, json.dumps(sorted(uuids))),
    ).fetchall()
    return {r[0] for r in rows}


def insert_entries(
    conn: Any,
    key: tuple[str, str, str],
    entries: Sequence[Any],
    texts: Sequence[str],
    mtime: int,
    min_seq: int,
    store_tag: str,
) -> tuple[list[Any], int]:
    """Append ``entries`` (``texts``: their encoding) inside the caller's transaction; returns
    those newly stored and the last ``seq`` used (above every ``seq`` the key has here, and at
    least ``min_seq``). ``store_tag`` is unique to the appending store (ids of uuid-less
    entries).

    ``uuid`` de-duplication is the primary key's (``row_id``, ``INSERT OR IGNORE``). Which
    entries were new is known from the insert's row count: all of them, normally; when some
    were ignored (a retried batch), the rows are looked up: those carrying this append's
    ``seq`` landed, so a retried batch is not folded twice into the summary. (Looking the ids
    up before inserting cost more than the insert itself.)
    """
    prefix = key_prefix(key)
    legacy_seq, current_seq = _max_seqs(conn, key, (True, True))  # a migrated writer's
    seq = max(min_seq, legacy_seq + 1, current_seq + 1)
    seen: set[str] = set()  # a uuid repeated inside the batch is stored once
    if legacy_seq:  # a key appended to before version 6: its uuids count too
        seen = _legacy_uuids(conn, key, {u for e in entries if isinstance(u := e.get("uuid"), str)})
    new: list[Any] = []
    params: list[tuple[Any, ...]] = []
    for entry, text in zip(entries, texts):
        u = entry.get("uuid")
        if not isinstance(u, str):
            u = None
        elif u in seen:
            continue
        else:
            seen.add(u)
        params.append((row_id(prefix, u, f"{store_tag}{seq}"), *key, seq, u, text, mtime))
        new.append(entry)
        seq += 1
    if params:
        cur = conn.executemany(
            f"INSERT OR IGNORE INTO {ENTRIES}"
            " (id, project_key, session_id, subpath, seq, uuid, entry, mtime)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
        if getattr(cur, "rowcount", -1) != len(params):  # some uuids were stored before
            ids = json.dumps([p[0] for p in params])
            landed = {
                (r[0], r[1])
                for r in conn.execute(
                    f"SELECT id, seq FROM {ENTRIES} WHERE id IN (SELECT value FROM json_each(?))",
                    (ids,),
                ).fetchall()
            }
            new = [e for e, p in zip(new, params) if (p[0], p[4]) in landed]
    return new, seq - 1


def select_entries(conn: Any, key: tuple[str, str, str]) -> list[str]:
    """The key's entries in ``seq`` order. Rows of the legacy table whose ``uuid`` the current
    one holds as well (appended again after the upgrade) are skipped: each ``uuid`` once."""
    legacy, current = tables(conn)
    old: list[tuple[int, str]] = []
    if legacy:
        not_again = (
            f" AND (uuid IS NULL OR NOT EXISTS (SELECT 1 FROM {ENTRIES} AS c"
            f" WHERE c.id = ? || ':' || {LEGACY}.uuid))"
            if current
            else ""
        )
        args = (*key, key_prefix(key)) if current else key
        old = [
            (int(r[0]), r[1])
            for r in conn.execute(
                f"SELECT seq, entry FROM {LEGACY} WHERE {_KEY}{not_again} ORDER BY seq, rowid",
                args,
            ).fetchall()
        ]
    if not current:
        return [t for _, t in old]
    if not old:  # the common case: one walk of the key index, no sort
        rows = conn.execute(
            f"SELECT entry FROM {ENTRIES} WHERE {_KEY} ORDER BY seq, rowid", key
        ).fetchall()
        return [r[0] for r in rows]
    rows = conn.execute(
        f"SELECT seq, entry FROM {ENTRIES} WHERE {_KEY} ORDER BY seq, rowid", key
    ).fetchall()
    merged = heapq.merge(old, [(int(r[0]), r[1]) for r in rows], key=lambda r: r[0])
    return [t for _, t in merged]


def select_summary(conn: Any, project_key: str, session_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT mtime, data FROM transcript_summaries WHERE project_key = ? AND session_id = ?",
        (project_key, session_id),
    ).fetchone()
    if row is None:
        return None
    return {"session_id": session_id, "mtime": int(row[0]), "data": json.loads(row[1])}


def upsert_summary(conn: Any, project_key: str, summary: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO transcript_summaries (project_key, session_id, mtime, data) VALUES (?,?,?,?)"
        " ON CONFLICT(project_key, session_id) DO UPDATE SET mtime = excluded.mtime,"
        " data = excluded.data",
        (project_key, summary["session_id"], summary["mtime"], encode_entry(summary["data"])),
    )


@dataclass(frozen=True)
class RowRef:
    """A stored row's table and ``(id, project_key, session_id, subpath, seq, mtime)``."""

    table: str
    values: tuple[Any, ...]


def _where_key(
    project_key: str, session_id: str, subpath: str | None
) -> tuple[str, tuple[str, ...]]:
    if subpath is None:  # a main key: its subagent transcripts too
        return "project_key = ? AND session_id = ?", (project_key, session_id)
    return _KEY, (project_key, session_id, subpath)


def rows_of(conn: Any, project_key: str, session_id: str, subpath: str | None) -> list[RowRef]:
    """The rows ``delete_key`` deletes (``subpath`` None: the main key and its subkeys)."""
    where, args = _where_key(project_key, session_id, subpath)
    found: list[RowRef] = []
    for table, present in zip((LEGACY, ENTRIES), tables(conn)):
        if present:
            rows = conn.execute(
                f"SELECT id, project_key, session_id, subpath, seq, mtime FROM {table}"
                f" WHERE {where}",
                args,
            ).fetchall()
            found += [RowRef(table, tuple(r)) for r in rows]
    return found


def delete_key(
    conn: Any,
    project_key: str,
    session_id: str,
    subpath: str | None,
    elsewhere: Sequence[RowRef] | None = None,
) -> None:
    """A main key (``subpath`` None) takes its subagent transcripts and summary with it.

    ``elsewhere``: cloud mode, the rows the remote holds (``rows_of`` on a pulled replica).
    The writer's replica holds only this process's rows and a push replays a delete per row
    it deleted, so the others are first put in as placeholders (an empty ``entry``, no
    ``uuid``) in the same transaction: the remote applies their upsert, then their delete.
    The summary likewise."""
    where, args = _where_key(project_key, session_id, subpath)
    if elsewhere is not None:
        for ref in elsewhere:
            conn.execute(
                f"INSERT OR IGNORE INTO {ref.table} (id, project_key, session_id, subpath, seq,"
                " mtime, entry) VALUES (?, ?, ?, ?, ?, ?, '')",
                ref.values,
            )
        if subpath is None:
            conn.execute(
                "INSERT OR IGNORE INTO transcript_summaries (project_key, session_id, mtime,"
                " data) VALUES (?, ?, 0, '{}')",
                (project_key, session_id),
            )
    for table, present in zip((LEGACY, ENTRIES), tables(conn)):
        if present:
            conn.execute(f"DELETE FROM {table} WHERE {where}", args)
    if subpath is None:
        conn.execute(
            "DELETE FROM transcript_summaries WHERE project_key = ? AND session_id = ?",
            (project_key, session_id),
        )


def _both(conn: Any, select: str) -> str:
    """``select`` (naming its table ``{t}``) over the tables that exist, as one UNION ALL."""
    parts = [select.format(t=t) for t, ok in zip((LEGACY, ENTRIES), tables(conn)) if ok]
    return " UNION ALL ".join(parts)


def list_sessions(conn: Any, project_key: str) -> list[tuple[str, int]]:
    union = _both(
        conn,
        "SELECT session_id, MAX(mtime) AS m FROM {t} WHERE project_key = ? AND subpath = ''"
        " GROUP BY session_id",
    )
    if not union:
        return []
    rows = conn.execute(
        f"SELECT session_id, MAX(m) FROM ({union}) GROUP BY session_id",
        (project_key,) * (union.count("UNION ALL") + 1),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def list_summaries(conn: Any, project_key: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT session_id, mtime, data FROM transcript_summaries WHERE project_key = ?",
        (project_key,),
    ).fetchall()
    return [{"session_id": r[0], "mtime": int(r[1]), "data": json.loads(r[2])} for r in rows]


def list_subkeys(conn: Any, project_key: str, session_id: str) -> list[str]:
    union = _both(
        conn,
        "SELECT DISTINCT subpath FROM {t} WHERE project_key = ? AND session_id = ?"
        " AND subpath != ''",
    )
    if not union:
        return []
    rows = conn.execute(
        f"SELECT DISTINCT subpath FROM ({union}) ORDER BY subpath",
        (project_key, session_id) * (union.count("UNION ALL") + 1),
    ).fetchall()
    return [r[0] for r in rows]


def _counts(conn: Any, session_id: str) -> list[tuple[str, str, int]]:
    """``(project_key, subpath, entries)`` of one SDK session id, any project (the current
    table through its primary key's range of that session, the legacy one through its index)."""
    legacy, current = tables(conn)
    rows: list[tuple[str, str, int]] = []
    if current:
        low = _hash(session_id, n=8)
        rows += conn.execute(
            f"SELECT project_key, subpath, COUNT(*) FROM {ENTRIES} WHERE id >= ? AND id < ?"
            " AND session_id = ? GROUP BY project_key, subpath",
            (low, low + "g", session_id),  # after every hex digit
        ).fetchall()
    if legacy:
        rows += conn.execute(
            f"SELECT project_key, subpath, COUNT(*) FROM {LEGACY} WHERE session_id = ?"
            " GROUP BY project_key, subpath",
            (session_id,),
        ).fetchall()
    return rows


def transcripts_for(conn: Any, session_ids: Iterable[str]) -> list[StoredTranscript]:
    """The stored transcripts of these SDK session ids (any project), for the logs' link."""
    ids = list(dict.fromkeys(s for s in session_ids if s))
    if not ids or not has_tables(conn):
        return []
    found: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for session_id in ids:
        for project_key, subpath, count in sorted(_counts(conn, session_id)):
            main, subs = found.get((project_key, session_id), (0, []))
            if subpath:
                if subpath not in subs:
                    subs.append(subpath)
            else:
                main += int(count)
            found[(project_key, session_id)] = (main, subs)
    order = {s: i for i, s in enumerate(ids)}
    return sorted(
        (
            StoredTranscript(p, s, n, tuple(sorted(subs)))
            for (p, s), (n, subs) in found.items()
            if n
        ),
        key=lambda t: (order.get(t.session_id, 0), t.project_key),
    )


def load_transcript(conn: Any, t: StoredTranscript) -> dict[str, list[Any]]:
    """``{subpath: entries}`` of a stored transcript, ``""`` being the main one."""
    return {
        sub: decode_entries(select_entries(conn, (t.project_key, t.session_id, sub)))
        for sub in (MAIN, *t.subpaths)
    }
