"""Sessions: pages of them (newest first), every one of them, one in full, short ids.

A session is found by our id, the id of any Claude CLI / OpenCode session it ran, or a unique
prefix of our id (at least ``MIN_PREFIX_LENGTH`` characters).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..storage.transcripts import StoredTranscript, load_transcript, transcripts_for
from .access import TursoClient, reading
from .cursor import encode_cursor, page_query
from .records import MessageRecord, SessionDetail, SessionPage, SessionSummary, ToolExecutionRecord
from .sql import (
    KEYSET_BEFORE,
    LIKE,
    MESSAGE_COLS,
    RESULT_ROLE,
    SESSION_COLS,
    TOOL_COLS,
    Filter,
    filter_clauses,
    json_value,
    like_escape,
    prefetch,
    session_cols,
    summaries,
)
from .times import TimeLike, duration_ms

MIN_PREFIX_LENGTH = 6  # shorter prefixes of our ids are not looked up (too likely to be ambiguous)
ITER_PAGE_SIZE = 200

# ``cursor`` left out: the first page. ``cursor=None`` is what the last page's ``next_cursor``
# holds, so it means "nothing more" (an empty page): ``list_sessions(cursor=page.next_cursor)``
# in a loop ends instead of starting over with every session.
FIRST_PAGE: Any = object()


def list_sessions(
    limit: int = 50,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = FIRST_PAGE,
    *,
    metadata: Mapping[str, str] | None = None,
    min_cost: float | None = None,
    client: TursoClient | None = None,
) -> SessionPage:
    """Newest first. Pages are keyset-based on ``(started_at, id)``: sessions that arrive
    between two pages never shift or repeat rows of the pages still to come.

    ``next_cursor`` keeps the query's filters, with a relative ``since``/``until`` (``"7d"``)
    fixed to the instant it meant on the first page, so ``list_sessions(cursor=c)`` alone
    continues the same query (``limit`` is not kept: it is each call's page size). Filters
    given with a cursor must be exactly the cursor's (the same age, such as ``"7d"`` again,
    counts as the same), else :class:`InvalidCursor` (a ``ValueError``) is raised: "the cursor
    belongs to a query with other filters". An older cursor (made before cursors kept their
    filters) is still accepted: with it, the filters given apply, as they did then.

    Leave ``cursor`` out (or pass ``""``) for the first page; ``cursor=None``, the last page's
    ``next_cursor``, returns an empty page (after checking the other arguments), so paging with
    ``list_sessions(cursor=page.next_cursor)`` stops. :func:`iter_sessions` pages for you.

    ``metadata={"pr": "42"}`` keeps sessions whose metadata holds each key with that value (a
    number or boolean compares as its JSON text: ``"42"``, ``"true"``); ``min_cost`` keeps
    sessions that cost at least that many dollars (sessions without a cost are left out).
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if cursor is None:  # past the last page
        page_query(agent_type, status, model, since, until, None, metadata, min_cost)
        return SessionPage()
    if cursor is FIRST_PAGE:
        cursor = None
    query, after = page_query(agent_type, status, model, since, until, cursor, metadata, min_cost)
    clauses, params = filter_clauses("s", query.agent_type, query.status, query.model)
    for bound, op in ((query.since, ">="), (query.until, "<")):
        if bound is not None:
            clauses.append(f"s.started_at {op} ?")
            params.append(bound)
    for key, value in query.metadata:
        clauses.append(_METADATA_MATCH)
        path = _json_path(key)
        params.extend([path, json.dumps(value, ensure_ascii=False), path, path, value])
    if query.min_cost is not None:
        clauses.append("s.cost_usd >= ?")
        params.append(query.min_cost)
    if after is not None:
        clauses.append(KEYSET_BEFORE)
        params.extend([after[0], after[0], after[1]])
    sql = page_sql(clauses)
    with reading(client) as conn:
        if conn is None:
            return SessionPage()
        rows = conn.execute(sql, (*params, limit + 1)).fetchall()
        found = summaries(conn, rows[:limit])
    next_cursor = None
    if len(rows) > limit and found:
        last = found[-1]
        next_cursor = encode_cursor(last.started_at, last.id, query)
    return SessionPage(found, next_cursor)


def page_sql(clauses: Sequence[str]) -> str:
    """A page of sessions newest first (``LIMIT ?``). The page's rowids come first, from the
    (started_at, id) indexes alone: asked for every column at once, the planner takes the
    started_at index and sorts every session before the cursor."""
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return (
        f"SELECT {session_cols('s')} FROM sessions s WHERE s.rowid IN (SELECT s.rowid FROM"
        f" sessions s {where} ORDER BY s.started_at DESC, s.id DESC LIMIT ?)"
        " ORDER BY s.started_at DESC, s.id DESC"
    )


def costliest_sessions(
    limit: int = 10,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
) -> list[SessionSummary]:
    """The sessions that cost the most (ties: newest first); sessions without a cost are left
    out. Filters as ``usage_summary``'s, so the two describe the same sessions."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    clauses, params = filter_clauses("s", agent_type, None, model, since, until)
    # ``+``: the filters use no index, so the planner walks (cost_usd, started_at, id) from the
    # top and stops at ``limit`` instead of sorting every session of the period
    clauses = [f"+{c}" for c in clauses]
    clauses.append("s.cost_usd IS NOT NULL")
    sql = (
        f"SELECT {session_cols('s')} FROM sessions s WHERE {' AND '.join(clauses)}"
        " ORDER BY s.cost_usd DESC, s.started_at DESC, s.id DESC LIMIT ?"
    )
    with reading(client) as conn:
        if conn is None:
            return []
        return summaries(conn, conn.execute(sql, (*params, limit)).fetchall())


def iter_sessions(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
    min_cost: float | None = None,
    page_size: int = ITER_PAGE_SIZE,
    client: TursoClient | None = None,
) -> Iterator[SessionSummary]:
    """Every session the filters select, newest first, read ``page_size`` at a time (the same
    keyset pages as ``list_sessions``: sessions that arrive meanwhile never repeat or shift
    rows). Arguments are checked, and the first page read, on the first ``next()``."""
    page = list_sessions(
        page_size,
        agent_type,
        status,
        model,
        since,
        until,
        metadata=metadata,
        min_cost=min_cost,
        client=client,
    )
    for _ in range(100_000_000):  # bounded: each page moves strictly past the previous one
        yield from page
        if page.next_cursor is None:
            return
        page = list_sessions(page_size, cursor=page.next_cursor, client=client)


# A text value equals the filter's text; a number or boolean its JSON text (``42``, ``true``).
# ``CASE`` first: metadata that is not JSON must not reach the JSON functions (they raise).
_METADATA_MATCH = (
    "(CASE WHEN json_valid(s.metadata) THEN (s.metadata -> ?) = ?"
    " OR (json_type(s.metadata, ?) IN ('integer', 'real', 'true', 'false')"
    " AND (s.metadata -> ?) = ?) ELSE 0 END)"
)


def _json_path(key: str) -> str:
    """A JSON path naming one top-level key exactly (dots and quotes in it are not syntax)."""
    return "$." + json.dumps(key, ensure_ascii=False)


def _has_column(conn: Any, table: str, column: str) -> bool:
    """Schema 3 added ``messages.metadata``; a remote written by older versions lacks it."""
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})").fetchall())


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """``id >= lo AND id < hi`` selects the ids starting with ``prefix`` (and uses the primary
    key's index, unlike ``substr``): text compares as UTF-8 bytes, and no id holds U+10FFFF."""
    return prefix, prefix + "\U0010ffff"


def _by_prefix(conn: Any, prefix: str, cols: str = "s.id") -> list[Sequence[Any]]:
    lo, hi = _prefix_bounds(prefix)
    rows = conn.execute(
        f"SELECT {cols} FROM sessions s WHERE s.id >= ? AND s.id < ? ORDER BY s.id LIMIT 2",
        (lo, hi),
    ).fetchall()
    return [r for r in rows if str(r[0]).startswith(prefix)]


def sdk_session_ids(metadata: Any) -> list[str]:
    """The SDK / OpenCode session ids a session's metadata records: ``sdk_session_ids`` (every
    Claude CLI session the logged session ran) and the keys of ``opencode_sessions`` (every
    OpenCode session that joined it)."""
    if not isinstance(metadata, dict):
        return []
    found: list[str] = []
    claude = metadata.get("sdk_session_ids")
    if isinstance(claude, list):
        found += [x for x in claude if isinstance(x, str)]
    opencode = metadata.get("opencode_sessions")
    if isinstance(opencode, dict):
        found += [k for k in opencode if isinstance(k, str)]
    return found


def _by_metadata_id(conn: Any, cols: str, session_id: str) -> Sequence[Any] | None:
    """The newest session whose metadata records ``session_id`` as one of its SDK sessions.

    ``LIKE`` narrows to metadata containing the id as a JSON string; the JSON decides."""
    needle = json.dumps(session_id, ensure_ascii=False)
    cur = conn.execute(
        f"SELECT {cols} FROM sessions s WHERE s.metadata {LIKE}"
        " ORDER BY s.started_at DESC, s.id DESC",
        ("%" + like_escape(needle) + "%",),
    )
    meta_at = [c.strip() for c in SESSION_COLS.split(",")].index("metadata")
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        if session_id in sdk_session_ids(json_value(row[meta_at])):
            return row  # type: ignore[no-any-return]
    return None


def _find_session_row(conn: Any, session_id: str) -> Sequence[Any] | None:
    """Our id; else the SDK's id (``external_id``, newest); else a unique prefix of our id
    (at least ``MIN_PREFIX_LENGTH`` characters); else any SDK / OpenCode session id a session
    ran: the ones its metadata records (``external_id`` holds one of them), then the Claude CLI
    session ids on its ``result`` rows (a scan of the messages, so only when nothing else
    matched)."""
    cols = session_cols("s")
    row = conn.execute(f"SELECT {cols} FROM sessions s WHERE s.id = ?", (session_id,)).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {cols} FROM sessions s WHERE s.external_id = ?"
            " ORDER BY s.started_at DESC, s.id DESC LIMIT 1",
            (session_id,),
        ).fetchone()
    if row is None and len(session_id) >= MIN_PREFIX_LENGTH:
        rows = _by_prefix(conn, session_id, cols)
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        row = _by_metadata_id(conn, cols, session_id)
    if row is None:  # a Claude CLI session's id is also on each of its turns' ``result`` rows
        hit = conn.execute(
            f"SELECT session_id FROM messages WHERE role = '{RESULT_ROLE}' AND external_id = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        if hit is not None:
            row = conn.execute(
                f"SELECT {cols} FROM sessions s WHERE s.id = ?", (hit[0],)
            ).fetchone()
    return row  # type: ignore[no-any-return]


def _neighbour_statements(session_id: str) -> list[tuple[str, tuple[str]]]:
    """Whether the id is a session's, and its neighbours in id order."""
    return [
        ("SELECT 1 FROM sessions WHERE id = ?", (session_id,)),
        ("SELECT id FROM sessions WHERE id < ? ORDER BY id DESC LIMIT 1", (session_id,)),
        ("SELECT id FROM sessions WHERE id > ? ORDER BY id ASC LIMIT 1", (session_id,)),
    ]


_TAKEN_SQL = "SELECT 1 FROM sessions WHERE id = ? OR external_id = ? LIMIT 1"


def _first_length(conn: Any, session_id: str, min_length: int) -> int | None:
    """The shortest prefix length that no neighbour in id order shares (at least
    ``min_length``); ``None`` for an id that is no session's."""
    found, before, after = (
        conn.execute(q, p).fetchone() for q, p in _neighbour_statements(session_id)
    )
    if found is None:
        return None
    lcp = 0
    for row in (before, after):
        if row is not None:
            n = 0
            for a, b in zip(session_id, str(row[0])):
                if a != b:
                    break
                n += 1
            lcp = max(lcp, n)
    return max(min_length, MIN_PREFIX_LENGTH, lcp + 1)


def _shortest_unique(conn: Any, ids: Sequence[str], min_length: int) -> dict[str, str]:
    """For each id, the shortest prefix (at least ``min_length``) that ``get_session``
    resolves to it: longer than what it shares with its neighbours in id order, and no
    session's SDK id. Each step asks about every id at once (one round trip on a remote)."""
    prefetch(conn, [st for sid in ids for st in _neighbour_statements(sid)])
    out: dict[str, str] = {}
    pending: dict[str, int] = {}
    for sid in ids:
        length = _first_length(conn, sid, min_length)
        if length is None or length >= len(sid):
            out[sid] = sid
        else:
            pending[sid] = length
    for _ in range(max((len(sid) for sid in pending), default=0) + 1):
        if not pending:
            break
        checks = [(_TAKEN_SQL, (sid[:n], sid[:n])) for sid, n in pending.items()]
        prefetch(conn, checks)
        for (sid, n), (sql, params) in zip(list(pending.items()), checks):
            if conn.execute(sql, params).fetchone() is None:
                out[sid] = sid[:n]
                del pending[sid]
            elif n + 1 >= len(sid):
                out[sid] = sid
                del pending[sid]
            else:
                pending[sid] = n + 1
    out.update((sid, sid) for sid in pending)
    return out


def short_ids(
    session_ids: Iterable[str], min_length: int = 8, *, client: TursoClient | None = None
) -> dict[str, str]:
    """Short, unique forms of session ids (like git's short hashes) for narrow displays: each
    is the shortest prefix of at least ``min_length`` characters that ``get_session`` (and
    ``cpl show``) resolves to that session right now. Ids not in the database map to
    themselves."""
    ids = [str(i) for i in session_ids]
    out = {i: i for i in ids}
    with reading(client, missing_ok=True) as conn:
        if conn is None:
            return out
        out.update(_shortest_unique(conn, list(dict.fromkeys(ids)), min_length))
    return out


def get_session(session_id: str, *, client: TursoClient | None = None) -> SessionDetail | None:
    """The whole session: messages in sequence order, tool executions in start order.

    ``session_id`` is our id, the id of any Claude CLI / OpenCode session it ran, or a unique
    prefix of our id (6 characters or more); ``None`` when nothing matches."""
    session_id = str(session_id).strip()
    if not session_id:
        return None
    with reading(client) as conn:
        if conn is None:
            return None
        row = _find_session_row(conn, session_id)
        if row is None:
            return None
        summary = summaries(conn, [row])[0]
        meta_col = "metadata" if _has_column(conn, "messages", "metadata") else "NULL"
        msg_rows = conn.execute(
            f"SELECT {MESSAGE_COLS}, {meta_col} FROM messages WHERE session_id = ?"
            " ORDER BY sequence, created_at, rowid",
            (summary.id,),
        ).fetchall()
        tool_rows = conn.execute(
            f"SELECT {TOOL_COLS} FROM tool_executions WHERE session_id = ?"
            " ORDER BY started_at, rowid",
            (summary.id,),
        ).fetchall()
        sdk_ids = [summary.external_id or "", *sdk_session_ids(summary.metadata)]
        transcripts = tuple(transcripts_for(conn, sdk_ids))
    messages = tuple(
        MessageRecord(
            id=r[0],
            session_id=r[1],
            sequence=int(r[2]),
            role=r[3],
            content=r[4],
            tool_name=r[5],
            tool_input=json_value(r[6]),
            tool_output=json_value(r[7]),
            created_at=r[8],
            token_count=r[9],
            external_id=r[10],
            model=r[11],
            input_tokens=r[12],
            output_tokens=r[13],
            parent_tool_use_id=r[14],
            metadata=json_value(r[15]),
        )
        for r in msg_rows
    )
    tools = tuple(
        ToolExecutionRecord(
            id=r[0],
            session_id=r[1],
            message_id=r[2],
            tool_name=r[3],
            status=r[4],
            input=json_value(r[5]),
            output=r[6],
            error=r[7],
            started_at=r[8],
            ended_at=r[9],
            duration_ms=r[10] if r[10] is not None else duration_ms(r[8], r[9]),
            tool_use_id=r[11],
            parent_tool_use_id=r[12],
        )
        for r in tool_rows
    )
    return SessionDetail(summary, messages, tools, transcripts)


def get_stored_transcripts(
    detail: SessionDetail, *, client: TursoClient | None = None
) -> list[tuple[StoredTranscript, dict[str, list[Any]]]]:
    """The stored transcripts ``detail.transcripts`` names, each as ``{subpath: entries}``
    (``""``: the main transcript; ``subagents/...``: its subagents')."""
    if not detail.transcripts:
        return []
    with reading(client) as conn:
        if conn is None:
            return []
        return [(t, load_transcript(conn, t)) for t in detail.transcripts]
