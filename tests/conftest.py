"""Shared fixtures: a fresh configuration per test, real database files, the real tursodb server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl

REPO = Path(__file__).resolve().parent.parent
SECRET_TOKEN = "tok-SECRET-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def _find_tursodb() -> str | None:
    env = os.environ.get("CPL_TURSODB_BIN")
    if env and os.path.exists(env):
        return env
    for p in sorted((REPO / ".tools" / "node_modules" / "@tursodatabase").glob("cli-*/tursodb")):
        return str(p)
    return shutil.which("tursodb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _fresh_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(("TURSO_", "CPL_")) and var not in (
            "CPL_TURSODB_BIN",
            "CPL_OPENCODE_BIN",
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CPL_REPLICA_DIR", str(tmp_path / "replicas"))
    cpl.reset_configuration()
    yield
    cpl.shutdown(5)
    cpl.reset_configuration()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "logs.db"


@pytest.fixture
def local_db(db_path: Path) -> Path:
    """Logging configured into a fresh local database file."""
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    return db_path


def query(path: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read a local database file directly, waiting while another process holds its lock."""
    import turso

    deadline = time.monotonic() + 10
    while True:
        try:
            conn = turso.connect(str(path))
            break
        except Exception as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()
        del conn  # pyturso frees the file lock with the object, not on close()


class SyncServer:
    """The real Turso sync server (``tursodb --sync-server``) on a free loopback port."""

    def __init__(self, binary: str, db_file: Path, log_file: Path) -> None:
        self.binary = binary
        self.db_file = db_file
        self.log_file = log_file
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [self.binary, str(self.db_file), "--sync-server", f"127.0.0.1:{self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tursodb exited: {self.log_file.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tursodb did not open its port in 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read what the server has, through a fresh replica bootstrapped from it."""
        import tempfile

        import turso.sync

        with tempfile.TemporaryDirectory() as d:
            conn = turso.sync.connect(
                os.path.join(d, "check.db"), self.url, auth_token=SECRET_TOKEN
            )
            try:
                return list(conn.execute(sql, params).fetchall())
            finally:
                conn.close()


@pytest.fixture(scope="session")
def tursodb_bin() -> str:
    binary = _find_tursodb()
    if binary is None:
        pytest.fail("tursodb not found: run ./dev setup (installs the npm package 'turso')")
    return binary


@pytest.fixture
def sync_server(tursodb_bin: str, tmp_path: Path) -> Iterator[SyncServer]:
    server = SyncServer(tursodb_bin, tmp_path / "server.db", tmp_path / "tursodb.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cloud(sync_server: SyncServer) -> SyncServer:
    """Logging configured in cloud mode against the real sync server."""
    cpl.configure(
        database_url=sync_server.url,
        auth_token=SECRET_TOKEN,
        flush_interval=0.05,
        push_interval=0.5,
    )
    return sync_server


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run a child Python process with the package importable; returns its stdout."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc.stdout
