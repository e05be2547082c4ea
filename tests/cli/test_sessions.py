"""``cpl sessions``: the listing, its pages, filters and JSON."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import (
    ANSI,
    Cli,
    run_cli,
)
from tests.populate import (
    Populated,
    newest_first,
)


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
