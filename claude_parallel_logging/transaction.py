"""The one way this package runs a write transaction on a pyturso connection.

``BEGIN IMMEDIATE`` sits inside the ``try``: pyturso's ``BEGIN IMMEDIATE`` can fail
(``database is locked``, e.g. while a cloud push holds the replica) after it has opened the
transaction, and a connection left inside it fails every later ``BEGIN`` ("cannot start a
transaction within a transaction"), so nothing would be written again. After any failure the
connection is rolled back to no transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def transaction(conn: Any) -> Iterator[Any]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; on any failure, ``ROLLBACK`` and re-raise."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: Any) -> bool:
    """End whatever transaction ``conn`` is in; True when it is known to be in none now."""
    try:
        conn.execute("ROLLBACK")
    except Exception:
        pass  # "no transaction is active", or a connection beyond repair (see in_transaction)
    try:
        return not conn.in_transaction
    except Exception:
        return False
