"""Re-create the README's viewer screenshots: ``python docs/screenshots.py``.

Logs a realistic afternoon through the real logger API (``ConversationLogger`` with explicit
times, the rows shaped as the Claude integration writes them: tool calls with ``tool_use_id``,
a subagent's rows with ``parent_tool_use_id``), serves it with the real viewer on 127.0.0.1 and
photographs a session page and ``/timeline`` in Debian's Chromium (``/usr/bin/chromium``)
through Playwright. Needs the ``[ui]`` extra and Playwright; reaches no network.

Writes ``docs/viewer-session.png`` and ``docs/viewer-timeline.png`` (each kept under 200 KB).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import claude_parallel_logging as cpl

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
T0 = datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc).timestamp()  # a Tuesday afternoon
MODEL = "claude-sonnet-4-5"
SESSION_ID = "7f3c9a2e-41d8-4b6e-9c1a-5e2f8d0b3a64"


@dataclass
class Script:
    """One session written step by step on its own clock (seconds from its start)."""

    lg: cpl.ConversationLogger
    start: float
    at: float = 0.0
    turns: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0])

    def say(
        self, text: str, think: float, tokens: tuple[int, int], parent: str | None = None
    ) -> None:
        """The model thinks ``think`` seconds, then answers ``text``."""
        self.at += think
        self.lg.log_message(
            "assistant", text, created_at=self.start + self.at, model=MODEL,
            input_tokens=tokens[0], output_tokens=tokens[1], parent_tool_use_id=parent,
        )  # fmt: skip
        self.turns += 1
        self.tokens[0] += tokens[0]
        self.tokens[1] += tokens[1]

    def tool(
        self, name: str, use_id: str, args: dict[str, Any], seconds: float, output: str,
        parent: str | None = None, error: str | None = None, think: float = 0.0,
        keep_open: bool = False,
    ) -> str:  # fmt: skip
        """A tool call after ``think`` seconds of the model, running ``seconds``."""
        self.at += think
        at = self.start + self.at
        mid = self.lg.log_message(
            "assistant", None, tool_name=name, tool_input=args, created_at=at, model=MODEL,
            parent_tool_use_id=parent, metadata={"tool_use_id": use_id},
        )  # fmt: skip
        tid = self.lg.log_tool_execution(
            name, "running", input=args, message_id=mid, tool_use_id=use_id,
            parent_tool_use_id=parent, started_at=at + 0.02,
        )  # fmt: skip
        if keep_open:
            return tid
        self.close(tid, name, use_id, at + 0.02, seconds, output, parent, error)
        self.at += seconds + 0.04
        return tid

    def close(
        self, tid: str, name: str, use_id: str, started: float, seconds: float, output: str,
        parent: str | None = None, error: str | None = None,
    ) -> None:  # fmt: skip
        end = started + seconds
        self.lg.finish_tool_execution(
            tid, "error" if error else "completed", output=None if error else output,
            error=error, ended_at=end, duration_ms=round(seconds * 1000),
        )  # fmt: skip
        self.lg.log_message(
            "tool", error or output, tool_name=name, created_at=end + 0.01,
            parent_tool_use_id=parent, metadata={"tool_use_id": use_id},
        )  # fmt: skip


def _start(sid: str, agent: str, start: float, meta: dict[str, Any]) -> Script:
    lg = cpl.ConversationLogger()
    lg.start_session(
        cpl.SessionInfo(id=sid, agent_type=agent, model=MODEL, metadata=meta, started_at=start)
    )
    return Script(lg, start)


def _end(s: Script, status: str = "completed", error: str | None = None) -> None:
    s.lg.end_session(
        status, error, ended_at=s.start + s.at + 0.3, duration_ms=round(s.at * 1000),
        input_tokens=s.tokens[0], output_tokens=s.tokens[1], num_turns=s.turns,
        cost_usd=round((s.tokens[0] * 3 + s.tokens[1] * 15) / 1e6, 6),
        cache_read_tokens=s.tokens[0] * 3,
    )  # fmt: skip


def log_feature_session(start: float) -> None:
    """The session the README shows: read, search, a subagent that runs the tests, an edit."""
    s = _start(SESSION_ID, "implementation", start, {"ticket": "PAY-412", "branch": "fix/retry"})
    s.lg.log_message("user", "The payment retry loop gives up after one attempt. Find out why "
                     "and fix it; keep the tests green.", created_at=start + 0.05)  # fmt: skip
    s.say("I'll look at the retry helper and its tests first.", 2.1, (1850, 48))
    s.tool("Read", "toolu_01", {"file_path": "payments/retry.py"}, 0.34,
           "def retry(call, attempts=3):\n    for n in range(attempts):\n        ...")  # fmt: skip
    s.tool(
        "Grep",
        "toolu_02",
        {"pattern": "attempts=", "path": "payments/"},
        0.61,
        "payments/retry.py:12\npayments/client.py:40: retry(send, attempts=1)",
        think=1.2,
    )
    s.say("client.py passes attempts=1. Let me have a subagent run the failing tests while I "
          "check the call site.", 3.4, (2600, 95))  # fmt: skip
    agent_at = s.start + s.at + 0.6
    agent = s.tool("Agent", "toolu_03", {"description": "Run the payment tests",
                   "subagent_type": "test-runner"}, 0, "", think=0.6, keep_open=True)  # fmt: skip
    sub = Script(s.lg, agent_at, 0.05)
    sub.lg.log_message("user", "Run the payment tests and report failures.",
                       created_at=agent_at + 0.05, parent_tool_use_id="toolu_03")  # fmt: skip
    sub.say("Running the payment test module.", 1.6, (900, 30), parent="toolu_03")
    sub.tool("Bash", "toolu_s1", {"command": "pytest tests/payments -q"}, 7.8,
             "F.......\nFAILED test_retry_gives_up_after_three - assert 1 == 3",
             parent="toolu_03", think=0.4)  # fmt: skip
    sub.tool(
        "Read",
        "toolu_s2",
        {"file_path": "tests/payments/test_retry.py"},
        0.22,
        "def test_retry_gives_up_after_three(): ...",
        parent="toolu_03",
        think=1.9,
    )
    sub.say("One failure: test_retry_gives_up_after_three (1 attempt instead of 3).", 2.4,
            (1400, 60), parent="toolu_03")  # fmt: skip
    # the main agent works on while its subagent runs
    s.at += 0.8
    s.tool("Read", "toolu_04", {"file_path": "payments/client.py"}, 0.29,
           "    return retry(send, attempts=1)")  # fmt: skip
    s.tool("Grep", "toolu_05", {"pattern": "MAX_ATTEMPTS"}, 0.45, "", error="ripgrep: no such "
           "file or directory: config/limits.py", think=1.1)  # fmt: skip
    s.at = max(s.at, agent_at - s.start + sub.at) + 0.3  # the Agent call ends with its subagent
    s.close(agent, "Agent", "toolu_03", agent_at + 0.02, s.start + s.at - agent_at - 0.02,
            "1 failing test: test_retry_gives_up_after_three")  # fmt: skip
    s.tool("Edit", "toolu_06", {"file_path": "payments/client.py", "old_string": "attempts=1",
           "new_string": "attempts=MAX_RETRIES"}, 0.12, "updated", think=2.7)  # fmt: skip
    s.tool("Bash", "toolu_07", {"command": "pytest tests/payments -q"}, 6.9, "8 passed in 6.71s",
           think=0.9)  # fmt: skip
    s.say("Fixed: client.py called retry with attempts=1; it now uses MAX_RETRIES (3). The "
          "payment tests pass (8 passed).", 2.8, (3900, 120))  # fmt: skip
    _end(s)


def log_parallel_afternoon(start: float) -> None:
    """Planning, implementation and review agents overlapping, one review failing."""
    plan = [
        ("planning", 0, 95, "completed"), ("implementation", 40, 420, "completed"),
        ("implementation", 70, 300, "completed"), ("implementation", 130, 510, "error"),
        ("review", 380, 160, "completed"), ("review", 470, 140, "completed"),
        ("review", 650, 120, "error"), ("planning", 560, 80, "completed"),
    ]  # fmt: skip
    for n, (agent, offset, seconds, status) in enumerate(plan):
        sid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cpl-demo-{n}"))
        s = _start(sid, agent, start + offset, {"batch": "B-17"})
        s.lg.log_message("user", f"{agent} task {n}", created_at=s.start + 0.05)
        s.say(f"Working on {agent} task {n}.", 3.0, (1200 + 90 * n, 40 + n))
        s.tool("Bash", f"toolu_p{n}", {"command": "make check"}, seconds - 8.0, "ok", think=1.0)
        _end(s, status, "tests failed" if status == "error" else None)


class _Server:
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
            if time.monotonic() > deadline:
                raise RuntimeError("the viewer did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def _shoot(page: Any, target: Path, clip_height: int) -> None:
    """The top of the page (down to ``clip_height``), 1200 px wide, as PNG."""
    page.screenshot(
        path=str(target),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1200, "height": clip_height},
    )
    size = target.stat().st_size
    print(f"{target.relative_to(DOCS.parent)}: {size // 1024} KB")
    if size > 200_000:
        raise SystemExit(f"{target.name} is over 200 KB: make the clip smaller")


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="cpl-demo-") as tmp:
        db = Path(tmp) / "logs.db"
        cpl.configure(database_url=str(db), flush_interval=0.05)
        log_feature_session(T0 + 200)
        log_parallel_afternoon(T0)
        if not (cpl.flush(20) and cpl.shutdown(10)):
            print("the logs were not all written", file=sys.stderr)
            return 1
        cpl.reset_configuration()
        config = cpl.TursoConfig(url=str(db))
        client = cpl.TursoClient(config, cpl.Settings(config=config))
        server = _Server(client)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(f"{server.url}/sessions/{SESSION_ID}")
                page.wait_for_selector(".wf-bar")
                page.evaluate(  # the transcript is below the fold anyway (CSP: no <style>)
                    "() => { document.querySelector('.transcript-box').style.display = 'none' }"
                )
                height = page.evaluate(
                    "() => Math.ceil(document.querySelector('.waterfall-box')"
                    ".getBoundingClientRect().bottom + window.scrollY + 12)"
                )
                _shoot(page, DOCS / "viewer-session.png", min(height, 1400))
                since = datetime.fromtimestamp(T0 - 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                until = datetime.fromtimestamp(T0 + 840, timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                page.goto(f"{server.url}/timeline?since={since}&until={until}")
                page.wait_for_selector("#swimlanes rect.bar")
                height = page.evaluate(
                    "() => Math.ceil(document.querySelector('#swimlanes')"
                    ".getBoundingClientRect().bottom + window.scrollY + 16)"
                )
                _shoot(page, DOCS / "viewer-timeline.png", min(height, 1000))
                browser.close()
        finally:
            server.stop()
            client.shutdown(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
