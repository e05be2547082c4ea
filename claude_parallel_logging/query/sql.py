"""The SQL pieces every read shares: the columns read, filters, ``LIKE`` escaping, and session
rows made into :class:`SessionSummary` with their message and tool totals."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from .records import SessionSummary
from .times import TimeLike, duration_ms, parse_time

Filter = str | Sequence[str] | None

RESULT_ROLE = "result"  # the Claude SDK's end-of-turn summary: its tokens repeat the turn's
NANO = 1_000_000_000
LIKE = "LIKE ? ESCAPE '\\'"

SESSION_COLS = (
    "id, agent_type, model, provider, status, started_at, ended_at, error_message, external_id, "
    "metadata, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd, "
    "duration_ms, num_turns"
)
MESSAGE_COLS = (
    "id, session_id, sequence, role, content, tool_name, tool_input, tool_output, created_at, "
    "token_count, external_id, model, input_tokens, output_tokens, parent_tool_use_id"
)
TOOL_COLS = (
    "id, session_id, message_id, tool_name, status, input, output, error, started_at, ended_at, "
    "duration_ms, tool_use_id, parent_tool_use_id"
)


def session_cols(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in SESSION_COLS.split(","))


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def json_value(value: Any) -> Any:
    """JSON columns back to Python; text that is not JSON is returned as it is."""
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def filter_values(value: Filter) -> list[str]:
    """A filter argument as a list: one string, or each item of a sequence as text."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def filter_clauses(
    alias: str,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
) -> tuple[list[str], list[Any]]:
    """``since`` is inclusive, ``until`` exclusive, both on ``started_at``."""
    clauses: list[str] = []
    params: list[Any] = []
    for col, value in (("agent_type", agent_type), ("status", status), ("model", model)):
        vals = filter_values(value)
        if len(vals) == 1:  # ``=`` lets the (column, started_at, id) index give the order
            clauses.append(f"{alias}.{col} = ?")
            params.extend(vals)
        elif vals:  # ``+``: several values cannot keep the order; walk (started_at, id) instead
            clauses.append(f"+{alias}.{col} IN ({', '.join('?' for _ in vals)})")
            params.extend(vals)
    if since is not None:
        clauses.append(f"{alias}.started_at >= ?")
        params.append(parse_time(since))
    if until is not None:
        clauses.append(f"{alias}.started_at < ?")
        params.append(parse_time(until))
    return clauses, params


# After ``(started_at, id)`` newest first. Said this way (not ``a < ? OR (a = ? AND b < ?)``)
# the planner walks the (started_at, id) index from the bound instead of sorting the rest.
KEYSET_BEFORE = "s.started_at <= ? AND (s.started_at < ? OR s.id < ?)"


def _chunks(items: Sequence[str], size: int = 400) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dollars(value: Any) -> float | None:
    """A stored cost as the decimal it stands for: sums of float costs (``0.0003 + 0.000225``)
    carry noise (``0.0005250000000000001``); rounded to whole nano-dollars they do not."""
    if value is None:
        return None
    return round(float(value) * NANO) / NANO


def prefetch(conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """On a connection answered by the remote (``storage/hrana.py``), run ``statements`` now in
    one round trip, for the ``execute`` calls that follow; elsewhere nothing (they run as
    they come)."""
    if statements and getattr(conn, "answers_remotely", False):
        conn.prefetch(statements)


def summaries(conn: Any, rows: Sequence[Sequence[Any]]) -> list[SessionSummary]:
    """Session rows (``SESSION_COLS`` order) plus message and tool totals, in three queries."""
    ids = [str(r[0]) for r in rows]
    msg: dict[str, tuple[int, int | None, int | None]] = {}
    tools: dict[str, tuple[int, int]] = {}
    for part in _chunks(ids):
        marks = ", ".join("?" for _ in part)
        msg_sql = (
            "SELECT session_id, COUNT(*),"
            f" SUM(CASE WHEN role = '{RESULT_ROLE}' THEN NULL ELSE input_tokens END),"
            f" SUM(CASE WHEN role = '{RESULT_ROLE}' THEN NULL ELSE output_tokens END)"
            f" FROM messages WHERE session_id IN ({marks}) GROUP BY session_id"
        )
        tool_sql = (
            "SELECT session_id, COUNT(*), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)"
            f" FROM tool_executions WHERE session_id IN ({marks}) GROUP BY session_id"
        )
        prefetch(conn, [(msg_sql, tuple(part)), (tool_sql, tuple(part))])
        for sid, n, itok, otok in conn.execute(msg_sql, tuple(part)).fetchall():
            msg[sid] = (int(n), itok, otok)
        for sid, n, errors in conn.execute(tool_sql, tuple(part)).fetchall():
            tools[sid] = (int(n), int(errors or 0))
    out: list[SessionSummary] = []
    for r in rows:
        sid = str(r[0])
        n_msg, m_in, m_out = msg.get(sid, (0, None, None))
        n_tool, n_err = tools.get(sid, (0, 0))
        out.append(
            SessionSummary(
                id=sid,
                agent_type=r[1],
                model=r[2],
                provider=r[3],
                status=r[4],
                started_at=r[5],
                ended_at=r[6],
                error_message=r[7],
                external_id=r[8],
                metadata=json_value(r[9]),
                message_count=n_msg,
                tool_count=n_tool,
                tool_error_count=n_err,
                input_tokens=r[10] if r[10] is not None else m_in,
                output_tokens=r[11] if r[11] is not None else m_out,
                cache_read_tokens=r[12],
                cache_creation_tokens=r[13],
                cost_usd=dollars(r[14]),
                duration_ms=r[15] if r[15] is not None else duration_ms(r[5], r[6]),
                num_turns=r[16],
                agent_duration_ms=r[15],
            )
        )
    return out
