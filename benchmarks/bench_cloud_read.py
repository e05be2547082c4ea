"""Cloud reads (issue 15): ``cpl sessions`` as a process against ``tursodb --sync-server``
holding N realistic sessions (``realistic.py``, pushed by the logger in cloud mode).

* first: a machine that never read this database (an empty replica directory), with the
  threshold set so that the read replica is filled by a pull of the whole database.
* first_remote: the same first read answered on the remote (``CPL_REMOTE_READ_THRESHOLD=0``:
  a big remote and no replica yet), no replica filled. ``extra.first_read`` has, for this and
  for the full pull, the bytes received, and for in-process reads answered on the remote
  (``list_sessions``, ``get_session``, ``search_sessions``, ``usage_summary``) their time,
  bytes and round trips.
* unchanged: the next command, nothing new on the remote (the persistent read replica is
  reused; its pull brings nothing). Target < 300 ms.
* after 100: 100 new sessions pushed by another client, then the next command (its pull brings
  only them). ``extra`` has the bytes each pull downloaded (an in-process read of the same kind).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH_TOKEN,
    Result,
    cloud_client,
    ensure_package_importable,
    find_tursodb,
    median,
    size,
    subprocess_env,
    summarize,
    sync_server,
)
from realistic import log_session, session_payload

TARGET_UNCHANGED_MS = 300.0
NEVER_REMOTE = str(10**15)  # a threshold no database reaches: the first read pulls everything


def _push(url: str, root: Path, first: int, count: int) -> None:
    client = cloud_client(url, root / "writer-replicas", push_interval=1.0)
    try:
        for i in range(first, first + count):
            log_session(client, session_payload(i))
            if i % 200 == 199 and not client.flush(300):
                raise RuntimeError(f"push did not finish: {client.stats()}")
        if not client.flush(600):
            raise RuntimeError(f"push did not finish: {client.stats()}")
    finally:
        client.shutdown(120)


def _cpl(url: str, replicas: Path, env: dict[str, str], cwd: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "claude_parallel_logging",
        "--database",
        url,
        "--auth-token",
        BENCH_TOKEN,
        "--replica-dir",
        str(replicas),
        "sessions",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return (time.perf_counter() - t0) * 1000


def _remote_first_reads(url: str, replicas: Path) -> dict[str, Any]:
    """Reads answered on the remote (nothing on this machine): time, bytes, round trips."""
    from claude_parallel_logging.query import (
        get_session,
        list_sessions,
        search_sessions,
        usage_summary,
    )

    client = cloud_client(url, replicas, remote_read_threshold=0)
    store: Any = client.reader()
    out: dict[str, Any] = {}
    try:
        page = list_sessions(limit=50, client=client)
        reads = {
            "list_sessions": lambda: list_sessions(limit=50, client=client),
            "get_session": lambda: get_session(page[len(page) // 2].id, client=client),
            "search_sessions_rare": lambda: search_sessions("zq-absent", client=client),
            "search_sessions_common": lambda: search_sessions("the", client=client),
            "usage_summary_model": lambda: usage_summary("model", client=client),
        }
        for name, read in reads.items():
            b0, r0 = store.remote_bytes, store.remote_requests
            t0 = time.perf_counter()
            read()
            out[name] = {
                "ms": round((time.perf_counter() - t0) * 1000, 1),
                "bytes": store.remote_bytes - b0,
                "round_trips": store.remote_requests - r0,
            }
        out["remote_size_bytes"] = store.remote_size
        out["replica_files"] = sorted(p.name for p in replicas.rglob("*.db"))
    finally:
        client.shutdown(30)
    return out


def _pulled(url: str, replicas: Path) -> int | None:
    """Bytes the pull of one in-process read downloads (the same persistent replicas)."""
    from claude_parallel_logging import list_sessions

    client = cloud_client(url, replicas, remote_read_threshold=10**15)
    try:
        list_sessions(limit=50, client=client)
        return client.reader().last_pull_bytes  # type: ignore[no-any-return]
    finally:
        client.shutdown(30)


def _one_size(n: int, reps: int, binary: str, env: dict[str, str]) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="cpl-bench-cloudread-") as tmp:
        root = Path(tmp)
        with sync_server(binary, root) as server:
            _push(server.url, root, 0, n)
            db_mb = sum(p.stat().st_size for p in root.glob("server.db*")) / 1e6
            first, first_remote, unchanged, after = [], [], [], []
            extra: dict[str, Any] = {"sessions": n, "server_db_mb": round(db_mb, 1)}
            remote_env = {**env, "CPL_REMOTE_READ_THRESHOLD": "0"}
            env = {**env, "CPL_REMOTE_READ_THRESHOLD": NEVER_REMOTE}
            for rep in range(reps):
                fresh_remote = root / f"remote-readers-{rep}"
                first_remote.append(_cpl(server.url, fresh_remote, remote_env, tmp))
                if list(fresh_remote.rglob("read-*.db")):
                    raise RuntimeError("a read answered on the remote filled a read replica")
                replicas = root / f"readers-{rep}"
                first.append(_cpl(server.url, replicas, env, tmp))
                unchanged += [_cpl(server.url, replicas, env, tmp) for _ in range(5)]
                extra.setdefault("unchanged_pull_bytes", _pulled(server.url, replicas))
                _push(server.url, root, n + 100 * rep, 100)
                after.append(_cpl(server.url, replicas, env, tmp))
            _push(server.url, root, n + 100 * reps, 100)
            extra["after_100_pull_bytes"] = _pulled(server.url, root / "readers-0")
            fresh = root / "readers-fresh"
            extra["first_pull_bytes"] = _pulled(server.url, fresh)
            extra["first_read_remote"] = _remote_first_reads(server.url, root / "remote-fresh")
    tag = f"cloud_read.{n}"
    return [
        summarize(f"{tag}.first", "ms", first, target="information", extra=extra),
        summarize(f"{tag}.first_remote", "ms", first_remote, target="information"),
        summarize(
            f"{tag}.unchanged",
            "ms",
            unchanged,
            target=f"< {TARGET_UNCHANGED_MS:.0f} ms",
            passed=median(unchanged) < TARGET_UNCHANGED_MS,
        ),
        summarize(f"{tag}.after_100_new", "ms", after, target="information"),
    ]


def run(quick: bool) -> list[Result]:
    binary = find_tursodb()
    if binary is None:
        raise RuntimeError("tursodb not found: run ./dev setup or set CPL_TURSODB_BIN")
    env = subprocess_env(ensure_package_importable())
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sizes = [size(1000, 300, 5, is_quick=quick)] + ([] if quick else [10_000])
    reps = size(2, 1, 1, is_quick=quick)
    results: list[Result] = []
    for n in sizes:
        results += _one_size(n, reps, binary, env)
    return results
