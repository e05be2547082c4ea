"""The read API the viewer needs beyond listing: metadata and minimum-cost filters (kept in
cursors), figures per tool, and the costliest sessions. Expected values come from the
generated data (``tests.populate``), never from SQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from tests.populate import (
    GenSession,
    Populated,
    _quantile,
    local_client,
    newest_first,
    populated_database,
)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("viewerq"), 240, seed=11)


@pytest.fixture
def client(populated: Populated) -> Iterator[cpl.TursoClient]:
    c = local_client(populated.path)
    yield c
    c.shutdown(5)


def _paged(client: cpl.TursoClient, limit: int, **filters: object) -> list[str]:
    seen: list[str] = []
    page = q.list_sessions(limit=limit, client=client, **filters)  # type: ignore[arg-type]
    for _ in range(1000):
        seen += [s.id for s in page]
        if page.next_cursor is None:
            return seen
        page = q.list_sessions(limit=limit, cursor=page.next_cursor, client=client)
    raise AssertionError("paging did not end")


def _cost(s: GenSession) -> float | None:
    return s.totals.get("cost_usd")


def test_metadata_filter_pages_with_the_cursor(populated: Populated, client: cpl.TursoClient) -> None:
    for key, value in (("cwd", "/work/proj-3"), ("agent", "plan"), ("sdk", "opencode")):
        expected = [s.id for s in newest_first(populated.sessions) if s.metadata.get(key) == value]
        assert expected, (key, value)
        assert _paged(client, 7, metadata={key: value}) == expected
    both = [
        s.id
        for s in newest_first(populated.sessions)
        if s.metadata.get("sdk") == "opencode" and s.metadata.get("agent") == "build"
    ]
    assert _paged(client, 5, metadata={"sdk": "opencode", "agent": "build"}) == both
    assert q.list_sessions(metadata={"cwd": "/nowhere"}, client=client) == []


def test_metadata_filter_matches_numbers_and_booleans_as_their_json_text(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = local_client(tmp_path / "meta.db")
    try:
        lg = cpl.ConversationLogger(c)
        for sid, meta in (("n", {"pr": 42}), ("t", {"pr": "42"}), ("b", {"ok": True}),
                          ("d", {"a.b": "x"}), ("o", {"pr": [42]})):  # fmt: skip
            lg.start_session(cpl.SessionInfo(id=sid, agent_type="a", model="m", metadata=meta))
            lg.end_session("completed")
        assert c.flush(10)
        ids = lambda **f: sorted(s.id for s in q.list_sessions(client=c, **f))  # noqa: E731
        assert ids(metadata={"pr": "42"}) == ["n", "t"]
        assert ids(metadata={"ok": "true"}) == ["b"]
        assert ids(metadata={"a.b": "x"}) == ["d"]  # a dot in a key is not a path
        assert ids(metadata={"a": "x"}) == []
    finally:
        c.shutdown(5)


def test_min_cost_filter(populated: Populated, client: cpl.TursoClient) -> None:
    costs = sorted(c for s in populated.sessions if (c := _cost(s)) is not None)
    threshold = costs[len(costs) // 2]
    expected = [
        s.id for s in newest_first(populated.sessions) if (_cost(s) or -1) >= threshold
    ]
    assert _paged(client, 9, min_cost=threshold) == expected
    mixed = [
        s.id
        for s in newest_first(populated.sessions)
        if (_cost(s) or -1) >= threshold and s.agent_type == "review"
    ]
    assert _paged(client, 4, min_cost=threshold, agent_type="review") == mixed


def test_new_filters_in_cursor_checks(client: cpl.TursoClient) -> None:
    page = q.list_sessions(limit=3, metadata={"sdk": "opencode"}, client=client)
    assert page.next_cursor
    with pytest.raises(q.InvalidCursor):
        q.list_sessions(cursor=page.next_cursor, metadata={"sdk": "claude"}, client=client)
    with pytest.raises(q.InvalidCursor):
        q.list_sessions(cursor=page.next_cursor, min_cost=0.1, client=client)
    again = q.list_sessions(
        limit=3, cursor=page.next_cursor, metadata={"sdk": "opencode"}, client=client
    )
    assert again == q.list_sessions(limit=3, cursor=page.next_cursor, client=client)
    for bad in ({"min_cost": -1.0}, {"min_cost": float("nan")}, {"min_cost": "1"},
                {"metadata": {"": "x"}}):  # fmt: skip
        with pytest.raises(ValueError):
            q.list_sessions(client=client, **bad)  # type: ignore[arg-type]


def test_tool_usage_per_tool(populated: Populated, client: cpl.TursoClient) -> None:
    rows = {r.tool_name: r for r in q.tool_usage(client=client)}
    tools = [t for s in populated.sessions for t in s.tools]
    assert set(rows) == {t.name for t in tools}
    for name, row in rows.items():
        mine = [t for t in tools if t.name == name]
        running = sum(t.status == "running" for t in mine)
        errors = sum(t.status == "error" for t in mine)
        assert (row.calls, row.errors, row.running) == (len(mine), errors, running)
        assert row.error_rate == pytest.approx(errors / (len(mine) - running))
        ds = sorted(float(t.duration_ms) for t in mine if t.duration_ms is not None)
        assert row.p50_ms == pytest.approx(_quantile(ds, 0.5))
        assert row.p95_ms == pytest.approx(_quantile(ds, 0.95))
    calls = [r.calls for r in q.tool_usage(client=client)]
    assert calls == sorted(calls, reverse=True)
    review = {r.tool_name: r.calls for r in q.tool_usage(agent_type="review", client=client)}
    assert sum(review.values()) == sum(
        len(s.tools) for s in populated.sessions if s.agent_type == "review"
    )


def test_costliest_sessions(populated: Populated, client: cpl.TursoClient) -> None:
    top = q.costliest_sessions(5, client=client)
    expected = sorted(
        (s for s in populated.sessions if _cost(s) is not None),
        key=lambda s: (-(_cost(s) or 0), s.started_at),
    )[:5]
    assert [s.id for s in top] == [s.id for s in expected]
    assert [s.cost_usd for s in top] == [pytest.approx(_cost(s)) for s in expected]
    with pytest.raises(ValueError):
        q.costliest_sessions(0, client=client)
