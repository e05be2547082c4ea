"""The read queries use the version-5 indexes (pyturso's own plans): a page of sessions at any
depth, with or without a filter, walks an index instead of sorting the sessions before it; the
costliest sessions walk the cost index."""

from __future__ import annotations

from pathlib import Path

import turso

from claude_parallel_logging.query.sessions import page_sql
from claude_parallel_logging.query.sql import KEYSET_BEFORE, filter_clauses
from claude_parallel_logging.schema.migrations import migrate

AT = "2026-09-10T00:00:00.000Z"


def _plan(conn: turso.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]


def test_pages_walk_the_started_at_id_indexes(tmp_path: Path) -> None:
    conn = turso.connect(str(tmp_path / "logs.db"))
    migrate(conn)
    plan = _plan(conn, page_sql([]), (51,))
    assert any("idx_sessions_started_id" in p for p in plan), plan
    plan = _plan(conn, page_sql([KEYSET_BEFORE]), (AT, AT, "x", 51))
    assert any("idx_sessions_started_id" in p for p in plan), plan
    assert sum("SORTER" in p for p in plan) == 1, plan  # the page's own 51 rows only
    clauses, params = filter_clauses("s", "review", None, None)
    plan = _plan(conn, page_sql([*clauses, KEYSET_BEFORE]), (*params, AT, AT, "x", 51))
    assert any("idx_sessions_agent_started" in p for p in plan), plan
    assert sum("SORTER" in p for p in plan) == 1, plan
    clauses, params = filter_clauses("s", ["review", "planning"], None, None)
    plan = _plan(conn, page_sql(clauses), (*params, 51))
    assert any("idx_sessions_started_id" in p for p in plan), plan
    assert sum("SORTER" in p for p in plan) == 1, plan
    conn.close()
