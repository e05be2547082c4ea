"""The viewer under test: a real database (the recorded Claude CLI and OpenCode runs replayed
through the integrations, synthetic sessions, and a session full of XSS payloads), the real
server on 127.0.0.1 on a free port, and Debian's Chromium driven by Playwright.

One browser per test module; each test gets a fresh page whose console errors and uncaught
exceptions fail it. Screenshots go to ``test-artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from tests.conftest import REPO
from tests.populate import GenSession, RecordedSession, populate, replay_recordings
from tests.ui.opencode_task import log_task_session

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '<a href="javascript:window.__pwned=1">click me</a>',
    "</textarea><script>window.__pwned=1</script>",
    "</script><script>window.__pwned=1</script><!--",
)
XSS_ID = "xss-session-0001"
OC_TASK_T0 = 1795168800000  # 2026-11-20T10:00:00Z, in OpenCode's epoch milliseconds


@dataclass
class ViewerDb:
    path: Path
    synthetic: list[GenSession]
    recorded: list[RecordedSession]
    extra: dict[str, Any] = field(default_factory=dict)

    def named(self, kind: str, name: str) -> RecordedSession:
        (rec,) = [r for r in self.recorded if r.kind == kind and r.name == name]
        return rec


def log_xss_session(client: cpl.TursoClient) -> None:
    """A session with every payload in a message, a tool input, a tool output, a metadata value,
    a tool error and the session's error."""
    lg = cpl.ConversationLogger(client)
    all_payloads = "\n".join(PAYLOADS)
    lg.start_session(
        cpl.SessionInfo(
            id=XSS_ID, agent_type="xss-agent", model="m<b>odel",
            metadata={"note": all_payloads, "ticket": PAYLOADS[1]},
        )
    )  # fmt: skip
    lg.log_message("user", "prompt " + all_payloads)
    mid = lg.log_message("assistant", None, tool_name="Bash", tool_input={"command": all_payloads})
    ok = lg.log_tool_execution("Bash", "running", input={"command": all_payloads}, message_id=mid)
    lg.finish_tool_execution(ok, "completed", output="out " + all_payloads)
    bad = lg.log_tool_execution("Read", "running", input={"file_path": PAYLOADS[2]})
    lg.finish_tool_execution(bad, "error", error="tool error " + all_payloads)
    lg.log_message("assistant", "answer " + all_payloads)
    lg.end_session("error", "session error " + all_payloads, cost_usd=0.5)


@pytest.fixture(scope="package")
def viewer_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerDb]:
    path = tmp_path_factory.mktemp("viewer") / "logs.db"
    cpl.reset_configuration()
    cpl.configure(database_url=str(path), flush_interval=0.05)
    try:
        client = cpl.get_turso_client()
        assert client is not None
        synthetic = populate(client, 60, seed=13)
        recorded = replay_recordings()
        log_xss_session(client)
        extra = {
            "oc_task": log_task_session("ses_parent_done", "ses_child_done", OC_TASK_T0),
            "oc_task_running": log_task_session(
                "ses_parent_busy", "ses_child_busy", OC_TASK_T0 + 60_000, finished=False
            ),
        }
        assert cpl.flush(20)
    finally:
        assert cpl.shutdown(10)
        cpl.reset_configuration()
    yield ViewerDb(path, synthetic, recorded, extra)


def read_client(path: Path) -> cpl.TursoClient:
    config = cpl.TursoConfig(url=str(path))
    return cpl.TursoClient(config, cpl.Settings(config=config, flush_interval=0.05))


class Server:
    """The viewer's real server (uvicorn) in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, client: cpl.TursoClient) -> None:
        import uvicorn

        from claude_parallel_logging.ui.app import create_app, listen

        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(client), log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the viewer did not start"
            time.sleep(0.02)

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive()
        self.sock.close()


@pytest.fixture(scope="module")
def server(viewer_db: ViewerDb) -> Iterator[Server]:
    client = read_client(viewer_db.path)
    srv = Server(client)
    yield srv
    srv.stop()
    client.shutdown(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run ./dev setup (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console", lambda m: self.errors.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.context.close()
    assert p.errors == [], p.errors


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
