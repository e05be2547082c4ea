"""``cpl`` pages with nothing but ``--cursor``, exit 2 for argument values it cannot use (1 for
runtime errors), and says why a short id prefix finds nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from claude_parallel_logging import query as q
from claude_parallel_logging.query import times
from tests.cli.helpers import Cli, Result, assert_one_line_error, run_cli
from tests.populate import (
    BASE_TIME,
    SPAN_DAYS,
    GenSession,
    Populated,
    newest_first,
    populated_database,
)

NOW = datetime.fromtimestamp(BASE_TIME + SPAN_DAYS * 86400, tz=timezone.utc)
HINT = re.compile(r"^More sessions: add --cursor (\S+)$")


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    return populated_database(tmp_path_factory.mktemp("cli-usage"), 120, seed=41)


@pytest.fixture
def db(populated: Populated) -> list[str]:
    return ["--database", str(populated.path)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr(times, "_now", c)
    yield c


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def table_page(r: Result) -> tuple[list[str], str | None]:
    """The ids of a plain-text sessions table and the cursor its last line offers."""
    assert r.code == 0 and r.err == "", r
    lines = r.out.splitlines()
    assert lines[0].startswith("ID ")
    hint = HINT.match(lines[-1])
    rows = lines[1:-2] if hint else lines[1:]
    if hint:
        assert lines[-2] == ""
    return [row.split()[0] for row in rows], hint.group(1) if hint else None


def walk_table(cli: Cli, db: list[str], first: list[str], then: list[str]) -> list[str]:
    """``first`` for the first page, then ``then`` plus the offered ``--cursor`` for the rest."""
    ids, cursor = table_page(cli(*db, "sessions", *first))
    for _ in range(100):
        if cursor is None:
            return ids
        more, cursor = table_page(cli(*db, "sessions", *then, "--cursor", cursor))
        assert more
        ids += more
    raise AssertionError("more than 100 pages")


def expected(sessions: list[GenSession], since: str | None = None, **filters: Any) -> list[str]:
    out = []
    for s in newest_first(sessions):
        if since is not None and s.started_at < since:
            continue
        if all(getattr(s, k) in (v if isinstance(v, list) else [v]) for k, v in filters.items()):
            out.append(s.id)
    return out


# ----- the cursor keeps the filters -------------------------------------------------------------


def test_the_printed_cursor_alone_continues_the_filtered_listing(
    populated: Populated, db: list[str], cli: Cli
) -> None:
    want = expected(populated.sessions, agent_type=["review", "opencode"], status="completed")
    assert len(want) > 12
    filters = ["--agent-type", "review", "--agent-type", "opencode", "--status", "completed"]
    # Only the cursor on later pages (their page size: --limit, not kept by the cursor).
    got = walk_table(cli, db, [*filters, "--limit", "5"], ["--limit", "5"])
    assert got == want
    # The cursor added to the same command line, as the hint says, is the same walk.
    got = walk_table(cli, db, [*filters, "--limit", "7"], [*filters, "--limit", "7"])
    assert got == want
    # JSON, with the filters in another order.
    page = cli(*db, "--json", "sessions", "--status", "completed", "--limit", "6", *filters[:4])
    seen: list[str] = []
    for _ in range(100):
        assert page.code == 0, page
        data = page.json()
        seen += [s["id"] for s in data["sessions"]]
        assert all(s["status"] == "completed" for s in data["sessions"])
        if data["next_cursor"] is None:
            break
        page = cli(*db, "--json", "sessions", "--limit", "6", "--cursor", data["next_cursor"])
    assert seen == want
    # A real child process with only the cursor gives the same second page.
    first = cli(*db, "sessions", *filters, "--limit", "4")
    ids, cursor = table_page(first)
    assert ids == want[:4]
    assert cursor is not None
    child = run_cli(*db, "sessions", "--cursor", cursor, "--limit", "4")
    assert table_page(child)[0] == want[4:8]


def test_a_relative_since_does_not_drift_between_pages(
    populated: Populated, db: list[str], cli: Cli, clock: Clock
) -> None:
    """The clock moves 12 hours between pages; `--since 5d` keeps the instant it meant on the
    first page, whether the next page gets only the cursor or `--since 5d` again as well."""
    want = expected(populated.sessions, since=stamp(NOW - timedelta(days=5)), status="completed")
    assert len(want) > 20
    for then in (["--limit", "4"], ["--since", "5d", "--status", "completed", "--limit", "4"]):
        clock.now = NOW
        ids, cursor = table_page(cli(*db, "sessions", "--since", "5d", "--status", "completed",
                                     "--limit", "4"))  # fmt: skip
        for _ in range(100):
            if cursor is None:
                break
            clock.now += timedelta(hours=12)
            more, cursor = table_page(cli(*db, "sessions", *then, "--cursor", cursor))
            ids += more
        assert ids == want, then
        assert clock.now > NOW + timedelta(days=2)
    fresh = cli(*db, "--json", "sessions", "--since", "5d", "--status", "completed")
    assert len(fresh.json()["sessions"]) < len(want) - 10  # "5d" now: the check has teeth


def test_other_filters_with_a_cursor_are_bad_usage(db: list[str], cli: Cli, tmp_path: Path) -> None:
    _, cursor = table_page(cli(*db, "sessions", "--status", "completed", "--limit", "3"))
    assert cursor is not None
    for extra in (["--status", "error"], ["--agent-type", "review"], ["--since", "7d"], []):
        argv = [*db, "sessions", "--cursor", cursor, *extra]
        if not extra:
            assert cli(*argv).code == 0
            continue
        r = cli(*argv)
        assert_one_line_error(r, "the cursor belongs to a query with other filters", code=2)
        assert r.err.startswith("cpl sessions: error: the cursor belongs to")
        assert "the cursor's: status=completed;" in r.err and r.out == ""
    # Checked before the database: bad usage wins over a missing file.
    r = cli("--database", str(tmp_path / "missing.db"), "sessions", "--cursor", cursor,
            "--status", "error")  # fmt: skip
    assert_one_line_error(r, "other filters", code=2)
    child = run_cli(*db, "sessions", "--cursor", cursor, "--model", "gpt-5")
    assert_one_line_error(child, "the cursor belongs to a query with other filters", code=2)


# ----- exit codes -------------------------------------------------------------------------------


def test_values_that_cannot_be_used_exit_2(db: list[str], cli: Cli, tmp_path: Path) -> None:
    missing = ["--database", str(tmp_path / "missing.db")]
    cases: list[tuple[list[str], str]] = [
        ([*db, "sessions", "--since", "yesterday"], "cpl sessions: error: argument --since: "
         "not a time: 'yesterday' (use ISO-8601"),
        ([*db, "sessions", "--until", "2026-13-01"], "argument --until: not a time"),
        ([*db, "sessions", "--since", "99999999999d"], "not a time: '99999999999d' (out of range)"),
        ([*db, "sessions", "--cursor", "garbage"], "cpl sessions: error: argument --cursor: "
         "invalid cursor: 'garbage'"),
        ([*db, "sessions", "--cursor", ""], "argument --cursor: invalid cursor"),
        ([*db, "search", "x", "--since", "soon"], "cpl search: error: argument --since: not a"),
        ([*db, "search", ""], "cpl search: error: argument TEXT: search text must not be empty"),
        ([*db, "stats", "--since", "last week"], "cpl stats: error: argument --since: not a"),
        ([*db, "stats", "--until", "x"], "argument --until: not a time"),
        ([*missing, "sessions", "--since", "yesterday"], "not a time"),  # before the database
        (["sessions", "--cursor", "garbage"], "invalid cursor"),  # before the configuration
    ]  # fmt: skip
    for argv, words in cases:
        r = cli(*argv)
        assert_one_line_error(r, words, code=2)
        assert r.out == ""
    for argv, words in cases[:1] + cases[3:4] + cases[6:7]:
        assert_one_line_error(run_cli(*argv), words, code=2)


def test_runtime_errors_still_exit_1(db: list[str], cli: Cli, tmp_path: Path) -> None:
    cases: list[tuple[list[str], str]] = [  # in-process, --database stays configured: last
        (["sessions", "--since", "7d"], "no database configured: pass --database PATH_OR_URL or"
         " set TURSO_DATABASE_URL"),
        (["stats"], "--database"),
        ([*db, "show", "no-such-session"], "no session 'no-such-session'"),
        (["--database", str(tmp_path / "missing.db"), "sessions", "--since", "7d"],
         "does not exist"),
    ]  # fmt: skip
    for argv, words in cases:
        assert_one_line_error(cli(*argv), words, code=1)
    assert_one_line_error(run_cli(*cases[0][0]), "TURSO_DATABASE_URL", code=1)


# ----- id prefixes ------------------------------------------------------------------------------


def test_a_short_prefix_says_prefixes_need_six_characters(
    populated: Populated, db: list[str], cli: Cli
) -> None:
    ids = sorted(s.id for s in populated.sessions)
    unique6 = next(
        i for i in ids if sum(j.startswith(i[:6]) for j in ids) == 1
    )  # a 6-character prefix only one session has
    r = cli(*db, "show", unique6[:5])
    assert_one_line_error(
        r,
        f"no session {unique6[:5]!r} (looked up by id and SDK session id; an id prefix needs at"
        " least 6 characters, this one has 5)",
    )
    r = cli(*db, "show", "abcde")
    assert_one_line_error(r, "an id prefix needs at least 6 characters, this one has 5")
    child = run_cli(*db, "show", "ab")
    assert_one_line_error(child, "needs at least 6 characters, this one has 2")
    # Six characters are enough; a long id that matches nothing keeps the usual message.
    r = cli(*db, "show", unique6[:6])
    assert r.code == 0 and r.out.startswith(f"Session {unique6}\n"), r
    r = cli(*db, "show", "zzzzzzzz")
    assert_one_line_error(r, "no session 'zzzzzzzz' (looked up by id, SDK session id and prefix)")
    assert "at least" not in r.err
    assert q.MIN_PREFIX_LENGTH == 6
