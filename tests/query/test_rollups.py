"""``usage_summary`` and ``tool_usage`` answered from the derived rollups equal a full
recomputation from the tables (``use_index=False``), figure for figure, percentiles included:
on random periods (whole and partial days), groupings and filters over a database logged through
the real logger, after rows changed (tools ending, sessions ending, running again, another
model), with sessions whose start is not canonical text, and with a damaged rollup file."""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest
import turso

import claude_parallel_logging as cpl
from claude_parallel_logging.query import rebuild_usage_rollups, tool_usage, usage_summary
from claude_parallel_logging.query.rollups import (
    GAMMA,
    bucket,
    figures_state,
    full_days,
    rollups_path,
)
from tests.populate import BASE_TIME, SPAN_DAYS, local_client, populated_database


def _iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _periods(rng: random.Random, n: int) -> list[tuple[str | None, str | None]]:
    start = BASE_TIME - 86400
    out: list[tuple[str | None, str | None]] = [(None, None)]
    for _ in range(n):
        a = start + rng.uniform(0, (SPAN_DAYS + 2) * 86400)
        b = a + rng.uniform(0, 6 * 86400)
        if rng.random() < 0.4:  # whole days
            a -= a % 86400
            b -= b % 86400
        since = None if rng.random() < 0.15 else _iso(a)
        until = None if rng.random() < 0.15 else _iso(b)
        out.append((since, until))
    return out


def _same(client: cpl.TursoClient, rng: random.Random, n: int = 25) -> int:
    """Compare on ``n`` random periods; returns how many rows were compared."""
    compared = 0
    for since, until in _periods(rng, n):
        for group_by in ("agent_type", "model", "day"):
            filters: dict[str, object] = {}
            if rng.random() < 0.3:
                filters["agent_type"] = rng.choice(["planning", "review", ["review", "planning"]])
            if rng.random() < 0.2:
                filters["model"] = "claude-sonnet-4-5"
            got = usage_summary(group_by, since, until, client=client, **filters)  # type: ignore[arg-type]
            want = usage_summary(group_by, since, until, client=client, use_index=False, **filters)  # type: ignore[arg-type]
            assert got == want, (group_by, since, until, filters)
            compared += len(got)
        assert tool_usage(since, until, client=client) == tool_usage(
            since, until, client=client, use_index=False
        ), (since, until)
    return compared


@pytest.fixture
def populated(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = populated_database(tmp_path, 90, seed=21)
    client = local_client(data.path)
    yield data, client
    client.shutdown(5)


def test_rollups_equal_the_tables_on_random_periods(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    assert _same(client, random.Random(1)) > 100
    state = figures_state(os.path.realpath(data.path))
    assert state.built and state.sessions == len(data.sessions)  # really answered from them
    rows = usage_summary("agent_type", client=client)
    assert any(r.p95_tool_ms is not None for r in rows)


def test_rollups_follow_changes(populated) -> None:  # type: ignore[no-untyped-def]
    _data, client = populated
    usage_summary("day", client=client)  # built
    lg = cpl.ConversationLogger(client)
    now = datetime.now(timezone.utc).timestamp()
    lg.start_session(cpl.SessionInfo(id="live-1", agent_type="review", model="m-live"))
    lg.log_message("assistant", "working", input_tokens=30, output_tokens=4)
    tid = lg.log_tool_execution("Bash", "running", input={"command": "make"}, started_at=now)
    assert client.flush(10)
    rng = random.Random(2)
    _same(client, rng, 5)
    live = [r for r in usage_summary("model", client=client) if r.group == "m-live"]
    assert live and live[0].running == 1 and live[0].tool_calls == 1
    lg.finish_tool_execution(tid, "error", error="boom", duration_ms=1234)
    lg.update_session(model="m-later")  # a session's group changes
    lg.end_session("error", "failed", input_tokens=500, output_tokens=60, cost_usd=0.0123)
    assert client.flush(10)
    _same(client, rng, 5)
    later = [r for r in usage_summary("model", client=client) if r.group == "m-later"]
    assert later and later[0].errors == 1 and later[0].p50_tool_ms == 1234.0
    assert not [r for r in usage_summary("model", client=client) if r.group == "m-live"]
    # running again (an OpenCode session's next turn), then more tools
    lg2 = cpl.ConversationLogger(client)
    lg2.start_session(cpl.SessionInfo(id="live-1", agent_type="review", model="m-later"))
    lg2.update_session(status="running", ended_at=None)
    assert client.flush(10)
    _same(client, rng, 5)
    assert [r.running for r in usage_summary("model", client=client) if r.group == "m-later"] == [1]


def test_sessions_with_a_start_that_is_not_canonical_text(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    usage_summary("day", client=client)
    conn = turso.connect(str(data.path))
    try:
        for i, started in enumerate(("2026-09-23 10:00:00", "2026-09-24T08:00:00Z", "bogus")):
            conn.execute(
                "INSERT INTO sessions (id, agent_type, model, status, started_at, ended_at,"
                " input_tokens, cost_usd, duration_ms) VALUES (?, 'planning', 'odd', 'completed',"
                " ?, '2026-09-24T09:00:00.000Z', 7, 0.5, 60000)",
                (f"odd-{i}", started),
            )
            conn.execute(
                "INSERT INTO tool_executions (id, session_id, tool_name, status, duration_ms,"
                " started_at) VALUES (?, ?, 'Read', 'completed', ?, '2026-09-24T09:00:00.000Z')",
                (f"odd-t{i}", f"odd-{i}", 100 + i),
            )
        conn.commit()
    finally:
        conn.close()
    assert _same(client, random.Random(3), 30)
    assert "odd" in {r.group for r in usage_summary("model", client=client)}


def test_a_damaged_rollup_file_is_rebuilt_and_the_tables_answer(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    want = usage_summary("day", client=client, use_index=False)
    path = rollups_path(os.path.realpath(data.path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage" * 1000)
    assert usage_summary("day", client=client) == want
    assert usage_summary("day", client=client) == want
    assert figures_state(os.path.realpath(data.path)).built


def test_rebuild(populated, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    monkeypatch.setattr("claude_parallel_logging.query.rollups.BUILD_CHUNK", 7)
    monkeypatch.setattr("claude_parallel_logging.query.rollups.SLICE_S", 0.0)  # many slices
    seen: list[int] = []
    state = rebuild_usage_rollups(client, seen.append)
    assert state.built and state.sessions == len(data.sessions) and seen[-1] == state.sessions
    assert len(seen) > 5  # built in slices, the database opened for each
    assert _same(client, random.Random(4), 5)


def test_buckets_keep_the_order_of_values() -> None:
    values = sorted({0.0, -5.0, -0.5, 0.001, 0.4, 1.0, 1.04, 1.06, 7.0, 1e9, float("inf")}
                    | {float(v) for v in random.Random(1).sample(range(1, 10**7), 500)})  # fmt: skip
    buckets = [bucket(v) for v in values]
    assert buckets == sorted(buckets)
    for v in (1.0, 100.0, 12345.0):  # a bucket spans a ratio of GAMMA at most
        assert bucket(v * GAMMA * 1.0001) > bucket(v)


def test_whole_days_of_a_period() -> None:
    assert full_days("2026-09-01T00:00:00.000Z", "2026-09-04T00:00:00.000Z") == (
        "2026-09-01", "2026-09-03")  # fmt: skip
    assert full_days("2026-09-01T00:00:00.001Z", "2026-09-04T12:00:00.000Z") == (
        "2026-09-02", "2026-09-03")  # fmt: skip
    assert full_days("2026-09-01T10:00:00.000Z", "2026-09-02T10:00:00.000Z") is None
    assert full_days(None, None) == (None, None)
    assert full_days("2026-09-01", None) is None  # not canonical: no cells used
    assert full_days(None, "2026-09-02T00:00:00.000Z") == (None, "2026-09-01")


def test_late_changes_hours_after_the_end_equal_a_recomputation(populated) -> None:  # type: ignore[no-untyped-def]
    """No time window: tokens and cost set on sessions that ended days ago, a tool's result
    arriving hours after its session ended, and a session ended by another program, are in
    the next figures (the ``row_changes`` journal)."""
    data, client = populated
    rng = random.Random(7)
    usage_summary("model", client=client)  # built
    t0 = BASE_TIME + 2 * 86400
    lg = cpl.ConversationLogger(client)
    lg.start_session(
        cpl.SessionInfo(id="late-s", agent_type="review", model="m-late", started_at=t0)
    )
    tid = lg.log_tool_execution("Bash", "running", input={"command": "make"}, started_at=t0 + 60)
    lg.end_session("completed", ended_at=t0 + 600)  # closes the tool as an error meanwhile
    assert client.flush(10)
    row = next(r for r in usage_summary("model", client=client) if r.group == "m-late")
    assert row.tool_errors == 1
    lg.finish_tool_execution(
        tid, "completed", output="done", ended_at=t0 + 4 * 3600, duration_ms=4321
    )
    finished = [s for s in data.sessions if s.status != "running"][:5]
    for s in finished:  # a late reconcile of old sessions' totals
        other = cpl.ConversationLogger(client)
        other.start_session(cpl.SessionInfo(id=s.id, agent_type=s.agent_type, model=s.model))
        other.update_session(input_tokens=777_777, output_tokens=5, cost_usd=3.25)
    assert client.flush(10)
    running = next(s for s in data.sessions if s.status == "running")
    ender = cpl.ConversationLogger(client)  # a days-old running session, ended by another process
    ender.start_session(cpl.SessionInfo(id=running.id, agent_type="x", model="y"))
    ender.end_session("completed", ended_at=BASE_TIME + 20 * 86400, cost_usd=1.25)
    assert client.flush(10)
    row = next(r for r in usage_summary("model", client=client) if r.group == "m-late")
    assert row.tool_errors == 0 and row.p50_tool_ms == 4321.0
    total = sum(r.input_tokens or 0 for r in usage_summary("agent_type", client=client))
    assert total >= 5 * 777_777
    assert _same(client, rng, 10)
