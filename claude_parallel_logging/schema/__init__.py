"""The database schema: tables and columns, the logger<->writer operations, the migrations."""

from .migrations import MIGRATIONS, SCHEMA_VERSION, current_version, migrate

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "current_version", "migrate"]
