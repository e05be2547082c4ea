"""The schema's history: the contract with the TypeScript version, extended only by numbered migrations.

Migration 1 is the original plan's schema verbatim. Later migrations only add (columns by
``ALTER TABLE``, indexes, tables), so a database written by any older version upgrades in place.
They never drop: in cloud mode every fresh replica runs them all and its first push replays
their DDL on the remote (``IF NOT EXISTS`` makes that a no-op), so a dropped index would be
rebuilt over all the remote's rows and dropped again at every process start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SchemaVersionError
from ..transaction import transaction

SCHEMA_VERSION = 7


@dataclass(frozen=True)
class AddColumn:
    table: str
    column: str
    decl: str


Step = str | AddColumn


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: tuple[Step, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "original schema (sessions, messages, tool_executions)",
        (
            "CREATE TABLE IF NOT EXISTS schema_version (\n  version INTEGER PRIMARY KEY\n)",
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
        ),
    ),
    Migration(
        2,
        "analytics: SDK ids, tokens, cost, durations, tool_use ids and query indexes",
        (
            AddColumn("sessions", "external_id", "TEXT"),
            AddColumn("sessions", "input_tokens", "INTEGER"),
            AddColumn("sessions", "output_tokens", "INTEGER"),
            AddColumn("sessions", "cache_read_tokens", "INTEGER"),
            AddColumn("sessions", "cache_creation_tokens", "INTEGER"),
            AddColumn("sessions", "cost_usd", "REAL"),
            AddColumn("sessions", "duration_ms", "INTEGER"),
            AddColumn("sessions", "num_turns", "INTEGER"),
            AddColumn("messages", "external_id", "TEXT"),
            AddColumn("messages", "model", "TEXT"),
            AddColumn("messages", "input_tokens", "INTEGER"),
            AddColumn("messages", "output_tokens", "INTEGER"),
            AddColumn("messages", "parent_tool_use_id", "TEXT"),
            AddColumn("tool_executions", "tool_use_id", "TEXT"),
            AddColumn("tool_executions", "parent_tool_use_id", "TEXT"),
            "CREATE INDEX IF NOT EXISTS idx_sessions_started_at ON sessions(started_at)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_agent_type ON sessions(agent_type)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_status ON sessions(status)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_external_id ON sessions(external_id)",
            "CREATE INDEX IF NOT EXISTS idx_tool_executions_tool_use_id"
            " ON tool_executions(tool_use_id)",
        ),
    ),
    Migration(
        3,
        "messages.metadata: per-message extras (block type, per-turn usage, unknown payloads)",
        (AddColumn("messages", "metadata", "TEXT"),),
    ),
    Migration(
        4,
        "Claude SDK session store: transcript entries and session summaries",
        (
            # One row per transcript line. ``seq`` orders a key's entries (append order in one
            # process, commit time across processes); ``uuid`` is the SDK's idempotency key,
            # unique per key; ``subpath`` is '' for the main transcript; ``mtime`` epoch ms.
            """CREATE TABLE IF NOT EXISTS transcript_entries (
  id TEXT PRIMARY KEY,
  project_key TEXT NOT NULL,
  session_id TEXT NOT NULL,
  subpath TEXT NOT NULL DEFAULT '',
  seq INTEGER NOT NULL,
  uuid TEXT,
  entry TEXT NOT NULL,
  mtime INTEGER NOT NULL
)""",
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_transcript_entries_uuid"
            " ON transcript_entries(project_key, session_id, subpath, uuid) WHERE uuid IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS idx_transcript_entries_key"
            " ON transcript_entries(project_key, session_id, subpath, seq)",
            "CREATE INDEX IF NOT EXISTS idx_transcript_entries_session"
            " ON transcript_entries(session_id)",
            # ``fold_session_summary`` output per main transcript (``data`` is the SDK's, opaque).
            """CREATE TABLE IF NOT EXISTS transcript_summaries (
  project_key TEXT NOT NULL,
  session_id TEXT NOT NULL,
  mtime INTEGER NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (project_key, session_id)
)""",
        ),
    ),
    Migration(
        5,
        "read indexes: sessions newest first (alone and per agent type, status, model), tool"
        " figures per session without reading the tool texts",
        (
            # ``ORDER BY started_at DESC, id DESC`` (every listing) walks these instead of
            # sorting; an equality filter on the leading column keeps the order.
            "CREATE INDEX IF NOT EXISTS idx_sessions_started_id ON sessions(started_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_agent_started"
            " ON sessions(agent_type, started_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_status_started"
            " ON sessions(status, started_at, id)",
            "CREATE INDEX IF NOT EXISTS idx_sessions_model_started"
            " ON sessions(model, started_at, id)",
            # ``costliest_sessions``: the order it returns, walked from the top
            "CREATE INDEX IF NOT EXISTS idx_sessions_cost ON sessions(cost_usd, started_at, id)",
            # tool figures per session (list pages' totals, usage rollups) from the index alone,
            # without reading the tool texts stored before them in the row. (None on messages:
            # the writer pays for every index of its busiest table.)
            "CREATE INDEX IF NOT EXISTS idx_tool_executions_figures"
            " ON tool_executions(session_id, status, duration_ms, tool_name)",
        ),
    ),
    Migration(
        6,
        "session store: transcript lines whose id is their identity (kept once across machines),"
        " with one index",
        (
            # Replaces ``transcript_entries`` for new appends; that table keeps the rows written
            # before (a cloud replica migrates empty, so the remote's rows cannot be moved: reads
            # take both). No index or table is dropped: every fresh cloud replica replays every
            # migration's DDL on the remote, so a dropped index would be rebuilt and dropped
            # again over all rows at each process start. ``id`` (see ``transcripts.row_id``)
            # is unique per key and ``uuid``: the idempotency constraint, which also turns the
            # same entry pushed by two machines into one row (the push is an upsert on ``id``).
            """CREATE TABLE IF NOT EXISTS transcript_lines (
  id TEXT PRIMARY KEY,
  project_key TEXT NOT NULL,
  session_id TEXT NOT NULL,
  subpath TEXT NOT NULL DEFAULT '',
  seq INTEGER NOT NULL,
  uuid TEXT,
  entry TEXT NOT NULL,
  mtime INTEGER NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS idx_transcript_lines_key"
            " ON transcript_lines(project_key, session_id, subpath, seq)",
        ),
    ),
    Migration(
        7,
        "row_changes: a journal of updated rows, so that the derived read indexes re-read them",
        (
            # One row per row of the three tables that the writer UPDATEs (or upserts) in a
            # batch after an earlier batch inserted it: ``tbl`` 0 sessions, 1 messages,
            # 2 tool_executions (``tables.JOURNAL``); ``row_id`` the row's ``id`` (not its
            # rowid, which differs between a cloud writer's replica and the remote).
            # Append-only: readers keep a watermark on its rowid, as on the tables' (inserts need
            # no entry). No index: the writer pays one small row per updated row, nothing more.
            # (Triggers would also catch other programs' updates, but pyturso 0.8.3 runs an
            # UPDATE with a trigger ~20x slower.)
            "CREATE TABLE IF NOT EXISTS row_changes (tbl INTEGER NOT NULL, row_id TEXT NOT NULL)",
        ),
    ),
)

assert MIGRATIONS[-1].version == SCHEMA_VERSION


def current_version(conn: Any) -> int:
    """0 for an empty database."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _applied(conn: Any) -> set[int]:
    """The versions recorded. Migrations are applied by version, not above the highest: 7 was
    released before 6 (a database at 7 may lack 6), and every step is idempotent."""
    if current_version(conn) == 0:
        return set()
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_version").fetchall()}


def _columns(conn: Any, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}


def migrate(conn: Any) -> int:
    """Bring ``conn``'s database to ``SCHEMA_VERSION``; returns the version found before.

    Idempotent. Safe when processes start together: in local mode the file lock serialises them
    and every step is guarded (``IF NOT EXISTS``, column checks), so a step another process already
    ran is skipped.
    """
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database schema version {found} is newer than this claude-parallel-logging "
            f"understands ({SCHEMA_VERSION}); upgrade the package. Nothing was written."
        )
    done = _applied(conn)
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        with transaction(conn):
            for step in migration.steps:
                if isinstance(step, AddColumn):
                    if step.column not in _columns(conn, step.table):
                        conn.execute(
                            f"ALTER TABLE {step.table} ADD COLUMN {step.column} {step.decl}"
                        )
                else:
                    conn.execute(step)
            conn.execute(
                "INSERT OR IGNORE INTO schema_version (version) VALUES (?)", (migration.version,)
            )
    return found
