"""``cpl search``: literal text, tables and JSON."""

from __future__ import annotations

import pytest

from tests.cli.helpers import (
    Cli,
    run_cli,
)
from tests.populate import (
    Populated,
    expected_search,
)


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
