"""The viewer (``cpl ui``): pages answered by the real server (uvicorn on 127.0.0.1), timed
from request to the last byte with ``urllib``, on a large database.

* ``ui.sessions_list``: ``/`` (the newest 50 sessions with their totals);
* ``ui.session_2000``: ``/sessions/ID`` of a 2,000-message session (header, waterfall of all
  steps and tools, the first transcript page); ``ui.session_10k`` the same for 10,000 messages
  (informational: the transcript is paged, so the page stays usable);
* ``ui.stats_90d``: ``/stats?since=90d`` (usage per day and per agent type, tools, top cost);
* ``ui.search``: ``/search?q=`` for a text in about 1 % of the sessions (50 hits).

The derived read indexes (search index, usage rollups) are built first, as ``cpl reindex`` does
(``reindex_seconds``), in a temporary cache directory: the pages are timed in their steady state.

Sessions are spread over the last 90 days, ~12 messages and ~3 tool executions each. The
database is filled with bulk SQL inserts into the schema the logger creates (logging 100,000
sessions through the logger would take most of the run): default 20,000 sessions (``--quick``
5,000); ``CPL_BENCH_UI_SESSIONS=100000`` for the issue's 100,000. Target: 300 ms each.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import Result, size, summarize

TARGET_MS = 300.0
NEEDLE = "needle-in-one-percent"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _fill(path: Path, n: int, big: dict[str, int]) -> None:
    import turso

    import claude_parallel_logging as cpl

    config = cpl.TursoConfig(url=str(path))
    client = cpl.TursoClient(config, cpl.Settings(config=config))
    lg = cpl.ConversationLogger(client)  # the logger creates the schema
    lg.start_session(cpl.SessionInfo(id="schema", agent_type="bench", model="m"))
    lg.end_session("completed")
    assert client.shutdown(30)
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    conn = turso.connect(str(path))
    sessions, messages, tools = [], [], []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO sessions (id, agent_type, model, provider, status, started_at, ended_at,"
            " error_message, metadata, input_tokens, output_tokens, cost_usd, duration_ms,"
            " num_turns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", sessions)  # fmt: skip
        conn.executemany(
            "INSERT INTO messages (id, session_id, sequence, role, content, created_at, model,"
            " input_tokens, output_tokens) VALUES (?,?,?,?,?,?,?,?,?)", messages)  # fmt: skip
        conn.executemany(
            "INSERT INTO tool_executions (id, session_id, tool_name, status, input, output,"
            " started_at, ended_at, duration_ms) VALUES (?,?,?,?,?,?,?,?,?)", tools)  # fmt: skip
        conn.commit()
        sessions.clear(), messages.clear(), tools.clear()

    specs = [(f"big-{k}", k) for k in big.values()]
    for i in range(n + len(specs)):
        sid, n_msgs = specs[i - n] if i >= n else (f"s{i:07d}", rng.randint(6, 18))
        start = now - timedelta(seconds=rng.uniform(60, 90 * 86400 - 60))
        status = rng.choices(("completed", "error", "running"), (0.8, 0.15, 0.05))[0]
        t = start
        itok = otok = 0
        for k in range(n_msgs):
            t += timedelta(milliseconds=rng.randint(200, 3000))
            role = "user" if k == 0 else "assistant" if k % 2 else "tool"
            a, b = (rng.randint(100, 4000), rng.randint(10, 600)) if role == "assistant" else (None, None)
            itok += a or 0
            otok += b or 0
            text = f"step {k} of {sid}: refactor the parser " + ("lorem ipsum " * rng.randint(1, 30))
            if k == 1 and i % 100 == 0:
                text += NEEDLE
            messages.append((f"{sid}-m{k}", sid, k + 1, role, text, _iso(t), "claude-sonnet-4-5", a, b))
            if role == "assistant" and (k % 4 == 1 or n_msgs > 1000):
                d = rng.randint(5, 20_000)
                tools.append((f"{sid}-t{k}", sid, rng.choice(("Bash", "Read", "Edit", "Grep")),
                              rng.choices(("completed", "error"), (0.9, 0.1))[0],
                              '{"command": "ls"}', "ok\n" * rng.randint(1, 20), _iso(t),
                              _iso(t + timedelta(milliseconds=d)), d))  # fmt: skip
        ended = None if status == "running" else _iso(t + timedelta(milliseconds=300))
        sessions.append((sid, rng.choice(("planning", "implementation", "review")),
                         rng.choice(("claude-sonnet-4-5", "claude-haiku-4-5")), "anthropic",
                         status, _iso(start), ended, "boom" if status == "error" else None,
                         f'{{"repo": "r{i % 20}"}}', itok, otok, round(itok * 3e-6 + otok * 15e-6, 6),
                         None if ended is None else int((t - start).total_seconds() * 1000),
                         n_msgs // 4))  # fmt: skip
        if len(messages) >= 20_000:
            flush()
    flush()
    conn.close()


def _time(url: str, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            r.read()
            assert r.status == 200, url
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(quick: bool) -> list[Result]:
    import uvicorn

    import claude_parallel_logging as cpl
    from claude_parallel_logging.query import rebuild_search_index, rebuild_usage_rollups
    from claude_parallel_logging.ui.app import create_app, listen

    n = int(os.environ.get("CPL_BENCH_UI_SESSIONS") or size(20_000, 5_000, 200, is_quick=quick))
    big = {"2000": size(2000, 2000, 100, is_quick=quick), "10k": size(10_000, 10_000, 200, is_quick=quick)}
    reps = size(9, 5, 2, is_quick=quick)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cpl-bench-ui-") as tmp:
        path = Path(tmp) / "logs.db"
        t0 = time.perf_counter()
        _fill(path, n, big)
        fill_s = time.perf_counter() - t0
        config = cpl.TursoConfig(url=str(path))
        client = cpl.TursoClient(config, cpl.Settings(config=config))
        # the derived read indexes, built as `cpl reindex` builds them (kept with the database)
        os.environ["CPL_CACHE_DIR"] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        rebuild_usage_rollups(client)
        rebuild_search_index(client)
        index_s = time.perf_counter() - t0
        sock = listen("127.0.0.1", 0)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(create_app(client), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        extra: dict[str, Any] = {"sessions": n, "fill_seconds": round(fill_s, 1),
                                 "reindex_seconds": round(index_s, 1)}  # fmt: skip
        try:
            pages = (
                ("ui.sessions_list", "/", True),
                ("ui.session_2000", f"/sessions/big-{big['2000']}", True),
                ("ui.session_10k", f"/sessions/big-{big['10k']}", False),
                ("ui.stats_90d", "/stats?since=90d", True),
                ("ui.search", f"/search?q={NEEDLE}", True),
            )
            for name, path_q, targeted in pages:
                _time(base + path_q, 1)  # warm
                values = _time(base + path_q, reps)
                med = sorted(values)[len(values) // 2]
                results.append(
                    summarize(name, "ms", values, target=f"< {TARGET_MS:.0f} ms" if targeted else "",
                              passed=(med < TARGET_MS) if targeted else None, extra=extra)
                )  # fmt: skip
        finally:
            server.should_exit = True
            thread.join(30)
            sock.close()
            client.shutdown(5)
    return results
