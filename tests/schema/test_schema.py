from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import turso

import claude_parallel_logging as cpl
from claude_parallel_logging.query import search_index_state, usage_rollups_state
from claude_parallel_logging.query.derived import Unjournaled
from claude_parallel_logging.query.rollups import Figures, rollups_path
from claude_parallel_logging.query.search_index import SearchIndex, index_path
from claude_parallel_logging.schema.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION,
    current_version,
    migrate,
)
from tests.conftest import query
from tests.schema.old_versions import apply_migrations

V1_SESSIONS = [
    "id", "agent_type", "model", "provider", "started_at", "ended_at", "status",
    "error_message", "metadata",
]  # fmt: skip
V1_MESSAGES = [
    "id", "session_id", "sequence", "role", "content", "tool_name", "tool_input",
    "tool_output", "created_at", "token_count",
]  # fmt: skip
V1_TOOLS = [
    "id", "session_id", "message_id", "tool_name", "status", "input", "output", "error",
    "started_at", "ended_at", "duration_ms",
]  # fmt: skip


def columns(path: Path, table: str) -> list[str]:
    return [r[1] for r in query(path, f"PRAGMA table_info({table})")]


def write_v1_database(path: Path) -> None:
    """A database exactly as the TypeScript version left it, with a logged session."""
    conn = turso.connect(str(path), isolation_level=None)
    for step in MIGRATIONS[0].steps:
        assert isinstance(step, str)
        conn.execute(step)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute(
        "INSERT INTO sessions (id, agent_type, model, provider, metadata) "
        "VALUES ('old', 'planning', 'claude-3', 'anthropic', '{\"k\": 1}')"
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, sequence, role, content) "
        "VALUES ('m1', 'old', 1, 'user', 'hi')"
    )
    conn.close()


def test_migrate_from_empty_creates_the_contract(db_path: Path) -> None:
    cpl.configure(database_url=str(db_path))
    assert cpl.initialize_schema() == SCHEMA_VERSION
    assert columns(db_path, "sessions")[: len(V1_SESSIONS)] == V1_SESSIONS
    assert columns(db_path, "messages")[: len(V1_MESSAGES)] == V1_MESSAGES
    assert columns(db_path, "tool_executions")[: len(V1_TOOLS)] == V1_TOOLS
    assert set(columns(db_path, "sessions")) >= {
        "external_id", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "cost_usd", "duration_ms", "num_turns",
    }  # fmt: skip
    assert set(columns(db_path, "messages")) >= {
        "external_id", "model", "input_tokens", "output_tokens", "parent_tool_use_id",
    }  # fmt: skip
    assert set(columns(db_path, "tool_executions")) >= {"tool_use_id", "parent_tool_use_id"}
    indexes = {r[0] for r in query(db_path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "idx_messages_session", "idx_tool_executions_session", "idx_sessions_started_at",
        "idx_sessions_agent_type", "idx_sessions_status", "idx_tool_executions_tool_use_id",
    } <= indexes  # fmt: skip
    assert query(db_path, "SELECT version FROM schema_version ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]
    # defaults of the original plan
    query_conn = turso.connect(str(db_path), isolation_level=None)
    query_conn.execute("INSERT INTO sessions (id, agent_type, model) VALUES ('d', 'a', 'm')")
    row = query_conn.execute("SELECT status, started_at FROM sessions WHERE id='d'").fetchone()
    query_conn.close()
    assert row[0] == "running" and row[1]


def test_migrate_twice_is_a_no_op(db_path: Path) -> None:
    conn = turso.connect(str(db_path), isolation_level=None)
    assert migrate(conn) == 0
    assert migrate(conn) == SCHEMA_VERSION
    assert current_version(conn) == SCHEMA_VERSION
    conn.close()
    assert query(db_path, "SELECT COUNT(*) FROM schema_version") == [(len(MIGRATIONS),)]


def test_upgrade_version_1_database_in_place(db_path: Path) -> None:
    write_v1_database(db_path)
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="new", agent_type="review", model="m"))
    logger.end_session("completed", input_tokens=3)
    assert cpl.flush(5)
    assert query(db_path, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert query(db_path, "SELECT id, metadata FROM sessions WHERE id='old'") == [
        ("old", '{"k": 1}')
    ]
    assert query(db_path, "SELECT content FROM messages WHERE id='m1'") == [("hi",)]
    assert query(db_path, "SELECT input_tokens, status FROM sessions WHERE id='new'") == [
        (3, "completed")
    ]


def test_newer_database_gets_clear_error_and_no_writes(db_path: Path) -> None:
    conn = turso.connect(str(db_path), isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    conn.close()
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    with pytest.raises(cpl.SchemaVersionError, match="99"):
        cpl.initialize_schema()
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    assert cpl.flush(0.5) is False
    st = cpl.stats()
    assert "99" in str(st["last_error"]) and st["written"] == 0 and st["pending"] == 1
    assert query(db_path, "SELECT COUNT(*) FROM sessions") == [(0,)]


def _init_in_child(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    import claude_parallel_logging as c

    c.configure(database_url=path)
    barrier.wait(10)
    c.initialize_schema()


def test_concurrent_initialisation_from_several_processes(db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_init_in_child, args=(str(db_path), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert query(db_path, "SELECT version FROM schema_version ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]


def write_v5_database(path: Path) -> None:
    """A database as version 5 left it (no ``row_changes`` journal), with a session whose tool
    is still running."""
    conn = turso.connect(str(path), isolation_level=None)
    apply_migrations(conn, {1, 2, 3, 4, 5})
    conn.execute(
        "INSERT INTO sessions (id, agent_type, model, status, started_at, ended_at)"
        " VALUES ('v5', 'planning', 'm5', 'completed', '2026-09-22T10:00:00.000Z',"
        " '2026-09-22T10:10:00.000Z')"
    )
    conn.execute(
        "INSERT INTO messages (id, session_id, sequence, role, content, created_at)"
        " VALUES ('v5-m', 'v5', 1, 'user', 'an old Pangolin-Prompt', '2026-09-22T10:00:00.000Z')"
    )
    conn.execute(
        "INSERT INTO tool_executions (id, session_id, tool_name, status, input, started_at)"
        " VALUES ('v5-t', 'v5', 'Bash', 'running', '{\"command\": \"make\"}',"
        " '2026-09-22T10:01:00.000Z')"
    )
    conn.close()


def test_upgrade_version_5_database_in_place_with_its_derived_indexes(db_path: Path) -> None:
    write_v5_database(db_path)
    conn = turso.connect(str(db_path), isolation_level=None)
    try:  # without the journal, the derived indexes cannot see updates: they are not used
        for derived in (SearchIndex(index_path("v5-probe")), Figures(rollups_path("v5-probe"))):
            with pytest.raises(Unjournaled):
                derived.refresh(conn)
            derived.close()
    finally:
        conn.close()
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    assert [h.id for h in cpl.search_sessions("pangolin-prompt")] == ["v5"]  # the read upgrades
    assert query(db_path, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert query(db_path, "SELECT COUNT(*) FROM row_changes") == [(0,)]
    assert cpl.usage_summary("model") == cpl.usage_summary("model", use_index=False)
    # the tool's result arrives long after (written by the logger, as a late reconcile would)
    logger = cpl.ConversationLogger()
    logger.start_session(cpl.SessionInfo(id="v5", agent_type="planning", model="m5"))
    logger.finish_tool_execution("v5-t", "completed", output="Tapir-Result", duration_ms=900)
    assert cpl.flush(5)
    assert query(db_path, "SELECT tbl, row_id FROM row_changes") == [(2, "v5-t")]
    hits = cpl.search_sessions("tapir-result")
    assert [(h.id, h.where) for h in hits] == [("v5", "tool.output")]
    assert hits == cpl.search_sessions("tapir-result", use_index=False)
    (row,) = cpl.usage_summary("model")
    assert row.p50_tool_ms == 900.0 and row.tool_errors == 0
    assert [row] == cpl.usage_summary("model", use_index=False)
    assert search_index_state(None).documents >= 3 and usage_rollups_state().built
