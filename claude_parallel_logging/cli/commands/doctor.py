"""check configuration and database"""

# Every check is one line: ok, warn, info or fail; any fail makes the exit status 1. The doctor
# opens a local file without migrating it and never writes.

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ...errors import DatabaseUnavailable
from ...query import needs_snapshot, search_index_state, snapshot, usage_rollups_state
from ...query.access import database_label, one_line
from ..base import EXIT_ERROR, EXIT_OK, option
from ..database import TursoClient, mask_secret, resolve_client
from ..format import fmt_time
from ..output import Output
from ..replicas import (
    SCHEMA_VERSION,
    current_version,
    open_unmigrated,
    other_replicas,
    probe_replica,
    replica_dir,
    shared_read_replicas,
)

Check = Callable[[str, str, str], None]  # check(name, status, detail)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args, without_token=True)
    if client.config.auth_token or not client.config.is_remote:  # the shared client
        return _doctor(args, out, client)
    try:  # a private client (a remote URL without a token): close its read replica
        return _doctor(args, out, client)
    finally:
        client.shutdown(5)


def _doctor(args: argparse.Namespace, out: Output, client: TursoClient) -> int:
    checks: list[dict[str, str]] = []

    def check(name: str, status: str, detail: str) -> None:
        checks.append({"check": name, "status": status, "detail": out.scrub(detail)})

    cfg = client.config
    source = "--database" if option(args, "database") else "TURSO_DATABASE_URL or configure()"
    check("database", "ok", f"{database_label(cfg)} (from {source})")
    check("mode", "ok", "cloud (Turso remote)" if cfg.is_remote else "local file")
    check("auth token", "ok" if cfg.auth_token or not cfg.is_remote else "fail",
          mask_secret(cfg.auth_token) if cfg.auth_token or not cfg.is_remote else
          "none: a remote database needs one (pass --auth-token or set TURSO_AUTH_TOKEN)")  # fmt: skip
    check("versions", "ok", _versions())
    if cfg.is_remote:
        _doctor_cloud(client, check)
    else:
        _doctor_local(client, check)
    stats = client.stats()
    check("pending (this process)", "ok", f"{stats.pending} events queued, {stats.written} written")
    failed = any(c["status"] == "fail" for c in checks)
    if args.json:
        out.json({"ok": not failed, "checks": checks})
        return EXIT_ERROR if failed else EXIT_OK
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
    width = max(len(c["check"]) for c in checks)
    for c in checks:
        out.line(f"[{c['status'].upper():4}] {c['check'].ljust(width)}  {c['detail']}",
                 style=styles.get(c["status"]))  # fmt: skip
    return EXIT_ERROR if failed else EXIT_OK


def _versions() -> str:
    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("claude-parallel-logging", "pyturso", "rich"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _counts(conn: Any) -> str:
    n_s, n_m, n_t = (
        conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("sessions", "messages", "tool_executions")
    )
    newest = conn.execute("SELECT MAX(started_at) FROM sessions").fetchone()[0]
    return (
        f"{n_s:,} sessions, {n_m:,} messages, {n_t:,} tool executions;"
        f" newest session started {fmt_time(newest)}"
    )


def _schema_check(schema_version: int, check: Check) -> None:
    if schema_version == 0:
        check("schema", "warn", "no tables yet (created on the first write)")
    elif schema_version > SCHEMA_VERSION:
        check("schema", "fail", f"version {schema_version} is newer than this package understands"
              f" ({SCHEMA_VERSION}): upgrade claude-parallel-logging")  # fmt: skip
    elif schema_version < SCHEMA_VERSION:
        check("schema", "warn",
              f"version {schema_version}; upgraded to {SCHEMA_VERSION} on next write")  # fmt: skip
    else:
        check("schema", "ok", f"version {schema_version} (current)")


def _doctor_local(client: TursoClient, check: Check) -> None:
    path = client.config.local_path
    if os.path.isdir(path):
        check("connectivity", "fail", f"{path} is a directory, not a database file")
        return
    if not os.path.exists(path):
        check("connectivity", "warn", f"{path} does not exist yet (created on the first write)")
        return
    try:
        read_only = needs_snapshot(path)
    except DatabaseUnavailable as exc:
        check("connectivity", "fail", str(exc))
        return
    with ExitStack() as stack:
        target = path
        if read_only:
            check("permissions", "warn", f"{path} is not writable by this user: logging into it"
                  " fails; reads use a private copy")  # fmt: skip
            try:
                target = stack.enter_context(snapshot(path))
            except DatabaseUnavailable as exc:
                check("connectivity", "fail", str(exc))
                return
        _doctor_open(client, target, path, check)
    check("pending (replicas)", "ok", "none: local mode writes straight to the database file")


def _doctor_open(client: TursoClient, target: str, path: str, check: Check) -> None:
    """Open ``target`` (``path`` itself, or its snapshot copy) and check its schema."""
    started = time.perf_counter()
    try:
        conn = open_unmigrated(client, target)  # not ``read()``: the doctor must not migrate
    except Exception as exc:
        check("connectivity", "fail", f"cannot open {path}: {one_line(exc)}")
        return
    try:
        took = (time.perf_counter() - started) * 1000
        size = os.path.getsize(path)
        check("connectivity", "ok", f"opened in {took:.1f} ms, {size:,} bytes")
        schema_version = current_version(conn)
        _schema_check(schema_version, check)
        if schema_version:
            check("contents", "info", _counts(conn))
            state = search_index_state(conn, client)
            check("search index", "warn" if state.error else "info", state.describe())
            rollups = usage_rollups_state(client)
            check("usage rollups", "warn" if rollups.error else "info", rollups.describe())
    except Exception as exc:
        check("connectivity", "fail", f"cannot read {path}: {one_line(exc)}")
    finally:
        conn.close()
        del conn  # frees the file lock


def _doctor_cloud(client: TursoClient, check: Check) -> None:
    directory = replica_dir(client) or ""
    check("replica dir", "ok", directory)
    started = time.perf_counter()
    store = client.reader()
    try:
        with store.read(allow_remote=True) as conn:
            took = (time.perf_counter() - started) * 1000
            remote = bool(getattr(store, "last_read_remote", False))
            how = "asked the remote" if remote else "pulled from the remote"
            check("connectivity", "ok", f"{how} in {took:.0f} ms")
            check("reads", "info", store.describe_reads())
            schema_version = current_version(conn)
            _schema_check(schema_version, check)
            if schema_version:
                check("contents", "info", _counts(conn))
    except Exception as exc:
        check(
            "connectivity", "fail", f"cannot reach {database_label(client.config)}: {one_line(exc)}"
        )
    writers = other_replicas(directory, "w") if os.path.isdir(directory) else []
    readers = other_replicas(directory, "r")
    in_use = stale = pending = unknown = 0
    for path in writers:
        state, changes = probe_replica(client, path)
        if state == "in_use":
            in_use += 1
        elif state == "unreadable":
            unknown += 1
        else:
            stale += 1
            if changes is None:
                unknown += 1
            else:
                pending += changes
    detail = (
        f"{len(writers)} writer replica(s) of other processes: {in_use} in use by running"
        f" processes, {stale} left by exited processes ({pending:,} changes not pushed);"
        f" {len(readers)} private read replica(s) of other processes;"
        f" {len(shared_read_replicas(directory))} shared read replica(s) (kept: later reads"
        " pull only what changed)"
    )
    if unknown:
        detail += f"; {unknown} could not be inspected"
    check("pending (replicas)", "warn" if pending or unknown else "ok",
          detail + ("; run `cpl sync` to push them" if pending else ""))  # fmt: skip
