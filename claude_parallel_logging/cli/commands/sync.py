"""push what is pending to the remote and bring the local read replica up to date"""

# Writes what this process has queued and, in cloud mode, pushes the replicas of processes that
# exited, with progress on stderr (results stay alone on stdout).

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from ...query.access import database_label, one_line
from ..base import EXIT_ERROR, EXIT_OK, CliError
from ..database import TursoClient, resolve_client
from ..options import seconds_value
from ..output import Output
from ..replicas import other_replicas, probe_replica, push_stale_replicas, replica_dir

_POLL = 0.05


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=seconds_value, default=60.0, help="seconds (default 60)")


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    deadline = time.monotonic() + args.timeout
    with _progress(out, enabled=not args.json) as progress:
        flushed = _flush(client, args.timeout, progress)
        report: dict[str, Any] = {
            "mode": "cloud" if client.config.is_remote else "local",
            "database": database_label(client.config),
            "flushed": flushed,
        }
        ok = flushed
        if client.config.is_remote:
            store = client.reader()
            try:
                # A pull into a read replica: proves the remote is reachable before pushing,
                # and keeps a replica on this machine, so that reads are local from now on
                # (the first one downloads the whole database; later ones what changed).
                with store.read():
                    pass
            except Exception as exc:
                raise CliError(
                    f"cannot reach {database_label(client.config)}: {one_line(exc)}"
                ) from None
            report["read_replica"] = {
                "path": getattr(store, "last_read_path", None),
                "pulled_bytes": getattr(store, "last_pull_bytes", None),
            }
            left = max(0.1, deadline - time.monotonic())
            report["replicas"] = _push_stale(client, progress, left)
            ok = ok and report["replicas"]["failed"] == 0
    report["stats"] = asdict(client.stats())
    if args.json:
        out.json({**report, "ok": ok})
        return EXIT_OK if ok else EXIT_ERROR
    stats = client.stats()
    out.line(f"{report['mode']} database {report['database']}", style="bold")
    out.line(
        f"this process: {stats.written:,} written, {stats.pending:,} pending,"
        f" {stats.pushes:,} pushes, {stats.push_failures:,} push failures"
    )
    if "read_replica" in report:
        read = report["read_replica"]
        pulled = read["pulled_bytes"]
        out.line(
            f"read replica {read['path']} up to date"
            + ("" if pulled is None else f" ({pulled:,} bytes pulled)")
            + ": reads on this machine are local"
        )
    if "replicas" in report:
        r = report["replicas"]
        out.line(
            f"replicas left by other processes: {r['found']} found, {r['pushed']} pushed"
            f" ({r['changes']:,} changes), {r['in_use']} in use by running processes,"
            f" {r['failed']} failed"
        )
    else:
        out.line("nothing to push: local mode writes straight to the database file")
    if stats.last_error and not ok:
        out.line(f"last error: {stats.last_error}", style="red")
    if not ok:
        out.error("not everything could be pushed; the rows stay in the replicas, run sync again")
    return EXIT_OK if ok else EXIT_ERROR


def _run_polling(
    work: Callable[[], Any], poll: Callable[[], None], timeout: float
) -> tuple[bool, Any]:
    """Run ``work`` in a thread, calling ``poll`` every 50 ms until it ends or ``timeout``
    passes; returns (finished, its result or None)."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception:
            result.append(None)

    worker = threading.Thread(target=run, name="cpl-sync", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / _POLL) + 2):
        worker.join(_POLL)
        poll()
        if not worker.is_alive() or time.monotonic() > deadline:
            break
    poll()
    done = not worker.is_alive()
    return done, (result[0] if done and result else None)


def _flush(client: TursoClient, timeout: float, progress: _ProgressTasks) -> bool:
    """Write (and in cloud mode push) what this process has queued, with the events written
    as progress."""
    start = client.stats()
    if start.pending <= 0:
        return client.flush(timeout)
    update = progress.task("writing this process's events", start.pending, "events")

    def poll() -> None:
        update(client.stats().written - start.written, "")

    done, flushed = _run_polling(lambda: client.flush(timeout), poll, timeout)
    return bool(done and flushed)


def _push_stale(client: TursoClient, progress: _ProgressTasks, timeout: float) -> dict[str, int]:
    """Push the replicas of processes that died (``CloudStore.recover_stale``), with progress in
    changes pushed (each replica's changes are counted first; a replica is done once pushed
    and removed)."""
    paths = other_replicas(replica_dir(client) or "", "w")
    result = {"found": len(paths), "pushed": 0, "changes": 0, "in_use": 0, "failed": 0}
    probes = {p: probe_replica(client, p) for p in paths}
    stale = [p for p in paths if probes[p][0] != "in_use"]
    if not stale:
        result["in_use"] = len(paths)
        return result
    weights = {p: probes[p][1] or 0 for p in stale}
    by_changes = all(probes[p][1] is not None for p in stale) and sum(weights.values()) > 0
    total = sum(weights.values()) if by_changes else len(stale)
    update = progress.task(
        f"pushing {len(stale)} replica(s) of exited processes",
        total,
        "changes" if by_changes else "replicas",
    )

    def poll() -> None:
        gone = [p for p in stale if not os.path.exists(p)]
        done = sum(weights[p] for p in gone) if by_changes else len(gone)
        update(done, f"{len(gone)}/{len(stale)} replicas")

    finished, all_done = _run_polling(lambda: push_stale_replicas(client), poll, timeout)
    for path in paths:
        if not os.path.exists(path):
            result["pushed"] += 1
            result["changes"] += weights.get(path, 0)
            continue
        state, _ = probe_replica(client, path)
        result["in_use" if state == "in_use" else "failed"] += 1
    if not finished or all_done is False:  # still pushing, or a push failed
        result["failed"] = max(result["failed"], 1)
    return result


class _ProgressTasks:
    """Progress bars on stderr (results stay alone on stdout): on a terminal or ``--color
    always``, never with ``--json``; nothing at all otherwise."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def task(self, description: str, total: int, unit: str) -> Callable[[int, str], None]:
        if self.progress is None:
            return lambda completed, note: None
        task = self.progress.add_task(description, total=max(total, 1), unit=unit, note="")
        progress = self.progress

        def update(completed: int, note: str) -> None:
            progress.update(task, completed=min(max(completed, 0), total), note=note)

        return update


@contextmanager
def _progress(out: Output, enabled: bool) -> Iterator[_ProgressTasks]:
    console = out.progress_console() if enabled else None
    if console is None:
        yield _ProgressTasks(None)
        return
    # rich only here: optional, and its import costs start-up time output without bars saves
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[note]}", style="dim"),
        console=console,
        transient=True,
    ) as progress:
        yield _ProgressTasks(progress)
