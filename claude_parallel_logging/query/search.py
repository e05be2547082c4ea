"""Full-text search over sessions: SQL ``LIKE`` narrows the candidates, Python decides and cuts
the snippet around the first place each session matched."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .access import TursoClient, reading
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
from .sql import LIKE, Filter, filter_clauses, like_escape, session_cols, summaries
from .times import TimeLike

SNIPPET_CONTEXT = 60


def _json_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, text) of every string and number inside a JSON value; keys are not content."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield path, json.dumps(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _json_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_values(v, f"{path}[{i}]")


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
        for path, text in _json_values(value):
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


_MESSAGE_MATCH = (("content", False), ("tool_input", True), ("tool_output", True))
_TOOL_MATCH = (("input", True), ("output", False), ("error", False))


@dataclass(frozen=True)
class _Hit:
    at: str
    where: str
    snippet: str
    sequence: int | None = None
    role: str | None = None
    tool_name: str | None = None


def _first_message_hit(conn: Any, m: _Matcher, session_id: str) -> _Hit | None:
    cur = conn.execute(
        "SELECT created_at, sequence, role, tool_name, content, tool_input, tool_output"
        f" FROM messages WHERE session_id = ? AND ({_match_sql(_MESSAGE_MATCH)})"
        " ORDER BY sequence, rowid",
        (session_id, *_match_params(m, _MESSAGE_MATCH)),
    )
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        for where, snippet in (
            (WHERE_MESSAGE, m.find_text(row[4])),
            (WHERE_MESSAGE_TOOL_INPUT, m.find_json(row[5])),
            (WHERE_MESSAGE_TOOL_OUTPUT, m.find_json(row[6])),
        ):
            if snippet is not None:
                return _Hit(row[0], where, snippet, int(row[1]), row[2], row[3])
    return None


def _first_tool_hit(conn: Any, m: _Matcher, session_id: str) -> _Hit | None:
    cur = conn.execute(
        "SELECT started_at, tool_name, input, output, error FROM tool_executions"
        f" WHERE session_id = ? AND ({_match_sql(_TOOL_MATCH)}) ORDER BY started_at, rowid",
        (session_id, *_match_params(m, _TOOL_MATCH)),
    )
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        for where, snippet in (
            (WHERE_TOOL_INPUT, m.find_json(row[2])),
            (WHERE_TOOL_OUTPUT, m.find_text(row[3])),
            (WHERE_TOOL_ERROR, m.find_text(row[4])),
        ):
            if snippet is not None:
                return _Hit(row[0], where, snippet, tool_name=row[1])
    return None


def _first_hit(conn: Any, m: _Matcher, session_id: str, error_message: Any) -> _Hit | None:
    """The earliest place in the session that contains the text; the session's error last."""
    msg = _first_message_hit(conn, m, session_id)
    tool = _first_tool_hit(conn, m, session_id)
    if msg is not None and (tool is None or msg.at <= tool.at):
        return msg
    if tool is not None:
        return tool
    snippet = m.find_text(error_message)
    return None if snippet is None else _Hit("", WHERE_SESSION_ERROR, snippet)


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
) -> list[SearchHit]:
    """Sessions (newest first) whose messages, tool inputs/outputs or errors contain ``query``.

    Case-insensitive; every character, ``%``, ``_``, quotes and backslashes included, is literal.
    """
    if not isinstance(query, str) or not query:
        raise ValueError("search text must not be empty")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    m = _Matcher.build(query)
    clauses, params = filter_clauses("s", agent_type, status, model, since, until)
    clauses.append(
        f"(s.error_message {LIKE}"
        f" OR s.id IN (SELECT session_id FROM messages WHERE {_match_sql(_MESSAGE_MATCH)})"
        f" OR s.id IN (SELECT session_id FROM tool_executions WHERE {_match_sql(_TOOL_MATCH)}))"
    )
    params.extend([m.pattern, *_match_params(m, _MESSAGE_MATCH), *_match_params(m, _TOOL_MATCH)])
    base = f"SELECT {session_cols('s')} FROM sessions s WHERE {' AND '.join(clauses)}"
    batch = max(2 * limit, 50)
    hits: list[tuple[Sequence[Any], _Hit]] = []
    with reading(client) as conn:
        if conn is None:
            return []
        after: tuple[str, str] | None = None
        for _ in range(1_000_000):  # candidate batches, newest first, until ``limit`` hits
            keyset, extra = "", []
            if after is not None:
                keyset = " AND (s.started_at < ? OR (s.started_at = ? AND s.id < ?))"
                extra = [after[0], after[0], after[1]]
            rows = conn.execute(
                f"{base}{keyset} ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
                (*params, *extra, batch),
            ).fetchall()
            for row in rows:
                hit = _first_hit(conn, m, row[0], row[7])
                if hit is not None:
                    hits.append((row, hit))
                    if len(hits) >= limit:
                        break
            if len(hits) >= limit or len(rows) < batch:
                break
            after = (rows[-1][5], rows[-1][0])
        found = summaries(conn, [row for row, _ in hits])
    return [
        SearchHit(summary, h.where, h.snippet, h.sequence, h.role, h.tool_name)
        for summary, (_, h) in zip(found, hits)
    ]
