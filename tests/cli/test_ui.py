"""``cpl ui``: serves on 127.0.0.1 (a free port with ``--port 0``), warns for another host,
stops cleanly on Ctrl-C, says in one line what to install without the ``[ui]`` extra, and
reports a port in use in one line. ``cpl show --format html`` writes one self-contained file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from claude_parallel_logging.ui.app import listen
from tests.cli.helpers import Cli
from tests.conftest import REPO
from tests.populate import Populated


def _start(db: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_parallel_logging", "--database", str(db), "ui",
         "--port", "0", "--no-open", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded: the process prints it once listening, or exits
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split(" at ", 1)[1].split(" ", 1)[0].rstrip("/")


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    return proc.returncode, err


def test_ui_serves_loopback_and_stops_on_ctrl_c(populated: Populated) -> None:
    proc, url = _start(populated.path)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/api/sessions?limit=3", timeout=20) as r:
            body = json.loads(r.read())
        assert len(body["sessions"]) == 3
        with urllib.request.urlopen(url + "/", timeout=20) as r:
            assert "script-src 'self'" in r.headers["content-security-policy"]
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_ui_other_host_warns(populated: Populated) -> None:
    proc, _ = _start(populated.path, "--host", "0.0.0.0")
    code, err = _stop(proc)
    assert code == 0
    assert "warning" in err and "readable" in err and "network" in err


def test_ui_port_in_use_is_one_line(populated: Populated, cli: Cli) -> None:
    sock = listen("127.0.0.1", 0)
    try:
        port = str(sock.getsockname()[1])
        r = cli("--database", str(populated.path), "ui", "--port", port, "--no-open")
    finally:
        sock.close()
    assert r.code == 1
    assert r.err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in r.err


def test_ui_without_the_extra_says_what_to_install(populated: Populated) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from claude_parallel_logging.cli import main\n"
        f"raise SystemExit(main(['--database', {str(populated.path)!r}, 'ui', '--no-open']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert 'pip install "claude-parallel-logging[ui]"' in proc.stderr
    assert "starlette, uvicorn" in proc.stderr


def test_ui_help_is_the_module_docstring(cli: Cli) -> None:
    r = cli("--help")
    assert "browse the logs in a web browser" in r.out
    r = cli("ui", "--help")
    assert "--no-open" in r.out and "127.0.0.1" in r.out


def test_show_format_html_writes_a_self_contained_file(populated: Populated, cli: Cli, tmp_path: Path) -> None:
    session = populated.sessions[0]
    target = tmp_path / "s.html"
    r = cli("--database", str(populated.path), "show", session.id, "--format", "html", "-o", str(target))
    assert r.code == 0, r.err
    html = target.read_text()
    assert html.startswith("<!doctype html>")
    assert "Content-Security-Policy" in html and "script-src &#39;sha256-" in html
    assert session.id in html and '<link rel="stylesheet"' not in html
    assert 'id="wf-data"' in html
    r = cli("--database", str(populated.path), "show", session.id, "--format", "html")
    assert r.code == 0 and r.out.startswith("<!doctype html>")
