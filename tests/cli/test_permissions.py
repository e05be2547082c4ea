"""Databases the user may not write or not read, as another user sees them.

pyturso opens every database read-write, so a file owned by another user (0644) or on a
read-only mount used to be unreadable ("open: PermissionDenied"). Reads now use a private
snapshot copy; a file that cannot be read at all is one clear line. The CLI runs in a child
that drops root to ``nobody`` (65534) after importing what it needs (the interpreter itself
lives under /root, which ``nobody`` cannot enter).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.conftest import REPO
from tests.populate import GenSession, newest_first, populate

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to run the CLI as another user",
)

CHILD = """
import os, sys
import claude_parallel_logging, claude_parallel_logging.cli as cli
import claude_parallel_logging.config, claude_parallel_logging.query
import claude_parallel_logging.schema, claude_parallel_logging.storage
import claude_parallel_logging.write
import turso, shutil, tempfile, json, glob, importlib.metadata, encodings.idna, pkgutil
# The package imports its modules on first use: load them all while the venv is still readable.
for info in pkgutil.walk_packages(claude_parallel_logging.__path__, "claude_parallel_logging."):
    if not info.name.startswith(("claude_parallel_logging.testing", "claude_parallel_logging.integrations")):
        importlib.import_module(info.name)
for dist in ("claude-parallel-logging", "pyturso", "rich"):
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
os.setgroups([])
os.setgid(%(uid)d)
os.setuid(%(uid)d)
assert os.geteuid() == %(uid)d
sys.exit(cli.main(sys.argv[1:]))
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


def as_nobody(*argv: str, tmpdir: Path) -> Result:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TURSO_", "CPL_"))
    }  # fmt: skip
    env.update(PYTHONPATH=str(REPO), TMPDIR=str(tmpdir), HOME=str(tmpdir))
    env["XDG_CACHE_HOME"] = str(tmpdir.parent / "cache")  # the derived read indexes
    proc = subprocess.run(
        [sys.executable, "-c", CHILD % {"uid": NOBODY}, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmpdir,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(r: Result, *words: str) -> None:
    assert r.code == 1, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpl: error: "), r.err
    assert "Traceback" not in r.err
    for word in words:
        assert word in lines[0], (word, lines[0])


@dataclass
class Shared:
    root: Path  # 0755, owned by root
    db: Path  # 0644, owned by root
    scratch: Path  # nobody's TMPDIR
    sessions: list[GenSession]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shared() -> Iterator[Shared]:
    root = Path(tempfile.mkdtemp(prefix="cpl-perm-", dir="/tmp"))
    try:
        root.chmod(0o755)
        db = root / "logs.db"
        config = cpl.TursoConfig(url=str(db))
        client = cpl.TursoClient(config, cpl.Settings(config=config, flush_interval=0.05))
        try:
            sessions = populate(client, 25, seed=44)
        finally:
            assert client.shutdown(10)
        for p in root.iterdir():
            p.chmod(0o644)
        scratch = root / "scratch"
        scratch.mkdir()
        os.chown(scratch, NOBODY, NOBODY)
        (root / "cache").mkdir()
        os.chown(root / "cache", NOBODY, NOBODY)
        yield Shared(root, db, scratch, sessions)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_another_users_file_is_read_through_a_snapshot(shared: Shared) -> None:
    before = {p.name: digest(p) for p in shared.root.glob("logs.db*")}
    db = ("--database", str(shared.db))
    expected = newest_first(shared.sessions)

    r = as_nobody(*db, "sessions", "--json", "--limit", "100", tmpdir=shared.scratch)
    assert (r.code, r.err) == (0, ""), r
    assert [s["id"] for s in json.loads(r.out)["sessions"]] == [s.id for s in expected]

    one = expected[3]
    r = as_nobody(*db, "show", one.id[:10], tmpdir=shared.scratch)
    assert r.code == 0 and r.out.startswith(f"Session {one.id}\n"), r
    assert one.messages[0].content in r.out

    r = as_nobody(*db, "search", one.messages[0].content, "--json", tmpdir=shared.scratch)
    assert r.code == 0 and one.id in [h["session"]["id"] for h in json.loads(r.out)["hits"]]

    r = as_nobody(*db, "stats", "--json", tmpdir=shared.scratch)
    assert r.code == 0
    assert sum(row["sessions"] for row in json.loads(r.out)["rows"]) == len(shared.sessions)

    r = as_nobody(*db, "doctor", tmpdir=shared.scratch)
    assert r.code == 0, r
    assert "[WARN] permissions" in r.out and "not writable by this user" in r.out
    assert "[OK  ] connectivity" in r.out and f"{len(shared.sessions)} sessions" in r.out

    # Nothing was written: not the file, not next to it; the snapshots are gone.
    assert {p.name: digest(p) for p in shared.root.glob("logs.db*")} == before
    assert list(shared.scratch.iterdir()) == []
    # ... but the reader's own derived indexes of it are in its cache directory
    cache = shared.root / "cache" / "claude-parallel-logging"
    assert list((cache / "search").glob("*.sqlite")) and list((cache / "rollups").glob("*.sqlite"))


def test_unreadable_file_is_one_clear_line(shared: Shared) -> None:
    shared.db.chmod(0o000)
    db = ("--database", str(shared.db))
    for argv in (("sessions",), ("show", shared.sessions[0].id), ("search", "x"), ("stats",)):
        r = as_nobody(*db, *argv, tmpdir=shared.scratch)
        assert_one_line_error(r, str(shared.db), "not readable")
    r = as_nobody(*db, "doctor", tmpdir=shared.scratch)
    assert r.code == 1 and "[FAIL] connectivity" in r.out and "not readable" in r.out
    assert "Traceback" not in r.err

    shared.db.chmod(0o644)
    (shared.root / "logs.db-wal").chmod(0o000)  # the WAL holds rows too: no half reads
    r = as_nobody(*db, "sessions", tmpdir=shared.scratch)
    assert_one_line_error(r, "logs.db-wal is not readable")

    (shared.root / "logs.db-wal").chmod(0o644)
    shared.root.chmod(0o700)  # the directory cannot even be entered
    r = as_nobody(*db, "sessions", tmpdir=shared.scratch)
    assert_one_line_error(r, "permission denied on a parent directory")
