"""OpenCode messages of unexpected shapes or sizes: one bounded row each, never a row per
element, never an exception that loses the rest of the reconciliation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.opencode.router import OpencodeRouter
from claude_parallel_logging.integrations.opencode.rows import MAX_PARTS
from tests.conftest import query
from tests.integrations.opencode.test_mapping import (
    events,
    logged_id,
    message_rows,
    only_sid,
    stored,
)


def text_part(oc_sid: str, mid: str, i: int) -> dict[str, Any]:
    return {
        "id": f"prt_extra_{i:05d}", "sessionID": oc_sid, "messageID": mid, "type": "text",
        "text": f"t{i}", "time": {"start": 1795315632000, "end": 1795315632001},
    }  # fmt: skip


def omitted_rows(db: Path, sid: str) -> list[dict[str, Any]]:
    metas = [json.loads(r["metadata"] or "{}") for r in message_rows(db, sid)]
    return [m for m in metas if m.get("part") == "omitted"]


def test_a_message_with_thousands_of_parts_is_capped_in_reconciliation(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    messages = copy.deepcopy(stored("tool_bash")[oc_sid])
    final = messages[-1]
    mid = final["info"]["id"]
    final["parts"].extend(text_part(oc_sid, mid, i) for i in range(3_000))
    router = OpencodeRouter()
    assert router.reconcile(oc_sid, messages)
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(10) and cpl.stats()["dropped"] == 0
    rows = message_rows(local_db, sid)
    logged = [r["content"] for r in rows if (r["content"] or "").startswith("t")]
    # the message's own text part plus the first extra ones, up to the cap; the rest counted
    assert logged == [f"t{i}" for i in range(MAX_PARTS - 1)]
    assert len(rows) == 6 + (MAX_PARTS - 1) + 1
    (summary,) = omitted_rows(local_db, sid)
    assert summary == {
        "part": "omitted",
        "message_id": mid,
        "omitted_parts": 3_000 - MAX_PARTS + 1,
    }
    # reconciled again (the next idle): nothing new, the count stays
    assert router.reconcile(oc_sid, messages)
    assert cpl.flush(10)
    assert len(message_rows(local_db, sid)) == len(rows)
    assert omitted_rows(local_db, sid) == [summary]


def test_a_message_with_thousands_of_streamed_parts_is_capped(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    evs = events("tool_bash")
    router = OpencodeRouter()
    for event in evs:
        router.handle(event)
    mid = stored("tool_bash")[oc_sid][-1]["info"]["id"]
    for i in range(MAX_PARTS + 100):
        part = text_part(oc_sid, mid, i)
        router.handle({"type": "message.part.updated", "properties": {"part": part}})
        router.handle({"type": "message.part.updated", "properties": {"part": part}})  # again
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(10)
    rows = message_rows(local_db, sid)
    assert len([r for r in rows if (r["content"] or "").startswith("t")]) == MAX_PARTS - 1
    (summary,) = omitted_rows(local_db, sid)
    assert summary["omitted_parts"] == 101  # each part counted once, however often it came


def test_unexpected_shapes_in_stored_messages(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    good = copy.deepcopy(stored("tool_bash")[oc_sid])
    user, first, final = good
    user["parts"] = "A" * 300_000  # iterated, this was 300,000 steps (and no row)
    first["parts"].append(
        {"id": "prt_weird", "sessionID": oc_sid, "messageID": first["info"]["id"], "type": ["x"]}
    )
    (tool,) = [p for p in first["parts"] if p["type"] == "tool"]
    tool["tool"] = {"name": "bash"}  # the tool's name: not a string
    messages: list[Any] = [None, 42, "junk", {"info": "x"}, user, first, final]
    router = OpencodeRouter()
    assert router.reconcile(oc_sid, messages)
    assert router.stats.get("mapping_errors", 0) == 0 and router.stats["bad_parts"] == 1
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(10) and cpl.stats()["dropped"] == 0
    rows = message_rows(local_db, sid)
    metas = [json.loads(r["metadata"] or "{}") for r in rows]
    (described,) = [m for m in metas if m.get("part") == "unexpected"]
    assert described == {
        "part": "unexpected",
        "message_id": user["info"]["id"],
        "unexpected_parts": {"type": "str", "length": 300_000, "preview": "A" * 200},
    }
    (weird,) = [m for m in metas if m.get("data", {}).get("id") == "prt_weird"]
    assert weird["part"] is None and weird["data"]["type"] == ["x"]
    # the rest of the reconciliation went on: the tool and the final answer are there
    assert "All done: the command printed hello-from-opencode." in [r["content"] for r in rows]
    assert query(local_db, "SELECT tool_name, status FROM tool_executions") == [
        ("unknown", "completed")
    ]
