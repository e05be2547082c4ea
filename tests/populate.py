"""Fill a real database with many sessions, shaped like the Claude Agent SDK's and OpenCode's.

Everything goes through ``ConversationLogger``; the generated sessions are also returned as plain
data so that tests can compute expected figures on their own, without SQL. Timestamps come from a
fake clock (sessions spread over ten days) so figures per day are deterministic.

Run it by hand to get a database to play with:  python -m tests.populate /tmp/logs.db 300
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import string
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import claude_parallel_logging as cpl
import claude_parallel_logging.logger as logger_module
from claude_parallel_logging.payload import iso_utc


def local_client(path: Path | str) -> cpl.TursoClient:
    """A client of its own on a local file (not the shared one), writing every 50 ms."""
    config = cpl.TursoConfig(url=str(path))
    return cpl.TursoClient(config, cpl.Settings(config=config, flush_interval=0.05))


BASE_TIME = 1_790_000_000.0  # 2026-09-21T14:13:20Z
SPAN_DAYS = 10

# Planted in a few sessions each, next to decoys that only an unescaped LIKE would match.
SPECIAL_TEXTS = (
    "progress: 100% done",
    "renamed snake_case_value everywhere",
    "it's the user's file",
    'the log said "hello world" twice',
    r"wrote C:\temp\new\file.txt",
    "École Normale Supérieure",
)
DECOY_TEXTS = (
    "progress: 1000 done",
    "renamed snakeXcaseYvalue everywhere",
    "its the users file",
    "the log said hello world twice",
    r"wrote C:/temp/new/file.txt",
    "Ecole Normale Superieure",
)


@dataclass
class GenMessage:
    role: str
    content: Any
    created_at: float
    tool_name: str | None = None
    tool_input: Any = None
    tool_output: Any = None
    external_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    parent_tool_use_id: str | None = None
    metadata: dict[str, Any] | None = None
    id: str = ""


@dataclass
class GenTool:
    name: str
    status: str  # completed, error or running
    input: Any
    output: str | None
    error: str | None
    started_at: float
    duration_ms: int | None
    tool_use_id: str
    message_index: int | None  # the assistant message that asked for it
    parent_tool_use_id: str | None = None
    id: str = ""


@dataclass
class GenSession:
    id: str
    shape: str  # "claude" or "opencode"
    agent_type: str
    model: str
    provider: str
    external_id: str
    started: float
    status: str  # completed, error or running
    error_message: str | None
    metadata: dict[str, Any]
    messages: list[GenMessage] = field(default_factory=list)
    tools: list[GenTool] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def started_at(self) -> str:
        return iso_utc(self.started)

    @property
    def day(self) -> str:
        return self.started_at[:10]


class _Clock:
    """Stands in for the ``time`` module inside the logger: wall time is ours, the rest real."""

    def __init__(self) -> None:
        self.now = BASE_TIME
        self.perf_counter = time.perf_counter
        self.monotonic = time.monotonic

    def time(self) -> float:
        return self.now


@contextlib.contextmanager
def fake_clock() -> Iterator[_Clock]:
    clock = _Clock()
    namespace = vars(logger_module)
    saved = namespace["time"]
    namespace["time"] = clock
    try:
        yield clock
    finally:
        namespace["time"] = saved


def _rid(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pick_text(rng: random.Random) -> str:
    words = (
        "refactor the parser and add tests for the edge cases around empty input; "
        "the build is green after 1000 iterations of the fuzzer with 100 seeds"
    ).split()
    return " ".join(rng.choice(words) for _ in range(rng.randint(4, 18)))


def generate(n: int = 300, seed: int = 5, prefix: str = "") -> list[GenSession]:
    """Deterministic sessions; about every tenth shares its start time with the previous one."""
    rng = random.Random(seed)
    step = SPAN_DAYS * 86400 / max(n, 1)
    sessions: list[GenSession] = []
    started = BASE_TIME
    for i in range(n):
        if i == 0 or i % 10 != 3:
            started = BASE_TIME + i * step + rng.uniform(0, step / 2)
        shape = "claude" if rng.random() < 0.6 else "opencode"
        sid = f"{prefix}{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        status = rng.choices(("completed", "error", "running"), (0.75, 0.15, 0.10))[0]
        if shape == "claude":
            s = GenSession(
                id=sid,
                shape=shape,
                agent_type=rng.choice(("implementation", "review", "planning")),
                model=rng.choice(("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")),
                provider="anthropic",
                external_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                started=round(started, 3),
                status=status,
                error_message=None,
                metadata={"sdk": "claude-agent-sdk", "cwd": f"/work/proj-{i % 7}"},
            )
        else:
            s = GenSession(
                id=sid,
                shape=shape,
                agent_type="opencode",
                model=rng.choice(("gpt-5", "scripted-main")),
                provider=rng.choice(("openai", "scripted")),
                external_id="ses_" + _rid(rng, 26),
                started=round(started, 3),
                status=status,
                error_message=None,
                metadata={"sdk": "opencode", "agent": rng.choice(("build", "plan"))},
            )
        _fill(rng, s, i)
        sessions.append(s)
    return sessions


def _fill(rng: random.Random, s: GenSession, index: int) -> None:
    """Rows as the integrations write them.

    Claude: assistant rows per content block (thinking, text, tool_use with ``content`` None),
    ``tool`` rows with the result blocks, a closing ``result`` row repeating the turn's tokens, and
    session totals. OpenCode: text parts carry the tokens; half the sessions get only a cost.
    """
    t = s.started + 0.5
    claude = s.shape == "claude"
    tool_names = ("Bash", "Read", "Edit", "Grep", "Write") if claude else (
        "bash", "read", "edit", "glob", "grep",
    )  # fmt: skip
    special = SPECIAL_TEXTS[(index // 9) % len(SPECIAL_TEXTS)] if index % 9 == 0 else None
    decoy = DECOY_TEXTS[index % len(DECOY_TEXTS)] if index % 7 == 0 else None
    plant = rng.choice(("content", "tool_input", "tool_output", "tool_error", "session_error"))
    s.messages.append(GenMessage("user", f"Task {index}: " + _pick_text(rng), t))
    turns = rng.randint(1, 5)
    in_sum = out_sum = 0
    for turn in range(turns):
        t += rng.uniform(0.2, 3.0)
        itok, otok = rng.randint(50, 5000), rng.randint(5, 800)
        in_sum += itok
        out_sum += otok
        api_id = f"msg_{_rid(rng, 20)}"
        usage: dict[str, Any] = {"input_tokens": itok, "output_tokens": otok}
        if claude and rng.random() < 0.3:
            s.messages.append(
                GenMessage(
                    "assistant", "Let me think. " + _pick_text(rng), t, model=s.model,
                    external_id=api_id, metadata={"block": "ThinkingBlock"}, **usage,
                )
            )  # fmt: skip
            usage = {}  # counted once per API message, on its first row
        use_tool = turn < turns - 1 or rng.random() < 0.3
        if not use_tool:
            s.messages.append(
                GenMessage(
                    "assistant", _pick_text(rng), t, model=s.model, external_id=api_id,
                    parent_tool_use_id=f"toolu_01sub{_rid(rng, 8)}"
                    if claude and rng.random() < 0.1 else None,
                    metadata={"block": "TextBlock"} if claude else {"part": "text"}, **usage,
                )
            )  # fmt: skip
            continue
        name = rng.choice(tool_names)
        tinput: dict[str, Any] = {"command": f"ls -la /work/{index}/{turn}", "timeout": 120}
        if name.lower() in ("read", "edit", "write"):
            tinput = {"file_path": f"/work/proj/{_rid(rng, 6)}.py"}
        tool_use_id = ("toolu_01" if claude else "call_") + _rid(rng, 22)
        s.messages.append(
            GenMessage(
                "assistant", None if claude else _pick_text(rng), t, tool_name=name,
                tool_input=tinput, model=s.model, external_id=api_id,
                metadata={"block": "ToolUseBlock", "tool_use_id": tool_use_id}
                if claude else {"part": "tool", "callID": tool_use_id}, **usage,
            )
        )  # fmt: skip
        status = rng.choices(("completed", "error"), (0.85, 0.15))[0]
        duration = rng.randint(1, 30_000) if rng.random() < 0.9 else rng.randint(1, 50)
        output: str | None = None
        error: str | None = None
        if status == "completed":
            output = f"total {rng.randint(1, 1000)}\n" + _pick_text(rng)
            if rng.random() < 0.05:
                output += "\n" + "x" * 3000  # a long output, for truncation
        else:
            error = rng.choice(("exit status 1", "file not found", "permission denied"))
        tool = GenTool(
            name, status, tinput, output, error, t + 0.01, duration, tool_use_id,
            len(s.messages) - 1,
        )  # fmt: skip
        if claude and rng.random() < 0.1:
            tool.parent_tool_use_id = "toolu_01parent" + _rid(rng, 8)
        s.tools.append(tool)
        t += duration / 1000 + 0.02
        text = output if output is not None else error
        s.messages.append(
            GenMessage(
                "tool", text, t, tool_name=name,
                tool_output=[{"type": "text", "text": text}] if claude else text,
                metadata={"tool_use_id": tool_use_id, "is_error": error is not None},
            )
        )  # fmt: skip
    for text, where in ((special, plant), (decoy, rng.choice(("content", "tool_output")))):
        if text is None:
            continue
        if where == "content" or (where.startswith("tool_") and not s.tools):
            s.messages.append(GenMessage("assistant", f"Note: {text}.", t + 0.1))
        elif where == "tool_input":
            s.tools[0].input = {**s.tools[0].input, "description": text}
        elif where == "tool_output":
            s.tools[0].output, s.tools[0].error = f"{text}\n(ok)", None
            if s.tools[0].status == "error":
                s.tools[0].status = "completed"
        elif where == "tool_error":
            s.tools[0].status, s.tools[0].error, s.tools[0].output = "error", text, None
        elif where == "session_error":
            s.status, s.error_message = "error", f"agent failed: {text}"
    if s.status == "running" and len(s.tools) >= 2 and rng.random() < 0.5:
        last = s.tools[-1]  # still running: no end, no output, no duration
        last.status, last.output, last.error, last.duration_ms = "running", None, None, None
    if s.status == "error" and s.error_message is None:
        s.error_message = rng.choice(
            ("API Error: 529 overloaded", "max turns reached", "process exited with code 1")
        )
    if s.status == "running":
        return
    duration_ms = round((t - s.started) * 1000) + rng.randint(0, 500)
    cost = round(in_sum * 3e-6 + out_sum * 15e-6, 6)
    if claude or rng.random() < 0.5:
        s.totals = {
            "input_tokens": in_sum + rng.randint(0, 50),
            "output_tokens": out_sum,
            "cache_read_tokens": rng.randint(0, 20_000),
            "cache_creation_tokens": rng.randint(0, 3_000),
            "cost_usd": cost,
            "num_turns": turns,
            "duration_ms": duration_ms,
        }
    else:  # OpenCode reports tokens per message; the session only gets its cost
        s.totals = {"cost_usd": cost, "duration_ms": duration_ms}
    if claude:
        s.messages.append(
            GenMessage(
                "result", _pick_text(rng), t + 0.2, external_id=s.external_id,
                input_tokens=s.totals["input_tokens"], output_tokens=out_sum,
                metadata={"subtype": "success" if s.status == "completed" else "error",
                          "num_turns": turns},
            )
        )  # fmt: skip


def write(sessions: list[GenSession], client: cpl.TursoClient) -> None:
    """Log every session through ``ConversationLogger`` (ids it assigns are stored back)."""
    with fake_clock() as clock:
        for s in sessions:
            lg = cpl.ConversationLogger(client)
            clock.now = s.started
            lg.start_session(
                cpl.SessionInfo(
                    id=s.id, agent_type=s.agent_type, model=s.model, provider=s.provider,
                    metadata=s.metadata,
                )
            )  # fmt: skip
            lg.update_session(external_id=s.external_id)
            by_message: dict[int, list[GenTool]] = {}
            for tool in s.tools:
                key = -1 if tool.message_index is None else tool.message_index
                by_message.setdefault(key, []).append(tool)
            for idx, m in enumerate(s.messages):
                clock.now = m.created_at
                m.id = lg.log_message(
                    m.role, m.content, tool_name=m.tool_name, tool_input=m.tool_input,
                    tool_output=m.tool_output, external_id=m.external_id, model=m.model,
                    input_tokens=m.input_tokens, output_tokens=m.output_tokens,
                    parent_tool_use_id=m.parent_tool_use_id, created_at=m.created_at,
                    metadata=m.metadata,
                )  # fmt: skip
                for tool in by_message.get(idx, []):
                    tool.id = lg.log_tool_execution(
                        tool.name, "running", input=tool.input, message_id=m.id,
                        tool_use_id=tool.tool_use_id, parent_tool_use_id=tool.parent_tool_use_id,
                        started_at=tool.started_at,
                    )  # fmt: skip
                    if tool.status != "running":
                        assert tool.duration_ms is not None
                        lg.finish_tool_execution(
                            tool.id, tool.status, output=tool.output, error=tool.error,
                            ended_at=tool.started_at + tool.duration_ms / 1000,
                            duration_ms=tool.duration_ms,
                        )  # fmt: skip
            if s.status != "running":
                clock.now = s.started + s.totals["duration_ms"] / 1000
                lg.end_session(s.status, s.error_message, **s.totals)


@dataclass
class Populated:
    """A populated database file and the sessions generated into it: the expectations."""

    path: Path
    sessions: list[GenSession]

    def by_id(self) -> dict[str, GenSession]:
        return {s.id: s for s in self.sessions}


def populated_database(directory: Path, n: int, seed: int = 5) -> Populated:
    """``n`` generated sessions logged into ``directory/logs.db`` by a client of its own."""
    path = directory / "logs.db"
    client = local_client(path)
    try:
        sessions = populate(client, n, seed=seed)
    finally:
        assert client.shutdown(10)
    return Populated(path, sessions)


def populate(
    client: cpl.TursoClient, n: int = 300, seed: int = 5, prefix: str = "", timeout: float = 60
) -> list[GenSession]:
    """Generate, log and flush; the database then holds exactly the returned sessions."""
    sessions = generate(n, seed, prefix)
    write(sessions, client)
    if not client.flush(timeout):
        raise RuntimeError(f"populate: flush did not finish: {client.stats()}")
    return sessions


# ----- real recordings: the Claude CLI's and OpenCode's own streams, replayed --------------------

DATA = Path(__file__).parent / "data"
CLAUDE_RECORDINGS = (
    "api_error", "subagent", "text_only", "thinking", "tool_bash", "tool_bash_partial",
    "tool_error", "tool_parallel",
)  # fmt: skip  # client_two_turns needs ClaudeSDKClient's cumulative cost: not a query() stream
OPENCODE_RECORDINGS = ("tool_bash", "parallel", "error")
RECORDED_CLAUDE = "recorded-claude"
RECORDED_OPENCODE = "recorded-opencode"


@dataclass
class RecordedSession:
    """A session replayed from a real recording; every figure is read off the recording itself
    (never from the database)."""

    kind: str  # "claude" or "opencode"
    name: str  # the recording
    agent_type: str
    external_id: str  # the CLI's / OpenCode's session id
    model: str
    status: str
    prompt: str
    answer: str  # the last thing the agent said
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float
    tool_calls: int
    tool_errors: int
    tool_outputs: list[str]
    tool_inputs: list[dict[str, Any]]
    tool_durations: list[int] | None  # OpenCode's are recorded; Claude's are timed at replay
    id: str = ""  # the logged session's id, once replayed


def _claude_expected(name: str) -> RecordedSession:
    from claude_parallel_logging.testing.recorded import load_raw

    frames = load_raw(DATA / "claude" / f"{name}.jsonl")
    init = next(f for f in frames if f.get("type") == "system" and f.get("subtype") == "init")
    (result,) = [f for f in frames if f.get("type") == "result"]
    usage = result.get("usage") or {}  # the main thread only
    per_model = result.get("modelUsage") or {}  # every model and subagent of the run
    if per_model:
        usage = {
            key: sum(m.get(src, 0) for m in per_model.values())
            for key, src in (
                ("input_tokens", "inputTokens"),
                ("output_tokens", "outputTokens"),
                ("cache_read_input_tokens", "cacheReadInputTokens"),
                ("cache_creation_input_tokens", "cacheCreationInputTokens"),
            )
        }
    uses: list[dict[str, Any]] = []
    outputs: list[str] = []
    errors = 0
    for f in frames:
        blocks = (f.get("message") or {}).get("content")
        if not isinstance(blocks, list):
            continue
        for b in blocks:
            if f["type"] == "assistant" and b.get("type") == "tool_use":
                uses.append(b["input"])
            if f["type"] == "user" and b.get("type") == "tool_result":
                errors += bool(b.get("is_error"))
                content = b.get("content")
                if isinstance(content, list):  # content blocks: their texts, one per line
                    content = "\n".join(str(c.get("text", "")) for c in content)
                outputs.append(str(content or ""))
    return RecordedSession(
        kind="claude", name=name, agent_type=RECORDED_CLAUDE, external_id=init["session_id"],
        model=init["model"], status="error" if result.get("is_error") else "completed",
        prompt=f"Replay the recorded {name} run", answer=str(result.get("result") or ""),
        input_tokens=usage.get("input_tokens", 0), output_tokens=usage.get("output_tokens", 0),
        cache_read_tokens=usage.get("cache_read_input_tokens", 0),
        cache_creation_tokens=usage.get("cache_creation_input_tokens", 0),
        cost_usd=result.get("total_cost_usd") or 0.0, tool_calls=len(uses), tool_errors=errors,
        tool_outputs=outputs, tool_inputs=uses, tool_durations=None,
    )  # fmt: skip


def _opencode_expected(name: str) -> list[RecordedSession]:
    stored = json.loads((DATA / "opencode" / f"{name}.messages.json").read_text())
    out: list[RecordedSession] = []
    for sid, items in stored.items():
        infos = [m["info"] for m in items if m["info"]["role"] == "assistant"]
        parts = [p for m in items for p in m["parts"]]
        user_text = [p["text"] for p in items[0]["parts"] if p["type"] == "text"]
        texts = [p["text"] for m in items[1:] for p in m["parts"] if p["type"] == "text"]
        tools = [p for p in parts if p["type"] == "tool"]
        failed = infos[-1].get("error")
        out.append(
            RecordedSession(
                kind="opencode", name=name, agent_type=RECORDED_OPENCODE, external_id=sid,
                model=infos[-1]["modelID"], status="error" if failed else "completed",
                prompt="\n".join(user_text),
                answer=texts[-1] if texts else str(failed["data"]["message"]),
                input_tokens=sum(i["tokens"]["input"] for i in infos),
                output_tokens=sum(i["tokens"]["output"] for i in infos),
                cache_read_tokens=sum(i["tokens"]["cache"]["read"] for i in infos),
                cache_creation_tokens=sum(i["tokens"]["cache"]["write"] for i in infos),
                cost_usd=sum(i["cost"] for i in infos), tool_calls=len(tools),
                tool_errors=sum(t["state"]["status"] == "error" for t in tools),
                tool_outputs=[t["state"].get("output", "") for t in tools],
                tool_inputs=[t["state"]["input"] for t in tools],
                tool_durations=[
                    t["state"]["time"]["end"] - t["state"]["time"]["start"] for t in tools
                ],
            )
        )  # fmt: skip
    return out


def replay_recordings() -> list[RecordedSession]:
    """Replay every recording into the configured (shared) database, as the integrations log a
    live run: Claude streams through ``logged_session().track()``, OpenCode streams and stored
    messages through the router. Flush afterwards."""
    import asyncio

    from claude_parallel_logging.integrations.opencode.router import OpencodeRouter
    from claude_parallel_logging.testing.recorded import load_recorded

    sessions: list[RecordedSession] = []

    async def claude(rec: RecordedSession) -> None:
        messages = load_recorded(DATA / "claude" / f"{rec.name}.jsonl")

        async def stream() -> Any:
            for m in messages:
                yield m

        async with cpl.logged_session(rec.agent_type, instrument=False) as s:
            async for _ in s.track(stream(), prompt=rec.prompt):
                pass
        rec.id = s.id

    for name in CLAUDE_RECORDINGS:
        rec = _claude_expected(name)
        asyncio.run(claude(rec))
        sessions.append(rec)
    for name in OPENCODE_RECORDINGS:
        router = OpencodeRouter(agent_type=RECORDED_OPENCODE)
        for line in (DATA / "opencode" / f"{name}.events.jsonl").read_text().splitlines():
            if line.strip():
                router.handle(json.loads(line))
        for rec in _opencode_expected(name):
            stored = json.loads((DATA / "opencode" / f"{name}.messages.json").read_text())
            assert router.reconcile(rec.external_id, stored[rec.external_id])
            logged = router.session_for(rec.external_id)
            assert logged is not None, rec.external_id
            rec.id = logged.id
            sessions.append(rec)
        router.close()
    return sessions


def recorded_usage(recorded: list[RecordedSession]) -> dict[str, Any]:
    """``usage_summary`` figures of a group made of these recorded sessions only."""
    done = sum(r.status == "completed" for r in recorded)
    errors = sum(r.status == "error" for r in recorded)
    tools = sum(r.tool_calls for r in recorded)
    tool_errors = sum(r.tool_errors for r in recorded)
    out: dict[str, Any] = {
        "sessions": len(recorded), "completed": done, "errors": errors, "running": 0,
        "success_rate": done / len(recorded),
        "input_tokens": sum(r.input_tokens for r in recorded),
        "output_tokens": sum(r.output_tokens for r in recorded),
        "cache_read_tokens": sum(r.cache_read_tokens for r in recorded),
        "cache_creation_tokens": sum(r.cache_creation_tokens for r in recorded),
        "cost_usd": sum(r.cost_usd for r in recorded), "tool_calls": tools,
        "tool_errors": tool_errors, "tool_error_rate": tool_errors / tools if tools else None,
    }  # fmt: skip
    if all(r.tool_durations is not None for r in recorded):
        durations = sorted(float(d) for r in recorded for d in r.tool_durations or [])
        out["p50_tool_ms"] = _quantile(durations, 0.5)
        out["p95_tool_ms"] = _quantile(durations, 0.95)
    return out


# ----- expectations, computed from the generated data alone (no SQL) ----------------------------


def stored_json(value: Any) -> str:
    """How a JSON column holds ``value``."""
    return json.dumps(value, ensure_ascii=False)


def expected_tokens(s: GenSession) -> tuple[int | None, int | None]:
    """Session totals when reported, else the sum over messages other than ``result`` rows."""
    out: list[int | None] = []
    for key in ("input_tokens", "output_tokens"):
        if key in s.totals:
            out.append(s.totals[key])
            continue
        values = [getattr(m, key) for m in s.messages if m.role != "result"]
        known = [v for v in values if v is not None]
        out.append(sum(known) if known else None)
    return out[0], out[1]


def newest_first(sessions: list[GenSession]) -> list[GenSession]:
    return sorted(sessions, key=lambda s: (s.started_at, s.id), reverse=True)


def _values(value: Any) -> Iterator[str]:
    """Strings and numbers inside a JSON value (keys are structure, not content)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield str(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _values(v)


def haystacks(s: GenSession) -> Iterator[str]:
    """Every text search looks at: contents, the values inside tool inputs and outputs, tool
    outputs and errors, and the session's error."""
    for m in s.messages:
        if isinstance(m.content, str):
            yield m.content
        yield from _values(m.tool_input)
        yield from _values(m.tool_output)
    for t in s.tools:
        yield from _values(t.input)
        for text in (t.output, t.error):
            if text is not None:
                yield text
    if s.error_message:
        yield s.error_message


def expected_search(sessions: list[GenSession], query: str) -> list[str]:
    """Ids of the sessions containing ``query`` (case-insensitive, literal), newest first."""
    needle = query.lower()
    return [s.id for s in newest_first(sessions) if any(needle in h.lower() for h in haystacks(s))]


def _quantile(values: list[float], q: float) -> float | None:
    """Via ``statistics`` (a different code path from the library's own)."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    if q == 0.5:
        return float(statistics.median(values))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return float(cuts[round(q * 100) - 1])


def expected_usage(sessions: list[GenSession], group_by: str) -> dict[str, dict[str, Any]]:
    """The figures ``usage_summary`` must report, per group."""
    groups: dict[str, list[GenSession]] = {}
    for s in sessions:
        key = s.day if group_by == "day" else str(getattr(s, group_by))
        groups.setdefault(key, []).append(s)
    out: dict[str, dict[str, Any]] = {}
    for key, members in groups.items():
        done = sum(1 for s in members if s.status == "completed")
        errors = sum(1 for s in members if s.status == "error")
        running = sum(1 for s in members if s.status == "running")
        tools = [t for s in members for t in s.tools]
        tool_errors = sum(1 for t in tools if t.status == "error")
        tools_finished = sum(1 for t in tools if t.status != "running")
        durations = sorted(float(t.duration_ms) for t in tools if t.duration_ms is not None)
        tokens = [expected_tokens(s) for s in members]
        out[key] = {
            "sessions": len(members),
            "completed": done,
            "errors": errors,
            "running": running,
            "success_rate": done / (len(members) - running) if len(members) > running else None,
            "input_tokens": sum(i or 0 for i, _ in tokens),
            "output_tokens": sum(o or 0 for _, o in tokens),
            "cache_read_tokens": sum(s.totals.get("cache_read_tokens", 0) for s in members),
            "cache_creation_tokens": sum(s.totals.get("cache_creation_tokens", 0) for s in members),
            "cost_usd": sum(s.totals.get("cost_usd", 0.0) for s in members),
            "tool_calls": len(tools),
            "tool_errors": tool_errors,
            "tool_error_rate": tool_errors / tools_finished if tools_finished else None,
            "p50_tool_ms": _quantile(durations, 0.5),
            "p95_tool_ms": _quantile(durations, 0.95),
        }
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "logs.db"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    c = cpl.TursoClient(cpl.TursoConfig(url=target))
    populate(c, count)
    c.shutdown()
    print(f"{count} sessions written to {target}")
