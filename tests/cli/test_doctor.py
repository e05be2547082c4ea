"""``cpl doctor``: the checks, problems reported, and a remote given as an option."""

from __future__ import annotations

import os
from pathlib import Path

import claude_parallel_logging as cpl
from tests.cli.helpers import (
    Cli,
)
from tests.conftest import SECRET_TOKEN, SyncServer
from tests.populate import (
    populate,
)


def test_doctor_reports_problems(tmp_path: Path, cli: Cli) -> None:
    r = cli("--database", str(tmp_path / "missing.db"), "doctor")
    assert r.code == 0 and "[WARN] connectivity" in r.out and "does not exist" in r.out
    assert not (tmp_path / "missing.db").exists()
    r = cli("--database", str(tmp_path), "doctor")
    assert r.code == 1 and "[FAIL] connectivity" in r.out and "directory" in r.out
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    r = cli("--database", str(garbage), "doctor", "--json")
    data = r.json()
    assert r.code == 1 and isinstance(data, dict) and data["ok"] is False


def test_remote_url_option_in_process(cloud: SyncServer, cli: Cli) -> None:
    writer = cpl.get_turso_client()
    assert writer is not None
    populate(writer, 30, seed=3)
    cpl.reset_configuration()
    r = cli("--database", cloud.url, "--auth-token", SECRET_TOKEN, "sessions", "--json")
    assert r.code == 0 and len(r.json()["sessions"]) == 30
    r = cli("--database", cloud.url, "--auth-token", SECRET_TOKEN, "doctor")
    assert r.code == 0 and SECRET_TOKEN not in r.out + r.err
    assert "1 shared read replica(s)" in r.out  # the one `sessions` left for later reads
