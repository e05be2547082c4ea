"""What the derived read indexes (``search_index``, ``rollups``) share: where their files live
(the user's cache directory, keyed by the database's identity, since the database's own
directory may be read-only), how they learn which rows changed, removal.

They read new rows by rowid, and rows updated since by the ``row_changes`` journal (schema
migration 7: the writer adds an entry for every row it updates), by rowid too, so no change is
missed however late it comes. A database without the journal (a remote that no writer of schema
version 7 has written to yet) cannot tell its updates: the derived indexes are not used on it
(``Unjournaled``), and reads use the tables as before them.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..schema.tables import JOURNAL

# the tables by their ``row_changes.tbl`` (migration 7)
JOURNAL_TABLES = tuple(sorted(JOURNAL, key=JOURNAL.__getitem__))


class Unjournaled(Exception):
    """The database has no ``row_changes`` journal: a derived index cannot see its updates."""


def cache_dir() -> Path:
    """``$CPL_CACHE_DIR``, else ``$XDG_CACHE_HOME/claude-parallel-logging``, else
    ``~/.cache/claude-parallel-logging``."""
    explicit = os.environ.get("CPL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "claude-parallel-logging"


def derived_path(kind: str, identity: str) -> Path:
    """The file of one derived index (``kind``) of a database (its absolute path, or its URL
    without a query string)."""
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return cache_dir() / kind / f"{digest}.sqlite"


def disabled() -> bool:
    """``CPL_DERIVED_INDEXES=off`` reads the tables only, as before the derived indexes."""
    return os.environ.get("CPL_DERIVED_INDEXES", "").strip().lower() in ("off", "0", "no", "false")


def chunks(items: Sequence[Any], size: int = 400) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def file_size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(str(path) + suffix)
        except OSError:
            pass
    return total


def remove_index(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(str(path) + suffix)
        except FileNotFoundError:
            pass


class DerivedFile:
    """One open derived file (stdlib ``sqlite3``, WAL): ``SCHEMA`` applied, ``upgrade()`` for
    in-place additions, and a file of another ``VERSION`` removed and built anew (it is derived:
    nothing is lost). A ``meta`` key/value table holds its state."""

    SCHEMA: Sequence[str] = ()
    VERSION = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        for statement in self.SCHEMA:
            self.db.execute(statement)
        self.upgrade()
        version = self._meta("version")
        if version is None:
            self._set_meta("version", self.VERSION)
        elif int(version) != self.VERSION:
            self.close()
            remove_index(path)
            self.__init__(path)  # type: ignore[misc]

    def upgrade(self) -> None:
        """Changes to a file of this version made after it first shipped (none by default)."""

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def first_session(main: Any) -> str | None:
    """The database's first session row, as ``rowid:id``: another database (a file replaced,
    a table emptied and refilled) has another, and its rowids mean other rows."""
    row = main.execute("SELECT rowid, id FROM sessions ORDER BY rowid LIMIT 1").fetchone()
    return None if row is None else f"{row[0]}:{row[1]}"


def journal_top(main: Any) -> int:
    """The last rowid of the ``row_changes`` journal (0: empty); ``Unjournaled`` without it."""
    try:
        row = main.execute("SELECT MAX(rowid) FROM row_changes").fetchone()
    except Exception as exc:  # pyturso raises its own error types for a missing table
        if main.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'row_changes'"
        ).fetchone():
            raise
        raise Unjournaled(
            "the database has no row_changes journal (schema version < 7; a logger of this"
            " version upgrades it): reads use the tables"
        ) from exc
    return int(row[0] or 0)


def changed_rows(main: Any, after: int, limit: int) -> list[tuple[int, int, str]]:
    """(journal rowid, tbl, row id) of the journal entries after ``after``, oldest first."""
    return [
        (int(r[0]), int(r[1]), str(r[2]))
        for r in main.execute(  # ORDER BY rowid: a range, not a scan, in pyturso
            "SELECT rowid, tbl, row_id FROM row_changes WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        ).fetchall()
    ]
