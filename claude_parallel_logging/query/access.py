"""Opening the database for reading: which database, a connection or nothing, snapshot copies.

The one module of the read path that reaches the write path's client, configuration, store and
schema: every other ``query`` module reads through ``reading``. In local mode a read opens the
file briefly (other processes wait for its lock); in cloud mode it reads a replica pulled from
the remote first, or, while this machine has no replica of a big remote, sends its statements
to the remote (``answered_remotely``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..client import TursoClient, get_turso_client
from ..config import TursoConfig, configuration_problem
from ..errors import DatabaseUnavailable, LoggingNotConfigured, one_line
from ..schema.migrations import current_version
from ..storage.local import LocalStore

__all__ = [
    "TursoClient",
    "answered_remotely",
    "check_readable",
    "database_identity",
    "database_label",
    "local_file_exists",
    "missing_file_message",
    "needs_snapshot",
    "one_line",
    "reading",
    "resolve",
    "snapshot",
]

_SNAPSHOT_ATTEMPTS = 5


def resolve(client: TursoClient | None) -> TursoClient:
    """The client to read with: the one given, else the shared one."""
    resolved = client if client is not None else get_turso_client()
    if resolved is None:
        raise LoggingNotConfigured(configuration_problem())
    return resolved


def database_label(config: TursoConfig) -> str:
    """The database as errors and reports name it: the file, or the URL without its query
    string (where some users put ``authToken=``)."""
    if config.is_remote:
        return config.url.split("?", 1)[0]
    return config.local_path


def database_identity(client: TursoClient | None) -> str:
    """What the derived indexes of a database are keyed by: the file's real path, or the URL
    without its query string."""
    config = resolve(client).config
    return database_label(config) if config.is_remote else os.path.realpath(config.local_path)


@contextmanager
def reading(
    client: TursoClient | None, *, missing_ok: bool = False, allow_remote: bool = True
) -> Iterator[Any | None]:
    """A connection, or ``None`` when there is nothing to read yet (an empty file or remote).

    A missing local file is not created (a typo in a path must not leave databases around) and
    is an error, as in ``cpl``: an empty result would hide the typo (``missing_ok``: ``None``).
    A file this user may read but not write (another user's file, a read-only mount) is read
    from a private snapshot copy: pyturso opens every database read-write and has no read-only
    mode. ``allow_remote=False``: in cloud mode always a read replica (for work that reads
    every row, such as building the derived indexes).
    """
    resolved = resolve(client)
    store = resolved.reader()
    if store.mode == "local":
        path = resolved.config.local_path
        if not local_file_exists(path):
            if not missing_ok:
                raise DatabaseUnavailable(missing_file_message(path))
            yield None
            return
        if needs_snapshot(path):
            with snapshot(path) as copy:
                copy_store = LocalStore(TursoConfig(url=copy), resolved.settings)
                with _open_read(copy_store, path) as conn:
                    yield conn
            return
    with _open_read(store, database_label(resolved.config)) as conn:
        yield conn


def answered_remotely(conn: Any) -> bool:
    """Whether ``conn``'s statements run on the remote (``storage/hrana.py``): the derived
    indexes, built from the whole database, are not built through it (the remote's own SQL
    answers instead)."""
    return bool(getattr(conn, "answers_remotely", False))


@contextmanager
def _open_read(store: Any, label: str) -> Iterator[Any | None]:
    ctx = store.read(allow_remote=True)
    try:
        conn = ctx.__enter__()
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot open database {label}: {one_line(exc)}") from exc
    try:
        yield conn if current_version(conn) > 0 else None
    except BaseException as exc:
        if not ctx.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        ctx.__exit__(None, None, None)


def missing_file_message(path: str) -> str:
    """The one-line error for a local database file that does not exist (API and CLI)."""
    return (
        f"database file {path} does not exist (check the path; it is created when the first"
        " session is logged into it)"
    )


def local_file_exists(path: str) -> bool:
    """Whether a local database file is there (``False``: it does not exist). One that is
    there but cannot be read (a parent directory this user may not enter, a directory, a file
    this user may not read) raises :class:`DatabaseUnavailable`: it is an error, not absent."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        raise DatabaseUnavailable(
            f"cannot access database file {path}: permission denied on a parent directory"
        ) from None
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot access database file {path}: {exc.strerror or exc}"
        ) from None
    if os.path.isdir(path):
        raise DatabaseUnavailable(f"{path} is a directory, not a database file")
    if not os.access(path, os.R_OK):
        raise DatabaseUnavailable(
            f"database file {path} is not readable by this user (permission denied)"
        )
    return True


def check_readable(client: TursoClient) -> None:
    """Raise what a read would raise for a local file that is missing or unreadable, without
    opening it (``cpl`` checks before anything else; a remote is checked by reading it)."""
    if client.config.is_remote:
        return
    path = client.config.local_path
    if not local_file_exists(path):
        raise DatabaseUnavailable(missing_file_message(path))


def needs_snapshot(path: str) -> bool:
    """Whether a local database can only be read from a copy: pyturso opens files read-write
    (and creates the ``-wal`` file next to them), so it fails on a file this user cannot write.

    Raises :class:`DatabaseUnavailable` when the file (or its WAL) cannot be read at all.
    """
    wal = path + "-wal"
    wal_exists = os.path.exists(wal)
    for target in (path, wal) if wal_exists else (path,):
        if not os.access(target, os.R_OK):
            raise DatabaseUnavailable(
                f"cannot open database {path}: permission denied ({os.path.basename(target)}"
                " is not readable by this user)"
            )
    if not os.access(path, os.W_OK):
        return True
    if wal_exists:
        return not os.access(wal, os.W_OK)
    return not os.access(os.path.dirname(path) or ".", os.W_OK)


def _fingerprint(path: str) -> tuple[tuple[int, int] | None, ...]:
    """Size and modification time of the file and its WAL (``None``: absent)."""
    out: list[tuple[int, int] | None] = []
    for file in (path, path + "-wal"):
        try:
            info = os.stat(file)
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((info.st_size, info.st_mtime_ns))
    return tuple(out)


@contextmanager
def snapshot(path: str) -> Iterator[str]:
    """A private copy of a local database (file and WAL), removed afterwards.

    The copy is retried while the files change under it (a writer committing meanwhile), so it
    is a consistent state of the database, as of the moment it was taken.
    """
    import shutil  # here: only read-only files need them, and they cost start-up time
    import tempfile

    directory = tempfile.mkdtemp(prefix="cpl-read-")
    copy = os.path.join(directory, os.path.basename(path) or "logs.db")
    try:
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            before = _fingerprint(path)
            try:
                shutil.copyfile(path, copy)
                if before[1] is not None:
                    shutil.copyfile(path + "-wal", copy + "-wal")
                elif os.path.exists(copy + "-wal"):
                    os.remove(copy + "-wal")
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot read database {path}: {exc.strerror or exc}"
                ) from None
            if _fingerprint(path) == before:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise DatabaseUnavailable(
                f"cannot read database {path}: it kept changing while a read-only copy was taken"
            )
        yield copy
    finally:
        shutil.rmtree(directory, ignore_errors=True)
