"""What ``cpl show``/``sessions``/``stats`` and the records say about durations, rows, metadata,
tokens, cost and models (issue 11, items 1-6), on real recordings replayed into a real file
next to generated sessions. Expected figures come from the recordings and the generated data."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.cli.format import fmt_cost, fmt_int, fmt_ms
from claude_parallel_logging.testing.recorded import load_raw
from tests.cli.helpers import Cli, rich_run
from tests.populate import (
    DATA,
    RECORDED_CLAUDE,
    GenSession,
    RecordedSession,
    local_client,
    populate,
    replay_recordings,
)

LONG_MODEL = "claude-sonnet-4-5-20250929"
COMPACTING = "compacting"
CHEAP = (0.000125, 0.0004)  # as floats they sum to 0.0005250000000000001


@dataclass
class Db:
    path: Path
    recorded: list[RecordedSession]
    synthetic: list[GenSession]
    compacted: str  # a session whose CLI stream holds compaction status messages
    cheap: list[str]  # two sessions costing 0.000125 and 0.0004 dollars
    long_model: list[str]  # sessions of a model with a long name

    @property
    def db(self) -> list[str]:
        return ["--database", str(self.path)]

    def named(self, kind: str, name: str) -> RecordedSession:
        (rec,) = [r for r in self.recorded if r.kind == kind and r.name == name]
        return rec


def _compaction_frames() -> list[dict[str, Any]]:
    """The recorded ``tool_bash_partial`` run with the CLI's compaction status messages (as the
    CLI sends them: ``status: compacting``, then ``compact_result``) before its result."""
    frames = load_raw(DATA / "claude" / "tool_bash_partial.jsonl")
    status = next(f for f in frames if f.get("type") == "system" and f.get("subtype") == "status")
    compacting = {**copy.deepcopy(status), "status": COMPACTING, "uuid": "u-compacting"}
    done = {**copy.deepcopy(status), "status": None, "uuid": "u-compact-result"}
    done.update(compact_result="failed", compact_error="exhausted")
    at = next(i for i, f in enumerate(frames) if f.get("type") == "result")
    return [*frames[:at], compacting, done, *frames[at:]]


def _replay_compaction() -> str:
    from claude_agent_sdk._internal.message_parser import parse_message

    messages = [m for m in (parse_message(f) for f in _compaction_frames()) if m is not None]

    async def run() -> str:
        async def stream() -> Any:
            for m in messages:
                yield m

        async with cpl.logged_session(RECORDED_CLAUDE, instrument=False) as s:
            async for _ in s.track(stream(), prompt="Compact, please"):
                pass
        return s.id

    return asyncio.run(run())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    path = tmp_path_factory.mktemp("figures") / "logs.db"
    cpl.reset_configuration()
    cpl.configure(database_url=str(path), flush_interval=0.05)
    try:
        recorded = replay_recordings()
        compacted = _replay_compaction()
        assert cpl.flush(20)
    finally:
        assert cpl.shutdown(10)
        cpl.reset_configuration()
    client = local_client(path)
    try:
        synthetic = populate(client, 30, seed=11)
        lg = cpl.ConversationLogger(client)
        cheap: list[str] = []
        for i, cost in enumerate(CHEAP):
            cheap.append(f"cheap-{i}")
            lg.start_session(cpl.SessionInfo(id=cheap[-1], agent_type="cheap", model="m-cheap"))
            lg.log_message("user", "a cheap question")
            lg.end_session("completed", cost_usd=cost)
        long_model: list[str] = []
        for i in range(3):
            long_model.append(f"long-model-{i}")
            lg.start_session(
                cpl.SessionInfo(id=long_model[-1], agent_type="implementation", model=LONG_MODEL)
            )
            lg.log_message("user", f"task {i}")
            lg.end_session("completed", input_tokens=12_345, output_tokens=678, cost_usd=0.0123)
        assert client.flush(20)
    finally:
        assert client.shutdown(10)
    yield Db(path, recorded, synthetic, compacted, cheap, long_model)


def _show(cli: Cli, data: Db, ref: str, *extra: str) -> list[str]:
    r = cli(*data.db, "show", ref, "--max-chars", "0", *extra)
    assert r.code == 0 and r.err == "", r
    return r.out.splitlines()


def _session(cli: Cli, data: Db, ref: str) -> dict[str, Any]:
    r = cli(*data.db, "--json", "show", ref)
    assert r.code == 0, r
    session: dict[str, Any] = r.json()["session"]
    return session


def _ms(start: str, end: str) -> int:
    a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    return round((b - a).total_seconds() * 1000)


def _reported_ms(name: str) -> int:
    """The CLI's own ``duration_ms``, summed over the recording's results."""
    frames = load_raw(DATA / "claude" / f"{name}.jsonl")
    return sum(int(f["duration_ms"]) for f in frames if f.get("type") == "result")


# ----- 1. wall time and the agent's reported time -----------------------------------------------


def test_both_durations_named_everywhere(data: Db, cli: Cli) -> None:
    rec = data.named("claude", "tool_bash")
    reported = _reported_ms("tool_bash")
    s = _session(cli, data, rec.id)
    wall = _ms(s["started_at"], s["ended_at"])
    assert wall != reported  # the replay takes about no time; the CLI reported its own run
    assert (s["wall_duration_ms"], s["agent_duration_ms"]) == (wall, reported)
    assert s["duration_ms"] == reported  # the old field keeps its meaning

    lines = _show(cli, data, rec.id)
    want = (
        f"  wall time: {fmt_ms(wall)} (ended - started)   agent-reported time: {fmt_ms(reported)}"
    )
    assert want in lines
    assert not any("duration" in line for line in lines)
    assert lines[-1].endswith(f"; wall time {fmt_ms(wall)}; agent-reported time {fmt_ms(reported)}")

    # The API records: a property, in ``to_dict`` too; a running session has no wall time.
    client = local_client(data.path)
    try:
        page = q.list_sessions(limit=1000, client=client)
        by_id = {x.id: x for x in page}
        assert (by_id[rec.id].wall_duration_ms, by_id[rec.id].agent_duration_ms) == (wall, reported)
        running = next(g for g in data.synthetic if g.status == "running")
        assert by_id[running.id].wall_duration_ms is None
        assert by_id[running.id].agent_duration_ms is None
        rows = {r.group: r for r in q.usage_summary("agent_type", client=client)}
    finally:
        client.shutdown(5)

    # ``sessions``: both columns, named.
    r = cli(*data.db, "sessions", "--agent-type", RECORDED_CLAUDE, "--limit", "100")
    header, *rows_text = r.out.splitlines()
    assert "WALL TIME" in header and "AGENT TIME" in header and "DURATION" not in header
    (row,) = [line for line in rows_text if line.startswith(rec.id)]
    assert row.split()[-4:] == [*fmt_ms(wall).split(), *fmt_ms(reported).split()]

    # ``stats``: the median of each, per group, from the same records.
    claude = [x for x in page if x.agent_type == RECORDED_CLAUDE]
    walls = sorted(float(x.wall_duration_ms or 0) for x in claude)
    agents = sorted(float(x.agent_duration_ms or 0) for x in claude)
    got = rows[RECORDED_CLAUDE]
    assert (got.p50_wall_ms, got.p50_agent_ms) == (
        statistics.median(walls),
        statistics.median(agents),
    )
    r = cli(*data.db, "stats")
    header = r.out.splitlines()[0]
    assert "P50 WALL" in header and "P50 AGENT" in header
    r = cli(*data.db, "--json", "stats")
    (row_json,) = [x for x in r.json()["rows"] if x["group"] == RECORDED_CLAUDE]
    assert row_json["p50_agent_ms"] == statistics.median(agents)


# ----- 2. rows that say nothing -----------------------------------------------------------------


def test_bookkeeping_rows_fold_and_status_rows_say_what_they_hold(data: Db, cli: Cli) -> None:
    rec = data.named("claude", "tool_bash_partial")
    lines = _show(cli, data, rec.id)
    assert not any(line.startswith("#") and " system" in line for line in lines)
    assert not any("(result of" in line for line in lines)
    assert lines[-2] == (
        "(3 rows not shown: 1 tool result shown with its tool call, 2 status rows (requesting);"
        " --all shows every row)"
    )
    assert "      output (15 chars): hello-from-tool" in lines  # the result, under its call
    every = _show(cli, data, rec.id, "--all")
    systems = [line for line in every if re.match(r"#\d+ system: status \| ", line)]
    assert len(systems) == 2
    assert any("(result of Bash: the tool output shown above)" in line for line in every)
    assert not any("not shown" in line for line in every)

    lines = _show(cli, data, data.compacted)
    at = next(i for i, line in enumerate(lines) if "system: status" in line)
    assert lines[at + 1] == f"  status: {COMPACTING}"
    at = next(i for i, line in enumerate(lines[at + 1 :], at + 1) if "system: status" in line)
    assert lines[at + 1] == "  compact_result: failed, compact_error: exhausted"


def test_opencode_step_usage_is_one_line(data: Db, cli: Cli) -> None:
    oc = data.named("opencode", "tool_bash")
    stored = json.loads((DATA / "opencode" / "tool_bash.messages.json").read_text())
    infos = [m["info"] for m in stored[oc.external_id] if m["info"]["role"] == "assistant"]
    lines = _show(cli, data, oc.id)
    steps = [line for line in lines if "step usage:" in line]
    assert len(steps) == len(infos) == 2
    for line, info in zip(steps, infos):
        tok = info["tokens"]
        want = f"step usage: {tok['input']:,} in / {tok['output']:,} out"
        if tok["cache"]["read"]:
            want += f", {tok['cache']['read']:,} cache read"
        want += f"; cost {fmt_cost(info['cost'])}; finish: {info['finish']}"
        assert re.fullmatch(
            rf"#\d+ assistant \| [\d: -]+ \| {info['modelID']} \| {re.escape(want)}", line
        )
        following = lines[lines.index(line) + 1]
        assert following == ""  # nothing under it: not an empty message


# ----- 3. the header shows what a reader needs ---------------------------------------------------


def test_header_folds_tool_lists_and_shows_callers_metadata(data: Db, cli: Cli) -> None:
    rec = data.named("claude", "tool_bash")
    init = next(
        f for f in load_raw(DATA / "claude" / "tool_bash.jsonl") if f.get("subtype") == "init"
    )
    lines = _show(cli, data, rec.id)
    head = lines[: lines.index("")]
    assert (
        f"  cwd: {init['cwd']}   version: claude-code {init['claude_code_version']}"
        f"   permission mode: {init['permissionMode']}"
    ) in head
    assert not any('"Task", "Bash"' in line or "WebSearch" in line for line in head)
    assert head[-1] == (
        "  (more metadata: tools, api_key_source, mcp_servers, agents, sdk_session_ids;"
        " --metadata shows it)"
    )
    full = _show(cli, data, rec.id, "--metadata")
    text = "\n".join(full[: full.index("")])
    assert all(f'"{tool}"' in text for tool in init["tools"])
    assert json.loads(text.split("metadata: ", 1)[1])["tools"] == init["tools"]
    assert _session(cli, data, rec.id)["metadata"]["tools"] == init["tools"]  # --json: all

    g = next(x for x in data.synthetic if x.shape == "claude")  # the caller's own metadata
    lines = _show(cli, data, g.id)
    assert f"  cwd: {g.metadata['cwd']}" in lines
    assert f"  metadata: sdk: {g.metadata['sdk']}" in lines


# ----- 4. token figures that agree --------------------------------------------------------------


def test_token_columns_are_the_same_parts_in_every_view(data: Db, cli: Cli) -> None:
    r = cli(*data.db, "sessions", "--agent-type", RECORDED_CLAUDE, "--limit", "100")
    header, *rows = r.out.splitlines()
    assert "TOKENS" not in header
    cols = ["TOK IN", "TOK OUT", "CACHE R+W"]
    assert all(c in header for c in cols)
    for rec in (x for x in data.recorded if x.kind == "claude"):
        (row,) = [line for line in rows if line.startswith(rec.id)]
        cells = row.split()
        i = cells.index("$" + f"{rec.cost_usd:,.4f}") if rec.cost_usd else cells.index("$0.0000")
        assert cells[i - 3 : i] == [
            fmt_int(rec.input_tokens),
            fmt_int(rec.output_tokens),
            fmt_int(rec.cache_read_tokens + rec.cache_creation_tokens),
        ]
    stats = cli(*data.db, "stats").out.splitlines()[0]
    assert all(c in stats for c in cols)

    rec = data.named("claude", "tool_bash")  # not streamed: output counts not final per row
    lines = _show(cli, data, rec.id)
    assert not any("- out" in line for line in lines)
    assert any(line.endswith("| 100 in / out: n/a (partial)") for line in lines)
    text = data.named("claude", "text_only")
    assert "; 1 turn;" in _show(cli, data, text.id)[-1]


# ----- 5. cost without float noise --------------------------------------------------------------


def test_costs_are_exact_decimals(data: Db, cli: Cli) -> None:
    assert sum(CHEAP) == 0.0005250000000000001  # what a float sum gives
    client = local_client(data.path)
    try:
        (row,) = q.usage_summary("agent_type", agent_type="cheap", client=client)
        every = q.usage_summary("model", client=client)
        page = q.list_sessions(limit=1000, client=client)
    finally:
        client.shutdown(5)
    assert row.cost_usd == 0.000525 and repr(row.cost_usd) == "0.000525"
    for r in every:  # the exact sum of the stored costs, as a decimal of at most 9 places
        assert -Decimal(repr(r.cost_usd)).as_tuple().exponent <= 9, r
    r = cli(*data.db, "--json", "stats")
    assert '"cost_usd": 0.000525,' in r.out
    for s in page:
        assert s.cost_usd is None or -Decimal(repr(s.cost_usd)).as_tuple().exponent <= 9


# ----- 6. model names stay whole ----------------------------------------------------------------


def test_model_name_is_the_last_column_cut(
    data: Db, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rich")
    from rich.cells import cell_len

    lines = rich_run(cli, monkeypatch, 80, *data.db, "sessions", "--model", LONG_MODEL)
    rows = [line for line in lines if line.startswith("long-model-")]
    assert len(rows) == len(data.long_model)
    for row in rows:
        assert cell_len(row) <= 80
        assert LONG_MODEL in row.split()  # whole, while minor columns gave way
    assert any(line.startswith("(too narrow for ") for line in lines)
