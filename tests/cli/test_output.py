"""Tables, colour and figures: what fits a terminal, plain text without rich, number formats."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from claude_parallel_logging.cli.format import fmt_cost, fmt_int, fmt_ms
from claude_parallel_logging.cli.output import Column, fit_columns
from tests.cli.helpers import (
    ANSI,
    ISO_SECONDS,
    Cli,
    resolve,
    rich_run,
)
from tests.conftest import REPO
from tests.populate import (
    Populated,
    expected_search,
    expected_usage,
    newest_first,
)


def test_duration_and_number_formats() -> None:
    assert [fmt_ms(x) for x in (None, 0, 850, 12_345, 245_000, 3_720_000)] == [
        "-", "0 ms", "850 ms", "12.3 s", "4m05s", "1h02m",
    ]  # fmt: skip
    assert (fmt_int(1234567), fmt_int(None), fmt_cost(0.00408), fmt_cost(None)) == (
        "1,234,567", "-", "$0.0041", "-",
    )  # fmt: skip


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
