"""Bad input is stored safely or replaced by a clear marker; nothing raises; the database stays
intact; memory stays bounded."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

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
