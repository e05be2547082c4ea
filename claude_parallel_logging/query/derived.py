"""What the derived read indexes (``search_index``, ``rollups``) share: where their files live
(the user's cache directory, keyed by the database's identity, since the database's own
directory may be read-only), how long a finished session's rows are still re-read, removal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# A finished session's rows are re-read this long after it was seen finished (or after its
# ``ended_at``): updates that arrive late (a reconcile after the turn went idle) are caught.
GRACE_SECONDS = 900.0


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


def first_session(main: Any) -> str | None:
    """The database's first session row, as ``rowid:id``: another database (a file replaced,
    a table emptied and refilled) has another, and its rowids mean other rows."""
    row = main.execute("SELECT rowid, id FROM sessions ORDER BY rowid LIMIT 1").fetchone()
    return None if row is None else f"{row[0]}:{row[1]}"
