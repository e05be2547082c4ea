"""What the derived read indexes (``search_index``, ``rollups``) share: where their files live
(the user's cache directory, keyed by the database's identity, since the database's own
directory may be read-only), how long a finished session's rows are still re-read, removal."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# A finished session's rows are re-read this long after it was seen finished (or after its
# ``ended_at``): updates that arrive late (a reconcile after the turn went idle) are caught.
GRACE_SECONDS = 900.0
# A running session with a tool started less than this long ago is not quiet (the tool's end
# updates its row); a tool "running" for longer was most likely left so by a dead process.
TOOL_GRACE_SECONDS = 6 * 3600.0


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


def recent(ended: Any, now: float) -> bool:
    """Whether a session ended less than ``GRACE_SECONDS`` ago (or when that cannot be told)."""
    if not isinstance(ended, str):
        return True
    try:
        at = datetime.fromisoformat(ended.replace("Z", "+00:00"))
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return now - at.timestamp() < GRACE_SECONDS


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


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def quiet_sessions(main: Any, ids: Sequence[str], now: float) -> set[str]:
    """Of these running sessions, those that wrote nothing (no message, no tool started or
    ended) for ``GRACE_SECONDS`` and have no tool running for less than
    ``TOOL_GRACE_SECONDS``: left running by a process that died, most likely. Their rows are no
    longer re-read (new rows, or the session ending, wake them)."""
    out: set[str] = set()
    for part in chunks(list(ids)):
        marks = ", ".join("?" for _ in part)
        last: dict[str, float] = {}
        busy: set[str] = set()

        def seen(sid: Any, *times: Any, last: dict[str, float] = last) -> None:
            for t in times:
                at = _epoch(t)
                if at is not None and at > last.get(str(sid), float("-inf")):
                    last[str(sid)] = at

        for sid, started in main.execute(
            f"SELECT id, started_at FROM sessions WHERE id IN ({marks})", tuple(part)
        ).fetchall():
            seen(sid, started)
        for sid, created in main.execute(
            f"SELECT session_id, MAX(created_at) FROM messages WHERE session_id IN ({marks})"
            " GROUP BY session_id",
            tuple(part),
        ).fetchall():
            seen(sid, created)
        for sid, started, ended, running_since in main.execute(
            "SELECT session_id, MAX(started_at), MAX(ended_at),"
            " MAX(CASE WHEN status = 'running' THEN started_at END)"
            f" FROM tool_executions WHERE session_id IN ({marks}) GROUP BY session_id",
            tuple(part),
        ).fetchall():
            seen(sid, started, ended)
            since = _epoch(running_since)
            if since is not None and now - since < TOOL_GRACE_SECONDS:
                busy.add(str(sid))
        out.update(
            sid
            for sid in part
            if sid not in busy and sid in last and now - last[sid] >= GRACE_SECONDS
        )
    return out
