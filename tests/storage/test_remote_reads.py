"""Reads answered on the remote (``storage/hrana.py``) while this machine has no read replica of
a big remote, against the real ``tursodb --sync-server``: the same answers as a replica gives,
no read replica filled, typed values intact, bounded time when the remote is silent, and never
the token in an error."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.query import (
    costliest_sessions,
    get_session,
    list_sessions,
    search_sessions,
    short_ids,
    tool_usage,
    usage_summary,
)
from claude_parallel_logging.storage.cloud import CloudStore
from claude_parallel_logging.storage.hrana import RemoteConnection

from ..conftest import REPO, SECRET_TOKEN, SyncServer
from ..populate import populate
from .test_cloud_reads import WRITER  # the same writer process as the replica reads test

FOREVER = 10**15  # a threshold no test database reaches: reads pull a replica, as before


def _client(server_url: str, replica_dir: Path, threshold: int) -> cpl.TursoClient:
    config = cpl.TursoConfig(server_url, auth_token=SECRET_TOKEN)
    settings = cpl.Settings(
        config=config, replica_dir=str(replica_dir), remote_read_threshold=threshold
    )
    return cpl.TursoClient(config, settings)


def _store(client: cpl.TursoClient) -> CloudStore:
    store = client.reader()
    assert isinstance(store, CloudStore)
    return store


def _answers(client: cpl.TursoClient, ids: list[str], external: str) -> dict[str, Any]:
    """What the read API answers, for the comparisons (every kind of read the CLI makes)."""
    first = list_sessions(limit=7, client=client)
    out: dict[str, Any] = {
        "page": first,
        "next": list_sessions(limit=7, cursor=first.next_cursor, client=client),
        "filtered": list_sessions(limit=500, status="error", since="3000d", client=client),
        "detail": [get_session(i, client=client) for i in ids],
        "by_prefix": get_session(ids[0][:8], client=client),
        "by_external": get_session(external, client=client),
        "short": short_ids(ids, client=client),
        "costliest": costliest_sessions(5, client=client),
        "tools": tool_usage(client=client),
    }
    for word in ("parser", "PARSER", "fuzzer with", "100%", "nowhere-to-be-found", "a"):
        out[f"search {word}"] = search_sessions(word, limit=30, client=client)
    for group in ("agent_type", "model", "day"):
        out[f"usage {group}"] = usage_summary(group, client=client)
    return out


def test_remote_answers_equal_replica_answers(cloud: SyncServer, tmp_path: Path) -> None:
    writer = cpl.get_turso_client()
    assert writer is not None
    sessions = populate(writer, 60, seed=11)
    ids = [s.id for s in sessions[:5]]
    external = sessions[3].external_id
    remote = _client(cloud.url, tmp_path / "fresh", 0)
    try:
        asked = _answers(remote, ids, external)
        store = _store(remote)
        assert store.remote_reads >= 15 and store.last_read_remote
        assert store.remote_size is not None and store.remote_size > 0
        # Nothing downloaded: no read replica, and no derived index built from the remote.
        files = list((tmp_path / "fresh").rglob("*.db"))
        assert files == [], files
        assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*"))
        assert 0 < store.remote_bytes < store.remote_size * 2  # rows asked for, not pages
    finally:
        remote.shutdown(5)
    local = _client(cloud.url, tmp_path / "replica", FOREVER)
    try:
        pulled = _answers(local, ids, external)
        assert _store(local).remote_reads == 0
        assert os.path.exists(tmp_path / "replica")
    finally:
        local.shutdown(5)
    assert asked.keys() == pulled.keys()
    for key in asked:
        assert asked[key] == pulled[key], key
    assert asked["page"] and asked["search parser"] and asked["usage model"]
    assert all(d is not None for d in asked["detail"]) and asked["by_external"] is not None


def test_a_replica_once_there_is_read_instead(cloud: SyncServer, tmp_path: Path) -> None:
    """Below the threshold the first read pulls a replica (as before); once one is there, reads
    go through it whatever the threshold (it pulls only what changed)."""
    writer = cpl.get_turso_client()
    assert writer is not None
    populate(writer, 10, seed=3)
    small = _client(cloud.url, tmp_path / "r", FOREVER)
    try:
        assert len(list_sessions(client=small)) == 10
        assert _store(small).remote_reads == 0 and _store(small).last_read_path is not None
    finally:
        small.shutdown(5)
    assert (tmp_path / "r").rglob("read-0.db")
    later = _client(cloud.url, tmp_path / "r", 0)
    try:
        assert len(list_sessions(client=later)) == 10
        store = _store(later)
        assert store.remote_reads == 0 and not store.last_read_remote
    finally:
        later.shutdown(5)


def test_values_round_trip(cloud: SyncServer) -> None:
    """Every type a column holds, as parameters and as results: integers at the 64-bit edges
    (sent as text, not JSON numbers), floats, NULL, text beyond ASCII, blobs with NUL bytes.

    ``tursodb --sync-server`` writes some floats with an error in the 17th significant digit
    (1 or 2 ULPs: -2.25e-300 comes back as -2.2499999999999997e-300, while ``CAST(? AS TEXT)`` on
    the server shows it received -2.25e-300 exactly): floats of up to 15 significant digits, as the
    logger stores costs and durations, come back exactly; others within 2 ULPs."""
    values: list[Any] = [
        2**63 - 1, -(2**63), 0, 1.5, 0.000125, 123456.789, 1e300, None, "",
        "ünïcødé ☃ 🎉 \u2028 \"q\" \\", "line\nbreak\ttab", b"\x00\x01\xff binary", b"",
    ]  # fmt: skip
    conn = RemoteConnection(cloud_config(cloud), 5)
    try:
        marks = ", ".join("?" for _ in values)
        cur = conn.execute(f"SELECT {marks}", values)
        assert cur.description is not None and len(cur.description) == len(values)
        row = cur.fetchone()
        assert row is not None and list(row) == values
        assert [type(v) for v in row] == [type(v) for v in values]
        assert cur.fetchone() is None
        for value in (-2.25e-300, 1 / 3, -109225.61189039715, 9.734382274129787e-60):
            (back,) = conn.execute("SELECT ?", (value,)).fetchone() or (None,)
            assert isinstance(back, float) and abs(back - value) <= 2 * math.ulp(value), value
        assert conn.execute(
            "SELECT typeof(?), typeof(?), typeof(?)", (1, 1.0, b"x")
        ).fetchall() == [("integer", "real", "blob")]
        # fetchmany pages; several statements in one round trip.
        cur = conn.execute(" UNION ALL ".join(f"SELECT {i}" for i in range(1, 11)))
        assert cur.fetchmany(4) == [(1,), (2,), (3,), (4,)]
        assert cur.fetchall() == [(i,) for i in range(5, 11)]
        before = conn.requests
        a, b = conn.execute_all([("SELECT 1", ()), ("SELECT 'x', NULL", ())])
        assert a.fetchall() == [(1,)] and b.fetchall() == [("x", None)]
        assert conn.requests == before + 1
        with pytest.raises(cpl.DatabaseUnavailable, match="could not run a query"):
            conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(OverflowError):
            conn.execute("SELECT ?", (2**63,))
    finally:
        conn.close()


def test_logged_values_round_trip(cloud: SyncServer, tmp_path: Path) -> None:
    """Values the logger stores (costs as floats, big token counts, NULL columns, unicode and
    JSON) read back through the remote exactly as through a replica."""
    lg = cpl.ConversationLogger()
    lg.start_session(
        cpl.SessionInfo(id="typed", agent_type="ü-agent", model=None, metadata={"k": "☃", "n": 7})
    )
    lg.log_message("user", "héllo 🎉 " * 50, input_tokens=2**40)
    tid = lg.log_tool_execution("Bash", "running", input={"command": "echo ☃", "n": 1.25})
    lg.finish_tool_execution(tid, "error", error="exit 1: ñ")
    lg.end_session("error", "boom ☃", cost_usd=0.000125, input_tokens=2**40 + 1)
    assert cpl.flush(30)
    remote = _client(cloud.url, tmp_path / "a", 0)
    local = _client(cloud.url, tmp_path / "b", FOREVER)
    try:
        asked, pulled = get_session("typed", client=remote), get_session("typed", client=local)
        assert _store(remote).last_read_remote and not _store(local).last_read_remote
    finally:
        remote.shutdown(5)
        local.shutdown(5)
    assert asked == pulled and asked is not None
    assert asked.session.cost_usd == 0.000125 and asked.session.provider is None
    assert asked.session.metadata == {"k": "☃", "n": 7}
    assert asked.tool_executions[0].input == {"command": "echo ☃", "n": 1.25}


def cloud_config(server: SyncServer) -> cpl.TursoConfig:
    return cpl.TursoConfig(server.url, auth_token=SECRET_TOKEN)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def test_a_silent_remote_fails_within_the_timeout(silent_port: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    conn = RemoteConnection(cpl.TursoConfig(url, auth_token=SECRET_TOKEN), 0.5)
    started = time.monotonic()
    with pytest.raises(cpl.DatabaseUnavailable) as caught:
        conn.execute("SELECT 1")
    assert time.monotonic() - started < 3
    assert "did not answer within 0.5 s" in str(caught.value) and url in str(caught.value)
    assert SECRET_TOKEN not in str(caught.value)
    # Through the read API: the size probe is bounded the same way.
    client = _client(url, tmp_path / "r", 0)
    _store(client).network_timeout = 0.5
    started = time.monotonic()
    try:
        with pytest.raises(cpl.DatabaseUnavailable) as caught:
            list_sessions(client=client)
    finally:
        client.shutdown(1)
    assert time.monotonic() - started < 3
    assert "did not answer" in str(caught.value) and SECRET_TOKEN not in str(caught.value)


def test_a_refused_connection_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    conn = RemoteConnection(cpl.TursoConfig(f"http://127.0.0.1:{port}", SECRET_TOKEN), 2)
    with pytest.raises(
        cpl.DatabaseUnavailable, match=r"cannot reach http://127\.0\.0\.1"
    ) as caught:
        conn.execute("SELECT 1")
    assert SECRET_TOKEN not in str(caught.value)


class _EchoingHandler(BaseHTTPRequestHandler):
    """A broken remote that answers every request with an error echoing its headers."""

    status = 500

    def do_POST(self) -> None:
        body = f"failed for {self.headers.get('Authorization')}".encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [500, 401])
def test_http_errors_never_show_the_token(status: int) -> None:
    handler = type("Handler", (_EchoingHandler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        conn = RemoteConnection(cpl.TursoConfig(url, auth_token=SECRET_TOKEN), 2)
        with pytest.raises(cpl.DatabaseUnavailable) as caught:
            conn.execute("SELECT 1")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    message = str(caught.value)
    assert f"HTTP {status}" in message and SECRET_TOKEN not in message
    if status == 500:
        assert "Bearer <token>" in message  # the echo, scrubbed


READER = """
import json, sys
import claude_parallel_logging as cpl
url, token, replica_dir, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = cpl.TursoConfig(url, auth_token=token)
settings = cpl.Settings(config=config, replica_dir=replica_dir, remote_read_threshold=0)
client = cpl.TursoClient(config, settings)
counts = [len(cpl.list_sessions(limit=10000, client=client)) for _ in range(rounds)]
assert client.reader().remote_reads == rounds
print(json.dumps(counts), flush=True)
"""


def _spawn(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_remote_reads_see_every_row_writers_pushed(cloud: SyncServer, tmp_path: Path) -> None:
    """Processes writing and pushing while others read on the remote: every count a reader
    sees only grows, and a read after the writers finished sees every session."""
    env = {"CPL_REPLICA_DIR": str(tmp_path / "w")}
    writers = [_spawn(WRITER, cloud.url, SECRET_TOKEN, f"w{k}", "12", env=env) for k in range(2)]
    readers = [
        _spawn(READER, cloud.url, SECRET_TOKEN, str(tmp_path / f"r{k}"), "8", env=env)
        for k in range(3)
    ]
    for proc in writers + readers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        if proc in readers:
            counts = [int(c) for c in out.strip().splitlines()[-1].strip("[]").split(",")]
            assert counts == sorted(counts) and all(0 <= c <= 24 for c in counts), counts
    client = _client(cloud.url, tmp_path / "final", 0)
    try:
        ids = {s.id for s in cpl.iter_sessions(page_size=5, client=client)}
        assert _store(client).remote_reads >= 5
    finally:
        client.shutdown(5)
    assert ids == {f"w{k}-{i:03d}" for k in range(2) for i in range(12)}
    assert not list(tmp_path.glob("r*/**/read-*.db"))
