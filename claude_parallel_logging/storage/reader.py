"""Cloud mode reads: read replicas kept between processes, brought up to date by a pull.

A pull into an empty replica downloads the whole database, so a replica per process would make
every ``cpl`` command download everything. Instead each remote has a few persistent read
replicas (``read-<slot>.db`` in its replica directory) that every process of the user reuses:
a read takes a free slot (an ``flock`` on ``read-<slot>.lock``: pyturso lets one process at a
time open a file), pulls what changed since that slot's last pull, reads, and lets go. Slots that
already hold the database are preferred, and waited for briefly, over an empty one (which costs a
full download); when every slot stays busy, the read goes through a private replica that is
removed afterwards (``r-<pid>-<rand>.db``, the old behaviour). A lock dies with its process, so a
killed reader never blocks anyone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .base import is_lock_error
from .replicas import new_tag, remove_replica, replica_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: every read uses a private replica
    fcntl = None  # type: ignore[assignment]

SLOTS = 4  # concurrent readers served from persistent replicas
SLOT_WAIT = 2.0  # seconds to wait for a slot that holds the database before downloading anew
_POLL = 0.01


def slot_path(directory: str, slot: int) -> str:
    return os.path.join(directory, f"read-{slot}.db")


def shared_read_replicas(directory: str) -> list[str]:
    """The persistent read replicas of one remote that exist (for ``cpl doctor``)."""
    return [p for p in (slot_path(directory, s) for s in range(SLOTS)) if os.path.exists(p)]


def _try_lock(path: str) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if needed), or ``None`` when it is held."""
    assert fcntl is not None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _release(fd: int) -> None:
    try:
        os.close(fd)  # closing the descriptor releases the flock
    except OSError:
        pass


class ReadSlot:
    """The replica file a read goes through: ``shared`` (persistent) or private (removed after)."""

    def __init__(self, path: str, shared: bool, fd: int | None) -> None:
        self.path = path
        self.shared = shared
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            _release(self._fd)
            self._fd = None
        if not self.shared:
            remove_replica(self.path)


def _acquire(directory: str, wait: float) -> ReadSlot:
    """A free persistent slot, preferring one that holds the database; else a private one."""
    os.makedirs(directory, exist_ok=True)
    if fcntl is None:
        return ReadSlot(replica_path(directory, "r", new_tag()), False, None)
    deadline = time.monotonic() + wait
    for _ in range(100_000):  # bounded by the deadline long before
        filled = [s for s in range(SLOTS) if os.path.exists(slot_path(directory, s))]
        for slot in filled:
            fd = _try_lock(slot_path(directory, slot) + ".lock")
            if fd is not None:
                return ReadSlot(slot_path(directory, slot), True, fd)
        if not filled or time.monotonic() >= deadline:
            break  # nothing to reuse (first read on this machine), or waited long enough
        time.sleep(_POLL)
    for slot in range(SLOTS):
        if slot in filled:
            continue
        fd = _try_lock(slot_path(directory, slot) + ".lock")
        if fd is not None:
            return ReadSlot(slot_path(directory, slot), True, fd)
    return ReadSlot(replica_path(directory, "r", new_tag()), False, None)


@contextmanager
def read_slot(directory: str, wait: float = SLOT_WAIT) -> Iterator[ReadSlot]:
    """Hold a read replica file for one read (see the module docstring)."""
    slot = _acquire(directory, wait)
    try:
        yield slot
    finally:
        slot.release()


def open_slot(slot: ReadSlot, open_replica: Any) -> Any:
    """Open the slot's replica; one that cannot be opened (damaged, from another server
    generation) is removed and started afresh, since it only ever holds pulled data."""
    try:
        return open_replica(slot.path)
    except Exception as exc:
        if is_lock_error(exc) or not slot.shared:
            raise
        remove_replica(slot.path)
        return open_replica(slot.path)
