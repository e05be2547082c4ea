"""Real recordings in a populated database: the Claude CLI's and OpenCode's own streams
(``tests/data``) replayed through the integrations, next to hundreds of synthetic sessions, then
read back through the query API and the CLI.

Expected figures are read off the recordings (``tests.populate.RecordedSession``) and the
generated data, never from SQL.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.cli import main
from claude_parallel_logging.cli.format import fmt_cost, fmt_int
from tests.populate import (
    CLAUDE_RECORDINGS,
    RECORDED_CLAUDE,
    RECORDED_OPENCODE,
    GenSession,
    RecordedSession,
    _quantile,
    expected_search,
    expected_usage,
    newest_first,
    populate,
    recorded_usage,
    replay_recordings,
)

N_SYNTHETIC = 200


@dataclass
class Mixed:
    path: Path
    synthetic: list[GenSession]
    recorded: list[RecordedSession]
    days: set[str]  # UTC days the replay ran in

    def claude(self) -> list[RecordedSession]:
        return [r for r in self.recorded if r.kind == "claude"]

    def opencode(self) -> list[RecordedSession]:
        return [r for r in self.recorded if r.kind == "opencode"]

    def named(self, kind: str, name: str) -> RecordedSession:
        (rec,) = [r for r in self.recorded if r.kind == kind and r.name == name]
        return rec


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mixed]:
    path = tmp_path_factory.mktemp("mixed") / "logs.db"
    cpl.reset_configuration()
    cpl.configure(database_url=str(path), flush_interval=0.05)
    try:
        client = cpl.get_turso_client()
        assert client is not None
        synthetic = populate(client, N_SYNTHETIC, seed=31)
        first_day = time.strftime("%Y-%m-%d", time.gmtime())
        recorded = replay_recordings()
        last_day = time.strftime("%Y-%m-%d", time.gmtime())
        assert cpl.flush(20)
        assert cpl.stats()["discarded"] == 0
    finally:
        assert cpl.shutdown(10)
        cpl.reset_configuration()
    assert len(recorded) == len(CLAUDE_RECORDINGS) + 4  # OpenCode: tool_bash, 2 parallel, error
    assert len({r.id for r in recorded}) == len(recorded)
    yield Mixed(path, synthetic, recorded, {first_day, last_day})


@pytest.fixture
def client(mixed: Mixed) -> Iterator[cpl.TursoClient]:
    config = cpl.TursoConfig(url=str(mixed.path))
    c = cpl.TursoClient(config, cpl.Settings(config=config))
    yield c
    c.shutdown(5)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----- list -------------------------------------------------------------------------------------


def test_recorded_sessions_listed_with_the_recordings_figures(
    mixed: Mixed, client: cpl.TursoClient
) -> None:
    for agent_type, expected in ((RECORDED_CLAUDE, mixed.claude()), (RECORDED_OPENCODE, mixed.opencode())):  # fmt: skip
        page = q.list_sessions(limit=100, agent_type=agent_type, client=client)
        assert {s.id for s in page} == {r.id for r in expected}
        by_id = {r.id: r for r in expected}
        for s in page:
            rec = by_id[s.id]
            assert (s.external_id, s.model, s.status) == (rec.external_id, rec.model, rec.status)
            assert (s.input_tokens, s.output_tokens) == (rec.input_tokens, rec.output_tokens)
            assert s.cache_read_tokens == rec.cache_read_tokens, rec.name
            assert s.cache_creation_tokens == rec.cache_creation_tokens, rec.name
            assert s.cost_usd == pytest.approx(rec.cost_usd), rec.name
            assert (s.tool_count, s.tool_error_count) == (rec.tool_calls, rec.tool_errors)
            assert s.ended_at is not None and s.message_count >= 2


def test_mixed_list_keeps_the_synthetic_order_and_pages(
    mixed: Mixed, client: cpl.TursoClient
) -> None:
    """The replayed sessions ran today, after every synthetic one: they come first, and the
    synthetic ones follow in exactly their order, page after page."""
    seen: list[str] = []
    page = q.list_sessions(limit=17, client=client)
    for _ in range(100):
        seen += [s.id for s in page]
        if page.next_cursor is None:
            break
        page = q.list_sessions(limit=17, cursor=page.next_cursor, client=client)
    n = len(mixed.recorded)
    assert set(seen[:n]) == {r.id for r in mixed.recorded}
    assert seen[n:] == [s.id for s in newest_first(mixed.synthetic)]


# ----- one session ------------------------------------------------------------------------------


def test_recorded_session_detail(mixed: Mixed, client: cpl.TursoClient) -> None:
    for rec in mixed.recorded:
        detail = q.get_session(rec.external_id, client=client)  # by the agent's own id
        assert detail is not None and detail.session.id == rec.id, rec.name
        user = [m for m in detail.messages if m.role == "user" and m.content]
        assert user[0].content == rec.prompt, rec.name
        assert any(rec.answer in (m.content or "") for m in detail.messages), rec.name
        tools = detail.tool_executions
        assert len(tools) == rec.tool_calls, rec.name
        assert sorted((t.output or t.error or "").strip() for t in tools) == sorted(
            o.strip() for o in rec.tool_outputs
        ), rec.name
        assert sorted(json.dumps(t.input, sort_keys=True) for t in tools) == sorted(
            json.dumps(i, sort_keys=True) for i in rec.tool_inputs
        ), rec.name
        assert all(t.ended_at is not None and t.duration_ms is not None for t in tools)
        if rec.tool_durations is not None:
            assert sorted(t.duration_ms or 0 for t in tools) == sorted(rec.tool_durations)
        sequences = [m.sequence for m in detail.messages]
        assert sequences == list(range(1, len(sequences) + 1))


# ----- search -----------------------------------------------------------------------------------


def test_search_finds_recorded_content(mixed: Mixed, client: cpl.TursoClient) -> None:
    def ids(*names: tuple[str, str]) -> set[str]:
        return {mixed.named(kind, name).id for kind, name in names}

    cases = {
        "HELLO-FROM-TOOL": ids(("claude", "tool_bash"), ("claude", "tool_bash_partial")),
        "hello-from-opencode": ids(("opencode", "tool_bash")),
        "/definitely/not/here": ids(("claude", "tool_error")),
        "the prompt was rejected": ids(("opencode", "error")),
    }
    for text, expected in cases.items():
        assert expected_search(mixed.synthetic, text) == []  # only the recordings have it
        hits = q.search_sessions(text, limit=50, client=client)
        assert {h.session.id for h in hits} == expected, text
        assert all(text.lower() in h.snippet.lower() for h in hits)
    alpha = next(r for r in mixed.opencode() if r.prompt.startswith("[session:alpha]"))
    (hit,) = q.search_sessions("[session:alpha]", client=client)
    assert (hit.session.id, hit.where, hit.role) == (alpha.id, q.WHERE_MESSAGE, "user")
    hits = q.search_sessions("the", limit=1000, agent_type=RECORDED_OPENCODE, client=client)
    assert {h.session.id for h in hits} <= {r.id for r in mixed.opencode()}


# ----- usage ------------------------------------------------------------------------------------


def _combined(synthetic: list[GenSession], recorded: list[RecordedSession]) -> dict[str, Any]:
    """One group holding both kinds, computed from the data (not from the two groups' rates)."""
    syn = list(synthetic)
    done = sum(s.status == "completed" for s in syn) + sum(r.status == "completed" for r in recorded)
    running = sum(s.status == "running" for s in syn)
    tools = [t for s in syn for t in s.tools]
    tool_calls = len(tools) + sum(r.tool_calls for r in recorded)
    tool_errors = sum(t.status == "error" for t in tools) + sum(r.tool_errors for r in recorded)
    tools_running = sum(t.status == "running" for t in tools)
    rec = recorded_usage(recorded)
    syn_usage = expected_usage(syn, "model")[syn[0].model]
    out = {
        "sessions": len(syn) + len(recorded),
        "completed": done,
        "running": running,
        "success_rate": done / (len(syn) + len(recorded) - running),
        "tool_calls": tool_calls,
        "tool_errors": tool_errors,
        "tool_error_rate": tool_errors / (tool_calls - tools_running),
    }
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
                "cost_usd", "errors"):  # fmt: skip
        out[key] = syn_usage[key] + rec[key]
    if all(r.tool_durations is not None for r in recorded):
        durations = sorted(
            [float(t.duration_ms) for t in tools if t.duration_ms is not None]
            + [float(d) for r in recorded for d in r.tool_durations or []]
        )
        out["p50_tool_ms"] = _quantile(durations, 0.5)
        out["p95_tool_ms"] = _quantile(durations, 0.95)
    return out


def _assert_row(row: q.UsageRow, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        got = getattr(row, key)
        if isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (row.group, key)
        else:
            assert got == value, (row.group, key)


def test_usage_summary_with_recorded_sessions(mixed: Mixed, client: cpl.TursoClient) -> None:
    rows = {r.group: r for r in q.usage_summary("agent_type", client=client)}
    _assert_row(rows[RECORDED_CLAUDE], recorded_usage(mixed.claude()))
    _assert_row(rows[RECORDED_OPENCODE], recorded_usage(mixed.opencode()))
    assert rows[RECORDED_OPENCODE].p50_tool_ms == 872.0  # recorded: 870, 872, 1585 ms
    for group, expected in expected_usage(mixed.synthetic, "agent_type").items():
        _assert_row(rows[group], expected)  # the synthetic groups are untouched

    by_model = {r.group: r for r in q.usage_summary("model", client=client)}
    for model, recorded in (("claude-sonnet-4-5", mixed.claude()), ("scripted-main", mixed.opencode())):  # fmt: skip
        synthetic = [s for s in mixed.synthetic if s.model == model]
        assert synthetic and all(r.model == model for r in recorded)
        _assert_row(by_model[model], _combined(synthetic, recorded))

    if len(mixed.days) == 1:  # the replay did not run across midnight
        (today,) = mixed.days
        by_day = {r.group: r for r in q.usage_summary("day", client=client)}
        assert by_day[today].sessions == len(mixed.recorded)


# ----- the command line -------------------------------------------------------------------------


def test_cli_on_recorded_sessions(mixed: Mixed, capsys: pytest.CaptureFixture[str]) -> None:
    db = ("--database", str(mixed.path))
    code, out, err = cli(capsys, *db, "sessions", "--agent-type", RECORDED_OPENCODE, "--json")
    assert (code, err) == (0, "")
    assert {s["id"] for s in json.loads(out)["sessions"]} == {r.id for r in mixed.opencode()}

    rec = mixed.named("claude", "tool_bash")
    code, out, err = cli(capsys, *db, "show", rec.external_id, "--max-chars", "0")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"Session {rec.id}" and f"SDK session: {rec.external_id}" in out
    assert f"  {rec.prompt}" in lines
    (call,) = [line for line in lines if line.startswith("  -> Bash ")]
    assert json.loads(call[len("  -> Bash ") :]) == rec.tool_inputs[0]
    (tool,) = [line for line in lines if line.startswith("    tool Bash: completed, ")]
    assert re.fullmatch(r"    tool Bash: completed, \d+ ms  \[toolu_\w+\]", tool), tool
    assert f"output ({len(rec.tool_outputs[0]):,} chars): {rec.tool_outputs[0]}" in out
    folded = re.fullmatch(r"\((\d+) rows? not shown: .*; --all shows every row\)", lines[-2])
    rows = sum(1 for line in lines if line.startswith("#")) + int(folded.group(1) if folded else 0)
    assert lines[-1] == (
        f"Totals: {rows} messages; 1 tool call;"
        f" tokens {fmt_int(rec.input_tokens)} in, {fmt_int(rec.output_tokens)} out,"
        f" {fmt_int(rec.cache_read_tokens)} cache read,"
        f" {fmt_int(rec.cache_creation_tokens)} cache write; cost {fmt_cost(rec.cost_usd)};"
        f" 2 turns; wall time {lines[-1].rsplit('wall time ', 1)[1]}"
    )
    code, out, err = cli(capsys, *db, "show", rec.external_id, "--all")
    assert sum(1 for line in out.splitlines() if line.startswith("#")) == rows

    oc = mixed.named("opencode", "tool_bash")
    code, out, err = cli(capsys, *db, "show", oc.external_id, "--format", "markdown")
    assert (code, err) == (0, "")
    assert out.startswith(f"# Session `{oc.id}`") and oc.answer in out
    assert f"| tokens | {oc.input_tokens:,} in, {oc.output_tokens:,} out," in out
    assert "### Tool `bash`: completed, 1.6 s" in out  # 1585 ms, as recorded

    code, out, err = cli(capsys, *db, "search", "hello-from-opencode", "--json")
    assert code == 0 and [h["session"]["id"] for h in json.loads(out)["hits"]] == [oc.id]

    code, out, err = cli(capsys, *db, "stats", "--json")
    rows = {r["group"]: r for r in json.loads(out)["rows"]}
    expected = recorded_usage(mixed.opencode())
    got = rows[RECORDED_OPENCODE]
    assert (got["sessions"], got["errors"], got["input_tokens"]) == (
        expected["sessions"], expected["errors"], expected["input_tokens"],
    )  # fmt: skip
    assert got["cost_usd"] == pytest.approx(expected["cost_usd"])

