"""What ``sync`` and ``doctor`` inspect beyond reading: a local file opened without migrating
it, and the replicas processes leave in cloud mode (theirs to push, or the shared read ones).
"""

from __future__ import annotations

from typing import Any

from ..client import TursoClient
from ..config import TursoConfig
from ..schema.migrations import SCHEMA_VERSION, current_version
from ..storage import CloudStore, LocalStore, is_lock_error, replicas
from ..storage.reader import shared_read_replicas
from ..storage.replicas import other_replicas

__all__ = [
    "SCHEMA_VERSION",
    "current_version",
    "open_replica",
    "open_unmigrated",
    "other_replicas",
    "probe_replica",
    "push_stale_replicas",
    "replica_dir",
    "shared_read_replicas",
]


def open_unmigrated(client: TursoClient, path: str) -> Any:
    """A connection to a local database file as it is (``read()`` would migrate it)."""
    return LocalStore(TursoConfig(url=path), client.settings).connect(timeout=5.0)


def replica_dir(client: TursoClient) -> str | None:
    """Where cloud-mode replicas of this database live (``None`` in local mode)."""
    if not client.config.is_remote:
        return None
    return replicas.replica_dir(client.config, client.settings)


def open_replica(client: TursoClient, path: str) -> Any:
    """Open a replica file as it is: no download (a replica of another process, to inspect
    or push)."""
    return replicas.open_replica(client.config, path)


def probe_replica(client: TursoClient, path: str) -> tuple[str, int | None]:
    """``("in_use", None)`` while a live process holds the replica, ``("stale", changes not
    pushed or None)`` when it can be opened, ``("unreadable", None)`` otherwise."""
    try:
        conn = open_replica(client, path)
    except Exception as exc:
        return ("in_use" if is_lock_error(exc) else "unreadable"), None
    changes: int | None
    try:
        changes = int(conn.stats().cdc_operations)
    except Exception:
        changes = None
    finally:
        conn.close()
        del conn  # pyturso frees the file lock with the object, not on close()
    return "stale", changes


def push_stale_replicas(client: TursoClient) -> bool:
    """Push the replicas of processes that died, then remove them; ``True`` when all done."""
    return CloudStore(client.config, client.settings).recover_stale()
