"""The store interface the writer and readers use, with no-op defaults for what a mode lacks.

A store owns the connections to one database: the writer's (``write``/``run``, on the writer
thread), and reads (``read``). Pushing to a remote is cloud mode's; in local mode ``request_push``
answers that there is nothing to push and ``release``/``close`` free the file. So callers never
ask which mode a store is in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..config import Settings
from ..redact import redactor_for
from ..schema.migrations import migrate

PushCallback = Callable[[BaseException | None], None]


def is_lock_error(exc: BaseException) -> bool:
    """Whether opening failed because another process holds the file (pyturso's wording)."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text or "locking error" in text


class Store:
    """Shared by both modes: the schema checked once per process, a redactor for messages."""

    mode = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redact = redactor_for(settings)
        self.on_push: PushCallback | None = None  # told of every push attempt (cloud mode)
        self._schema_checked = False

    def _ensure_schema(self, conn: Any) -> None:
        if not self._schema_checked:
            migrate(conn)
            self._schema_checked = True

    def initialize(self) -> None:
        """Run the migrations now."""
        self.write(None)

    def write(self, apply: Callable[[Any], None] | None) -> None:
        """``apply(conn)`` (one transaction of the writer's) on the writer's connection, after
        the schema is ensured; ``None``: only the schema."""
        raise NotImplementedError

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(conn)`` on the connection the writer writes with (call it on the writer thread)."""
        raise NotImplementedError

    def read(self, *, allow_remote: bool = False) -> AbstractContextManager[Any]:
        """A connection to read with (its own: never the writer's). ``allow_remote``: in cloud
        mode it may be a connection whose statements run on the remote (``hrana.py``) instead
        of a read replica, when the replica would first have to download a big database."""
        raise NotImplementedError

    def read_note(self) -> str | None:
        """What a user should know about how reads were answered (``cpl`` prints it once)."""
        return None

    def describe_reads(self) -> str:
        """How the last read was answered (``cpl doctor``)."""
        return "from the database file"

    def request_push(self, done: PushCallback | None = None) -> bool:
        """Ask for a push of everything written so far; returns at once. False when there is
        no remote (local mode): then ``done`` is never called."""
        return False

    def release(self) -> None:
        """Let go of what other processes may be waiting for (local mode: the file lock)."""

    def yield_to_push(self) -> None:
        """Between two batches: give a push that is waiting for the replica its turn (cloud)."""

    def close(self, timeout: float | None = None) -> bool:
        """Release everything; True when nothing written is left behind (cloud: all pushed)."""
        return True
