"""The viewer in cloud mode: sessions logged and pushed to the real ``tursodb --sync-server``
(which checks the auth token) are read back through the viewer's own replica and shown in a
real browser, and the token is in no page, API answer, asset, header or URL."""

from __future__ import annotations

import re
from typing import Any

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from tests.conftest import SECRET_TOKEN, SyncServer
from tests.ui.conftest import Page, Server


def _log_pushed_sessions() -> list[str]:
    """Two sessions as the cloud-mode logger writes them (one with a failing tool)."""
    ids = []
    for n, (agent, status) in enumerate((("planning", "completed"), ("review", "error"))):
        lg = cpl.ConversationLogger()
        sid = f"cloud-{agent}-{n}"
        lg.start_session(cpl.SessionInfo(id=sid, agent_type=agent, model="claude-test"))
        lg.log_message("user", f"{agent}: read the cloud docs")
        mid = lg.log_message(
            "assistant", None, tool_name="Read", tool_input={"file_path": "docs/cloud.md"}
        )
        t = lg.log_tool_execution("Read", "running", input={"file_path": "docs/cloud.md"},
                                  message_id=mid)  # fmt: skip
        lg.finish_tool_execution(t, status, output="cloud-doc-text" if status != "error" else None,
                                 error="no such file" if status == "error" else None)  # fmt: skip
        lg.log_message("assistant", f"{agent} done", input_tokens=120, output_tokens=30)
        lg.end_session(status, None if status == "completed" else "tool failed", cost_usd=0.02)
        ids.append(sid)
    return ids


def test_cloud_pages_render_pushed_sessions_without_the_token(cloud: SyncServer, page: Page) -> None:
    ids = _log_pushed_sessions()
    assert cpl.flush(20) and cpl.shutdown(10)
    assert sorted(r[0] for r in cloud.query("SELECT id FROM sessions")) == sorted(ids)
    cpl.reset_configuration()

    # the viewer reads as `cpl ui` does in cloud mode: its own replica of the remote
    config = cpl.TursoConfig(url=cloud.url, auth_token=SECRET_TOKEN)
    client = cpl.TursoClient(config, cpl.Settings(config=config, flush_interval=0.05))
    server = Server(client)
    seen: list[tuple[str, str]] = []  # (what, text) of every URL, header and body

    def on_response(response: Any) -> None:
        seen.append(("url", response.url))
        seen.append(("headers", repr(response.headers)))
        try:
            seen.append((response.url, response.text()))
        except Exception:  # a redirect or an aborted request has no body
            pass

    pg = page.page
    pg.on("request", lambda r: seen.append(("request", r.url + repr(r.headers))))
    pg.on("response", on_response)
    try:
        pg.goto(server.url + "/")
        listed = pg.locator("table.sessions tbody tr[data-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
        assert sorted(listed) == sorted(ids)
        assert listed == [s.id for s in q.list_sessions(50, client=client)]
        assert cloud.url.split("//", 1)[1] in pg.locator("body").inner_text()  # the database named
        page.shot("cloud-sessions")
        pg.locator(f'tr[data-id="{ids[1]}"] a').first.click()
        pg.wait_for_url(re.compile(r"/sessions/"))
        detail = q.get_session(ids[1], client=client)
        assert detail is not None
        assert pg.locator(".wf-bar.tool").count() == len(detail.tool_executions) == 1
        assert "no such file" in pg.locator("#transcript").inner_text()
        assert pg.locator("h1 .status").inner_text() == "error"
        page.shot("cloud-session")
        for path in ("/timeline", "/stats?since=2000-01-01", "/search?q=cloud-doc-text",
                     "/sessions/no-such-id"):  # fmt: skip
            pg.goto(server.url + path)
        page.errors.clear()  # the expected 404 is logged as a console error by Chromium
        for path in ("/api/sessions", f"/api/sessions/{ids[0]}", "/api/search?q=cloud",
                     "/api/stats", "/api/sessions/nope", "/?since=bogus", "/static/app.js",
                     f"/sessions/{ids[0]}?format=html", f"/sessions/{ids[0]}/entries?offset=0"):  # fmt: skip
            status, headers, body = server.get(path)
            seen.append((path, f"{status} {headers!r} {body}"))
        assert any(ids[0] in text for what, text in seen if what.endswith("/api/sessions"))
    finally:
        server.stop()
        client.shutdown(5)
    assert len(seen) > 20
    leaks = [what for what, text in seen if SECRET_TOKEN in text]
    assert leaks == [], leaks
