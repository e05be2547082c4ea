"""Full-text search over sessions: SQL ``LIKE`` narrows the candidates, Python decides and cuts
the snippet around the first place each session matched."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._log import RateLimitedWarning
from .access import TursoClient, answered_remotely, database_identity, reading
from .derived import Unjournaled, disabled, remove_index
from .records import (
    WHERE_MESSAGE,
    WHERE_MESSAGE_TOOL_INPUT,
    WHERE_MESSAGE_TOOL_OUTPUT,
    WHERE_SESSION_ERROR,
    WHERE_TOOL_ERROR,
    WHERE_TOOL_INPUT,
    WHERE_TOOL_OUTPUT,
    SearchHit,
)
from .search_index import (
    MESSAGE_TEXTS,
    MIN_NEEDLE,
    TABLES,
    TOOL_TEXTS,
    IndexState,
    SearchIndex,
    index_path,
    json_values,
)
from .sql import KEYSET_BEFORE, LIKE, Filter, filter_clauses, like_escape, session_cols, summaries
from .times import TimeLike

SNIPPET_CONTEXT = 60
# Indexing per search while catching up (the rest is scanned meanwhile): a read holds a local
# file's lock, so loggers wait that long; ``cpl reindex`` builds all of it in slices.
REFRESH_BUDGET_S = 0.5
SLICE_S = 0.5
_warn = RateLimitedWarning()


@dataclass(frozen=True)
class _Matcher:
    """SQL ``LIKE`` narrows the candidates, Python decides.

    ``LIKE`` folds ASCII case only, so other cased letters become ``_`` in the pattern. JSON columns
    are matched on the values inside them (the SQL looks for the JSON-escaped text as well), so
    ``\\`` or ``"`` do not match JSON's own escapes and quotes.
    """

    needle: str
    raw: str
    pattern: str
    json_pattern: str

    @classmethod
    def build(cls, query: str) -> _Matcher:
        def pattern(text: str) -> str:
            parts = [
                "_" if ord(c) >= 128 and c.lower() != c.upper() else like_escape(c) for c in text
            ]
            return "%" + "".join(parts) + "%"

        json_form = json.dumps(query, ensure_ascii=False)[1:-1]
        return cls(query.lower(), query, pattern(query), pattern(json_form))

    def find_text(self, text: Any) -> str | None:
        """A snippet around the first hit in ``text``, or ``None``."""
        if not isinstance(text, str):
            return None
        pos = text.lower().find(self.needle)
        return None if pos < 0 else self._snippet(text, pos)

    def find_json(self, stored: Any) -> str | None:
        """A snippet (``key: …text…``) of the first value inside stored JSON containing the text;
        stored text that is not JSON (cut by the payload limit, say) is searched as it is."""
        if not isinstance(stored, str):
            return None
        try:
            value = json.loads(stored)
        except ValueError:
            return self.find_text(stored)
        for path, text in json_values(value):
            snippet = self.find_text(text)
            if snippet is not None:
                return f"{path}: {snippet}" if path else snippet
        return None

    def _snippet(self, text: str, pos: int) -> str:
        start = max(0, pos - SNIPPET_CONTEXT)
        end = min(len(text), pos + len(self.raw) + SNIPPET_CONTEXT)
        body = " ".join(text[start:end].split())
        return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


def _match_sql(cols: Sequence[tuple[str, bool]]) -> str:
    return " OR ".join(
        f"{col} {LIKE}" + (f" OR {col} {LIKE}" if is_json else "") for col, is_json in cols
    )


def _match_params(m: _Matcher, cols: Sequence[tuple[str, bool]]) -> list[str]:
    params: list[str] = []
    for _col, is_json in cols:
        params.append(m.pattern)
        if is_json:
            params.append(m.json_pattern)
    return params


_MESSAGE_MATCH = MESSAGE_TEXTS
_TOOL_MATCH = TOOL_TEXTS


@dataclass(frozen=True)
class _Hit:
    at: str
    where: str
    snippet: str
    sequence: int | None = None
    role: str | None = None
    tool_name: str | None = None


def _message_hits(conn: Any, m: _Matcher, ids: Sequence[str]) -> dict[str, _Hit | None]:
    """Per session (of those ``LIKE`` matched), its first message hit by (sequence, rowid)."""
    marks = ", ".join("?" for _ in ids)
    cur = conn.execute(
        "SELECT session_id, created_at, sequence, role, tool_name, content, tool_input,"
        f" tool_output FROM messages WHERE session_id IN ({marks})"
        f" AND ({_match_sql(_MESSAGE_MATCH)}) ORDER BY session_id, sequence, rowid",
        (*ids, *_match_params(m, _MESSAGE_MATCH)),
    )
    out: dict[str, _Hit | None] = {}
    for row in cur.fetchall():
        sid = str(row[0])
        if out.get(sid) is not None:
            continue
        out[sid] = None
        for where, snippet in (
            (WHERE_MESSAGE, m.find_text(row[5])),
            (WHERE_MESSAGE_TOOL_INPUT, m.find_json(row[6])),
            (WHERE_MESSAGE_TOOL_OUTPUT, m.find_json(row[7])),
        ):
            if snippet is not None:
                out[sid] = _Hit(row[1], where, snippet, int(row[2]), row[3], row[4])
                break
    return out


def _tool_hits(conn: Any, m: _Matcher, ids: Sequence[str]) -> dict[str, _Hit | None]:
    """Per session (of those ``LIKE`` matched), its first tool hit by (started_at, rowid)."""
    marks = ", ".join("?" for _ in ids)
    cur = conn.execute(
        "SELECT session_id, started_at, tool_name, input, output, error FROM tool_executions"
        f" WHERE session_id IN ({marks}) AND ({_match_sql(_TOOL_MATCH)})"
        " ORDER BY session_id, started_at, rowid",
        (*ids, *_match_params(m, _TOOL_MATCH)),
    )
    out: dict[str, _Hit | None] = {}
    for row in cur.fetchall():
        sid = str(row[0])
        if out.get(sid) is not None:
            continue
        out[sid] = None
        for where, snippet in (
            (WHERE_TOOL_INPUT, m.find_json(row[3])),
            (WHERE_TOOL_OUTPUT, m.find_text(row[4])),
            (WHERE_TOOL_ERROR, m.find_text(row[5])),
        ):
            if snippet is not None:
                out[sid] = _Hit(row[1], where, snippet, tool_name=row[2])
                break
    return out


def _first_hits(
    conn: Any, m: _Matcher, rows: Sequence[Sequence[Any]], error_like: Sequence[bool] | None = None
) -> list[_Hit | None]:
    """For each session row: the earliest place that contains the text; the session's error
    last. Two queries for the whole batch.

    ``error_like``: whether each session is a candidate of the plain scan by its error alone
    (``LIKE`` on it); a session proposed by the index counts only when the scan would have
    proposed it too, so both give the same hits.
    """
    ids = [str(r[0]) for r in rows]
    if not ids:
        return []
    msgs = _message_hits(conn, m, ids)
    tools = _tool_hits(conn, m, ids)
    out: list[_Hit | None] = []
    for k, row in enumerate(rows):
        sid = ids[k]
        msg, tool = msgs.get(sid), tools.get(sid)
        if msg is not None and (tool is None or msg.at <= tool.at):
            out.append(msg)
        elif tool is not None:
            out.append(tool)
        elif error_like is not None and not (error_like[k] or sid in msgs or sid in tools):
            out.append(None)
        else:
            snippet = m.find_text(row[7])
            out.append(None if snippet is None else _Hit("", WHERE_SESSION_ERROR, snippet))
    return out


_Found = list[tuple[Sequence[Any], _Hit]]


def _scanned(conn: Any, m: _Matcher, clauses: list[str], params: list[Any], limit: int) -> _Found:
    """Every session, newest first, narrowed by ``LIKE`` subqueries over whole tables."""
    clauses = [
        *clauses,
        f"(s.error_message {LIKE}"
        f" OR s.id IN (SELECT session_id FROM messages WHERE {_match_sql(_MESSAGE_MATCH)})"
        f" OR s.id IN (SELECT session_id FROM tool_executions WHERE {_match_sql(_TOOL_MATCH)}))",
    ]
    params = [
        *params,
        m.pattern,
        *_match_params(m, _MESSAGE_MATCH),
        *_match_params(m, _TOOL_MATCH),
    ]
    base = f"SELECT {session_cols('s')} FROM sessions s WHERE {' AND '.join(clauses)}"
    batch = max(2 * limit, 50)
    hits: _Found = []
    after: tuple[str, str] | None = None
    for _ in range(1_000_000):  # candidate batches, newest first, until ``limit`` hits
        keyset, extra = "", []
        if after is not None:
            keyset = f" AND {KEYSET_BEFORE}"
            extra = [after[0], after[0], after[1]]
        rows = conn.execute(
            f"{base}{keyset} ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
            (*params, *extra, batch),
        ).fetchall()
        for row, hit in zip(rows, _first_hits(conn, m, rows)):
            if hit is not None:
                hits.append((row, hit))
                if len(hits) >= limit:
                    return hits
        if len(rows) < batch:
            break
        after = (rows[-1][5], rows[-1][0])
    return hits


def search_index_state(conn: Any | None, client: TursoClient | None = None) -> IndexState:
    """The derived index of the database (never created here): documents, sessions, rows of
    ``conn``'s database not indexed yet, size. ``cpl doctor`` prints it."""
    path = index_path(database_identity(client))
    if not path.exists():
        return IndexState(str(path), False)
    try:
        index = SearchIndex(path)
    except (sqlite3.Error, OSError) as exc:
        return IndexState(str(path), True, error=str(exc))
    try:
        return index.state(conn)
    except Unjournaled as exc:
        return IndexState(str(path), True, error=str(exc))
    except (sqlite3.Error, OSError) as exc:
        return IndexState(str(path), True, error=str(exc))
    finally:
        index.close()


def rebuild_search_index(
    client: TursoClient | None = None, progress: Callable[[int], None] | None = None
) -> IndexState:
    """Build the search index again from the tables (``cpl reindex``); ``progress`` gets the
    number of documents indexed so far. The database is opened for one slice of the work at a
    time (``SLICE_S``), so that loggers of a local file get its lock in between."""
    path = index_path(database_identity(client))
    remove_index(path)
    index = SearchIndex(path)
    try:
        for _ in range(100_000_000):
            with reading(client, allow_remote=False) as conn:
                if conn is None:
                    return index.state(None)
                if index.refresh(conn, SLICE_S, progress):
                    return index.state(conn)
        raise RuntimeError("search index: too many slices")  # unreachable in practice
    except Unjournaled as exc:
        index.close()
        remove_index(path)
        return IndexState(str(path), False, error=str(exc))
    finally:
        index.close()


def _indexed(
    conn: Any,
    client: TursoClient | None,
    m: _Matcher,
    clauses: list[str],
    params: list[Any],
    limit: int,
) -> _Found | None:
    """The same hits through the derived index; ``None`` when it cannot be used (the caller
    scans instead): built from every row, it is not built through the remote."""
    if answered_remotely(conn):
        return None
    path = index_path(database_identity(client))
    try:
        index = SearchIndex(path)
    except (sqlite3.Error, OSError) as exc:
        _index_failed(path, exc)
        return None
    try:
        caught_up = index.refresh(conn, REFRESH_BUDGET_S)
        tail = [] if caught_up else _unindexed_candidates(conn, index, m)
        return _walk(conn, index, m, clauses, params, limit, tail)
    except Unjournaled:
        return None
    except (sqlite3.Error, OSError) as exc:
        _index_failed(path, exc)
        return None
    finally:
        index.close()


def _index_failed(path: Any, exc: BaseException) -> None:
    """A damaged file is removed (the next search rebuilds it); anything else (a full disk, a
    lock held too long) is only reported. Either way this search scans."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        remove_index(path)
    _warn("search-index", "search index %s unusable, searching without it: %s", path, exc)


def _unindexed_candidates(conn: Any, index: SearchIndex, m: _Matcher) -> list[str]:
    """Sessions whose rows beyond the index's marks, or changed and not read again yet, match
    (while it catches up)."""
    marks = index.marks()
    changed = index.unread_changes(conn)
    ids: dict[str, None] = {}
    for table, kind, cols in TABLES:
        key = "id" if table == "sessions" else "session_id"
        for (sid,) in conn.execute(  # ORDER BY rowid: a range, not a scan, in pyturso
            f"SELECT {key} FROM {table} WHERE rowid > ? AND ({_match_sql(cols)}) ORDER BY rowid",
            (marks[table], *_match_params(m, cols)),
        ).fetchall():
            ids[str(sid)] = None
        named = changed.get(kind, [])
        for start in range(0, len(named), 400):
            part = named[start : start + 400]
            for (sid,) in conn.execute(
                f"SELECT {key} FROM {table} WHERE id IN ({', '.join('?' for _ in part)})"
                f" AND ({_match_sql(cols)})",
                (*part, *_match_params(m, cols)),
            ).fetchall():
                ids[str(sid)] = None
    return list(ids)


def _walk(
    conn: Any,
    index: SearchIndex,
    m: _Matcher,
    clauses: list[str],
    params: list[Any],
    limit: int,
    extra: Sequence[str],
) -> _Found:
    """Candidates from the index, checked newest first: a candidate is checked once no
    session still to come from the index can be newer than it."""
    cols = f"{session_cols('s')}, (s.error_message {LIKE}) AS error_like"
    seen: set[str] = set()
    pending: list[Sequence[Any]] = []  # sorted oldest first: pop() is the newest
    hits: _Found = []

    def add(ids: Sequence[str]) -> None:
        new = [sid for sid in ids if sid not in seen]
        seen.update(new)
        for start in range(0, len(new), 400):
            part = new[start : start + 400]
            where = " AND ".join([*clauses, f"s.id IN ({', '.join('?' for _ in part)})"])
            pending.extend(
                conn.execute(
                    f"SELECT {cols} FROM sessions s WHERE {where}",
                    (m.pattern, *params, *part),
                ).fetchall()
            )
        pending.sort(key=_key)

    add(extra)
    for ids, bound in index.walk(m.needle):
        add(ids)
        while pending and (bound is None or _key(pending[-1]) > bound):
            batch: list[Sequence[Any]] = []
            while pending and len(batch) < 2 * (limit - len(hits)) + 8:
                if bound is not None and _key(pending[-1]) <= bound:
                    break
                batch.append(pending.pop())
            checked = _first_hits(conn, m, batch, [bool(r[-1]) for r in batch])
            for row, hit in zip(batch, checked):
                if hit is not None:
                    hits.append((row[:-1], hit))
                    if len(hits) >= limit:
                        return hits
        if bound is None:
            break
    return hits


def _key(row: Sequence[Any]) -> tuple[str, str]:
    return (str(row[5]), str(row[0]))


def search_sessions(
    query: str,
    limit: int = 20,
    *,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    client: TursoClient | None = None,
    use_index: bool = True,
) -> list[SearchHit]:
    """Sessions (newest first) whose messages, tool inputs/outputs or errors contain ``query``.

    Case-insensitive; every character, ``%``, ``_``, quotes and backslashes included, is literal.
    A derived trigram index in the user's cache directory narrows the sessions to check (it
    gives the same hits as scanning every session; ``use_index=False`` or
    ``CPL_DERIVED_INDEXES=off`` scans).
    """
    if not isinstance(query, str) or not query:
        raise ValueError("search text must not be empty")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    m = _Matcher.build(query)
    clauses, params = filter_clauses("s", agent_type, status, model, since, until)
    with reading(client) as conn:
        if conn is None:
            return []
        hits = None
        if use_index and len(m.needle) >= MIN_NEEDLE and not disabled():
            hits = _indexed(conn, client, m, clauses, params, limit)
        if hits is None:
            hits = _scanned(conn, m, clauses, params, limit)
        found = summaries(conn, [row for row, _ in hits])
    return [
        SearchHit(summary, h.where, h.snippet, h.sequence, h.role, h.tool_name)
        for summary, (_, h) in zip(found, hits)
    ]
