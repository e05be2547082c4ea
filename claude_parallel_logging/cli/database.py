"""The database the CLI works on, and what ``sync`` and ``doctor`` inspect beyond reading it.

The one module of the CLI that reaches the write path (client, configuration, store, schema):
choosing the database from the options, opening a local file without migrating it, and the
replicas other processes left in cloud mode.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..client import TursoClient, get_turso_client
from ..config import TursoConfig, configure, database_url_problem, mask_secret
from ..errors import LoggingNotConfigured
from ..query.access import database_label
from ..schema.migrations import SCHEMA_VERSION, current_version
from ..storage import CloudStore, LocalStore, is_lock_error, replicas
from ..storage.reader import shared_read_replicas
from ..storage.replicas import other_replicas
from .base import CliError, UsageError, option

__all__ = [
    "SCHEMA_VERSION",
    "TursoClient",
    "current_version",
    "mask_secret",
    "open_replica",
    "open_unmigrated",
    "other_replicas",
    "probe_replica",
    "push_stale_replicas",
    "replica_dir",
    "resolve_client",
    "shared_read_replicas",
]


def resolve_client(args: argparse.Namespace, *, without_token: bool = False) -> TursoClient:
    """Apply ``--database``/``--auth-token``/``--replica-dir`` (over the environment).

    ``without_token``: a remote URL without a token still gets a (private) client, for
    ``doctor`` to check everything and report the missing token as the failure."""
    overrides: dict[str, Any] = {}
    if option(args, "database") is not None:
        overrides["database_url"] = args.database or None
    if option(args, "auth_token") is not None:
        overrides["auth_token"] = args.auth_token or None
    if option(args, "replica_dir") is not None:
        overrides["replica_dir"] = args.replica_dir
    url = overrides.get("database_url", os.environ.get("TURSO_DATABASE_URL") or None)
    token = overrides.get("auth_token", os.environ.get("TURSO_AUTH_TOKEN") or None)
    problem = database_url_problem(url) if url else None
    if problem is not None:
        source = "--database" if "database_url" in overrides else "TURSO_DATABASE_URL"
        raise UsageError(f"{source}: {problem}")
    config = TursoConfig(url=url) if url else None
    if config is not None and config.is_remote and not token and without_token:
        if overrides:
            configure(**overrides)
        return TursoClient(TursoConfig(url=config.url.strip()))
    if config is not None and config.is_remote and not token:
        raise CliError(
            f"{database_label(config)} is a remote database but no auth token was given:"
            " pass --auth-token or set TURSO_AUTH_TOKEN"
        )
    if overrides:
        configure(**overrides)
    client = get_turso_client()
    if client is None:
        raise LoggingNotConfigured(
            "no database configured: pass --database PATH_OR_URL or set TURSO_DATABASE_URL"
        )
    args.resolved_client = client  # ``main`` asks it how reads were answered
    return client


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
