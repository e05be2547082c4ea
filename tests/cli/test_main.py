"""The entry point: bad input is one line and an exit status, help and version, console
scripts, a closed pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.cli.helpers import (
    Cli,
    assert_one_line_error,
    run_cli,
)
from tests.conftest import REPO
from tests.populate import (
    Populated,
)


def test_bad_input_is_one_line_and_non_zero(populated: Populated, tmp_path: Path, cli: Cli) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    db = ["--database", str(populated.path)]
    cases: list[tuple[list[str], int, str]] = [
        (["sessions"], 1, "no database configured"),
        (["--database", str(tmp_path), "sessions"], 1, "is a directory"),
        (["--database", str(tmp_path / "nope.db"), "show", "x"], 1, "does not exist"),
        (["--database", str(garbage), "sessions"], 1, "not a database"),
        (["--database", str(garbage), "stats"], 1, "not a database"),
        (["--database", "http://127.0.0.1:9/db", "sessions"], 1, "no auth token"),
        ([*db, "sessions", "--since", "last tuesday"], 2, "not a time"),
        ([*db, "sessions", "--cursor", "garbage"], 2, "invalid cursor"),
        ([*db, "search", ""], 2, "must not be empty"),
        ([*db, "sessions", "--limit", "0"], 2, "must be at least 1"),
        ([*db, "stats", "--group-by", "provider"], 2, "invalid choice"),
        ([*db, "frobnicate"], 2, "invalid choice"),
        ([*db, "show"], 2, "required"),
    ]
    for argv, code, words in cases:
        assert_one_line_error(cli(*argv), words, code=code)
    for argv, code, words in cases[:6] + cases[9:10]:
        assert_one_line_error(run_cli(*argv), words, code=code)


def test_no_command_prints_help_and_version() -> None:
    r = run_cli()
    assert r.code == 2 and "usage:" in r.err and "sessions" in r.err
    r = run_cli("--version")
    assert r.code == 0 and r.out.strip() == f"cpl {cpl.__version__}"


def test_console_scripts_work_from_any_directory(populated: Populated, tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    scripts = [bindir / name for name in ("cpl", "claude-parallel-logging")]
    if not all(p.exists() for p in scripts):
        pytest.skip("the package is not installed with its console scripts")
    for script in scripts:
        proc = subprocess.run(
            [str(script), "--database", str(populated.path), "sessions", "--json", "--limit", "2"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)["sessions"]) == 2


def test_broken_pipe_exits_quietly(populated: Populated) -> None:
    """``cpl ... | head``: the reader closes early; no traceback, no error, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_parallel_logging", "--database", str(populated.path),
         "sessions", "--json", "--limit", "300"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like head: gone long before the 100+ KB are written
    try:
        code = proc.wait(60)
    finally:
        proc.kill()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert first == b"{\n"
    assert (code, err) == (0, "")
