"""Databases as older versions left them: the given migrations applied, no others."""

from __future__ import annotations

from typing import Any

from claude_parallel_logging.schema.migrations import MIGRATIONS, AddColumn


def apply_migrations(conn: Any, versions: set[int]) -> None:
    """Apply exactly ``versions`` (recorded in ``schema_version``), as those releases did."""
    for migration in MIGRATIONS:
        if migration.version not in versions:
            continue
        for step in migration.steps:
            if isinstance(step, AddColumn):
                conn.execute(f"ALTER TABLE {step.table} ADD COLUMN {step.column} {step.decl}")
            else:
                conn.execute(step)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))
