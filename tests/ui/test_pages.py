"""The viewer in a real browser (Debian's Chromium through Playwright) on a database filled by
the recorded Claude CLI and OpenCode runs: every figure a page shows is compared with what the
query API returns for the same thing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from claude_parallel_logging import query as q
from claude_parallel_logging.query.figures import fmt_cost, fmt_int, fmt_ms, fmt_tokens
from tests.populate import RECORDED_CLAUDE
from tests.ui.conftest import Page, Server, ViewerDb, read_client


@pytest.fixture(scope="module")
def client(viewer_db: ViewerDb) -> Iterator[q.TursoClient]:  # type: ignore[name-defined]
    c = read_client(viewer_db.path)
    yield c
    c.shutdown(5)


def _ids_on_page(page: Page) -> list[str]:
    return page.page.locator("table.sessions tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )


def test_sessions_list_filters_and_pages(server: Server, page: Page, client) -> None:  # type: ignore[no-untyped-def]
    pg = page.page
    pg.goto(server.url + "/?limit=20")
    first = q.list_sessions(20, client=client)
    assert _ids_on_page(page) == [s.id for s in first]
    costs = pg.locator("table.sessions tbody td.cost").all_inner_texts()
    assert costs == [fmt_cost(s.cost_usd) for s in first]
    page.shot("sessions")
    # keyset paging: the next page is exactly the API's next page
    pg.click("a.next")
    second = q.list_sessions(20, cursor=first.next_cursor, client=client)
    assert _ids_on_page(page) == [s.id for s in second]
    # filter by agent type through the form
    pg.goto(server.url + "/")
    pg.fill("input[name=agent_type]", RECORDED_CLAUDE)
    pg.click("form.filters button[type=submit]")
    pg.wait_for_url(re.compile(r"agent_type="))
    expected = q.list_sessions(50, agent_type=RECORDED_CLAUDE, client=client)
    assert _ids_on_page(page) == [s.id for s in expected] and len(expected) == 8
    # status, metadata and minimum cost, as the API filters them
    pg.goto(server.url + "/?status=error&meta=sdk%3Dopencode&min_cost=0.001")
    expected = q.list_sessions(
        50, status="error", metadata={"sdk": "opencode"}, min_cost=0.001, client=client
    )
    assert _ids_on_page(page) == [s.id for s in expected]
    running = q.list_sessions(50, status="running", client=client)
    pg.goto(server.url + "/?status=running")
    assert pg.locator("tbody .live").count() == len(running) > 0


def test_search_box_to_the_matching_entry(server: Server, page: Page, viewer_db: ViewerDb, client) -> None:  # type: ignore[no-untyped-def]
    pg = page.page
    pg.goto(server.url + "/")
    pg.fill("form.search input[name=q]", "hello-from-tool")
    pg.press("form.search input[name=q]", "Enter")
    pg.wait_for_url(re.compile(r"/search\?q="))
    hits = q.search_sessions("hello-from-tool", limit=50, client=client)
    links = pg.locator("a.hit-link")
    assert links.count() == len(hits) == 2
    snippets = pg.locator("pre.snippet").all_inner_texts()
    assert snippets == [h.snippet for h in hits]
    page.shot("search")
    links.first.click()
    pg.wait_for_url(re.compile(r"/sessions/"))
    target = pg.locator(".entry.target")
    target.wait_for()
    assert "hello-from-tool" in target.inner_text().lower()


def test_session_page_header_waterfall_transcript(server: Server, page: Page, viewer_db: ViewerDb, client) -> None:  # type: ignore[no-untyped-def]
    rec = viewer_db.named("claude", "tool_parallel")
    detail = q.get_session(rec.id, client=client)
    assert detail is not None and len(detail.tool_executions) >= 2
    s = detail.session
    pg = page.page
    pg.goto(f"{server.url}/sessions/{rec.id}")
    for cls, value in (("f-cost", fmt_cost(s.cost_usd)), ("f-in", fmt_int(s.input_tokens)),
                       ("f-out", fmt_int(s.output_tokens)), ("f-cread", fmt_int(s.cache_read_tokens)),
                       ("f-cwrite", fmt_int(s.cache_creation_tokens)), ("f-turns", fmt_int(s.num_turns)),
                       ("f-wall", fmt_ms(s.wall_duration_ms)), ("f-agent", fmt_ms(s.agent_duration_ms))):  # fmt: skip
        assert pg.locator(f"dd.{cls}").inner_text() == value, cls
    # one bar per tool execution, widths in the order of the durations
    bars = pg.locator(".wf-bar.tool")
    assert bars.count() == len(detail.tool_executions)
    measured = bars.evaluate_all(
        "bs => bs.map(b => [Number(b.dataset.duration), b.getBoundingClientRect().width,"
        " b.dataset.anchor])"
    )
    by_anchor = {f"t-{t.id}": t for t in detail.tool_executions}
    assert sorted(a for _, _, a in measured) == sorted(by_anchor)
    for duration, _, anchor in measured:
        assert duration == pytest.approx(by_anchor[anchor].duration_ms or 0, abs=0.1)
    ordered = sorted(measured)
    widths = [w for _, w, _ in ordered]
    assert widths == sorted(widths)
    page.shot("session")
    # clicking a bar jumps to the tool call in the transcript, opened
    longest = ordered[-1][2]
    pg.locator(f'.wf-bar[data-anchor="{longest}"]').click()
    entry = pg.locator(f"#{longest}")
    assert entry.get_attribute("open") is not None and "target" in (entry.get_attribute("class") or "")
    # expand a tool call: its output is the stored output
    tool = detail.tool_executions[0]
    call = pg.locator(f"#t-{tool.id}")
    if call.get_attribute("open") is None:
        call.locator("summary").click()
    assert (tool.output or tool.error or "").strip() in call.inner_text()


def test_subagent_work_nested_and_collapsible(server: Server, page: Page, viewer_db: ViewerDb, client) -> None:  # type: ignore[no-untyped-def]
    rec = viewer_db.named("claude", "subagent")
    detail = q.get_session(rec.id, client=client)
    assert detail is not None
    nested = [t for t in detail.tool_executions if t.parent_tool_use_id]
    pg = page.page
    pg.goto(f"{server.url}/sessions/{rec.id}")
    children = pg.locator(".wf-row[data-parent]")
    if not nested:
        pytest.skip("the subagent recording logs no nested tool execution")
    assert children.count() >= len(nested)
    pg.locator(".wf-toggle").first.click()
    assert pg.locator(".wf-row[data-parent]:visible").count() < children.count()
    page.shot("session-subagent")


def test_timeline_one_bar_per_session(server: Server, page: Page, viewer_db: ViewerDb, client) -> None:  # type: ignore[no-untyped-def]
    since = "2026-09-25T00:00:00Z"
    until = "2026-09-27T00:00:00Z"
    expected = list(q.iter_sessions(since=since, until=until, client=client))
    pg = page.page
    pg.goto(f"{server.url}/timeline?since={since}&until={until}")
    bars = pg.locator("#swimlanes rect.bar")
    assert bars.count() == len(expected) > 3
    assert sorted(bars.evaluate_all("bs => bs.map(b => b.dataset.id)")) == sorted(
        s.id for s in expected
    )
    groups = pg.locator("#swimlanes .group-label").evaluate_all("ts => ts.map(t => t.textContent)")
    assert [g.split(" (")[0] for g in groups] == sorted({s.agent_type for s in expected})
    page.shot("timeline")
    bars.first.click()
    pg.wait_for_url(re.compile(r"/sessions/"))
    pg.goto(f"{server.url}/timeline")  # the default window: the newest sessions
    assert pg.locator("#swimlanes rect.bar").count() == len(q.list_sessions(100, client=client))


def test_stats_charts_hold_the_query_figures(server: Server, page: Page, client) -> None:  # type: ignore[no-untyped-def]
    since = "2020-01-01"
    days = q.usage_summary("day", since, client=client)
    tools = q.tool_usage(since, client=client)
    pg = page.page
    pg.goto(f"{server.url}/stats?since={since}")
    for chart in ("cost", "tokens", "sessions"):
        points = pg.locator(f"#chart-{chart} g.point")
        assert points.count() == len(days), chart
        assert points.evaluate_all("ps => ps.map(p => p.dataset.label)") == [d.group for d in days]
    finished = [d for d in days if d.success_rate is not None]
    assert pg.locator("#chart-sessions svg[role=img] circle.dot").count() == len(finished)
    assert pg.locator("#chart-tools g.point").count() == len(tools)
    total = round(sum(round(d.cost_usd * 1e9) for d in days) / 1e9, 9)
    assert pg.locator("#stats-totals .f-cost").inner_text() == fmt_cost(total)
    top = q.costliest_sessions(10, since, client=client)
    assert pg.locator("table.top-cost td.cost").all_inner_texts() == [fmt_cost(s.cost_usd) for s in top]
    rows = pg.locator("table.tools-table tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == [t.tool_name for t in tools]
    # stacked by agent type: each day's segments add up to the day's cost
    segments = pg.locator("#chart-cost g.point rect").count()
    per_type = {
        g.group: {r.group for r in q.usage_summary("day", since, agent_type=g.group, client=client) if r.cost_usd > 0}
        for g in q.usage_summary("agent_type", since, client=client)
    }  # fmt: skip
    assert segments == sum(len(v) for v in per_type.values())
    page.shot("stats")
    pg.goto(f"{server.url}/stats?since={since}&by=model")
    assert pg.locator("#chart-cost g.point").count() == len(days)


def test_bad_requests_and_unknown_ids_are_one_line(server: Server, page: Page) -> None:
    for path, status, words in (
        ("/sessions/no-such-session", 404, "no session"),
        ("/?status=bogus", 400, "status"),
        ("/?min_cost=abc", 400, "min_cost"),
        ("/?meta=novalue", 400, "key=value"),
        ("/?since=yesterday-ish", 400, "not a time"),
        ("/?cursor=garbage", 400, "cursor"),
        ("/stats?by=colour", 400, "by"),
        ("/nothing/here", 404, "no such page"),
        ("/sessions/x/entries?offset=-1", 404, "no session"),
        ("/api/sessions/no-such-session", 404, "no session"),
        ("/api/search?q=", 400, "empty"),
        ("/api/stats?group_by=week", 400, "group_by"),
    ):
        got, headers, body = server.get(path)
        assert got == status, (path, got, body[:200])
        assert "Traceback" not in body and 'File "' not in body
        assert words in body, (path, body[:300])
        assert "script-src 'self'" in headers["content-security-policy"]
    # in the browser too: the 404 page shows one clear line (the expected 404 is logged as a
    # console error by Chromium, so it is not counted)
    response = page.page.goto(server.url + "/sessions/no-such-session")
    assert response is not None and response.status == 404
    assert page.page.locator(".error-line").inner_text().startswith("no session")
    page.errors.clear()


def test_partial_output_count_reads_as_in_the_cli(server: Server, page: Page, viewer_db: ViewerDb, client) -> None:  # type: ignore[no-untyped-def]
    """A streamed row whose output count is not final: ``out: n/a (partial)``, never ``- out``,
    in the transcript and the waterfall, exactly as ``cpl show`` prints it."""
    rec = viewer_db.named("claude", "subagent")
    detail = q.get_session(rec.id, client=client)
    assert detail is not None
    partial = [m for m in detail.messages if m.output_tokens is None and m.input_tokens is not None]
    assert partial, "the subagent recording has streamed rows"
    pg = page.page
    pg.goto(f"{server.url}/sessions/{rec.id}")
    body = pg.locator("body").inner_text()
    assert "- out" not in body
    for m in partial:
        want = fmt_tokens(m.input_tokens, m.output_tokens)
        assert want == f"{m.input_tokens} in / out: n/a (partial)"
        entry = pg.locator(f'#m-{m.sequence}, [data-seq="{m.sequence}"]').first
        assert entry.locator(".tok").first.inner_text() == want
    titles = pg.locator(".wf-bar").evaluate_all("bs => bs.map(b => b.title).join('\\n')")
    assert "out: n/a (partial)" in titles and "- out" not in titles
    shown = set(pg.locator("#transcript .tok").all_inner_texts())
    assert shown <= {fmt_tokens(m.input_tokens, m.output_tokens) for m in detail.messages}


@pytest.mark.parametrize("which", ["oc_task", "oc_task_running"])
def test_opencode_child_session_nested_under_its_task_call(server: Server, page: Page, viewer_db: ViewerDb, client, which: str) -> None:  # type: ignore[no-untyped-def]
    """An OpenCode subagent (a child session started by the ``task`` tool) nests under that
    call in the waterfall and the transcript, collapsible: linked by the call's metadata once
    the task completed, by the child's ``parentID`` and time while it still runs."""
    detail = q.get_session(viewer_db.extra[which], client=client)
    assert detail is not None
    (task,) = [t for t in detail.tool_executions if t.tool_name == "task"]
    (bash,) = [t for t in detail.tool_executions if t.tool_name == "bash"]
    child_rows = [
        m for m in detail.messages
        if isinstance(m.metadata, dict) and str(m.metadata.get("opencode_session_id", "")).startswith("ses_child")
    ]  # fmt: skip
    assert child_rows and bash.message_id in {m.id for m in child_rows}
    pg = page.page
    pg.goto(f"{server.url}/sessions/{detail.session.id}")
    task_row = pg.locator(f'.wf-row[data-id="t-{task.id}"]')
    assert task_row.get_attribute("data-parent") is None
    nested = pg.locator(f'.wf-row[data-parent="t-{task.id}"]')
    ids = nested.evaluate_all("rs => rs.map(r => r.dataset.id)")
    assert f"t-{bash.id}" in ids
    steps = [f"s-{m.sequence}" for m in child_rows if m.role == "assistant" and not m.tool_name]
    assert steps and set(steps) <= set(ids)
    # the child's answer and tool call are indented under the task call in the transcript
    assert "depth-1" in (pg.locator(f"#t-{bash.id}").get_attribute("class") or "")
    assert "depth-0" in (pg.locator(f"#t-{task.id}").get_attribute("class") or "")
    toggle = task_row.locator(".wf-toggle")
    toggle.click()
    assert nested.first.is_hidden() and pg.locator(f'.wf-row[data-id="t-{bash.id}"]').is_hidden()
    toggle.click()
    assert pg.locator(f'.wf-row[data-id="t-{bash.id}"]').is_visible()
    page.shot(f"session-{which}")
