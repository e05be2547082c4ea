"""The real Turso sync server (``tursodb --sync-server``) on 127.0.0.1, for offline tests.

``tursodb`` comes from the npm package ``turso``; it serves the same sync protocol as Turso Cloud,
so cloud mode can be tested (and benchmarked) without a network or an account::

    with TursoSyncServer(tursodb_bin(), tmp / "server.db", tmp / "tursodb.log") as server:
        configure(database_url=server.url, auth_token="any-token")
        ...
        assert server.query("SELECT COUNT(*) FROM sessions") == [(1,)]
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .binaries import find_npm_binary, missing_binary_message

_TURSODB_PATHS = ("@tursodatabase/cli-*/tursodb",)  # the npm package ``turso`` installs it here


def find_tursodb(project_root: Path | None = None) -> str | None:
    """``$CPL_TURSODB_BIN``; else ``tursodb`` on ``PATH``; else the copy ``npm install turso``
    put in ``node_modules`` of the working directory or a parent; else in ``.tools`` of
    ``project_root`` or of this repository (``./dev setup``). ``None`` when there is none."""
    roots = (project_root,) if project_root is not None else ()
    found = find_npm_binary(
        "tursodb", "CPL_TURSODB_BIN", _TURSODB_PATHS, roots, skip_missing_env=True
    )
    return None if found is None else str(found)


def tursodb_bin(project_root: Path | None = None) -> str:
    """:func:`find_tursodb`, or ``FileNotFoundError`` saying how to install it."""
    found = find_tursodb(project_root)
    if found is None:
        raise FileNotFoundError(missing_binary_message("tursodb", "CPL_TURSODB_BIN", "turso", None))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TursoSyncServer:
    """Starts ``tursodb FILE --sync-server 127.0.0.1:PORT`` on a free port; stops it for sure."""

    def __init__(
        self, binary: str, db_file: Path, log_file: Path, auth_token: str = "test-token"
    ) -> None:
        self.binary = binary
        self.db_file = db_file
        self.log_file = log_file
        self.auth_token = auth_token
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, str(self.db_file), "--sync-server", f"127.0.0.1:{self.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tursodb exited: {self.log_file.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tursodb did not open its port in {timeout:g} s")

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
        import turso.sync

        with tempfile.TemporaryDirectory() as d:
            conn = turso.sync.connect(
                os.path.join(d, "check.db"), self.url, auth_token=self.auth_token
            )
            try:
                return list(conn.execute(sql, params).fetchall())
            finally:
                conn.close()

    def __enter__(self) -> TursoSyncServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
