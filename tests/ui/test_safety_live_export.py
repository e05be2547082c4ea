"""Stored text never runs (pages, API, export), a running session updates without a reload, the
HTML export works from ``file://`` with the network blocked, and ``/api`` answers exactly what
``cpl ... --json`` prints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.cli import main
from tests.ui.conftest import PAYLOADS, XSS_ID, Page, Server, ViewerDb, read_client


def _not_pwned(page: Page) -> None:
    assert page.page.evaluate("() => window.__pwned") is None


def _shows_every_payload(page: Page, selector: str = "body") -> None:
    text = page.page.locator(selector).inner_text()
    for payload in PAYLOADS:
        assert payload in text, payload


def test_xss_payloads_show_as_text_and_run_nothing(server: Server, page: Page) -> None:
    pg = page.page
    pg.goto(f"{server.url}/sessions/{XSS_ID}")
    pg.locator("details.entry").evaluate_all("ds => ds.forEach(d => d.open = true)")
    _not_pwned(page)
    _shows_every_payload(page, "#transcript")
    for where in (".head p.error-text", ".meta", "pre.error-text"):  # session error, metadata, tool error
        _shows_every_payload(page, where)
    assert pg.locator(".wf-bar.tool").count() == 2  # the waterfall's JSON block parsed whole
    assert pg.locator("script").count() == 2  # app.js and the data block: nothing injected
    titles = pg.locator(".wf-bar").evaluate_all("bs => bs.map(b => b.title).join('\\n')")
    assert PAYLOADS[0] in titles
    for link in pg.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))"):
        assert not (link or "").lower().startswith("javascript:")
    page.shot("xss-session")
    pg.goto(f"{server.url}/search?q=__pwned")
    _not_pwned(page)
    assert "window.__pwned" in pg.locator("pre.snippet").first.inner_text()
    pg.goto(f"{server.url}/?agent_type=xss-agent")
    _not_pwned(page)
    assert pg.locator("tbody td").nth(3).inner_text() == "m<b>odel"


def test_api_documents_equal_the_cli_json(server: Server, viewer_db: ViewerDb, capsys: pytest.CaptureFixture[str]) -> None:
    def cli_json(*argv: str) -> Any:
        capsys.readouterr()
        assert main(["--database", str(viewer_db.path), *argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    rec = viewer_db.named("claude", "tool_bash")
    page = cli_json("sessions", "--limit", "7", "--status", "completed")
    assert server.json("/api/sessions?limit=7&status=completed") == page
    nxt = cli_json("sessions", "--cursor", page["next_cursor"], "--limit", "7")
    assert server.json(f"/api/sessions?limit=7&cursor={page['next_cursor']}") == nxt
    assert server.json(f"/api/sessions/{rec.id}") == cli_json("show", rec.id)
    assert server.json(f"/api/sessions/{XSS_ID}") == cli_json("show", XSS_ID)
    assert server.json("/api/search?q=hello-from-tool") == cli_json("search", "hello-from-tool")
    for by in ("agent_type", "model", "day"):
        assert server.json(f"/api/stats?group_by={by}") == cli_json("stats", "--group-by", by)
    _, headers, body = server.get(f"/api/sessions/{XSS_ID}")
    assert headers["content-type"].startswith("application/json")
    assert "<script>" in json.loads(body)["messages"][0]["content"]


def test_running_session_updates_without_reload(server: Server, page: Page, viewer_db: ViewerDb) -> None:
    writer = read_client(viewer_db.path)  # logs into the database the server reads
    try:
        lg = cpl.ConversationLogger(writer)
        lg.start_session(cpl.SessionInfo(id="live-session-1", agent_type="live", model="m"))
        lg.log_message("user", "first prompt of the live session")
        assert writer.flush(10)
        pg = page.page
        pg.goto(f"{server.url}/sessions/live-session-1")
        assert pg.locator(".head .live").count() == 1
        pg.evaluate("() => { window.__sameDocument = 1; }")
        assert pg.locator(".wf-bar.tool").count() == 0
        tid = lg.log_tool_execution("Bash", "running", input={"command": "sleep 1"})
        lg.log_message("assistant", "second row, arrived while the page was open")
        assert writer.flush(10)
        pg.locator(f"#t-{tid}").wait_for(timeout=6000)
        pg.get_by_text("second row, arrived while the page was open").wait_for(timeout=6000)
        assert pg.locator(".wf-bar.tool.running").count() == 1
        time.sleep(0.05)
        lg.finish_tool_execution(tid, "completed", output="done-output-live")
        lg.end_session("completed")
        assert writer.flush(10)
        pg.locator(".head .status.completed").wait_for(timeout=6000)
        assert pg.locator(".wf-bar.tool.completed").count() == 1
        assert pg.locator(".head .live").count() == 0
        assert pg.evaluate("() => window.__sameDocument") == 1  # never reloaded
        page.shot("live-session")
    finally:
        writer.shutdown(5)


def test_html_export_from_file_url_offline(viewer_db: ViewerDb, page: Page, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = viewer_db.named("claude", "tool_parallel")
    out = tmp_path / "session.html"
    xss = tmp_path / "xss.html"
    for sid, target in ((rec.id, out), (XSS_ID, xss)):
        assert main(["--database", str(viewer_db.path), "show", sid, "--format", "html", "-o", str(target)]) == 0
    capsys.readouterr()
    html = out.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert 'src="' not in html and "<link rel=\"stylesheet\"" not in html
    requests: list[str] = []
    ctx = page.context
    ctx.route("**/*", lambda route: (requests.append(route.request.url), route.abort())
              if not route.request.url.startswith(("file:", "data:")) else route.continue_())  # fmt: skip
    pg = page.page
    pg.goto(out.as_uri())
    detail = q.get_session(rec.id, client=read_client(viewer_db.path))
    assert detail is not None
    assert pg.locator(".wf-bar.tool").count() == len(detail.tool_executions)  # its script ran
    assert pg.locator("#transcript .entry").count() > 0
    assert pg.locator("dd.f-cost").inner_text() == q.figures.fmt_cost(detail.session.cost_usd)  # type: ignore[attr-defined]
    page.shot("export")
    assert requests == []
    pg.goto(xss.as_uri())
    pg.locator("details.entry").evaluate_all("ds => ds.forEach(d => d.open = true)")
    _not_pwned(page)
    _shows_every_payload(page, "#transcript")
    assert requests == []
