"""The writer groups a batch into few statements; the database must end up exactly as if every
operation had been applied alone, in order.

``compile_ops`` hoists fresh inserts, merges non-adjacent operations with the same SQL and names
only non-NULL columns in inserts; these tests replay random operation sequences (every kind the
logger produces, with repeated updates of the same rows) both ways into real database files and
compare every row.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from claude_parallel_logging import ConversationLogger, SessionInfo, Settings, TursoConfig
from claude_parallel_logging.schema.ops import Op
from claude_parallel_logging.storage import open_store
from claude_parallel_logging.write.batch import applier, compile_ops
from claude_parallel_logging.write.values import ValueConverter


def _capture() -> tuple[ConversationLogger, list[Op]]:
    """A logger whose queue is a list: the exact tuples the writer would receive."""
    lg = ConversationLogger(None)
    sink: list[Op] = []
    lg._enqueue = sink.append  # type: ignore[assignment]
    lg._limit = 1000  # type: ignore[assignment]
    return lg, sink


def _random_ops(seed: int, count: int) -> list[Op]:
    rnd = random.Random(seed)
    lg, sink = _capture()
    sessions = [f"s{seed}-{k}" for k in range(3)]
    messages: list[str] = []
    tools: list[str] = []
    for k, sid in enumerate(sessions):
        lg.start_session(
            SessionInfo(
                id=sid, agent_type="t", model=rnd.choice([None, "m1"]),
                metadata=rnd.choice([None, {"first": k}]),
            )
        )  # fmt: skip
    for i in range(count):
        lg.session_id = rnd.choice(sessions)
        r = rnd.random()
        text = rnd.choice(["hi", "", None, "x" * rnd.randint(1, 40), {"k": i}, "ünï\x00"])
        if r < 0.25:
            messages.append(
                lg.log_message(
                    rnd.choice(["user", "assistant", "tool"]),
                    text,
                    token_count=rnd.choice([None, i]),
                    model=rnd.choice([None, "m2"]),
                    input_tokens=rnd.choice([None, 0, i]),
                    tool_input=rnd.choice([None, {"a": i}]),
                )
            )
        elif r < 0.35:  # an explicit id: upsert, possibly of a message already logged
            mid = rnd.choice([*messages[-3:], f"explicit-{i}"])
            lg.log_message("assistant", text, message_id=mid, output_tokens=rnd.choice([None, i]))
            messages.append(mid)
        elif r < 0.5 and messages:
            lg.update_message(
                rnd.choice(messages[-5:]),
                **rnd.choice(
                    [{"content": f"final {i}"}, {"input_tokens": i, "output_tokens": None},
                     {"metadata": {"n": i}}, {"content": None, "model": "m3"}]
                ),
            )  # fmt: skip
        elif r < 0.65:
            tools.append(
                lg.log_tool_execution(
                    rnd.choice(["Bash", "Read"]),
                    rnd.choice(["running", "pending", "completed", "error"]),
                    input=rnd.choice([None, {"cmd": i}]),
                    output=rnd.choice([None, f"out {i}"]),
                    tool_use_id=rnd.choice([None, f"toolu_{i}"]),
                    started_at=1_700_000_000 + i,
                    ended_at=rnd.choice([None, 1_700_000_001 + i]),
                )
            )
        elif r < 0.72:
            tid = rnd.choice([*tools[-3:], f"tool-explicit-{i}"])
            lg.log_tool_execution(
                "Bash", "running", execution_id=tid, started_at=1_700_000_000 + i,
                input=rnd.choice([None, {"again": i}]),
            )  # fmt: skip
            tools.append(tid)
        elif r < 0.76:  # a session started again under its id: the first insert must win
            lg.start_session(
                SessionInfo(
                    id=rnd.choice(sessions), agent_type=f"again-{i}",
                    model=rnd.choice([None, f"m-{i}"]), metadata=rnd.choice([None, {"n": i}]),
                )
            )  # fmt: skip
        elif r < 0.88 and tools:
            lg.finish_tool_execution(
                rnd.choice(tools[-4:]),
                rnd.choice(["completed", "error"]),
                output=rnd.choice([None, f"done {i}"]),
                error=rnd.choice([None, "boom"]),
                ended_at=1_700_000_100 + i,
                duration_ms=rnd.choice([None, i]),
            )
        else:
            lg.update_session(
                **rnd.choice(
                    [{"model": f"m{i}"}, {"input_tokens": i, "cost_usd": i / 100},
                     {"metadata": {"step": i}}, {"status": "completed", "num_turns": None}]
                )
            )  # fmt: skip
    return sink


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    import turso

    conn = turso.connect(str(path))
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
            for table in ("sessions", "messages", "tool_executions")
        }
    finally:
        conn.close()


@pytest.mark.parametrize("seed", range(12))
def test_grouped_batches_equal_one_by_one(tmp_path: Path, seed: int) -> None:
    ops = _random_ops(seed, 400)
    results = []
    for name, sizes in (("grouped", (1, 7, 50, 400)), ("single", (1,))):
        path = tmp_path / f"{name}.db"
        cfg = TursoConfig(str(path))
        settings = Settings(config=cfg)
        store, converter = open_store(cfg, settings), ValueConverter(settings)
        rnd = random.Random(seed)
        k = 0
        while k < len(ops):
            n = rnd.choice(sizes)
            store.write(applier(compile_ops(ops[k : k + n], converter)))
            k += n
        store.close()
        results.append(_dump(path))
    grouped, single = results
    assert sum(len(rows) for rows in single.values()) > 120
    for table in single:
        assert grouped[table] == single[table], table


def test_a_mixed_batch_needs_few_statements() -> None:
    """The point of grouping: a realistic batch is a handful of statements, not one per row."""
    lg, sink = _capture()
    lg.start_session(SessionInfo(id="s", agent_type="t", model="m"))
    for i in range(300):
        lg.log_message("assistant", f"text {i}", external_id=f"msg_{i}", model="m")
        tid = lg.log_tool_execution("Bash", "running", input={"i": i}, tool_use_id=f"t{i}")
        lg.finish_tool_execution(tid, "completed", output="ok")
    cfg = TursoConfig(":memory:")
    compiled = compile_ops(sink, ValueConverter(Settings(config=cfg)))
    assert len(sink) == 901
    # each tool's end is folded into its start: 1 session + 300 messages + 300 tools
    assert sum(len(rows) for _, rows in compiled) == 601
    assert len(compiled) == 3, [sql for sql, _ in compiled]


def test_inserts_name_only_non_null_columns_and_keep_defaults(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    cfg = TursoConfig(str(path))
    settings = Settings(config=cfg)
    store = open_store(cfg, settings)
    lg, sink = _capture()
    lg.start_session(SessionInfo(id="s", agent_type="t"))
    lg.log_message("user", None, created_at=None)
    store.write(applier(compile_ops(sink, ValueConverter(settings))))
    store.close()
    import turso

    conn = turso.connect(str(path))
    row = conn.execute("SELECT role, content, created_at, model, metadata FROM messages").fetchone()
    conn.close()
    assert row[0] == "user" and row[1] is None and row[3] is None and row[4] is None
    assert row[2]  # the logger's timestamp, never NULL
