"""Reads at scale (issue 15): the query API on realistic databases of 1k, 10k and 100k sessions
(``scale_data.py``; ~61 MB per 1,000 sessions), with the growth factor per 10x data.

* ``scale.list_first.N`` / ``scale.list_near.N`` / ``scale.list_deep.N``: ``list_sessions``
  (50 rows), the first page and the pages 10 % and 90 % deep (their cursors); < 20 ms;
* ``scale.get_session.N``: a whole session (~20 messages, ~6 tools); target < 10 ms;
* ``scale.usage_<grouping>.N``: ``usage_summary`` over 90 days; target < 100 ms;
* ``scale.search_<rare|common|absent>.N``: ``search_sessions`` (20 hits) for a word in 0.1 % of
  the sessions, one in every session, one in none; target < 100 ms. The derived index is built
  first (its build time and size are in ``extra``); each search brings it up to date first, as
  in real use;
* ``scale.ui_<list|stats|search>.N``: the viewer (``cpl ui``, the real server on 127.0.0.1)
  answering ``/``, ``/stats`` over the 90 days and ``/search`` for the rare word; < 300 ms.

Sizes: ``./dev bench --scale`` 1k, 10k, 100k; the default run and ``--quick`` only 1k (tiny:
200). The databases and their indexes are cached under ``benchmarks/results/scale/``; an old
(v4) file is migrated in place to the current schema before it is measured.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import scale_data
from common import TINY, Result, summarize

TARGETS_MS = {"list_first": 20.0, "list_deep": 20.0, "list_near": 20.0, "get_session": 10.0, "usage": 100.0,
              "search": 100.0, "ui": 300.0}  # fmt: skip
SCALE_SIZES = (1_000, 10_000, 100_000)


def _target(op: str) -> float:
    return TARGETS_MS.get(op) or TARGETS_MS[op.split("_", 1)[0]]


def _time(fn: Any, reps: int) -> list[float]:
    fn()  # warm (and bring the search index up to date)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def client_for(path: Path) -> Any:
    import claude_parallel_logging as cpl

    config = cpl.TursoConfig(url=str(path))
    return cpl.TursoClient(config, cpl.Settings(config=config))


def _prepare(n: int) -> tuple[Path, dict[str, Any]]:
    import turso

    from claude_parallel_logging.query import (
        rebuild_search_index,
        rebuild_usage_rollups,
        search_index_state,
        usage_rollups_state,
    )
    from claude_parallel_logging.schema.migrations import migrate
    path = scale_data.build(n, progress=True)
    conn = turso.connect(str(path))
    found = migrate(conn)
    conn.close()
    client = client_for(path)
    extra: dict[str, Any] = {"sessions": n, "db_mb": round(os.path.getsize(path) / 1e6),
                             "migrated_from": found}  # fmt: skip
    state = search_index_state(None, client)
    if not state.exists or state.error:
        t0 = time.perf_counter()
        state = rebuild_search_index(client)
        extra["index_build_s"] = round(time.perf_counter() - t0, 1)
    extra["index_mb"] = round(state.size_bytes / 1e6)
    rollups = usage_rollups_state(client)
    if not rollups.built or rollups.error:
        t0 = time.perf_counter()
        rollups = rebuild_usage_rollups(client)
        extra["rollups_build_s"] = round(time.perf_counter() - t0, 1)
    extra["rollups_mb"] = round(rollups.size_bytes / 1e6)
    client.shutdown(5)
    return path, extra


def measure(n: int, reps: int) -> dict[str, tuple[list[float], dict[str, Any]]]:
    import turso

    from claude_parallel_logging.query import (
        get_session,
        list_sessions,
        search_sessions,
        usage_summary,
    )
    from claude_parallel_logging.query.cursor import PageQuery, encode_cursor
    path, extra = _prepare(n)
    conn = turso.connect(str(path))
    cursors = {}
    for name, depth in (("list_deep", 0.9), ("list_near", 0.1)):
        at, sid = conn.execute(
            "SELECT started_at, id FROM sessions ORDER BY started_at DESC, id DESC"
            " LIMIT 1 OFFSET ?",
            (int(n * depth),),
        ).fetchone()
        cursors[name] = encode_cursor(at, sid, PageQuery())
    ids = [r[0] for r in conn.execute("SELECT id FROM sessions LIMIT 200").fetchall()]
    conn.close()
    since = scale_data.iso(scale_data.END - timedelta(days=90))
    client = client_for(path)
    rng = random.Random(1)
    ops: dict[str, Any] = {
        "list_first": lambda: list_sessions(50, client=client),
        "list_deep": lambda: list_sessions(50, cursor=cursors["list_deep"], client=client),
        "list_near": lambda: list_sessions(50, cursor=cursors["list_near"], client=client),
        "get_session": lambda: get_session(rng.choice(ids), client=client),
        "usage_agent_type": lambda: usage_summary("agent_type", since, client=client),
        "usage_model": lambda: usage_summary("model", since, client=client),
        "usage_day": lambda: usage_summary("day", since, client=client),
        "search_rare": lambda: search_sessions(scale_data.RARE, client=client),
        "search_common": lambda: search_sessions(scale_data.COMMON, client=client),
        "search_absent": lambda: search_sessions(scale_data.ABSENT, client=client),
    }
    out = {}
    try:
        for op, fn in ops.items():
            out[op] = (_time(fn, reps), extra)
        with _viewer(client) as base:
            for op, page in (("ui_list", "/"), ("ui_stats", "/stats?since=" + urllib.parse.quote(since)),
                             ("ui_search", f"/search?q={scale_data.RARE}")):  # fmt: skip
                out[op] = (_time(lambda page=page: _get(base + page), reps), extra)
    finally:
        client.shutdown(5)
    return out


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
        assert r.status == 200, url


@contextmanager
def _viewer(client: Any) -> Iterator[str]:
    """The real viewer server on 127.0.0.1 (as ``bench_ui``)."""
    import uvicorn

    from claude_parallel_logging.ui.app import create_app, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(client), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def run(quick: bool, sizes: tuple[int, ...] | None = None) -> list[Result]:
    if TINY:  # the smoke test: nothing cached in the repository
        with tempfile.TemporaryDirectory(prefix="cpl-bench-scale-") as tmp:
            scale_data.CACHE_DIR = Path(tmp)
            os.environ["CPL_CACHE_DIR"] = str(Path(tmp) / "cache")
            return _run(quick, sizes)
    os.environ.setdefault("CPL_CACHE_DIR", str(scale_data.CACHE_DIR / "cache"))
    return _run(quick, sizes)


def _run(quick: bool, sizes: tuple[int, ...] | None) -> list[Result]:
    sizes = sizes or ((200,) if TINY else (1_000,))
    reps = 3 if TINY else 5 if quick else 7
    medians: dict[tuple[str, int], float] = {}
    results: list[Result] = []
    for n in sizes:
        print(f"   scale: {n:,} sessions", file=sys.stderr, flush=True)
        for op, (values, extra) in measure(n, reps).items():
            med = sorted(values)[len(values) // 2]
            medians[op, n] = med
            growth = None  # sizes are 10x apart: the factor from the previous size
            smaller = [m for m in sizes if m < n]
            if smaller and medians.get((op, smaller[-1]), 0) > 0:
                growth = med / medians[op, smaller[-1]]
            limit = _target(op)
            results.append(
                summarize(f"scale.{op}.{n}", "ms", values, target=f"< {limit:.0f} ms",
                          ratio=growth, passed=med < limit,
                          extra={**extra, "growth_per_10x": growth})
            )  # fmt: skip
    return results

