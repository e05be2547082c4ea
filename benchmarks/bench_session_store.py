"""TursoSessionStore: the SDK's two hot calls, beside the SDK's ``InMemorySessionStore``.

* ``append_500``: one ``append`` of a 500-entry batch (the SDK's batch limit) to a new session,
  timed until it returns, i.e. until the entries are durable: committed to the file (local),
  committed to the replica and pushed to ``tursodb --sync-server`` (cloud).
* ``load_10k``: ``load`` of a 10,000-entry session (cloud: a pull of the read replica first).

Entries are realistic transcript lines (~1 KB: a user or assistant message with usage, a
``uuid``, a timestamp). The ratio is ours over ``InMemorySessionStore`` on the same entries
(a dict of lists: the floor any store can reach), measured in the same run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import BENCH_TOKEN, Result, find_tursodb, median, size, summarize, sync_server

TARGET_APPEND_MS = 20.0
TARGET_LOAD_MS = 200.0


def _entries(n: int, session_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        out.append({
            "type": role, "uuid": str(uuid.uuid4()), "parentUuid": None, "sessionId": session_id,
            "timestamp": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            "message": {"role": role, "content": [{"type": "text", "text": f"step {i}: " + "lorem ipsum " * 70}],
                        "usage": {"input_tokens": 1200 + i, "output_tokens": 80}},
        })  # fmt: skip
    return out


async def _time_append(store: Any, batches: list[list[dict[str, Any]]]) -> list[float]:
    times = []
    for batch in batches:
        key = {"project_key": "bench", "session_id": str(uuid.uuid4())}
        t0 = time.perf_counter()
        await store.append(key, batch)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def _time_load(store: Any, entries: list[dict[str, Any]], reps: int) -> list[float]:
    key = {"project_key": "bench", "session_id": "big-" + uuid.uuid4().hex}
    for i in range(0, len(entries), 500):
        await store.append(key, entries[i : i + 500])
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loaded = await store.load(key)
        times.append((time.perf_counter() - t0) * 1000)
        assert loaded is not None and len(loaded) == len(entries)
    return times


def _measure(mode: str, store: Any, quick: bool) -> list[Result]:
    from claude_agent_sdk import InMemorySessionStore

    reps = size(30, 10, 3, is_quick=quick)
    big = size(10_000, 10_000, 1_000, is_quick=quick)
    load_reps = size(10, 5, 2, is_quick=quick)
    batches = [_entries(500, f"s{i}") for i in range(reps)]
    entries = _entries(big, "big")
    memory = InMemorySessionStore()

    async def run() -> tuple[list[float], list[float], list[float], list[float]]:
        await _time_append(store, batches[:1])  # warm-up: schema, connection, push thread
        ours_append = await _time_append(store, batches)
        theirs_append = await _time_append(memory, batches)
        ours_load = await _time_load(store, entries, load_reps)
        theirs_load = await _time_load(memory, entries, load_reps)
        return ours_append, theirs_append, ours_load, theirs_load

    ours_a, theirs_a, ours_l, theirs_l = asyncio.run(run())
    local = mode == "local"
    a_med, l_med = median(ours_a), median(ours_l)
    return [
        summarize(
            f"session_store.append_500.{mode}", "ms", ours_a,
            target=f"p50 < {TARGET_APPEND_MS:g} ms" if local else "",
            ratio=a_med / max(median(theirs_a), 1e-6),
            passed=(a_med < TARGET_APPEND_MS) if local else None,
            extra={"vs": "InMemorySessionStore.append", "in_memory_ms": median(theirs_a)},
        ),
        summarize(
            f"session_store.load_{big // 1000}k.{mode}", "ms", ours_l,
            target=f"< {TARGET_LOAD_MS:g} ms" if local else "",
            ratio=l_med / max(median(theirs_l), 1e-6),
            passed=(l_med < TARGET_LOAD_MS) if local else None,
            extra={"vs": "InMemorySessionStore.load", "in_memory_ms": median(theirs_l),
                   "entries": big},
        ),
    ]  # fmt: skip


def run(quick: bool) -> list[Result]:
    from claude_parallel_logging.integrations.claude.session_store import TursoSessionStore

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cpl-bench-store-") as tmp:
        root = Path(tmp)
        store = TursoSessionStore(database_url=str(root / "store.db"))
        try:
            results.extend(_measure("local", store, quick))
        finally:
            store.close(10)
        binary = find_tursodb()
        if binary is None:
            return results
        import os

        os.environ["CPL_REPLICA_DIR"] = str(root / "replicas")
        try:
            with sync_server(binary, root) as server:
                store = TursoSessionStore(database_url=server.url, auth_token=BENCH_TOKEN)
                try:
                    results.extend(_measure("cloud", store, quick))
                finally:
                    store.close(10)
        finally:
            del os.environ["CPL_REPLICA_DIR"]
    return results
