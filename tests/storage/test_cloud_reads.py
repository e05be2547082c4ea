"""Cloud reads through persistent read replicas (``storage/reader.py``), against the real
``tursodb --sync-server``: a later read downloads only what changed, several processes read at
once, and readers see every row writers pushed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.storage.cloud import CloudStore
from claude_parallel_logging.storage.reader import SLOTS

from ..conftest import REPO, SECRET_TOKEN, SyncServer

BIG = "x" * 20_000  # per message: 50 sessions of 2 messages hold ~2 MB


def _write_sessions(first: int, count: int, text: str = BIG) -> None:
    for i in range(first, first + count):
        lg = cpl.ConversationLogger()
        lg.start_session(cpl.SessionInfo(id=f"s-{i:04d}", agent_type="a", model="m"))
        lg.log_message("user", f"{text} {i}")
        lg.log_message("assistant", f"{text} answer {i}")
        lg.end_session("completed")
    assert cpl.flush(30)


def _reader(server: SyncServer, replica_dir: Path) -> cpl.TursoClient:
    """A client of its own, as another process would have (its own store, same replica dir)."""
    config = cpl.TursoConfig(server.url, auth_token=SECRET_TOKEN)
    return cpl.TursoClient(config, cpl.Settings(config=config, replica_dir=str(replica_dir)))


def _read(client: cpl.TursoClient) -> tuple[int, int]:
    """Sessions seen, and the bytes the read's pull downloaded."""
    seen = len(cpl.list_sessions(limit=1000, client=client))
    store = client.reader()
    assert isinstance(store, CloudStore) and store.last_pull_bytes is not None
    return seen, store.last_pull_bytes


def test_a_later_read_downloads_only_what_changed(cloud: SyncServer, tmp_path: Path) -> None:
    _write_sessions(0, 50)
    replicas = tmp_path / "read-replicas"
    first = _reader(cloud, replicas)
    try:
        seen, pulled = _read(first)  # the first read on this machine downloads everything
        assert seen == 50 and pulled > 2_000_000, pulled
    finally:
        first.shutdown(5)
    # A new client (as in a new process) reuses the replica: nothing new, almost nothing pulled.
    second = _reader(cloud, replicas)
    try:
        seen, pulled = _read(second)
        assert seen == 50 and pulled < 20_000, pulled
        path = second.reader().last_read_path  # type: ignore[attr-defined]
        assert path is not None and os.path.basename(path) == "read-0.db"
    finally:
        second.shutdown(5)
    _write_sessions(50, 1, text="small")
    third = _reader(cloud, replicas)
    try:
        seen, pulled = _read(third)
        assert seen == 51, seen
        assert 0 < pulled < 200_000, pulled  # the new session's pages, not the ~2 MB database
    finally:
        third.shutdown(5)


READER = """
import json, sys, time
import claude_parallel_logging as cpl
url, token, replica_dir, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = cpl.TursoConfig(url, auth_token=token)
client = cpl.TursoClient(config, cpl.Settings(config=config, replica_dir=replica_dir))
counts = []
for _ in range(rounds):
    counts.append(len(cpl.list_sessions(limit=10000, client=client)))
print(json.dumps(counts), flush=True)
"""


def _start_readers(
    server: SyncServer, replica_dir: Path, n: int, rounds: int
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return [
        subprocess.Popen(
            [sys.executable, "-c", READER, server.url, SECRET_TOKEN, str(replica_dir), str(rounds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


def _results(procs: list[subprocess.Popen[str]]) -> list[list[int]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_several_processes_read_at_once(cloud: SyncServer, tmp_path: Path) -> None:
    _write_sessions(0, 20, text="text")
    replica_dir = tmp_path / "shared"
    results = _results(_start_readers(cloud, replica_dir, SLOTS + 2, 5))
    assert all(counts == [20] * 5 for counts in results), results
    files = sorted(p.name for p in (replica_dir).rglob("*.db"))
    assert files and all(name.startswith("read-") for name in files), files  # no private r-* left
    assert len(files) <= SLOTS


WRITER = """
import sys
import claude_parallel_logging as cpl
url, token, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cpl.configure(database_url=url, auth_token=token, flush_interval=0.02, push_interval=0.2)
for i in range(count):
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=f"{name}-{i:03d}", agent_type="w", model="m"))
    lg.log_message("user", "hello " * 200)
    lg.end_session("completed")
    assert cpl.flush(30)
print("done", flush=True)
"""


def test_readers_see_every_row_writers_pushed(cloud: SyncServer, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CPL_REPLICA_DIR": str(tmp_path / "w")}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, cloud.url, SECRET_TOKEN, f"w{k}", "15"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    readers = _start_readers(cloud, tmp_path / "shared", 3, 8)
    for w in writers:
        _, stderr = w.communicate(timeout=120)
        assert w.returncode == 0, stderr[-2000:]
    for counts in _results(readers):
        assert counts == sorted(counts) and all(0 <= c <= 30 for c in counts), counts
    # Every pushed row, through the same persistent replicas the readers brought up to date.
    final = _results(_start_readers(cloud, tmp_path / "shared", 1, 1))
    assert final == [[30]]
    client = _reader(cloud, tmp_path / "shared")
    try:
        ids = {s.id for s in cpl.iter_sessions(client=client)}
    finally:
        client.shutdown(5)
    assert ids == {f"w{k}-{i:03d}" for k in range(2) for i in range(15)}
