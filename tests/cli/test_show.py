"""``cpl show``: the transcript, lookups by id, SDK id and prefix, and the exports."""

from __future__ import annotations

import json
from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.cli.format import fmt_ms
from claude_parallel_logging.query import get_session
from tests.cli.helpers import (
    Cli,
    _long_output_session,
    assert_one_line_error,
    expected_totals_line,
    run_cli,
)
from tests.populate import (
    Populated,
)


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
