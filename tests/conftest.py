"""Shared fixtures: a fresh configuration per test, real database files, the real tursodb server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.testing.tursodb import TursoSyncServer, find_tursodb

REPO = Path(__file__).resolve().parent.parent
SECRET_TOKEN = "tok-SECRET-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.fixture(autouse=True)
def _fresh_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in list(os.environ):
        if var.startswith(("TURSO_", "CPL_")) and var not in (
            "CPL_TURSODB_BIN",
            "CPL_OPENCODE_BIN",
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CPL_REPLICA_DIR", str(tmp_path / "replicas"))
    monkeypatch.setenv("CPL_CACHE_DIR", str(tmp_path / "cache"))  # the search index
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


class SyncServer(TursoSyncServer):
    """The real Turso sync server, reading back with the tests' token."""

    def __init__(self, binary: str, db_file: Path, log_file: Path) -> None:
        super().__init__(binary, db_file, log_file, auth_token=SECRET_TOKEN)


@pytest.fixture(scope="session")
def tursodb_bin() -> str:
    binary = find_tursodb(REPO)
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
