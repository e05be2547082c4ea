"""Cloud mode's replica files: where they live, their names, whose they are, opening, removal.

Each process writes to its own replica ``w-<pid>-<rand>.db`` and reads from ``r-<pid>-<rand>.db``
in a directory per remote URL. The one place that names, lists, opens and removes them: the
cloud store and the CLI's ``sync``/``doctor`` both use it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import uuid
from typing import Any

from ..config import Settings, TursoConfig

# Changes per push request, so a backlog is sent in parts that each finish within the timeout
# (a transaction, i.e. one writer batch, is never split).
PUSH_BATCH = 1000

# Writer replicas opened by live stores of this process. Another store of the same process (a
# second client, `cpl sync`) can open them without a lock error, so it must be told not to push and
# remove them. A replica whose store closed without pushing everything leaves this set and is then
# recovered like a dead process's.
LIVE_REPLICAS: set[str] = set()

if hasattr(os, "register_at_fork"):  # a child's stores are its own; the parent's stay locked by it
    os.register_at_fork(after_in_child=LIVE_REPLICAS.clear)


def replica_dir(config: TursoConfig, settings: Settings) -> str:
    """The directory of one remote's replicas (named after a digest of its URL)."""
    digest = hashlib.sha256(config.url.encode()).hexdigest()[:16]
    return os.path.join(settings.resolved_replica_dir(), digest)


def new_tag() -> str:
    """A process's replica tag: its pid (for liveness checks) and a random part."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def replica_path(directory: str, kind: str, tag: str) -> str:
    """``kind`` ``"w"`` for a writer replica, ``"r"`` for a read replica."""
    return os.path.join(directory, f"{kind}-{tag}.db")


def list_replicas(directory: str, kind: str) -> list[str]:
    """Every replica file of one kind in ``directory``, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), f"{kind}-*.db")))


def other_replicas(directory: str, kind: str) -> list[str]:
    """Replica files of other processes (ours are named after our pid)."""
    mine = f"{kind}-{os.getpid()}-"
    return [p for p in list_replicas(directory, kind) if not os.path.basename(p).startswith(mine)]


def open_replica(config: TursoConfig, path: str, push_batch: int = PUSH_BATCH) -> Any:
    """A replica file as it is: no download (pyturso's bootstrap has no timeout; a pull fills it)."""
    import turso.sync

    return turso.sync.connect(
        path,
        config.url,
        auth_token=config.auth_token,
        client_name="claude-parallel-logging",
        bootstrap_if_empty=False,
        isolation_level=None,
        push_operations_threshold=push_batch,
    )


def pid_alive(path: str) -> bool:
    """Replica names start with the owner's pid (``r-<pid>-<rand>.db``)."""
    try:
        pid = int(os.path.basename(path).split("-")[1])
    except (IndexError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def owned_by_another_live_process(path: str) -> bool:
    """A writer replica of a live process is not stale, even if it can be opened: its owner
    may be between creating the file and taking its lock. (A pid reused by an unrelated
    process only delays recovery until that process ends.)"""
    try:
        pid = int(os.path.basename(path).split("-")[1])
    except (IndexError, ValueError):
        return False
    return pid != os.getpid() and pid_alive(path)


def remove_replica(path: str) -> None:
    """The replica and its companion files (``-wal``, ``-info``, ...)."""
    for p in glob.glob(glob.escape(path) + "*"):
        if p == path or p[len(path)] == "-":
            try:
                os.remove(p)
            except OSError:
                pass
