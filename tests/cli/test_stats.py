"""``cpl stats``: figures per group against hand-computed ones."""

from __future__ import annotations

import pytest

from tests.cli.helpers import (
    Cli,
)
from tests.populate import (
    Populated,
    expected_usage,
)


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
