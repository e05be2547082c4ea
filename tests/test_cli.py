"""The command-line tool, in-process (``main(argv)``) and as a real subprocess, on a populated
database file and against the real tursodb sync server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.cli import Column, fit_columns, fmt_cost, fmt_int, fmt_ms, main
from claude_parallel_logging.queries import get_session
from claude_parallel_logging.schema import SCHEMA_VERSION
from claude_parallel_logging.serialize import iso_utc
from tests.conftest import REPO, SECRET_TOKEN, SyncServer, query
from tests.populate import (
    GenSession,
    Populated,
    expected_search,
    expected_tokens,
    expected_usage,
    newest_first,
    populate,
    populated_database,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("cli"), 300, seed=7)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Run ``main(argv)`` in this process and capture what it prints."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run


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


# ----- sessions ---------------------------------------------------------------------------------


def test_sessions_table(populated: Populated, cli: Cli) -> None:
    r = cli("--database", str(populated.path), "sessions", "--limit", "12")
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STARTED", "(UTC)"]
    expected = newest_first(populated.sessions)[:12]
    rows = lines[1:13]
    assert [row.split()[0] for row in rows] == [s.id for s in expected]
    for row, s in zip(rows, expected):
        assert s.agent_type in row and s.model in row and s.status in row
        assert s.started_at[:10] in row
        if "cost_usd" in s.totals:
            assert f"${s.totals['cost_usd']:,.4f}" in row
    assert lines[-1].startswith("More sessions: add --cursor ")
    assert not ANSI.search(r.out)  # not a terminal: plain text


def test_sessions_json_pages_and_filters(populated: Populated, cli: Cli) -> None:
    db = ["--database", str(populated.path)]
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(100):
        r = cli(*db, "sessions", "--json", "--limit", "64", *cursor)
        assert r.code == 0
        data = r.json()
        assert isinstance(data, dict)
        seen += [s["id"] for s in data["sessions"]]
        if data["next_cursor"] is None:
            break
        cursor = ["--cursor", data["next_cursor"]]
    assert seen == [s.id for s in newest_first(populated.sessions)]

    r = cli(
        *db,
        "--json",
        "sessions",
        "--agent-type",
        "opencode",
        "--status",
        "error",
        "--limit",
        "1000",
    )
    got = [s["id"] for s in r.json()["sessions"]]
    assert got == [
        s.id
        for s in newest_first(populated.sessions)
        if s.agent_type == "opencode" and s.status == "error"
    ]
    r = cli(*db, "sessions", "--json", "--since", "2026-09-25", "--until", "2026-09-26")
    got = [s["id"] for s in r.json()["sessions"]]
    assert got == [s.id for s in newest_first(populated.sessions) if s.day == "2026-09-25"][:50]
    first = r.json()["sessions"][0]
    assert {"message_count", "tool_count", "total_tokens", "cost_usd", "duration_ms"} <= set(first)


def test_sessions_in_a_subprocess_matches_in_process(populated: Populated, cli: Cli) -> None:
    args = ("--database", str(populated.path), "sessions", "--json", "--model", "gpt-5")
    child = run_cli(*args)
    here = cli(*args)
    assert child.code == here.code == 0
    assert child.json() == here.json()
    plain = run_cli(*args[:-3], "--limit", "3")
    assert plain.code == 0 and len(plain.out.splitlines()) == 1 + 3 + 2


def test_empty_results_are_not_errors(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    db = ["--database", str(path)]
    r = cli(*db, "sessions")
    assert (r.code, r.out.strip()) == (0, "No sessions found.")
    r = cli(*db, "search", "x")
    assert (r.code, r.out.strip()) == (0, "No sessions match 'x'.")
    r = cli(*db, "stats", "--json")
    assert (r.code, r.json()) == (0, {"group_by": "agent_type", "rows": []})


# ----- show -------------------------------------------------------------------------------------


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


def test_duration_and_number_formats() -> None:
    assert [fmt_ms(x) for x in (None, 0, 850, 12_345, 245_000, 3_720_000)] == [
        "-", "0 ms", "850 ms", "12.3 s", "4m05s", "1h02m",
    ]  # fmt: skip
    assert (fmt_int(1234567), fmt_int(None), fmt_cost(0.00408), fmt_cost(None)) == (
        "1,234,567", "-", "$0.0041", "-",
    )  # fmt: skip


def test_show_transcript(populated: Populated, cli: Cli) -> None:
    s = _long_output_session(populated)
    r = cli("--database", str(populated.path), "show", s.id)
    assert r.code == 0 and r.err == ""
    out = r.out
    lines = out.splitlines()
    for t in s.tools:  # each call: its input, status, own duration and call id
        head = f"    tool {t.name}: {t.status}, {fmt_ms(t.duration_ms)}  [{t.tool_use_id}]"
        assert head in lines, head
        asked = s.messages[t.message_index or 0]
        call = f"  -> {t.name} {json.dumps(asked.tool_input, ensure_ascii=False)}"
        assert call in lines, call
        if t.input != asked.tool_input:  # changed on the execution: shown under it too
            assert f"      input: {json.dumps(t.input, ensure_ascii=False)}" in lines
    assert lines[-1] == expected_totals_line(s)
    assert out.splitlines()[0] == f"Session {s.id}"
    assert f"SDK session: {s.external_id}" in out
    assert s.messages[0].content in out  # the prompt
    answers = [m.content for m in s.messages if m.role == "assistant" and m.content]
    assert all(a[:40] in out for a in answers)
    for t in s.tools:
        assert f"tool {t.name}: {t.status}" in out
        if t.output:
            assert f"output ({len(t.output):,} chars)" in out
    long = next(t for t in s.tools if len(t.output or "") > 3000)
    assert long.output is not None
    assert f"more chars, {len(long.output):,} in total]" in out
    assert long.output not in out  # truncated

    full = cli("--database", str(populated.path), "show", s.id, "--max-chars", "0")
    assert long.output.splitlines()[-1] in full.out and "more chars" not in full.out


def test_show_running_session_without_totals(populated: Populated, cli: Cli) -> None:
    s = next(x for x in populated.sessions if x.status == "running" and x.shape == "opencode")
    r = cli("--database", str(populated.path), "show", s.id, "--max-chars", "0")
    assert r.code == 0
    assert "status: running" in r.out and "ended: -" in r.out
    totals = r.out.rstrip().splitlines()[-1]
    assert totals.startswith(f"Totals: {len(s.messages)} messages") and "cost" not in totals
    tokens_in = sum(m.input_tokens or 0 for m in s.messages)
    assert f"tokens {tokens_in:,} in" in totals  # summed over the messages
    for t in s.tools:
        if t.status == "running":
            assert f"tool {t.name}: running, -" in r.out


def test_show_lookups_and_exports(populated: Populated, cli: Cli, tmp_path: Path) -> None:
    s = populated.sessions[3]
    db = ["--database", str(populated.path)]
    for ref in (s.id, s.external_id, s.id[:10]):
        r = cli(*db, "show", ref, "--json")
        assert r.code == 0
        data = r.json()
        assert isinstance(data, dict)
        assert data["session"]["id"] == s.id
        assert [m["content"] for m in data["messages"]] == [m.content for m in s.messages]
        assert len(data["tool_executions"]) == len(s.tools)

    r = cli(*db, "show", s.id, "--format", "markdown")
    assert r.out.startswith(f"# Session `{s.id}`")
    assert r.out.count("```") % 2 == 0
    for t in s.tools:
        assert f"### Tool `{t.name}`: {t.status}" in r.out

    target = tmp_path / "export.md"
    r = cli(*db, "show", s.id, "--format", "markdown", "-o", str(target))
    assert r.code == 0 and r.out == "" and target.read_text().startswith("# Session")
    r = cli(*db, "show", s.id, "-o", str(tmp_path))
    assert_one_line_error(r, "is a directory")


def test_show_exports_are_complete(populated: Populated, cli: Cli) -> None:
    """The markdown export holds every text whole (the long tool output included) and the
    totals; the JSONL export is exactly what ``get_session`` returns, record by record."""
    s = _long_output_session(populated)
    db = ["--database", str(populated.path)]
    r = cli(*db, "show", s.id, "--format", "markdown")
    assert r.code == 0 and r.err == ""
    md = r.out
    long = next(t for t in s.tools if len(t.output or "") > 3000)
    assert long.output is not None
    assert f"Output ({len(long.output):,} chars):\n\n```\n{long.output}\n```\n" in md
    assert "more chars" not in md
    for m in s.messages:
        if m.content:
            assert m.content in md
    assert md.rstrip().splitlines()[-1] == expected_totals_line(s)
    assert f"| status | {s.status} |" in md and f"| SDK session | {s.external_id} |" in md

    r = cli(*db, "show", s.id, "--format", "jsonl")
    assert r.code == 0
    records = [json.loads(line) for line in r.out.splitlines()]
    config = cpl.TursoConfig(url=str(populated.path))
    client = cpl.TursoClient(config, cpl.Settings(config=config))
    try:
        detail = get_session(s.id, client=client)
    finally:
        client.shutdown(5)
    assert detail is not None
    want = json.loads(json.dumps(detail.to_dict()))
    kinds = [x.pop("type") for x in records]
    assert kinds[0] == "session" and kinds.count("session") == 1
    assert records[0] == want["session"]
    got_messages = [x for k, x in zip(kinds, records) if k == "message"]
    assert got_messages == want["messages"]  # in sequence order, every column
    got_tools = [x for k, x in zip(kinds, records) if k == "tool_execution"]
    assert sorted(got_tools, key=lambda t: t["id"]) == sorted(
        want["tool_executions"], key=lambda t: t["id"]
    )
    assert len(got_messages) == len(s.messages) and len(got_tools) == len(s.tools)
    # Each tool execution comes right after the message that asked for it.
    for i, (kind, rec) in enumerate(zip(kinds, records)):
        if kind == "tool_execution":
            owner = next(records[j] for j in range(i - 1, -1, -1) if kinds[j] == "message")
            assert rec["message_id"] == owner["id"]


def test_show_unknown_id(populated: Populated, cli: Cli) -> None:
    r = cli("--database", str(populated.path), "show", "no-such-id")
    assert_one_line_error(r, "no session 'no-such-id'")
    child = run_cli("--database", str(populated.path), "show", "no-such-id")
    assert_one_line_error(child, "no session 'no-such-id'")


# ----- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["100%", "snake_case", "it's", '"hello world"', "C:\\temp", "%"])
def test_search_special_characters(populated: Populated, cli: Cli, text: str) -> None:
    r = cli("--database", str(populated.path), "search", text, "--json", "--limit", "500")
    assert r.code == 0
    data = r.json()
    assert isinstance(data, dict) and data["query"] == text
    assert [h["session"]["id"] for h in data["hits"]] == expected_search(populated.sessions, text)


def test_search_table_and_subprocess(populated: Populated, cli: Cli) -> None:
    expected = expected_search(populated.sessions, "it's")
    r = cli("--database", str(populated.path), "search", "IT'S")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == [
        "SESSION",
        "STARTED",
        "(UTC)",
        "AGENT",
        "STATUS",
        "WHERE",
        "SNIPPET",
    ]
    assert [line.split()[0] for line in lines[1:]] == expected[:20]
    assert all("it's" in line.lower() for line in lines[1:])
    child = run_cli("--database", str(populated.path), "search", '"hello world"', "--json")
    assert child.code == 0
    got = [h["session"]["id"] for h in child.json()["hits"]]
    assert got == expected_search(populated.sessions, '"hello world"')[:20]
    child = run_cli("--database", str(populated.path), "search", "\\")
    assert child.code == 0 and "C:\\temp" in child.out


# ----- stats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["agent_type", "model", "day"])
def test_stats_json_matches_hand_computed(populated: Populated, cli: Cli, group_by: str) -> None:
    r = cli("--database", str(populated.path), "stats", "--group-by", group_by, "--json")
    assert r.code == 0
    data = r.json()
    assert isinstance(data, dict) and data["group_by"] == group_by
    expected = expected_usage(populated.sessions, group_by)
    assert [row["group"] for row in data["rows"]] == sorted(expected)
    for row in data["rows"]:
        for key, value in expected[row["group"]].items():
            assert row[key] == pytest.approx(value), (row["group"], key)


def test_stats_table(populated: Populated, cli: Cli) -> None:
    r = cli(
        "--database", str(populated.path), "stats", "--group-by", "model", "--since", "2026-09-28"
    )
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["MODEL", "SESSIONS", "SUCCESS"]
    subset = [s for s in populated.sessions if s.started_at >= "2026-09-28"]
    expected = expected_usage(subset, "model")
    for line in lines[1:]:
        group, sessions, success = line.split()[:3]
        exp = expected[group]
        assert int(sessions) == exp["sessions"]
        assert success == f"{exp['success_rate'] * 100:.1f}%"
        assert f"${exp['cost_usd']:,.4f}" in line
    assert len(lines) == 1 + len(expected)


# ----- sync and doctor (local) ------------------------------------------------------------------


def test_doctor_and_sync_local(populated: Populated, cli: Cli) -> None:
    db = ["--database", str(populated.path)]
    r = cli(*db, "doctor")
    assert r.code == 0, r
    assert "[OK  ] schema" in r.out and f"version {SCHEMA_VERSION} (current)" in r.out
    assert "300 sessions" in r.out and "local file" in r.out
    r = cli(*db, "doctor", "--json")
    data = r.json()
    assert isinstance(data, dict) and data["ok"] is True
    assert {c["check"] for c in data["checks"]} >= {"database", "connectivity", "schema"}
    r = cli(*db, "sync")
    assert r.code == 0 and "nothing to push" in r.out
    r = cli(*db, "sync", "--json")
    data = r.json()
    assert isinstance(data, dict) and data["ok"] is True and data["mode"] == "local"
    assert data["stats"]["pending"] == 0


def test_sync_progress_of_this_process_goes_to_stderr(tmp_path: Path, cli: Cli) -> None:
    """Events this process still holds are written with a progress bar, on stderr only."""
    pytest.importorskip("rich")
    path = tmp_path / "pending.db"
    cpl.configure(database_url=str(path), flush_interval=60, batch_size=100)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="pending", agent_type="a", model="m"))
    for i in range(2000):
        lg.log_message("user", f"message {i}")
    assert cpl.stats()["pending"] > 1000  # not written yet: the flush interval is long
    r = cli("sync", "--color", "always")
    assert r.code == 0, r
    report = ANSI.sub("", r.out).splitlines()
    assert report[1] == "this process: 2,001 written, 0 pending, 0 pushes, 0 push failures"
    bar = ANSI.sub("", r.err)
    total = re.search(r"writing this process's events .*?(\d+)/(\d+) events", bar)
    assert total is not None and int(total.group(2)) > 1000
    assert f"{total.group(2)}/{total.group(2)} events" in bar  # and it finished
    assert "━" not in r.out
    r = cli("sync", "--json", "--color", "always")  # nothing pending now, still pure JSON
    assert r.json()["stats"]["written"] == 2001 and r.err == ""
    assert query(path, "SELECT COUNT(*) FROM messages") == [(2000,)]


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


# ----- bad input --------------------------------------------------------------------------------


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


# ----- terminal output --------------------------------------------------------------------------


def test_colour_tables_with_rich(
    populated: Populated, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "200")
    db = ["--database", str(populated.path)]
    r = cli(*db, "sessions", "--limit", "3", "--color", "always")
    assert r.code == 0 and ANSI.search(r.out)
    plain = ANSI.sub("", r.out)
    for s in newest_first(populated.sessions)[:3]:
        assert s.id[:8] in plain
    r = cli(*db, "show", populated.sessions[0].id, "--color", "always")
    assert r.code == 0 and ANSI.search(r.out) and "Totals:" in ANSI.sub("", r.out)
    r = cli(*db, "sessions", "--limit", "3", "--color", "never")
    assert not ANSI.search(r.out)


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


def test_tables_fit_an_80_column_terminal(
    populated: Populated, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing wraps: one line per row, each id whole or as a unique prefix that ``show``
    resolves to that very session, each date whole; minor columns give way, and say so."""
    pytest.importorskip("rich")
    from rich.cells import cell_len

    db = ["--database", str(populated.path)]
    expected = newest_first(populated.sessions)[:12]
    lines = rich_run(cli, monkeypatch, 80, *db, "sessions", "--limit", "12")
    assert all(cell_len(line) <= 80 for line in lines[:14])  # the table (not the cursor)
    assert lines[0].split()[:4] == ["ID", "STARTED", "(UTC)", "AGENT"]
    rows = lines[2:14]
    for row, s in zip(rows, expected, strict=True):
        ref = row.split()[0]
        assert len(ref) >= 8 and s.id.startswith(ref)
        assert resolve(cli, db, ref) == s.id
        assert row.split()[1:3] == s.started_at[:19].split("T")
        assert ISO_SECONDS.search(row) and s.status in row.split()
        if s.totals.get("cost_usd") is not None:
            assert f"${s.totals['cost_usd']:,.4f}" in row
        assert s.model in row.split()  # the model name is the last column to be cut
    # Token columns give way to the model name (issue 11, item 6), and the note says so.
    notes = [line for line in lines if line.startswith("(too narrow for MSGS, TOOLS, ")]
    assert len(notes) == 1 and "TOK IN" in " ".join(lines)
    assert lines[-1].startswith("More sessions: add --cursor ")

    hits = expected_search(populated.sessions, "it's")[:20]
    lines = rich_run(cli, monkeypatch, 80, *db, "search", "it's")
    assert all(cell_len(line) <= 80 for line in lines)
    rows = [line for line in lines[2:] if line and not line.startswith("(")]
    assert [resolve(cli, db, row.split()[0]) for row in rows] == hits
    assert all("it's" in row.lower() or "…" in row for row in rows)

    lines = rich_run(cli, monkeypatch, 80, *db, "stats", "--group-by", "model")
    assert all(cell_len(line) <= 80 for line in lines)
    models = sorted({s.model for s in populated.sessions})
    assert [line.split()[0] for line in lines[2 : 2 + len(models)]] == models
    for line, model in zip(lines[2:], models):
        exp = expected_usage(populated.sessions, "model")[model]
        assert line.split()[1:3] == [str(exp["sessions"]), f"{exp['success_rate'] * 100:.1f}%"]


def test_wide_terminal_shows_whole_ids_and_every_column(
    populated: Populated, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rich")
    db = ["--database", str(populated.path)]
    lines = rich_run(cli, monkeypatch, 200, *db, "sessions", "--limit", "5")
    assert lines[0].split() == [
        "ID", "STARTED", "(UTC)", "AGENT", "MODEL", "STATUS", "MSGS", "TOOLS", "TOK", "IN",
        "TOK", "OUT", "CACHE", "R+W", "COST", "WALL", "TIME", "AGENT", "TIME",
    ]  # fmt: skip
    for row, s in zip(lines[2:7], newest_first(populated.sessions), strict=False):
        cells = row.split()
        assert cells[0] == s.id and cells[1:3] == s.started_at[:19].split("T")
        assert cells[3:5] == [s.agent_type, s.model]
    assert not any(line.startswith("(too narrow") for line in lines)


def test_fit_columns_order_of_giving_way() -> None:
    columns = [
        Column("ID", keep=True),
        Column("NAME", shrink=4),
        Column("A", right=True, drop=1),
        Column("B", right=True, drop=2),
    ]
    rows = [["0123456789abcdef", "a long name here", "1,000", "22"]]

    def fit(width: int) -> tuple[Any, list[list[str]]]:
        return fit_columns(columns, rows, width, lambda n: 2 * (n - 1), {0: ["01234567"]})

    layout, texts = fit(100)  # everything fits: nothing changes
    assert (layout.visible, layout.widths, layout.compact) == ([0, 1, 2, 3], [16, 16, 5, 2], False)
    assert texts == rows
    layout, texts = fit(40)  # the name is cut first
    assert (layout.visible, layout.compact) == ([0, 1, 2, 3], False)
    assert layout.widths == [16, 40 - 16 - 5 - 2 - 6, 5, 2]
    layout, texts = fit(30)  # then the id gets its compact form
    assert layout.compact and texts[0][0] == "01234567" and layout.visible == [0, 1, 2, 3]
    layout, _ = fit(21)  # then B goes (the higher rank), then A
    assert (layout.visible, layout.hidden) == ([0, 1, 2], ["B"])
    layout, _ = fit(14)
    assert (layout.visible, layout.hidden, layout.widths) == ([0, 1], ["B", "A"], [8, 4])
    layout, _ = fit(5)  # never drops a kept column, never below the minimums
    assert layout.visible == [0, 1] and layout.widths == [8, 4]


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


def test_plain_text_when_rich_is_missing(populated: Populated) -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from claude_parallel_logging.cli import main\n"
        f"sys.exit(main(['--database', {str(populated.path)!r}, 'stats', '--color', 'always']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert not ANSI.search(proc.stdout)
    assert proc.stdout.splitlines()[0].split()[:2] == ["AGENT", "TYPE"]


# ----- cloud mode -------------------------------------------------------------------------------

STALE_CHILD = """
import sys, time, claude_parallel_logging as cpl
cpl.configure(database_url=sys.argv[1], auth_token=sys.argv[2], flush_interval=0.01,
              push_interval=3600)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="pushed-before-kill", agent_type="child", model="m"))
lg.end_session()
assert cpl.flush(15)
lg = cpl.ConversationLogger()
lg.start_session(cpl.SessionInfo(id="stale-only", agent_type="child", model="m"))
lg.log_message("user", "only in the replica of a killed process")
lg.end_session()
written = cpl.stats()["written"]
deadline = time.time() + 20
while cpl.stats()["written"] < 5 and time.time() < deadline:
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)
"""


def test_cloud_mode_end_to_end(cloud: SyncServer, tmp_path: Path) -> None:
    """Populate through the shared cloud client, then use the CLI in other processes (their own
    replicas): everything they show came from the remote. Then a replica left by a killed
    process is found by ``doctor`` and pushed by ``sync``. The token never appears."""
    writer = cpl.get_turso_client()
    assert writer is not None
    sessions = populate(writer, 200, seed=9)
    env = {
        "TURSO_DATABASE_URL": cloud.url,
        "TURSO_AUTH_TOKEN": SECRET_TOKEN,
        "CPL_REPLICA_DIR": str(tmp_path / "cli-replicas"),
    }
    outputs: list[Result] = []

    def run(*argv: str) -> Result:
        r = run_cli(*argv, env=env)
        outputs.append(r)
        return r

    r = run("sessions", "--json", "--limit", "1000")
    assert r.code == 0, r.err
    assert [s["id"] for s in r.json()["sessions"]] == [s.id for s in newest_first(sessions)]
    one = sessions[5]
    r = run("show", one.external_id)
    assert r.code == 0 and r.out.startswith(f"Session {one.id}")
    r = run("search", "snake_case", "--json", "--limit", "100")
    got = [h["session"]["id"] for h in r.json()["hits"]]
    assert got == expected_search(sessions, "snake_case")
    r = run("stats", "--group-by", "day", "--json")
    expected = expected_usage(sessions, "day")
    rows = r.json()["rows"]
    assert {row["group"]: row["sessions"] for row in rows} == {
        k: v["sessions"] for k, v in expected.items()
    }
    r = run("doctor")
    assert r.code == 0, r.out
    assert "cloud" in r.out and "pulled from the remote" in r.out and "200 sessions" in r.out
    assert f"<secret: {len(SECRET_TOKEN)} chars>" in r.out
    r = run("sync")
    assert r.code == 0 and "0 found" in r.out

    # A process killed before pushing leaves its replica behind: doctor sees it, sync pushes it.
    child = subprocess.Popen(
        [sys.executable, "-c", STALE_CHILD, cloud.url, SECRET_TOKEN],
        env={**os.environ, "PYTHONPATH": str(REPO), "CPL_REPLICA_DIR": env["CPL_REPLICA_DIR"]},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        r = run("doctor", "--json")
        replicas = next(c for c in r.json()["checks"] if c["check"] == "pending (replicas)")
        assert "1 in use by running processes" in replicas["detail"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    r = run("sessions", "--json", "--agent-type", "child")
    assert [s["id"] for s in r.json()["sessions"]] == ["pushed-before-kill"]
    r = run("doctor")
    assert r.code == 0 and "[WARN] pending (replicas)" in r.out and "1 left by exited" in r.out
    r = run("sync", "--color", "always")
    assert r.code == 0, r.err
    report = ANSI.sub("", r.out)
    assert re.search(r"1 found, 1 pushed \(\d+ changes\), 0 in use by running processes", report)
    assert "━" not in r.out  # the progress bar is on stderr, the report alone on stdout
    bar = ANSI.sub("", r.err)
    assert "pushing 1 replica(s) of exited processes" in bar and "1/1 replicas" in bar
    assert re.search(r"(\d+)/\1 changes", bar)
    r = run("sessions", "--json", "--agent-type", "child")
    assert [s["id"] for s in r.json()["sessions"]] == ["stale-only", "pushed-before-kill"]
    r = run("search", "ONLY IN THE REPLICA")
    assert r.code == 0 and "stale-only" in r.out
    r = run("sync", "--json")
    assert r.json()["replicas"] == {"found": 0, "pushed": 0, "changes": 0, "in_use": 0, "failed": 0}

    # Errors in cloud mode are one line too, and never show the token.
    r = run("--auth-token", SECRET_TOKEN, "sessions", "--limit", SECRET_TOKEN)
    assert_one_line_error(r, "[REDACTED]", code=2)
    r = run("show", "missing-session")
    assert_one_line_error(r, "no session")
    cloud.stop()
    r = run("sessions")
    assert_one_line_error(r, "cannot open database", cloud.url)
    r = run("sync")
    assert_one_line_error(r, "cannot reach")
    r = run("doctor")
    assert r.code == 1 and "[FAIL] connectivity" in r.out
    for result in outputs:
        assert SECRET_TOKEN not in result.out + result.err
        assert "Traceback" not in result.err


def test_sync_json_stays_json_on_a_terminal(cloud: SyncServer, tmp_path: Path) -> None:
    """``sync --json`` with a replica to push and colour forced: stdout is one JSON document
    (no progress bar in it, nothing on stderr), and the replica's rows reach the server."""
    replicas = str(tmp_path / "json-replicas")
    child = subprocess.Popen(
        [sys.executable, "-c", STALE_CHILD, cloud.url, SECRET_TOKEN],
        env={**os.environ, "PYTHONPATH": str(REPO), "CPL_REPLICA_DIR": replicas},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    assert cloud.query("SELECT id FROM sessions WHERE id = 'stale-only'") == []
    env = {
        "TURSO_DATABASE_URL": cloud.url,
        "TURSO_AUTH_TOKEN": SECRET_TOKEN,
        "CPL_REPLICA_DIR": replicas,
    }
    r = run_cli("sync", "--json", "--color", "always", env=env)
    assert (r.code, r.err) == (0, ""), r
    data = json.loads(r.out)  # the whole output parses: nothing else was drawn on stdout
    assert data["ok"] is True and data["mode"] == "cloud"
    pushed = data["replicas"]
    assert (pushed["found"], pushed["pushed"], pushed["in_use"], pushed["failed"]) == (1, 1, 0, 0)
    assert pushed["changes"] >= 2  # the session and its message, at least
    assert SECRET_TOKEN not in r.out
    assert cloud.query("SELECT id FROM sessions WHERE id = 'stale-only'") == [("stale-only",)]
    rows = cloud.query("SELECT content FROM messages WHERE session_id = 'stale-only'")
    assert rows == [("only in the replica of a killed process",)]


def test_remote_url_option_in_process(cloud: SyncServer, cli: Cli) -> None:
    writer = cpl.get_turso_client()
    assert writer is not None
    populate(writer, 30, seed=3)
    cpl.reset_configuration()
    r = cli("--database", cloud.url, "--auth-token", SECRET_TOKEN, "sessions", "--json")
    assert r.code == 0 and len(r.json()["sessions"]) == 30
    r = cli("--database", cloud.url, "--auth-token", SECRET_TOKEN, "doctor")
    assert r.code == 0 and SECRET_TOKEN not in r.out + r.err
