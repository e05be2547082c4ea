"""The database the CLI works on, chosen from the options and the environment.

With ``cli/replicas.py``, the only modules of the CLI that reach the write path's client and
configuration; what ``sync`` and ``doctor`` inspect beyond reading lives there, so that a read
command does not import the stores and replica code it never uses.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..client import TursoClient, get_turso_client
from ..config import TursoConfig, configure, database_url_problem, mask_secret
from ..errors import LoggingNotConfigured
from ..query.access import database_label
from .base import CliError, UsageError, option

__all__ = ["TursoClient", "mask_secret", "resolve_client"]


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
