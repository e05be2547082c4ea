"""Every exception the package raises to its callers.

```
Exception
├── RuntimeError
│   ├── LoggingNotConfigured   reads with no database configured (or a remote URL without token)
│   ├── DatabaseUnavailable    the configured database cannot be opened or reached
│   └── SchemaVersionError     the database was written by a newer version: never written to
├── ValueError
│   └── InvalidCursor          a cursor ``list_sessions`` did not make, or with other filters
└── StoreBusy                  internal: the file is locked by another process; retried
```

Logging calls never raise any of these into agent code; the read API and the CLI do.
``one_line`` is how any exception reads in an error message.
"""

from __future__ import annotations

__all__ = [
    "DatabaseUnavailable",
    "InvalidCursor",
    "LoggingNotConfigured",
    "SchemaVersionError",
    "StoreBusy",
    "one_line",
]


class LoggingNotConfigured(RuntimeError):
    """No database is configured, so there is nothing to read."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "no database is configured: set TURSO_DATABASE_URL (and TURSO_AUTH_TOKEN for a"
            " remote database), call configure(database_url=...), or pass client=...;"
            " on the command line pass --database PATH_OR_URL"
        )


class DatabaseUnavailable(RuntimeError):
    """The database exists in the configuration but cannot be opened or reached."""


class SchemaVersionError(RuntimeError):
    """The database was written by a newer version of this package: we must not write to it."""


class InvalidCursor(ValueError):
    """A ``cursor`` that ``list_sessions`` did not make, or one given with other filters than
    the query it belongs to."""


class StoreBusy(Exception):
    """The database is locked by another process right now; try again later."""


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters, for an error message."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__
