"""Bad input is stored safely or replaced by a clear marker; nothing raises; the database stays
intact; memory stays bounded."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import claude_parallel_logging as cpl
from tests.conftest import query


def start(sid: str = "s") -> cpl.ConversationLogger:
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=sid, agent_type="a", model="m"))
    return lg


def test_huge_payloads_truncated_with_marker_and_size(db_path: Path) -> None:
    limit = 64 * 1024
    # flush_interval: the writer sleeps while we measure the caller's own allocations
    cpl.configure(database_url=str(db_path), max_payload_chars=limit, flush_interval=30)
    lg = start()
    big_output = "o" * (20 * 1024 * 1024)
    big_prompt = "p" * (1024 * 1024)
    blob = {"blob": "i" * (2 * 1024 * 1024)}
    tracemalloc.start()
    lg.log_message("user", big_prompt)
    t = lg.log_tool_execution("Bash", "running", input={"command": "cat big"})
    lg.finish_tool_execution(t, "completed", output=big_output)
    lg.log_tool_execution("Read", "completed", input=blob)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024 * 1024  # the hot path copied at most ~limit, not the 20 MB
    del big_output, big_prompt
    assert cpl.flush(10)
    (content,) = query(db_path, "SELECT content FROM messages")[0]
    assert content.startswith("p" * 100) and len(content) < limit + 200
    assert content.endswith(f"[truncated by claude-parallel-logging: original {1024 * 1024} chars]")
    outputs = dict(query(db_path, "SELECT tool_name, output FROM tool_executions"))
    assert outputs["Bash"].endswith(f"original {20 * 1024 * 1024} chars]")
    assert len(outputs["Bash"]) < limit + 200
    (inp,) = query(db_path, "SELECT input FROM tool_executions WHERE tool_name='Read'")[0]
    assert "original" in inp and len(inp) < limit + 200  # JSON cut, marker says so


def test_hostile_strings_stored_safely(local_db: Path) -> None:
    lg = start()
    nasty = [
        "'; DROP TABLE sessions; --",
        'Robert"); DELETE FROM messages; --',
        "lone surrogate \ud800 here",
        "nul \x00 byte",
        "emoji 🚀 and 中文 and ümlaut",
        "%_\\ LIKE metachars",
    ]
    for text in nasty:
        lg.log_message("user", text)
    lg.log_message("tool", b"invalid utf-8 \xff\xfe\xfd")
    lg.log_tool_execution("T", "completed", input={"k\ud800": "v\x00"}, output="x")
    lg.end_session("error", "error with 'quotes' and \ud83d")
    assert cpl.flush(5)
    assert cpl.stats()["discarded"] == 0
    rows = [r[0] for r in query(local_db, "SELECT content FROM messages ORDER BY sequence")]
    assert rows[0] == nasty[0] and rows[1] == nasty[1]
    assert rows[2] == "lone surrogate \\ud800 here"
    assert rows[3] == "nul \\u0000 byte"
    assert rows[4] == nasty[4] and rows[5] == nasty[5]
    assert rows[6] == "invalid utf-8 \ufffd\ufffd\ufffd"
    (inp,) = query(local_db, "SELECT input FROM tool_executions")[0]
    assert json.loads(inp)  # valid JSON
    assert query(local_db, "SELECT COUNT(*) FROM sessions") == [(1,)]  # tables intact


def test_deep_and_cyclic_structures(local_db: Path) -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        child: dict[str, object] = {}
        node["c"] = child
        node = child
    cyc: list[object] = [1]
    cyc.append(cyc)
    lg = start()
    lg.log_tool_execution("Deep", "completed", input=deep, output="ok")
    lg.log_tool_execution("Cyclic", "completed", input={"list": cyc}, output="ok")
    lg.log_message("assistant", "x", tool_input=object())
    assert cpl.flush(5)
    inputs = dict(query(local_db, "SELECT tool_name, input FROM tool_executions"))
    deep_back = json.loads(inputs["Deep"])
    depth = 0
    while isinstance(deep_back, dict) and "c" in deep_back:
        deep_back = deep_back["c"]
        depth += 1
    assert deep_back == "[max depth reached]" and depth < 100
    assert json.loads(inputs["Cyclic"]) == {"list": [1, "[circular reference]"]}
    (ti,) = query(local_db, "SELECT tool_input FROM messages")[0]
    assert json.loads(ti).startswith("<object: <object object at")


def test_poisoned_values_never_stop_the_writer(local_db: Path) -> None:
    """A value that cannot be converted (an infinite timestamp, an object whose ``__str__``
    raises) is stored as a marker; the events after it are written, nothing is retried forever."""

    class Exploding:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    lg = start()
    lg.log_message("user", "inf time", created_at=float("inf"))
    lg.log_message("user", "nan time", created_at=float("nan"))
    lg.log_message("user", "huge time", created_at=1e20)
    lg.log_message("user", Exploding())
    lg.log_tool_execution("T", "completed", input={"x": Exploding()}, started_at=-1e20)
    for i in range(5):
        lg.log_message("assistant", f"after {i}")
    assert cpl.flush(10)
    stats = cpl.stats()
    assert stats["discarded"] == 0 and stats["pending"] == 0, stats
    rows = query(local_db, "SELECT content, created_at FROM messages ORDER BY sequence")
    assert [r[0] for r in rows[4:]] == [f"after {i}" for i in range(5)]
    assert rows[0] == ("inf time", "invalid timestamp: inf")
    assert rows[1][1] == "invalid timestamp: nan"
    assert rows[2][1].startswith("invalid timestamp")
    assert rows[3][0] == "<Exploding: unrepresentable>"
    (inp, started) = query(local_db, "SELECT input, started_at FROM tool_executions")[0]
    assert json.loads(inp) == {"x": "<Exploding: unrepresentable>"}
    assert started.startswith("invalid timestamp")


def test_bad_arguments_never_raise_and_the_rest_is_logged(local_db: Path) -> None:
    class BadId:
        def __str__(self) -> str:
            raise ValueError("no id")

    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=BadId(), agent_type="a"))  # type: ignore[arg-type]
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a", metadata="not a dict"))  # type: ignore[arg-type]
    t = lg.log_tool_execution("T", "running", started_at="yesterday")  # type: ignore[arg-type]
    lg.finish_tool_execution(t, "completed", ended_at="later")  # type: ignore[arg-type]
    lg.log_tool_execution("U", "completed", started_at=1.0, ended_at="x")  # type: ignore[arg-type]
    lg.update_session(metadata=["a", "list"], num_turns="three")
    lg.end_session("completed")
    assert cpl.flush(10)
    assert cpl.stats()["discarded"] == 0
    (meta, turns, status) = query(local_db, "SELECT metadata, num_turns, status FROM sessions")[0]
    assert json.loads(meta) == ["a", "list"] and turns is None and status == "completed"
    tools = query(local_db, "SELECT tool_name, status, duration_ms FROM tool_executions ORDER BY tool_name")
    assert tools == [("T", "completed", None), ("U", "completed", None)]


def test_cut_json_stays_valid_json(local_db: Path) -> None:
    cpl.configure(database_url=str(local_db), max_payload_chars=2000)
    lg = start()
    lg.log_tool_execution("W", "completed", input={"content": "x" * 50_000, "path": "/a"})
    lg.log_message("assistant", "", tool_input=[{"t": "y" * 9000}], metadata={"k": "z" * 9000})
    assert cpl.flush(10)
    (inp,) = query(local_db, "SELECT input FROM tool_executions")[0]
    cut = json.loads(inp)
    assert cut["__truncated__"] is True and 50_000 < cut["original_chars"] < 50_100
    assert cut["preview"].startswith('{"content": "xxx') and len(inp) <= 2000 + 200
    (ti, md) = query(local_db, "SELECT tool_input, metadata FROM messages")[0]
    assert json.loads(ti)["__truncated__"] and json.loads(md)["__truncated__"]


def test_memory_bounded_for_containers_and_bytes_while_the_writer_is_stalled(
    db_path: Path,
) -> None:
    """Big strings inside dicts and lists (a Write tool's input, Claude's tool_result blocks)
    and big bytes are cut on the caller's thread: the queue never holds them whole."""
    limit = 10_000
    cpl.configure(database_url=str(db_path), max_payload_chars=limit, flush_interval=60)
    lg = start()
    tracemalloc.start()
    for i in range(20):  # the writer sleeps: all 20 sit in the queue
        block = "b" * (1024 * 1024)
        lg.log_tool_execution(
            "Write", "completed", input={"path": f"/f{i}", "content": block},
            output=[{"type": "text", "text": block}], error=block.encode(),
        )  # fmt: skip
        lg.log_message("tool", [{"type": "tool_result", "content": block}], tool_output=block)
        del block
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current < 20 * 6 * (limit + 5000), current  # ~limit per value, not 1 MiB each
    assert cpl.flush(30)
    (inp, out, err) = query(db_path, "SELECT input, output, error FROM tool_executions LIMIT 1")[0]
    cut = json.loads(inp)
    assert 1024 * 1024 < cut["original_chars"] < 1024 * 1024 + 100
    assert cut["preview"].startswith('{"path": "/f0", "content": "bbbb')
    assert err.endswith("original 1048576 chars]") and len(err) < limit + 200
    assert len(out) < limit + 200


def test_an_operation_that_cannot_be_compiled_is_skipped_alone(local_db: Path) -> None:
    from claude_parallel_logging.schema.ops import MESSAGE_INSERT

    lg = start()
    lg.log_message("user", "before")
    client = cpl.get_turso_client()
    assert client is not None
    client.enqueue((MESSAGE_INSERT, ("too", "few", "values")))  # not a message row at all
    lg.log_message("user", "after")
    assert cpl.flush(10) is False  # honest: one event was not written
    assert cpl.flush(10) is True  # nothing else is missing
    stats = cpl.stats()
    assert stats["discarded"] == 1 and stats["pending"] == 0, stats
    assert "values for" in (stats["last_error"] or "")
    rows = query(local_db, "SELECT content FROM messages ORDER BY sequence")
    assert rows == [("before",), ("after",)]


def test_every_cut_is_exactly_at_the_limit(db_path: Path) -> None:
    """The exact stored value, not just a length bound: text is ``limit`` characters plus the
    marker; JSON becomes the marker object with exactly these keys and values."""
    from claude_parallel_logging.payload import TRUNCATED_MARK

    limit = 2000
    cpl.configure(database_url=str(db_path), max_payload_chars=limit, flush_interval=0.05)
    small, big = limit + 1, limit + 10_000  # kept whole on the caller's thread / pre-cut there
    lg = start()
    lg.log_message(
        "assistant",
        "p" * big,
        tool_input={"command": "p" * big},
        tool_output="p" * small,
        metadata={"note": "p" * big},
    )
    lg.log_message("user", "p" * small)
    t = lg.log_tool_execution("Bash", "running", input={"command": "p" * small})
    lg.finish_tool_execution(t, "completed", output="p" * big)
    t2 = lg.log_tool_execution("Read", "running", input={"path": "p" * big})
    lg.finish_tool_execution(t2, "error", error="p" * big)
    lg.end_session("error", "p" * big)
    assert cpl.flush(10)

    def text(n: int) -> str:
        return "p" * limit + TRUNCATED_MARK.format(size=n)

    def json_cut(value: Any) -> dict[str, Any]:
        whole = json.dumps(value, ensure_ascii=False)
        return {
            "__truncated__": True,
            "original_chars": len(whole),
            "preview": whole[: limit - 120],
        }

    (m1, m2) = query(
        db_path, "SELECT content, tool_input, tool_output, metadata FROM messages ORDER BY sequence"
    )
    assert m1[0] == text(big) and m2[0] == text(small)
    assert json.loads(m1[1]) == json_cut({"command": "p" * big})
    assert json.loads(m1[2]) == json_cut("p" * small)
    assert json.loads(m1[3]) == json_cut({"note": "p" * big})
    assert all(len(v) <= limit for v in m1[1:])
    tools = query(db_path, "SELECT input, output, error FROM tool_executions ORDER BY tool_name")
    assert json.loads(tools[0][0]) == json_cut({"command": "p" * small})
    assert tools[0][1:] == (text(big), None)
    assert json.loads(tools[1][0]) == json_cut({"path": "p" * big})
    assert tools[1][1:] == (None, text(big))
    assert query(db_path, "SELECT error_message FROM sessions") == [(text(big),)]


def test_precut_looks_at_a_bounded_part_of_a_huge_dict() -> None:
    """The caller's thread must not walk (or copy) a dict of millions of keys inside a value."""
    from claude_parallel_logging.payload import _WALK_BUDGET, cut_for_queue

    class Counting(dict[str, int]):
        seen = 0

        def items(self) -> Any:
            for item in super().items():
                Counting.seen += 1
                yield item

    inner = Counting({str(i): i for i in range(200_000)})
    assert cut_for_queue({"inner": inner, "x": "y" * 10}, 100) is not None
    assert Counting.seen <= _WALK_BUDGET
