"""The schema contract, checked against the TypeScript version's own DDL, not against ours.

``TYPESCRIPT_MIGRATIONS`` is copied verbatim from the original plan
(``shared/seed/original-typescript-plan.md``, ``src/lib/turso-schema.ts``). Migration 1 must build
exactly those tables (columns, types, NOT NULL, defaults, keys, foreign keys) and indexes, and a
database the TypeScript version wrote must upgrade in place with its rows intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import turso

import claude_parallel_logging as cpl
from claude_parallel_logging.schema.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from tests.conftest import query

TYPESCRIPT_MIGRATIONS = [
    """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY
  )""",
    """CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    agent_type TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    started_at TEXT NOT NULL DEFAULT (datetime('now')),
    ended_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    error_message TEXT,
    metadata TEXT
  )""",
    """CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT,
    tool_name TEXT,
    tool_input TEXT,
    tool_output TEXT,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    token_count INTEGER,
    FOREIGN KEY (session_id) REFERENCES sessions(id)
  )""",
    """CREATE TABLE IF NOT EXISTS tool_executions (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    message_id TEXT,
    tool_name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    started_at TEXT NOT NULL DEFAULT (datetime('now')),
    ended_at TEXT,
    duration_ms INTEGER,
    FOREIGN KEY (session_id) REFERENCES sessions(id),
    FOREIGN KEY (message_id) REFERENCES messages(id)
  )""",
    "CREATE INDEX IF NOT EXISTS idx_messages_session ON messages(session_id)",
    "CREATE INDEX IF NOT EXISTS idx_tool_executions_session ON tool_executions(session_id)",
]
TABLES = ("schema_version", "sessions", "messages", "tool_executions")


def shape(path: Path) -> dict[str, Any]:
    """Everything about the tables and indexes that a reader or writer could depend on."""
    conn = turso.connect(str(path))
    try:
        out: dict[str, Any] = {}
        for table in TABLES:
            out[f"{table}.columns"] = conn.execute(f"PRAGMA table_info({table})").fetchall()
            out[f"{table}.foreign_keys"] = sorted(
                conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            )
            indexes = {}
            for row in conn.execute(f"PRAGMA index_list({table})").fetchall():
                name = row[1]
                info = conn.execute(f"PRAGMA index_info({name})").fetchall()
                indexes[name if not name.startswith("sqlite_autoindex") else "pk"] = (row[2], info)
            out[f"{table}.indexes"] = indexes
        return out
    finally:
        conn.close()


def build(path: Path, statements: list[str]) -> None:
    conn = turso.connect(str(path), isolation_level=None)
    for sql in statements:
        conn.execute(sql)
    conn.close()


def test_migration_1_is_the_typescript_schema_exactly(tmp_path: Path) -> None:
    ts, ours = tmp_path / "ts.db", tmp_path / "ours.db"
    build(ts, TYPESCRIPT_MIGRATIONS)
    steps = MIGRATIONS[0].steps
    assert all(isinstance(s, str) for s in steps)
    build(ours, [s for s in steps if isinstance(s, str)])
    expected, got = shape(ts), shape(ours)
    assert got == expected
    # and the facts the contract is about, spelled out
    cols = {r[1]: r for r in expected["sessions.columns"]}
    assert cols["status"][3:5] == (1, "'running'") and cols["started_at"][3] == 1
    fks = expected["tool_executions.foreign_keys"]
    assert {(r[2], r[3], r[4]) for r in fks} == {
        ("sessions", "session_id", "id"),
        ("messages", "message_id", "id"),
    }
    assert set(expected["messages.indexes"]) == {"pk", "idx_messages_session"}


def test_a_typescript_database_upgrades_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "from-typescript.db"
    build(
        path,
        [
            *TYPESCRIPT_MIGRATIONS,
            "INSERT INTO schema_version (version) VALUES (1)",
            "INSERT INTO sessions (id, agent_type, model, provider, metadata) "
            "VALUES ('ts-1', 'planning', 'claude-sonnet-4', 'anthropic', '{\"branch\": \"x\"}')",
            "INSERT INTO messages (id, session_id, sequence, role, content, token_count) "
            "VALUES ('m-1', 'ts-1', 1, 'user', 'plan it', 12)",
            "INSERT INTO tool_executions (id, session_id, message_id, tool_name, status, input) "
            "VALUES ('t-1', 'ts-1', 'm-1', 'Bash', 'completed', '{\"command\": \"ls\"}')",
        ],
    )
    before = shape(path)
    cpl.configure(database_url=str(path))
    assert cpl.initialize_schema() == SCHEMA_VERSION
    after = shape(path)
    for table in ("sessions", "messages", "tool_executions"):  # only added, never changed
        n = len(before[f"{table}.columns"])
        assert after[f"{table}.columns"][:n] == before[f"{table}.columns"]
        assert after[f"{table}.foreign_keys"] == before[f"{table}.foreign_keys"]
    assert query(path, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    row = query(path, "SELECT id, status, started_at, metadata, input_tokens FROM sessions")[0]
    assert row[:2] == ("ts-1", "running") and row[2] and row[3] == '{"branch": "x"}'
    assert row[4] is None
    assert query(path, "SELECT content, token_count FROM messages") == [("plan it", 12)]
    # the upgraded database takes new rows next to the old ones
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="py-1", agent_type="review", model="m"))
    lg.log_message("user", "after the upgrade")
    lg.end_session("completed")
    assert cpl.flush(5)
    assert query(path, "SELECT id FROM sessions ORDER BY id") == [("py-1",), ("ts-1",)]
    conn = turso.connect(str(path), isolation_level=None)
    try:
        assert migrate(conn) == SCHEMA_VERSION  # a second run finds it current, changes nothing
    finally:
        conn.close()
    assert shape(path) == after
