"""What the CLI tests share: running ``main`` or a real ``cpl`` process, and checking errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from claude_parallel_logging.cli.format import fmt_ms
from claude_parallel_logging.payload import iso_utc
from tests.conftest import REPO
from tests.populate import (
    GenSession,
    Populated,
    expected_tokens,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """``python -m claude_parallel_logging`` in a child process with a clean environment."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("TURSO_", "CPL_")) or k in (
            "CPL_TURSODB_BIN", "CPL_REPLICA_DIR",
        )
    }  # fmt: skip
    full = {**base, **(env or {}), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "claude_parallel_logging", *argv],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(r: Result, *words: str, code: int = 1) -> None:
    assert r.code == code, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert re.match(r"cpl( \w+)?: error: ", lines[0]), r.err
    assert "Traceback" not in r.err
    for word in words:
        assert word in lines[0], (word, lines[0])


def rich_run(cli: Cli, monkeypatch: pytest.MonkeyPatch, columns: int, *argv: str) -> list[str]:
    """Lines a terminal ``columns`` wide shows (colour codes removed)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    r = cli(*argv, "--color", "always")
    assert r.code == 0 and r.err == "", r
    assert ANSI.search(r.out)
    return ANSI.sub("", r.out).splitlines()


def resolve(cli: Cli, db: list[str], ref: str) -> str:
    r = cli(*db, "show", ref, "--json")
    assert r.code == 0, (ref, r.err)
    data = r.json()
    assert isinstance(data, dict)
    return str(data["session"]["id"])


ISO_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _long_output_session(populated: Populated) -> GenSession:
    for s in populated.sessions:
        if s.status == "completed" and any(len(t.output or "") > 3000 for t in s.tools):
            return s
    raise AssertionError("the population has no long tool output")


def expected_totals_line(s: GenSession) -> str:
    """The transcript's last line for a finished session, from the generated data."""
    failed = sum(t.status == "error" for t in s.tools)
    n = len(s.tools)
    tools = f"{n:,} tool call{'' if n == 1 else 's'}" + (f" ({failed} failed)" if failed else "")
    t = s.totals
    m = len(s.messages)
    parts = [f"{m:,} message{'' if m == 1 else 's'}", tools]
    if "input_tokens" in t:
        parts.append(
            f"tokens {t['input_tokens']:,} in, {t['output_tokens']:,} out,"
            f" {t['cache_read_tokens']:,} cache read, {t['cache_creation_tokens']:,} cache write"
        )
    else:  # OpenCode-shaped: summed over the messages
        itok, otok = expected_tokens(s)
        parts.append(f"tokens {itok:,} in, {otok:,} out")
    parts.append(f"cost ${t['cost_usd']:,.4f}")
    if "num_turns" in t:
        turns = t["num_turns"]
        parts.append(f"{turns} turn{'' if turns == 1 else 's'}")
    parts.append(f"wall time {fmt_ms(wall_ms(s))}")
    parts.append(f"agent-reported time {fmt_ms(t['duration_ms'])}")
    return "Totals: " + "; ".join(parts)


def wall_ms(s: GenSession) -> int:
    """Ended minus started, as stored (milliseconds, truncated) from the generated times."""
    ended = s.started + s.totals["duration_ms"] / 1000

    def stored(t: float) -> datetime:
        return datetime.fromisoformat(iso_utc(t).replace("Z", "+00:00"))

    return round((stored(ended) - stored(s.started)).total_seconds() * 1000)
