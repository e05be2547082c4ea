"""Run the real ``opencode serve`` offline against a scripted model, for tests.

The server gets an isolated HOME/XDG tree, a generated config whose only
provider is an OpenAI-compatible endpoint (normally a
:class:`~claude_parallel_logging.testing.openai_compat.ScriptedOpenAIServer`),
and every env flag that would otherwise make it reach the network.

``opencode_ai`` is imported lazily so this module works without the optional
extra installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from .binaries import find_npm_binary, missing_binary_message

__all__ = [
    "DEFAULT_COST",
    "MAIN_MODEL",
    "PROVIDER_ID",
    "SMALL_MODEL",
    "EventRecorder",
    "OpencodeServer",
    "async_client",
    "chat",
    "chat_async",
    "create_session",
    "free_port",
    "get_messages",
    "opencode_bin",
    "prompt_async",
    "sync_client",
]

JSON = dict[str, Any]

PROVIDER_ID = "scripted"
MAIN_MODEL = "scripted-main"
SMALL_MODEL = "scripted-small"
# USD per million tokens (models.dev convention): makes message cost non-zero.
DEFAULT_COST: Mapping[str, float] = {
    "input": 3.0,
    "output": 15.0,
    "cache_read": 0.3,
    "cache_write": 3.75,
}

OFFLINE_ENV: Mapping[str, str] = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
}


def opencode_bin() -> Path:
    """The opencode binary: ``$CPL_OPENCODE_BIN``, ``PATH``, ``node_modules/.bin`` of the
    working directory or a parent (``npm install opencode-ai``), or the repo's ``.tools``."""
    path = find_npm_binary("opencode", "CPL_OPENCODE_BIN", (".bin/opencode",))
    if path is None or not path.exists():
        raise FileNotFoundError(
            missing_binary_message("opencode", "CPL_OPENCODE_BIN", "opencode-ai", path)
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- raw HTTP helpers (stdlib only, so tests don't depend on the SDK's age) --


def _request(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 10.0,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def _prompt_body(text: str, provider_id: str, model_id: str, agent: str | None = None) -> JSON:
    body: JSON = {
        "parts": [{"type": "text", "text": text}],
        "model": {"providerID": provider_id, "modelID": model_id},
    }
    if agent is not None:
        body["agent"] = agent
    return body


def create_session(base_url: str, title: str | None = None, *, timeout: float = 10.0) -> JSON:
    """POST /session; returns the session info (``id``, ``title``, ``directory``...)."""
    result = _request(
        "POST", f"{base_url}/session", {"title": title} if title else {}, timeout=timeout
    )
    assert isinstance(result, dict)
    return result


def get_messages(base_url: str, session_id: str, *, timeout: float = 10.0) -> list[JSON]:
    """GET /session/{id}/message as raw JSON: a list of ``{info, parts}``."""
    result = _request("GET", f"{base_url}/session/{session_id}/message", timeout=timeout)
    assert isinstance(result, list)
    return result


def prompt_async(
    base_url: str,
    session_id: str,
    text: str,
    *,
    provider_id: str = PROVIDER_ID,
    model_id: str = MAIN_MODEL,
    agent: str | None = None,
    timeout: float = 10.0,
) -> None:
    """POST /session/{id}/prompt_async: queues the prompt and returns at once.

    Completion must be observed on ``/event`` (``session.idle``) or by polling.
    """
    _request(
        "POST",
        f"{base_url}/session/{session_id}/prompt_async",
        _prompt_body(text, provider_id, model_id, agent),
        timeout=timeout,
    )


# -- SDK helpers -------------------------------------------------------------


def sync_client(base_url: str, *, timeout: float = 300.0) -> Any:
    """An ``opencode_ai.Opencode`` that never re-sends a prompt on timeout."""
    from opencode_ai import Opencode

    return Opencode(base_url=base_url, max_retries=0, timeout=timeout)


def async_client(base_url: str, *, timeout: float = 300.0) -> Any:
    """An ``opencode_ai.AsyncOpencode`` that never re-sends a prompt on timeout."""
    from opencode_ai import AsyncOpencode

    return AsyncOpencode(base_url=base_url, max_retries=0, timeout=timeout)


def _chat_kwargs(text: str, provider_id: str, model_id: str, timeout: float) -> JSON:
    # The 0.1.0a36 SDK sends top-level providerID/modelID, which opencode 1.x
    # ignores; the nested ``model`` object in extra_body is what it reads.
    return {
        "parts": [{"type": "text", "text": text}],
        "provider_id": provider_id,
        "model_id": model_id,
        "extra_body": {"model": {"providerID": provider_id, "modelID": model_id}},
        "timeout": timeout,
    }


def chat(
    client: Any,
    session_id: str,
    text: str,
    *,
    provider_id: str = PROVIDER_ID,
    model_id: str = MAIN_MODEL,
    timeout: float = 300.0,
) -> Any:
    """Send a prompt via the SDK and block until the agent loop ends.

    Returns the SDK's (lenient) model of ``{info, parts}`` for the last
    assistant message. Use a client from :func:`sync_client` (max_retries=0).
    """
    return client.session.chat(session_id, **_chat_kwargs(text, provider_id, model_id, timeout))


async def chat_async(
    client: Any,
    session_id: str,
    text: str,
    *,
    provider_id: str = PROVIDER_ID,
    model_id: str = MAIN_MODEL,
    timeout: float = 300.0,
) -> Any:
    """Async twin of :func:`chat`, for an ``AsyncOpencode`` client."""
    return await client.session.chat(
        session_id, **_chat_kwargs(text, provider_id, model_id, timeout)
    )


# -- event stream ------------------------------------------------------------


class EventRecorder:
    """Reads ``GET /event`` in a thread and keeps every event as raw JSON text.

    Raw lines are kept verbatim so recordings match what the server sent.
    """

    def __init__(self, base_url: str, *, path: str = "/event") -> None:
        self.url = base_url + path
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, *, connected_timeout: float = 10.0) -> EventRecorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # Opencode sends ``server.connected`` first; waiting for it means no
        # later event can be missed.
        self.wait_for(
            lambda e: "server.connected" in (e.get("type"), e.get("payload", {}).get("type")),
            timeout=connected_timeout,
        )
        return self

    def _run(self) -> None:
        try:
            req = urllib.request.Request(self.url, headers={"Accept": "text/event-stream"})
            # The read timeout bounds each blocking read; heartbeats keep it alive.
            with urllib.request.urlopen(req, timeout=60) as resp:
                self._resp = resp
                data: list[str] = []
                while not self._stop.is_set():
                    raw = resp.readline()
                    if not raw:
                        break
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line == "" and data:
                        with self._cond:
                            self._lines.append("\n".join(data))
                            self._cond.notify_all()
                        data = []
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                resp.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EventRecorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def raw(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def events(self) -> list[JSON]:
        return [json.loads(line) for line in self.raw]

    def wait_for(self, predicate: Callable[[JSON], bool], *, timeout: float = 60.0) -> JSON:
        """First recorded event matching ``predicate``; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self._lines):
                    event: JSON = json.loads(self._lines[seen])
                    seen += 1
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    raise TimeoutError(
                        f"no matching event within {timeout}s ({len(self._lines)} seen,"
                        f" error={self.error!r})"
                    )
                self._cond.wait(min(left, 0.5))

    def wait_quiet(self, *, quiet: float = 1.0, timeout: float = 10.0) -> None:
        """Return once no event (heartbeats aside) arrived for ``quiet`` seconds.

        Some events trail ``session.idle`` (title/diff updates, and on a model
        error the final ``message.updated`` plus a second ``session.idle``).
        """
        deadline = time.monotonic() + timeout
        last_count = -1
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            count = sum(1 for line in self.raw if '"server.heartbeat"' not in line)
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            elif now - last_change >= quiet:
                return
            time.sleep(0.05)

    def wait_idle(self, session_id: str, *, timeout: float = 60.0) -> JSON:
        """Wait until ``session.idle`` for ``session_id``: the turn is over."""
        return self.wait_for(
            lambda e: (
                e.get("type") == "session.idle"
                and e.get("properties", {}).get("sessionID") == session_id
            ),
            timeout=timeout,
        )


# -- the server --------------------------------------------------------------


class OpencodeServer:
    """A real ``opencode serve`` on 127.0.0.1, isolated and offline.

    Everything lives under one temp dir (removed on stop): ``home``, XDG
    dirs, ``project`` (the server's cwd, i.e. the session directory),
    ``opencode.json`` and ``server.log`` (stdout+stderr, for debugging).
    """

    def __init__(
        self,
        model_base_url: str,
        *,
        provider_id: str = PROVIDER_ID,
        main_model: str = MAIN_MODEL,
        small_model: str = SMALL_MODEL,
        cost: Mapping[str, float] | None = DEFAULT_COST,
        extra_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        log_level: str = "INFO",
        keep_dir: bool = False,
    ) -> None:
        self.model_base_url = model_base_url.rstrip("/")
        self.provider_id = provider_id
        self.main_model = main_model
        self.small_model = small_model
        self.cost = dict(cost) if cost is not None else None
        self.extra_config = dict(extra_config or {})
        self.extra_env = dict(env or {})
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.keep_dir = keep_dir
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- paths & config ----------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("opencode server not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def project_dir(self) -> Path:
        if self.root is None:
            raise RuntimeError("opencode server not started")
        return self.root / "project"

    @property
    def log_path(self) -> Path:
        if self.root is None:
            raise RuntimeError("opencode server not started")
        return self.root / "server.log"

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""

    def config(self) -> JSON:
        """The opencode config: one scripted provider, permissions that never ask."""

        def model(name: str) -> JSON:
            spec: JSON = {
                "name": name,
                "tool_call": True,
                "attachment": False,
                "reasoning": False,
                "temperature": True,
                "limit": {"context": 200_000, "output": 8_192},
            }
            if self.cost is not None:
                spec["cost"] = dict(self.cost)
            return spec

        config: JSON = {
            "$schema": "https://opencode.ai/config.json",
            "model": f"{self.provider_id}/{self.main_model}",
            "small_model": f"{self.provider_id}/{self.small_model}",
            "enabled_providers": [self.provider_id],
            "autoupdate": False,
            "share": "disabled",
            "snapshot": False,
            "lsp": False,
            "formatter": False,
            "permission": {
                "bash": "allow",
                "edit": "allow",
                "webfetch": "deny",
                "external_directory": "allow",
                "doom_loop": "allow",
            },
            "provider": {
                self.provider_id: {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Scripted (offline)",
                    "options": {"baseURL": self.model_base_url, "apiKey": "scripted-key"},
                    "models": {
                        self.main_model: model("Scripted main"),
                        self.small_model: model("Scripted small"),
                    },
                }
            },
        }
        config.update(self.extra_config)
        return config

    def _env(self, root: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENCODE_", "XDG_")) and not k.endswith(("_API_KEY", "_BASE_URL"))
        }
        env.update(OFFLINE_ENV)
        env.update(
            {
                "HOME": str(root / "home"),
                "XDG_CONFIG_HOME": str(root / "xdg" / "config"),
                "XDG_DATA_HOME": str(root / "xdg" / "data"),
                "XDG_CACHE_HOME": str(root / "xdg" / "cache"),
                "XDG_STATE_HOME": str(root / "xdg" / "state"),
                "OPENCODE_CONFIG": str(root / "opencode.json"),
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        return env

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> OpencodeServer:
        if self.process is not None:
            return self
        binary = self.binary or opencode_bin()
        if not binary.exists():
            raise FileNotFoundError(missing_binary_message("opencode", "binary=", "", binary))
        root = Path(tempfile.mkdtemp(prefix="cpl-opencode-"))
        self.root = root
        for sub in ("home", "project", "xdg/config", "xdg/data", "xdg/cache", "xdg/state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "opencode.json").write_text(json.dumps(self.config(), indent=2))
        env = self._env(root)
        last_error = "not started"
        try:
            for _attempt in range(3):  # a freshly freed port can be taken meanwhile
                self.port = free_port()
                self._spawn(binary, env)
                try:
                    self._wait_ready()
                    return self
                except (RuntimeError, TimeoutError) as exc:
                    last_error = str(exc)
                    self._terminate()
                    if "address" not in self.read_log().lower():
                        break
            raise RuntimeError(f"opencode serve did not start: {last_error}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, binary: Path, env: Mapping[str, str]) -> None:
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--hostname",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--print-logs",
                "--log-level",
                self.log_level,
            ],
            cwd=self.project_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        # Requests that connect in the first moments after the port opens can
        # hang forever, so every probe has a short timeout and we retry.
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"opencode exited with {code}: {self.read_log()[-2000:]}")
            try:
                health = _request("GET", f"{self.base_url}/global/health", timeout=0.5)
                if isinstance(health, dict) and health.get("healthy", True):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"opencode not healthy after {self.startup_timeout}s: {self.read_log()[-2000:]}"
        )

    def _terminate(self) -> None:
        """TERM, wait, TERM again, then KILL: one TERM is sometimes ignored."""
        proc = self.process
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        # Our own session: reap tool subprocesses (bash) the server left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.process = None

    def stop(self) -> None:
        self._terminate()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.root is not None and not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.port = 0

    def __enter__(self) -> OpencodeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- convenience -------------------------------------------------------

    def create_session(self, title: str | None = None) -> JSON:
        return create_session(self.base_url, title)

    def messages(self, session_id: str) -> list[JSON]:
        return get_messages(self.base_url, session_id)

    def prompt_async(self, session_id: str, text: str, *, agent: str | None = None) -> None:
        prompt_async(
            self.base_url,
            session_id,
            text,
            provider_id=self.provider_id,
            model_id=self.main_model,
            agent=agent,
        )

    def events(self) -> EventRecorder:
        """A started :class:`EventRecorder` on this server's ``/event``."""
        return EventRecorder(self.base_url).start()

    def get(self, path: str, *, timeout: float = 10.0) -> Any:
        return _request("GET", self.base_url + path, timeout=timeout)

    def post(self, path: str, body: Any = None, *, timeout: float = 10.0) -> Any:
        return _request("POST", self.base_url + path, {} if body is None else body, timeout=timeout)
