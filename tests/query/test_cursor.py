"""``list_sessions`` cursors keep their query: filters, and ``since``/``until`` fixed to the
instants they meant on the first page. Expected ids come from the generated data, never SQL."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.query import InvalidCursor, LoggingNotConfigured, times
from tests.populate import (
    BASE_TIME,
    SPAN_DAYS,
    GenSession,
    Populated,
    local_client,
    newest_first,
    populated_database,
)

N = 120
NOW = datetime.fromtimestamp(BASE_TIME + SPAN_DAYS * 86400, tz=timezone.utc)  # after the last


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("cursor"), N, seed=31)


@pytest.fixture
def client(populated: Populated) -> Iterator[cpl.TursoClient]:
    c = local_client(populated.path)
    yield c
    c.shutdown(5)


class Clock:
    """Stands in for ``query.times._now``: what relative ages count back from."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(NOW)
    monkeypatch.setattr(times, "_now", c)
    return c


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def expected_ids(sessions: list[GenSession], **filters: Any) -> list[str]:
    def keep(s: GenSession) -> bool:
        for key in ("agent_type", "status", "model"):
            value = filters.get(key)
            if value is not None:
                allowed = [value] if isinstance(value, str) else value
                if getattr(s, key) not in allowed:
                    return False
        since, until = filters.get("since"), filters.get("until")
        return (since is None or s.started_at >= since) and (until is None or s.started_at < until)

    return [s.id for s in newest_first(sessions) if keep(s)]


def walk_with_cursor_only(
    client: cpl.TursoClient, limit: int, between: Any = None, **filters: Any
) -> tuple[list[str], int]:
    """The first page with the filters, every later one with nothing but the cursor."""
    page = q.list_sessions(limit=limit, client=client, **filters)
    seen: list[str] = []
    pages = 0
    for _ in range(200):
        pages += 1
        seen += [s.id for s in page]
        assert len(page) <= limit
        if page.next_cursor is None:
            return seen, pages
        assert len(page) == limit
        if between is not None:
            between()
        page = q.list_sessions(limit=limit, cursor=page.next_cursor, client=client)
    raise AssertionError("more than 200 pages")


CASES: list[dict[str, Any]] = [
    {"agent_type": "review", "status": "completed"},
    {"agent_type": ["opencode", "planning"]},
    {"status": "error"},
    {"model": "gpt-5", "status": ["completed", "running"]},
    {"since": "2026-09-24", "until": "2026-09-29T06:00:00Z"},
    {"agent_type": "implementation", "since": "2026-09-26T00:00:00.000Z"},
]


@pytest.mark.parametrize("filters", CASES)
def test_filtered_pages_continue_with_the_cursor_alone(
    populated: Populated, client: cpl.TursoClient, filters: dict[str, Any]
) -> None:
    want = expected_ids(
        populated.sessions,
        **{k: (q.parse_time(v) if k in ("since", "until") else v) for k, v in filters.items()},
    )
    assert len(want) >= 8, "the case must span several pages"
    seen, pages = walk_with_cursor_only(client, 3, **filters)
    assert seen == want
    assert pages == -(-len(want) // 3)  # the last page says it is the last
    # Giving exactly the same filters again with each cursor is the same walk.
    page = q.list_sessions(limit=5, client=client, **filters)
    again: list[str] = []
    for _ in range(200):
        again += [s.id for s in page]
        if page.next_cursor is None:
            break
        page = q.list_sessions(limit=5, cursor=page.next_cursor, client=client, **filters)
    assert again == want


def test_async_variant_keeps_the_filters(populated: Populated, client: cpl.TursoClient) -> None:
    want = expected_ids(populated.sessions, status="error")

    async def walk() -> list[str]:
        page = await q.alist_sessions(limit=4, status="error", client=client)
        seen: list[str] = []
        for _ in range(100):
            seen += [s.id for s in page]
            if page.next_cursor is None:
                break
            page = await q.alist_sessions(limit=4, cursor=page.next_cursor, client=client)
        return seen

    assert asyncio.run(walk()) == want


def test_relative_since_is_fixed_on_the_first_page(
    populated: Populated, client: cpl.TursoClient, clock: Clock
) -> None:
    """The clock moves 12 h between pages: a cursor that resolved "5d" again on each page would
    lose the oldest sessions; this one keeps the instant "5d" meant on the first page."""
    bound = stamp(NOW - timedelta(days=5))
    want = expected_ids(populated.sessions, since=bound)
    assert 30 <= len(want) < N

    def tick() -> None:
        clock.now += timedelta(hours=12)

    seen, pages = walk_with_cursor_only(client, 6, between=tick, since="5d")
    assert pages >= 5 and clock.now >= NOW + timedelta(days=2)
    assert seen == want
    # The check has teeth: "5d" resolved now selects fewer sessions.
    now_ids = [s.id for s in q.list_sessions(limit=1000, since="5d", client=client)]
    assert now_ids == expected_ids(populated.sessions, since=stamp(clock.now - timedelta(days=5)))
    assert len(now_ids) < len(want) - 10

    # The same age given again with the cursor (as `cpl sessions --since 5d --cursor X` does)
    # counts as the same filter and keeps the first page's instant too; so does 120h.
    clock.now = NOW
    page = q.list_sessions(limit=6, since="5d", until="1h", client=client)
    seen = []
    for i in range(100):
        seen += [s.id for s in page]
        if page.next_cursor is None:
            break
        tick()
        age = "120h" if i % 2 else "5d"
        page = q.list_sessions(
            limit=6, since=age, until="60m", cursor=page.next_cursor, client=client
        )
    assert seen == expected_ids(
        populated.sessions, since=bound, until=stamp(NOW - timedelta(hours=1))
    )


def test_the_cursor_records_absolute_bounds(client: cpl.TursoClient, clock: Clock) -> None:
    page = q.list_sessions(limit=2, since="3d", agent_type=["review", "planning"], client=client)
    assert page.next_cursor
    raw = json.loads(
        base64.urlsafe_b64decode(page.next_cursor + "=" * (-len(page.next_cursor) % 4))
    )
    assert raw["v"] == 2 and raw["at"] == page[-1].started_at and raw["id"] == page[-1].id
    assert raw["q"] == {
        "agent_type": ["planning", "review"],
        "since": stamp(NOW - timedelta(days=3)),
        "since_age": 3 * 86400.0,
    }
    at, last, query = q.decode_cursor(page.next_cursor)
    assert (at, last) == (page[-1].started_at, page[-1].id)
    assert query is not None and query.since == stamp(NOW - timedelta(days=3))


def test_filters_that_differ_from_the_cursors_are_refused(
    populated: Populated, client: cpl.TursoClient, clock: Clock
) -> None:
    page = q.list_sessions(
        limit=3, agent_type="review", status="completed", since="9d", client=client
    )
    cursor = page.next_cursor
    assert cursor
    bound = stamp(NOW - timedelta(days=9))
    conflicts: list[dict[str, Any]] = [
        {"agent_type": "planning", "status": "completed", "since": "9d"},  # another value
        {"agent_type": "review", "since": "9d"},  # one left out
        {"agent_type": "review", "status": "completed"},  # since left out
        {"agent_type": "review", "status": "completed", "since": "8d"},  # another age
        {"agent_type": "review", "status": "completed", "since": "9d", "model": "gpt-5"},  # added
        {"agent_type": "review", "status": ["completed", "running"], "since": "9d"},
        {"agent_type": "review", "status": "completed", "since": "9d", "until": "2027-01-01"},
        {"agent_type": "review", "status": "completed", "since": "2026-09-22"},  # not that instant
    ]
    for filters in conflicts:
        with pytest.raises(InvalidCursor) as info:
            q.list_sessions(limit=3, cursor=cursor, client=client, **filters)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert message.startswith("the cursor belongs to a query with other filters"), message
        assert f"the cursor's: agent_type=review status=completed since={bound} (age 9d)" in message
        assert "pass the cursor alone, or with exactly the filters" in message
    # The same filters in another spelling are the same query: order, repeats, lists, the
    # instant itself instead of the age, the same age in other units.
    want = expected_ids(populated.sessions, agent_type="review", status="completed", since=bound)
    assert len(want) > 3
    for filters in (
        {},
        {"agent_type": ["review"], "status": ("completed", "completed"), "since": "216h"},
        {"agent_type": "review", "status": "completed", "since": bound},
        {
            "agent_type": "review",
            "status": "completed",
            "since": datetime.fromisoformat(bound.replace("Z", "+00:00")),
        },
    ):
        rest = q.list_sessions(limit=1000, cursor=cursor, client=client, **filters)
        assert [s.id for s in page] + [s.id for s in rest] == want, filters
    # A cursor of an unfiltered listing refuses filters too.
    plain = q.list_sessions(limit=3, client=client).next_cursor
    assert plain
    with pytest.raises(InvalidCursor, match=r"the cursor's: no filters; given: status=error"):
        q.list_sessions(cursor=plain, status="error", client=client)


def test_older_cursors_still_work_with_the_filters_given(
    populated: Populated, client: cpl.TursoClient
) -> None:
    """Cursors made before they kept filters are ``[started_at, id]``: the filters given apply,
    as they did then."""
    page = q.list_sessions(limit=4, status="completed", client=client)
    last = page[-1]
    old = base64.urlsafe_b64encode(json.dumps([last.started_at, last.id]).encode()).decode()
    rest = q.list_sessions(limit=1000, cursor=old.rstrip("="), status="completed", client=client)
    want = expected_ids(populated.sessions, status="completed")
    assert [s.id for s in page] + [s.id for s in rest] == want
    assert rest.next_cursor is None
    every = [s.id for s in newest_first(populated.sessions)]
    unfiltered = q.list_sessions(limit=1000, cursor=old, client=client)
    assert [s.id for s in unfiltered] == every[every.index(last.id) + 1 :]


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "",
        " ",
        _b64({"x": 1}),
        _b64([]),
        _b64(["2026-09-22T00:00:00.000Z"]),
        _b64([1, 2]),
        _b64({"v": 3, "at": "2026-09-22T00:00:00.000Z", "id": "a"}),
        _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z"}),
        _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z", "id": "a", "q": {"colour": ["red"]}}),
        _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z", "id": "a", "q": {"status": "error"}}),
        _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z", "id": "a", "q": {"since": "7d"}}),
        _b64({"v": 2, "at": "x", "id": "a", "q": {"since_age": 5.0}}),
        _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z", "id": "a", "extra": 1}),
    ],
)
def test_invalid_cursors_are_refused_clearly(client: cpl.TursoClient, bad: str) -> None:
    with pytest.raises(InvalidCursor, match=r"^invalid cursor: .*exactly as a page"):
        q.decode_cursor(bad)
    if bad:  # an empty cursor is no cursor: the first page
        with pytest.raises(InvalidCursor, match="invalid cursor"):
            q.list_sessions(cursor=bad, client=client)


def test_arguments_are_checked_before_reading(tmp_path: Path) -> None:
    """A bad cursor or time is reported even when there is no database to read."""
    missing = local_client(tmp_path / "nothing-here.db")
    try:
        with pytest.raises(q.DatabaseUnavailable, match="does not exist"):
            q.list_sessions(client=missing)
        with pytest.raises(InvalidCursor):
            q.list_sessions(cursor="garbage", client=missing)
        with pytest.raises(ValueError, match="not a time"):
            q.list_sessions(since="yesterday", client=missing)
        cursor = _b64({"v": 2, "at": "2026-09-22T00:00:00.000Z", "id": "a", "q": {}})
        q.check_list_arguments(cursor=cursor)
        with pytest.raises(InvalidCursor, match="other filters"):
            q.check_list_arguments(status="error", cursor=cursor)
    finally:
        missing.shutdown(5)
    assert not (tmp_path / "nothing-here.db").exists()


def test_parse_time_out_of_range_and_four_digit_years() -> None:
    for bad in ("99999999999d", 1e20, -1e13, "10000-01-01"):
        with pytest.raises(ValueError, match="not a time"):
            q.parse_time(bad)  # type: ignore[arg-type]
    assert q.parse_time("0999-05-01T12:00:00Z") == "0999-05-01T12:00:00.000Z"
    assert q.parse_time(-0.001) == "1969-12-31T23:59:59.999Z"
    assert q.parse_time(1_790_000_000.1239) == "2026-09-21T14:13:20.123Z"


def test_not_configured_says_how_to_configure() -> None:
    calls = [
        lambda: q.list_sessions(),
        lambda: q.get_session("x"),
        lambda: q.search_sessions("x"),
        lambda: q.usage_summary(),
        lambda: q.short_ids(["x"]),
        lambda: asyncio.run(q.alist_sessions()),
        lambda: asyncio.run(q.aget_session("x")),
        lambda: asyncio.run(q.asearch_sessions("x")),
        lambda: asyncio.run(q.ausage_summary()),
        lambda: cpl.list_sessions(),
    ]
    for call in calls:
        with pytest.raises(LoggingNotConfigured) as info:
            call()
        message = str(info.value)
        assert message.startswith("no database is configured: "), message
        for hint in ("TURSO_DATABASE_URL", "configure(database_url=...)", "--database"):
            assert hint in message, (hint, message)
    assert issubclass(LoggingNotConfigured, RuntimeError)
