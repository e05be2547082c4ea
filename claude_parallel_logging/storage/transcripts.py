"""SQL and encoding of the session store's tables (``transcript_entries``, ``transcript_summaries``).

Free of ``claude_agent_sdk`` so that the query API and ``cpl`` can read stored transcripts
without the SDK installed. Entries are stored verbatim (no truncation, no redaction): a
transcript must load back deep-equal for the SDK to resume it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAIN = ""  # the subpath column of a main transcript (the SDK's key omits ``subpath``)
TRANSCRIPT_SCHEMA = 4  # the schema version that created the tables


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
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
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


def has_tables(conn: Any) -> bool:
    row = conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'transcript_entries'"
    ).fetchone()
    return bool(row and row[0])


def insert_entries(
    conn: Any,
    key: tuple[str, str, str],
    entries: Sequence[Any],
    texts: Sequence[str],
    mtime: int,
    min_seq: int,
    id_prefix: str,
) -> tuple[list[Any], int]:
    """Append ``entries`` (``texts``: their encoding) inside the caller's transaction; returns
    those newly stored and the last ``seq`` used. Row ids are ``id_prefix`` (unique to the
    appending store) + ``seq``, which is unique per store: cheaper than a uuid per row.

    ``uuid`` de-duplication is the database's (a unique index per key, ``INSERT OR IGNORE``).
    Which entries were new is known from the insert's row count: all of them, normally; when
    some were ignored (a retried batch), the ids that landed are looked up, so a retried batch
    is not folded twice into the summary. (Looking the uuids up before inserting cost more than
    the insert itself.)
    """
    uuids = [e.get("uuid") if isinstance(e.get("uuid"), str) else None for e in entries]
    seen: set[str] = set()  # a uuid repeated inside the batch is stored once
    row = conn.execute(
        "SELECT MAX(seq) FROM transcript_entries WHERE project_key = ? AND session_id = ?"
        " AND subpath = ?",
        key,
    ).fetchone()
    seq = max(min_seq, (row[0] or 0) + 1 if row else 1)
    new: list[Any] = []
    params: list[tuple[Any, ...]] = []
    for entry, text, u in zip(entries, texts, uuids):
        if u is not None:
            if u in seen:
                continue
            seen.add(u)
        params.append((f"{id_prefix}{seq}", *key, seq, u, text, mtime))
        new.append(entry)
        seq += 1
    if params:
        cur = conn.executemany(
            "INSERT OR IGNORE INTO transcript_entries"
            " (id, project_key, session_id, subpath, seq, uuid, entry, mtime)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
        if getattr(cur, "rowcount", -1) != len(params):  # some uuids were stored before
            ids = json.dumps([p[0] for p in params])
            landed = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM transcript_entries WHERE id IN (SELECT value FROM json_each(?))",
                    (ids,),
                ).fetchall()
            }
            new = [e for e, p in zip(new, params) if p[0] in landed]
    return new, seq - 1


def select_entries(conn: Any, key: tuple[str, str, str]) -> list[str]:
    rows = conn.execute(
        "SELECT entry FROM transcript_entries WHERE project_key = ? AND session_id = ?"
        " AND subpath = ? ORDER BY seq, rowid",
        key,
    ).fetchall()
    return [r[0] for r in rows]


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


def delete_key(conn: Any, project_key: str, session_id: str, subpath: str | None) -> None:
    """A main key (``subpath`` None) takes its subagent transcripts and summary with it."""
    if subpath is None:
        conn.execute(
            "DELETE FROM transcript_entries WHERE project_key = ? AND session_id = ?",
            (project_key, session_id),
        )
        conn.execute(
            "DELETE FROM transcript_summaries WHERE project_key = ? AND session_id = ?",
            (project_key, session_id),
        )
    else:
        conn.execute(
            "DELETE FROM transcript_entries WHERE project_key = ? AND session_id = ?"
            " AND subpath = ?",
            (project_key, session_id, subpath),
        )


def list_sessions(conn: Any, project_key: str) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT session_id, MAX(mtime) FROM transcript_entries WHERE project_key = ?"
        " AND subpath = '' GROUP BY session_id",
        (project_key,),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


def list_summaries(conn: Any, project_key: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT session_id, mtime, data FROM transcript_summaries WHERE project_key = ?",
        (project_key,),
    ).fetchall()
    return [{"session_id": r[0], "mtime": int(r[1]), "data": json.loads(r[2])} for r in rows]


def list_subkeys(conn: Any, project_key: str, session_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT subpath FROM transcript_entries WHERE project_key = ?"
        " AND session_id = ? AND subpath != '' ORDER BY subpath",
        (project_key, session_id),
    ).fetchall()
    return [r[0] for r in rows]


def transcripts_for(conn: Any, session_ids: Iterable[str]) -> list[StoredTranscript]:
    """The stored transcripts of these SDK session ids (any project), for the logs' link."""
    ids = list(dict.fromkeys(s for s in session_ids if s))
    if not ids or not has_tables(conn):
        return []
    rows = conn.execute(
        "SELECT project_key, session_id, subpath, COUNT(*) FROM transcript_entries"
        f" WHERE session_id IN ({','.join('?' * len(ids))})"
        " GROUP BY project_key, session_id, subpath ORDER BY project_key, session_id, subpath",
        ids,
    ).fetchall()
    found: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for project_key, session_id, subpath, count in rows:
        main, subs = found.get((project_key, session_id), (0, []))
        if subpath:
            subs.append(subpath)
        else:
            main = int(count)
        found[(project_key, session_id)] = (main, subs)
    order = {s: i for i, s in enumerate(ids)}
    return sorted(
        (StoredTranscript(p, s, n, tuple(subs)) for (p, s), (n, subs) in found.items() if n),
        key=lambda t: order.get(t.session_id, 0),
    )


def load_transcript(conn: Any, t: StoredTranscript) -> dict[str, list[Any]]:
    """``{subpath: entries}`` of a stored transcript, ``""`` being the main one."""
    return {
        sub: decode_entries(select_entries(conn, (t.project_key, t.session_id, sub)))
        for sub in (MAIN, *t.subpaths)
    }
