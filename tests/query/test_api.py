"""The query API on a real database filled with hundreds of sessions of both agents' shapes.

Expected figures come from the generated data (``tests.populate``), never from SQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.query import (
    DatabaseUnavailable,
    LoggingNotConfigured,
    SessionPage,
)
from tests.conftest import SECRET_TOKEN, SyncServer, run_python
from tests.populate import (
    BASE_TIME,
    DECOY_TEXTS,
    SPECIAL_TEXTS,
    GenSession,
    Populated,
    expected_search,
    expected_tokens,
    expected_usage,
    generate,
    local_client,
    newest_first,
    populate,
    populated_database,
    write,
)

N_SESSIONS = 300


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("queries"), N_SESSIONS, seed=5)


@pytest.fixture
def client(populated: Populated) -> Iterator[cpl.TursoClient]:
    c = local_client(populated.path)
    yield c
    c.shutdown(5)


def all_sessions(client: cpl.TursoClient, **filters: object) -> list[q.SessionSummary]:
    return list(q.list_sessions(limit=10_000, client=client, **filters))  # type: ignore[arg-type]


# ----- list_sessions ----------------------------------------------------------------------------


def test_population_has_both_shapes(populated: Populated) -> None:
    shapes = {s.shape for s in populated.sessions}
    assert shapes == {"claude", "opencode"}
    assert {s.status for s in populated.sessions} == {"completed", "error", "running"}
    assert len({s.started_at for s in populated.sessions}) < N_SESSIONS  # ties on started_at


def test_list_sessions_newest_first_with_totals(
    populated: Populated, client: cpl.TursoClient
) -> None:
    got = all_sessions(client)
    expected = newest_first(populated.sessions)
    assert [s.id for s in got] == [s.id for s in expected]
    for summary, gen in zip(got, expected):
        assert summary.agent_type == gen.agent_type
        assert summary.model == gen.model
        assert summary.provider == gen.provider
        assert summary.status == gen.status
        assert summary.started_at == gen.started_at
        assert summary.external_id == gen.external_id
        assert summary.metadata == gen.metadata  # parsed from JSON
        assert summary.error_message == gen.error_message
        assert summary.message_count == len(gen.messages)
        assert summary.tool_count == len(gen.tools)
        assert summary.tool_error_count == sum(t.status == "error" for t in gen.tools)
        assert (summary.input_tokens, summary.output_tokens) == expected_tokens(gen)
        assert summary.cache_read_tokens == gen.totals.get("cache_read_tokens")
        assert summary.cost_usd == gen.totals.get("cost_usd")
        assert summary.num_turns == gen.totals.get("num_turns")
        if gen.status == "running":
            assert summary.ended_at is None and summary.duration_ms is None
        else:
            assert summary.duration_ms == gen.totals["duration_ms"]
            assert summary.ended_at is not None and summary.ended_at >= summary.started_at


def test_default_limit_and_page_type(client: cpl.TursoClient) -> None:
    page = q.list_sessions(client=client)
    assert isinstance(page, SessionPage) and isinstance(page, list)
    assert len(page) == 50 and page.next_cursor


@pytest.mark.parametrize(
    "filters",
    [
        {"agent_type": "opencode"},
        {"agent_type": ["review", "planning"]},
        {"status": "error"},
        {"status": "running", "agent_type": "implementation"},
        {"model": "gpt-5"},
        {"model": "claude-opus-4-1", "status": ["completed", "error"]},
    ],
)
def test_filters(populated: Populated, client: cpl.TursoClient, filters: dict[str, object]) -> None:
    def keep(s: GenSession) -> bool:
        for key, value in filters.items():
            allowed = [value] if isinstance(value, str) else value
            if getattr(s, key) not in allowed:  # type: ignore[operator]
                return False
        return True

    expected = [s.id for s in newest_first(populated.sessions) if keep(s)]
    assert expected
    assert [s.id for s in all_sessions(client, **filters)] == expected


def test_since_until(populated: Populated, client: cpl.TursoClient) -> None:
    ordered = newest_first(populated.sessions)
    lo, hi = ordered[200].started_at, ordered[50].started_at
    expected = [s.id for s in ordered if lo <= s.started_at < hi]
    assert [s.id for s in all_sessions(client, since=lo, until=hi)] == expected
    # The same bounds as datetimes, epoch seconds and a date.
    lo_dt = datetime.strptime(lo, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    got = all_sessions(client, since=lo_dt, until=hi)
    assert [s.id for s in got] == expected
    got = all_sessions(client, since=lo_dt.timestamp(), until=hi)
    assert [s.id for s in got] == expected
    day = date(2026, 9, 25)
    expected_day = [s.id for s in ordered if s.day == "2026-09-25"]
    got = all_sessions(client, since=day, until="2026-09-26")
    assert [s.id for s in got] == expected_day and expected_day
    assert all_sessions(client, until="2000-01-01") == []


def test_since_relative_ages(tmp_path: Path) -> None:
    c = local_client(tmp_path / "now.db")
    lg = cpl.ConversationLogger(c)
    lg.start_session(cpl.SessionInfo(id="now", agent_type="a", model="m"))
    assert c.flush(5)
    try:
        assert [s.id for s in q.list_sessions(since="10m", client=c)] == ["now"]
        assert [s.id for s in q.list_sessions(since="2h", until="1m", client=c)] == []
        assert [s.id for s in q.list_sessions(since="1w", client=c)] == ["now"]
    finally:
        c.shutdown(5)


def test_pagination_walks_everything_once(populated: Populated, client: cpl.TursoClient) -> None:
    expected = [s.id for s in newest_first(populated.sessions)]
    for limit in (1, 7, 50, 300, 1000):
        seen: list[str] = []
        cursor: str | None = ""  # the first page ("" or left out; None is past the last page)
        for _ in range(400):
            page = q.list_sessions(limit=limit, cursor=cursor, client=client)
            seen += [s.id for s in page]
            cursor = page.next_cursor
            if cursor is None:
                break
            assert len(page) == limit
        assert seen == expected, limit


def test_pagination_with_filters(populated: Populated, client: cpl.TursoClient) -> None:
    expected = [s.id for s in newest_first(populated.sessions) if s.shape == "opencode"]
    seen: list[str] = []
    page = q.list_sessions(limit=13, agent_type="opencode", client=client)
    for _ in range(100):
        seen += [s.id for s in page]
        if page.next_cursor is None:
            break
        page = q.list_sessions(
            limit=13, agent_type="opencode", cursor=page.next_cursor, client=client
        )
    assert seen == expected


def test_pagination_stable_while_sessions_arrive(tmp_path: Path) -> None:
    """Sessions logged between two pages never shift, repeat or hide the ones still to come."""
    c = local_client(tmp_path / "growing.db")
    try:
        original = populate(c, 60, seed=11)
        expected = [s.id for s in newest_first(original)]
        late = generate(40, seed=12, prefix="late-")
        seen: list[str] = []
        added = 0
        page = q.list_sessions(limit=9, client=c)
        for batch in range(100):
            seen += [s.id for s in page]
            if page.next_cursor is None:
                break
            chunk = late[batch * 5 : batch * 5 + 5]  # newer: they start 20 days later
            for s in chunk:
                s.started += 20 * 86400
            write(chunk, c)
            assert c.flush(10)
            added += len(chunk)
            page = q.list_sessions(limit=9, cursor=page.next_cursor, client=c)
        assert seen == expected
        assert added == 30
        fresh = [s.id for s in q.list_sessions(limit=1000, client=c)]
        assert len(fresh) == 60 + added
        assert fresh[added:] == expected  # the newcomers are all in front
    finally:
        c.shutdown(5)


def test_pagination_with_ties_and_late_arrivals(tmp_path: Path) -> None:
    """Between pages, sessions arrive that tie the cursor's ``started_at`` (with a larger and a
    smaller id), that are older than the cursor, and that are newer than everything. The walk
    never repeats a session, never skips one present from the start, and stays strictly in
    (started_at, id) order: arrivals after the cursor show up, the others never do."""
    c = local_client(tmp_path / "ties.db")
    try:
        original = populate(c, 70, seed=17)
        by_id = {s.id: s for s in original}
        known = dict(by_id)  # and every arrival
        expected = [s.id for s in newest_first(original)]
        spare = iter(generate(200, seed=18, prefix="late-"))
        oldest = min(s.started for s in original)
        must_show: set[str] = set()
        never_show: set[str] = set()
        seen: list[str] = []
        page = q.list_sessions(limit=7, client=c)
        for batch in range(100):
            seen += [s.id for s in page]
            if page.next_cursor is None:
                break
            last = known[page[-1].id]
            arrivals = []
            for new_id, started, shows in (
                (last.id + f"~{batch}", last.started, False),  # ties, larger id: in front
                (last.id[:-1] + f"!{batch}", last.started, True),  # ties, smaller id: after
                (f"late-older-{batch:03d}", oldest - 3600 - batch, True),  # older than all
                (f"late-newer-{batch:03d}", last.started + 40 * 86400, False),
            ):
                s = next(spare)
                s.id, s.started = new_id, started
                arrivals.append(s)
                known[new_id] = s
                (must_show if shows else never_show).add(new_id)
            write(arrivals, c)
            assert c.flush(10)
            page = q.list_sessions(limit=7, cursor=page.next_cursor, client=c)
        assert len(seen) == len(set(seen))  # nothing repeats
        assert [i for i in seen if i in by_id] == expected  # nothing skipped, same order
        assert {i for i in seen if i not in by_id} == must_show and not never_show & set(seen)
        keys = [(known[i].started_at, i) for i in seen]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
        assert len(must_show) >= 18 and any("!" in i for i in must_show)
    finally:
        c.shutdown(5)


def test_invalid_cursor_and_limit(client: cpl.TursoClient) -> None:
    for bad in ("not-a-cursor", "eyJ4IjoxfQ", "W10"):
        with pytest.raises(ValueError, match="invalid cursor"):
            q.list_sessions(cursor=bad, client=client)
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            q.list_sessions(limit=limit, client=client)


# ----- get_session ------------------------------------------------------------------------------


def test_get_session_full_detail(populated: Populated, client: cpl.TursoClient) -> None:
    checked = 0
    for gen in populated.sessions[::25]:
        detail = q.get_session(gen.id, client=client)
        assert detail is not None
        assert detail.session.id == gen.id
        assert [m.sequence for m in detail.messages] == list(range(1, len(gen.messages) + 1))
        for rec, m in zip(detail.messages, gen.messages):
            assert (rec.role, rec.content, rec.tool_name) == (m.role, m.content, m.tool_name)
            assert rec.tool_input == m.tool_input and rec.tool_output == m.tool_output
            assert rec.metadata == m.metadata
            assert (rec.input_tokens, rec.output_tokens) == (m.input_tokens, m.output_tokens)
            assert rec.parent_tool_use_id == m.parent_tool_use_id
            assert rec.id == m.id
        tools = {t.tool_use_id: t for t in detail.tool_executions}
        assert len(tools) == len(gen.tools)
        for t in gen.tools:
            rec_t = tools[t.tool_use_id]
            assert (rec_t.tool_name, rec_t.status, rec_t.input) == (t.name, t.status, t.input)
            assert (rec_t.output, rec_t.error) == (t.output, t.error)
            assert rec_t.duration_ms == t.duration_ms
            assert rec_t.message_id == gen.messages[t.message_index or 0].id
            assert rec_t.parent_tool_use_id == t.parent_tool_use_id
            if t.status == "running":
                assert rec_t.ended_at is None
        starts = [t.started_at for t in detail.tool_executions]
        assert starts == sorted(starts)
        checked += 1
    assert checked >= 10


def test_get_session_by_sdk_id_and_prefix(populated: Populated, client: cpl.TursoClient) -> None:
    gen = populated.sessions[42]
    by_sdk = q.get_session(gen.external_id, client=client)
    assert by_sdk is not None and by_sdk.session.id == gen.id
    by_prefix = q.get_session(gen.id[:13], client=client)
    assert by_prefix is not None and by_prefix.session.id == gen.id
    assert q.get_session(gen.id[:3], client=client) is None  # too short to be a prefix
    assert q.get_session("no-such-session", client=client) is None
    assert q.get_session("", client=client) is None
    assert q.get_session("%", client=client) is None


# ----- search -----------------------------------------------------------------------------------

SEARCHES = [
    *SPECIAL_TEXTS,
    "100%",
    "0%",
    "snake_case",
    "_",
    "%",
    "it's",
    "'",
    '"hello world"',
    '"',
    "C:\\temp\\new",
    "\\",
    "école",
    "ÉCOLE NORMALE",
    "supérieure",
    "PROGRESS: 100",
    "permission denied",
    "exit status 1",
    "max turns reached",
    "/work/proj/",
    "120",
    "file_path",
    "nothing matches this",
]


@pytest.mark.parametrize("text", SEARCHES)
def test_search_is_literal_and_case_insensitive(
    populated: Populated, client: cpl.TursoClient, text: str
) -> None:
    hits = q.search_sessions(text, limit=1000, client=client)
    assert [h.session.id for h in hits] == expected_search(populated.sessions, text)
    for h in hits:
        assert h.where in (
            q.WHERE_MESSAGE, q.WHERE_MESSAGE_TOOL_INPUT, q.WHERE_MESSAGE_TOOL_OUTPUT,
            q.WHERE_TOOL_INPUT, q.WHERE_TOOL_OUTPUT, q.WHERE_TOOL_ERROR, q.WHERE_SESSION_ERROR,
        )  # fmt: skip
        normalized = " ".join(text.lower().split())
        assert normalized in h.snippet.lower(), (text, h.snippet)
        text_part = h.snippet.split(": ", 1)[1] if h.where.endswith("input") else h.snippet
        assert len(text_part) <= len(text) + 2 * q.SNIPPET_CONTEXT + 2


def test_special_characters_do_not_act_as_wildcards(
    populated: Populated, client: cpl.TursoClient
) -> None:
    for special, decoy in zip(SPECIAL_TEXTS, DECOY_TEXTS):
        planted = set(expected_search(populated.sessions, special))
        decoys = set(expected_search(populated.sessions, decoy)) - planted
        assert planted and decoys, special  # the data really has both
        got = {h.session.id for h in q.search_sessions(special, limit=1000, client=client)}
        assert got == planted and not got & decoys


def test_search_where_and_snippet(populated: Populated, client: cpl.TursoClient) -> None:
    hits = q.search_sessions("agent failed: ", limit=1000, client=client)
    assert hits and all(h.where == q.WHERE_SESSION_ERROR for h in hits)
    hits = q.search_sessions("permission denied", limit=1000, client=client)
    tool_hits = [h for h in hits if h.where == q.WHERE_TOOL_ERROR]
    assert tool_hits and all(h.tool_name and h.sequence is None for h in tool_hits)
    hits = q.search_sessions("Task 12", limit=5, client=client)
    assert hits and all(h.where == q.WHERE_MESSAGE and h.sequence == 1 for h in hits)
    assert all(h.role == "user" for h in hits)
    hits = q.search_sessions("école normale", limit=1000, client=client)
    in_json = [h for h in hits if h.where == q.WHERE_TOOL_INPUT]
    assert in_json and all(h.snippet.startswith("description: École") for h in in_json)
    backslash = {h.session.id for h in q.search_sessions("\\", limit=1000, client=client)}
    assert backslash == set(expected_search(populated.sessions, "C:\\temp"))  # not JSON's \n
    long = q.search_sessions("xxxxxxxxxx", limit=3, client=client)
    assert long and all(len(h.snippet) <= 10 + 2 * q.SNIPPET_CONTEXT + 2 for h in long)
    assert all(h.snippet.endswith("…") or h.snippet.startswith("…") for h in long)


def test_search_limit_filters_and_bad_input(populated: Populated, client: cpl.TursoClient) -> None:
    everything = expected_search(populated.sessions, "the")
    assert len(everything) > 20
    assert [h.session.id for h in q.search_sessions("the", client=client)] == everything[:20]
    assert [h.session.id for h in q.search_sessions("THE", limit=5, client=client)] == everything[
        :5
    ]
    opencode = [i for i in everything if populated.by_id()[i].agent_type == "opencode"]
    got = q.search_sessions("the", limit=1000, agent_type="opencode", client=client)
    assert [h.session.id for h in got] == opencode
    with pytest.raises(ValueError):
        q.search_sessions("", client=client)
    with pytest.raises(ValueError):
        q.search_sessions("x", limit=0, client=client)


def test_search_summaries_carry_totals(populated: Populated, client: cpl.TursoClient) -> None:
    by_id = populated.by_id()
    for h in q.search_sessions("Task 1", limit=50, client=client):
        gen = by_id[h.session.id]
        assert h.session.message_count == len(gen.messages)
        assert h.session.tool_count == len(gen.tools)


# ----- usage_summary ----------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["agent_type", "model", "day"])
def test_usage_summary_matches_hand_computed(
    populated: Populated, client: cpl.TursoClient, group_by: str
) -> None:
    rows = q.usage_summary(group_by, client=client)
    expected = expected_usage(populated.sessions, group_by)
    assert [r.group for r in rows] == sorted(expected)
    for row in rows:
        exp = expected[row.group]
        for key, value in exp.items():
            got = getattr(row, key)
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (row.group, key)
            else:
                assert got == value, (row.group, key)
        assert row.total_tokens == (
            exp["input_tokens"] + exp["output_tokens"]
            + exp["cache_read_tokens"] + exp["cache_creation_tokens"]
        )  # fmt: skip


def test_usage_summary_since_and_filters(populated: Populated, client: cpl.TursoClient) -> None:
    since = "2026-09-28"
    subset = [s for s in populated.sessions if s.started_at >= since]
    rows = {r.group: r for r in q.usage_summary("agent_type", since=since, client=client)}
    expected = expected_usage(subset, "agent_type")
    assert set(rows) == set(expected)
    for key, exp in expected.items():
        assert rows[key].sessions == exp["sessions"]
        assert rows[key].p95_tool_ms == pytest.approx(exp["p95_tool_ms"])
    rows_m = q.usage_summary("model", agent_type="opencode", client=client)
    assert {r.group for r in rows_m} == {"gpt-5", "scripted-main"}
    with pytest.raises(ValueError, match="group_by"):
        q.usage_summary("provider", client=client)


def test_percentiles_one_and_none(tmp_path: Path) -> None:
    c = local_client(tmp_path / "p.db")
    try:
        lg = cpl.ConversationLogger(c)
        lg.start_session(cpl.SessionInfo(id="one", agent_type="solo", model="m"))
        lg.log_tool_execution("Bash", "completed", started_at=100.0, duration_ms=40)
        lg.end_session("completed")
        lg = cpl.ConversationLogger(c)
        lg.start_session(cpl.SessionInfo(id="none", agent_type="idle", model="m"))
        assert c.flush(5)
        rows = {r.group: r for r in q.usage_summary(client=c)}
        assert (rows["solo"].p50_tool_ms, rows["solo"].p95_tool_ms) == (40.0, 40.0)
        assert rows["solo"].success_rate == 1.0 and rows["solo"].tool_error_rate == 0.0
        idle = rows["idle"]
        assert (idle.p50_tool_ms, idle.success_rate, idle.tool_error_rate) == (None, None, None)
        assert (idle.sessions, idle.running, idle.cost_usd, idle.tool_calls) == (1, 1, 0.0, 0)
    finally:
        c.shutdown(5)


# ----- empty, errors, configuration -------------------------------------------------------------


def test_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    """As in ``cpl``: an empty result would hide a typo in the path (issue 11, item 9)."""
    path = tmp_path / "sub" / "never.db"
    c = local_client(path)
    try:
        for read in (
            lambda: q.list_sessions(client=c),
            lambda: q.get_session("x", client=c),
            lambda: q.search_sessions("x", client=c),
            lambda: q.usage_summary("day", client=c),
            lambda: list(q.iter_sessions(client=c)),
        ):
            with pytest.raises(cpl.DatabaseUnavailable, match=r"database file .*never\.db does not exist"):
                read()
        assert q.short_ids(["abc"], client=c) == {"abc": "abc"}  # a display helper: ids as given
        assert not path.exists() and not path.parent.exists()
    finally:
        c.shutdown(5)


def test_empty_file_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    c = local_client(path)
    try:
        assert q.list_sessions(client=c) == []
        assert q.usage_summary(client=c) == []
    finally:
        c.shutdown(5)


def test_directory_and_garbage_file_raise_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    for path, words in ((tmp_path, "directory"), (garbage, "not a database")):
        c = local_client(path)
        try:
            with pytest.raises(DatabaseUnavailable, match=words):
                q.list_sessions(client=c)
        finally:
            c.shutdown(5)


def test_not_configured_raises_clear_error() -> None:
    for call in (
        lambda: q.list_sessions(),
        lambda: q.get_session("x"),
        lambda: q.search_sessions("x"),
        lambda: q.usage_summary(),
    ):
        with pytest.raises(LoggingNotConfigured, match="TURSO_DATABASE_URL"):
            call()


def test_shared_client_is_the_default(populated: Populated) -> None:
    cpl.configure(database_url=str(populated.path))
    assert len(q.list_sessions(limit=5)) == 5
    assert q.get_session(populated.sessions[0].id) is not None


def test_sees_other_processes_writes_in_local_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    c = local_client(path)
    try:
        with pytest.raises(q.DatabaseUnavailable, match="does not exist"):  # not written yet
            q.list_sessions(client=c)
        run_python(
            "import claude_parallel_logging as cpl, sys\n"
            f"cpl.configure(database_url={str(path)!r})\n"
            "lg = cpl.ConversationLogger()\n"
            "lg.start_session(cpl.SessionInfo(id='child', agent_type='a', model='m'))\n"
            "lg.log_message('user', 'hi from the child')\n"
            "lg.end_session()\n"
            "assert cpl.flush(10)\n"
        )
        assert [s.id for s in q.list_sessions(client=c)] == ["child"]
        assert [h.session.id for h in q.search_sessions("FROM THE CHILD", client=c)] == ["child"]
    finally:
        c.shutdown(5)


def test_parse_time() -> None:
    assert q.parse_time("2026-01-31") == "2026-01-31T00:00:00.000Z"
    assert q.parse_time("2026-01-31T12:00:05Z") == "2026-01-31T12:00:05.000Z"
    assert q.parse_time("2026-01-31T12:00:05.123456+02:00") == "2026-01-31T10:00:05.123Z"
    assert q.parse_time("2026-01-31T12:00:05.1Z") == "2026-01-31T12:00:05.100Z"
    assert q.parse_time(datetime(2026, 1, 31, 12)) == "2026-01-31T12:00:00.000Z"
    assert q.parse_time(BASE_TIME) == "2026-09-21T14:13:20.000Z"
    age = datetime.strptime(q.parse_time("24h"), "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((now - age).total_seconds() - 86400) < 60
    for bad in ("yesterday", "2026-13-01", "", "5y", float("nan")):
        with pytest.raises(ValueError, match="not a time"):
            q.parse_time(bad)


# ----- asyncio ----------------------------------------------------------------------------------


async def test_async_variants_do_not_block_the_loop(
    populated: Populated, client: cpl.TursoClient
) -> None:
    """A ticker keeps running while the queries do: ticks land inside every query's span (a
    blocking implementation leaves none, since nothing else runs until it returns)."""
    biggest = max(populated.sessions, key=lambda s: len(s.messages) + len(s.tools))
    started = time.perf_counter()
    q.search_sessions("the", limit=N_SESSIONS, client=client)
    single = time.perf_counter() - started  # the slowest call, run blocking once
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        for _ in range(1_000_000):
            ticks.append(time.perf_counter())
            if stop.is_set():
                return
            await asyncio.sleep(0.002)

    spans: list[tuple[str, float, float]] = []

    async def timed(name: str, call: Any) -> Any:
        begin = time.perf_counter()
        result = await call
        spans.append((name, begin, time.perf_counter()))
        return result

    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    window_start = time.perf_counter()
    for _ in range(3):  # several rounds: enough work to measure, each one checked
        page, detail, hits, misses, usage = await asyncio.gather(
            timed("list", q.alist_sessions(limit=N_SESSIONS, client=client)),
            timed("get", q.aget_session(biggest.id, client=client)),
            timed("search", q.asearch_sessions("the", limit=N_SESSIONS, client=client)),
            timed("miss", q.asearch_sessions("nothing matches this", client=client)),
            timed("usage", q.ausage_summary("day", client=client)),
        )
        assert len(page) == N_SESSIONS and page.next_cursor is None
        assert detail is not None and detail.session.id == biggest.id
        assert [h.session.id for h in hits] == expected_search(populated.sessions, "the")
        assert misses == []
        assert len(usage) == len({s.day for s in populated.sessions})
    window_end = time.perf_counter()
    stop.set()
    await asyncio.wait_for(tick_task, 5)

    assert single > 0.005, single  # the search really works for a while
    assert len(spans) == 15
    name, begin, end = max(spans, key=lambda x: x[2] - x[1])
    longest = end - begin
    # The loop ran while the slowest query was in flight, and all along the others: a query
    # that blocked the loop would have no tick at all between its start and its end.
    assert len([t for t in ticks if begin < t < end]) >= 3, (name, longest)
    busy = [t for t in ticks if any(b < t < e for _, b, e in spans)]
    assert len(busy) >= 10
    during = [t for t in ticks if window_start <= t <= window_end]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps) < longest, (max(gaps), longest)


def test_records_are_frozen_and_serialisable(client: cpl.TursoClient) -> None:
    summary = q.list_sessions(limit=1, client=client)[0]
    with pytest.raises(AttributeError):
        summary.status = "x"  # type: ignore[misc]
    detail = q.get_session(summary.id, client=client)
    assert detail is not None
    json.dumps(detail.to_dict())
    json.dumps([r.to_dict() for r in q.usage_summary(client=client)])
    json.dumps([h.to_dict() for h in q.search_sessions("the", client=client)])


# ----- cloud mode -------------------------------------------------------------------------------


def test_cloud_reads_come_from_the_remote(cloud: SyncServer, tmp_path: Path) -> None:
    """Populate through the shared cloud client, then read through NEW clients (other replicas,
    another process): only the remote can have given them the rows."""
    writer = cpl.get_turso_client()
    assert writer is not None
    sessions = populate(writer, 150, seed=21)
    expected = [s.id for s in newest_first(sessions)]

    def fresh_client(replicas: str) -> cpl.TursoClient:
        config = cpl.TursoConfig(url=cloud.url, auth_token=SECRET_TOKEN)
        settings = cpl.Settings(config=config, replica_dir=str(tmp_path / replicas))
        return cpl.TursoClient(config, settings)

    reader = fresh_client("reader-replicas")
    try:
        got: list[str] = []
        page = q.list_sessions(limit=40, client=reader)
        for _ in range(10):
            got += [s.id for s in page]
            if page.next_cursor is None:
                break
            page = q.list_sessions(limit=40, cursor=page.next_cursor, client=reader)
        assert got == expected
        one = sessions[7]
        detail = q.get_session(one.external_id, client=reader)
        assert detail is not None and detail.session.id == one.id
        assert len(detail.messages) == len(one.messages)
        hits = q.search_sessions("100%", limit=100, client=reader)
        assert [h.session.id for h in hits] == expected_search(sessions, "100%")
        usage = {r.group: r for r in q.usage_summary("model", client=reader)}
        for key, exp in expected_usage(sessions, "model").items():
            assert usage[key].sessions == exp["sessions"]
            assert usage[key].cost_usd == pytest.approx(exp["cost_usd"])
            assert usage[key].p50_tool_ms == pytest.approx(exp["p50_tool_ms"])

        # Rows another writer pushes later show up on the reader's next call (pulled fresh).
        other = fresh_client("other-writer")
        lg = cpl.ConversationLogger(other)
        lg.start_session(cpl.SessionInfo(id="pushed-later", agent_type="late", model="m"))
        lg.end_session("completed")
        assert other.flush(15) and other.shutdown(10)
        assert q.list_sessions(limit=1, client=reader)[0].id == "pushed-later"
    finally:
        reader.shutdown(10)

    # Another process with its own replica directory sees the same data.
    out = run_python(
        "import sys, claude_parallel_logging as cpl\n"
        "from claude_parallel_logging import query as q\n"
        "page = q.list_sessions(limit=1000)\n"
        "print(len(page), page[0].id)\n",
        env={
            "TURSO_DATABASE_URL": cloud.url,
            "TURSO_AUTH_TOKEN": SECRET_TOKEN,
            "CPL_REPLICA_DIR": str(tmp_path / "child-replicas"),
        },
    )
    assert out.split() == [str(len(sessions) + 1), "pushed-later"]


def test_cloud_empty_remote_reads_as_empty(cloud: SyncServer) -> None:
    start = time.monotonic()
    assert q.list_sessions() == []
    assert q.get_session("x") is None
    assert q.search_sessions("x") == []
    assert q.usage_summary() == []
    assert time.monotonic() - start < 10


def test_cloud_unreachable_raises_clear_error(cloud: SyncServer) -> None:
    cloud.stop()
    with pytest.raises(
        DatabaseUnavailable, match=r"cannot open database http://127\.0\.0\.1"
    ) as info:
        q.list_sessions()
    assert SECRET_TOKEN not in str(info.value)
