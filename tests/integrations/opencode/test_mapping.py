"""The OpenCode mapping, offline: recorded ``/event`` streams and ``/session/{id}/message``
responses of the real server replayed into a real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.opencode.events import sse_data
from claude_parallel_logging.integrations.opencode.fields import error_text
from claude_parallel_logging.integrations.opencode.router import OpencodeRouter
from tests.conftest import query

DATA = Path(__file__).resolve().parents[2] / "data" / "opencode"


def events(name: str) -> list[dict[str, Any]]:
    lines = (DATA / f"{name}.events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def stored(name: str) -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads((DATA / f"{name}.messages.json").read_text())
    return data


def replay(router: OpencodeRouter, evs: list[dict[str, Any]]) -> None:
    for event in evs:
        router.handle(event)


def later(value: Any, ms: int) -> Any:
    """The same recording, ``ms`` later (epoch-millisecond times shifted)."""
    if isinstance(value, dict):
        return {k: later(v, ms) for k, v in value.items()}
    if isinstance(value, list):
        return [later(v, ms) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 1_000_000_000_000:
        return value + ms
    return value


def only_sid(name: str) -> str:
    (sid,) = stored(name)
    return sid


def session_row(db: Path, sid: str) -> dict[str, Any]:
    cols = [
        "status", "error_message", "model", "provider", "external_id", "agent_type",
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
        "cost_usd", "num_turns", "metadata", "ended_at",
    ]  # fmt: skip
    (row,) = query(db, f"SELECT {', '.join(cols)} FROM sessions WHERE id=?", (sid,))
    return dict(zip(cols, row, strict=True))


MSG_COLS = (
    "sequence", "role", "content", "tool_name", "tool_input", "tool_output", "external_id",
    "model", "input_tokens", "output_tokens", "token_count", "metadata", "created_at",
)  # fmt: skip


def message_rows(db: Path, sid: str) -> list[dict[str, Any]]:
    rows = query(
        db,
        f"SELECT {', '.join(MSG_COLS)} FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    return [dict(zip(MSG_COLS, r, strict=True)) for r in rows]


TOOL_COLS = (
    "id", "message_id", "tool_name", "status", "input", "output", "error", "started_at",
    "ended_at", "duration_ms", "tool_use_id",
)  # fmt: skip


def tool_rows(db: Path, sid: str) -> list[dict[str, Any]]:
    rows = query(
        db,
        f"SELECT {', '.join(TOOL_COLS)} FROM tool_executions WHERE session_id=? ORDER BY started_at",
        (sid,),
    )
    return [dict(zip(TOOL_COLS, r, strict=True)) for r in rows]


def counts(db: Path) -> tuple[int, int, int]:
    (row,) = query(
        db,
        "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM messages),"
        " (SELECT COUNT(*) FROM tool_executions)",
    )
    return row[0], row[1], row[2]


def assistants(name: str, sid: str) -> list[dict[str, Any]]:
    return [m["info"] for m in stored(name)[sid] if m["info"]["role"] == "assistant"]


def logged_id(router: OpencodeRouter, oc_sid: str) -> str:
    session = router.session_for(oc_sid)
    assert session is not None
    return session.id


# ----- the tool scenario --------------------------------------------------------------------


def assert_tool_bash_rows(db: Path, sid: str) -> None:
    oc_sid = only_sid("tool_bash")
    msgs = stored("tool_bash")[oc_sid]
    user, first, second = (m["info"] for m in msgs)
    rows = message_rows(db, sid)
    shape = [(r["role"], r["tool_name"], r["external_id"]) for r in rows]
    reasoning, tool, text = msgs[1]["parts"][1], msgs[1]["parts"][2], msgs[2]["parts"][1]
    assert shape == [
        ("user", None, user["id"]),
        ("assistant", None, first["id"]),
        ("assistant", None, reasoning["id"]),
        ("assistant", "bash", tool["id"]),
        ("assistant", None, second["id"]),
        ("assistant", None, text["id"]),
    ]
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4, 5, 6]  # first sight, none wasted
    assert rows[0]["content"] == "Run echo for me"
    assert rows[2]["content"] == reasoning["text"]
    assert json.loads(rows[2]["metadata"])["part"] == "reasoning"
    assert rows[5]["content"] == "All done: the command printed hello-from-opencode."
    assert json.loads(rows[3]["tool_input"]) == {
        "command": "echo hello-from-opencode",
        "description": "Print a greeting",
    }
    assert json.loads(rows[3]["tool_output"]) == "hello-from-opencode\n"
    # The assistant message rows carry the recorded usage, exactly.
    for row, info in ((rows[1], first), (rows[4], second)):
        meta = json.loads(row["metadata"])
        assert row["model"] == info["modelID"] == "scripted-main"
        assert (row["input_tokens"], row["output_tokens"], row["token_count"]) == (
            info["tokens"]["input"],
            info["tokens"]["output"],
            info["tokens"]["total"],
        )
        assert meta["provider"] == info["providerID"] == "scripted"
        assert meta["cost_usd"] == info["cost"]
        assert meta["reasoning_tokens"] == info["tokens"]["reasoning"]
        assert meta["cache_read_tokens"] == info["tokens"]["cache"]["read"]
        assert meta["cache_write_tokens"] == info["tokens"]["cache"]["write"]
        assert meta["finish"] == info["finish"]
        assert meta["duration_ms"] == info["time"]["completed"] - info["time"]["created"]
        assert row["created_at"].startswith("2026-11-22T02:47:")
    assert (json.loads(rows[1]["metadata"])["cost_usd"], rows[4]["input_tokens"]) == (0.00297, 200)

    (tool_row,) = tool_rows(db, sid)
    state = tool["state"]
    assert tool_row["tool_name"] == "bash" and tool_row["status"] == "completed"
    assert tool_row["output"] == "hello-from-opencode\n" and tool_row["error"] is None
    assert tool_row["tool_use_id"] == tool["callID"] == "call_scripted_1"
    assert tool_row["duration_ms"] == state["time"]["end"] - state["time"]["start"] >= 0
    assert tool_row["started_at"] <= tool_row["ended_at"]
    assert tool_row["ended_at"] == "2026-11-22T02:47:12.271Z"
    tool_msg = query(db, "SELECT id FROM messages WHERE session_id=? AND tool_name='bash'", (sid,))
    assert tool_row["message_id"] == tool_msg[0][0]

    session = session_row(db, sid)
    infos = [first, second]
    assert session["status"] == "completed" and session["error_message"] is None
    assert (session["model"], session["provider"]) == ("scripted-main", "scripted")
    assert session["external_id"] == oc_sid and session["agent_type"] == "opencode"
    assert session["input_tokens"] == sum(i["tokens"]["input"] for i in infos) == 1000
    assert session["output_tokens"] == sum(i["tokens"]["output"] for i in infos) == 37
    assert session["cache_read_tokens"] == sum(i["tokens"]["cache"]["read"] for i in infos)
    assert session["cache_creation_tokens"] == 0
    assert session["cost_usd"] == pytest.approx(sum(i["cost"] for i in infos))
    assert session["cost_usd"] == pytest.approx(0.00408)  # what the server's session reports
    assert session["num_turns"] == 2 and session["ended_at"] is not None
    meta = json.loads(session["metadata"])
    assert meta["title"] == "Scripted title"
    assert meta["directory"] == "/tmp/cpl-opencode-2z71h1tp/project"
    assert meta["opencode"]["slug"] == "hidden-wolf"


def test_tool_stream_maps_exactly(local_db: Path) -> None:
    router = OpencodeRouter()
    replay(router, events("tool_bash"))
    sid = logged_id(router, only_sid("tool_bash"))
    router.close()
    assert cpl.flush(5)
    assert_tool_bash_rows(local_db, sid)
    assert router.stats.get("reconciled_rows", 0) == 0


def test_reconciliation_alone_gives_the_same_rows(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    router = OpencodeRouter()
    assert router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    rows = message_rows(local_db, sid)
    assert len(rows) == 6 and router.stats["reconciled_rows"] == 6
    assert [r["content"] for r in rows if r["content"]] == [
        "Run echo for me",
        "The user wants the greeting printed, so I will run echo.",
        "All done: the command printed hello-from-opencode.",
    ]
    (tool_row,) = tool_rows(local_db, sid)
    assert tool_row["status"] == "completed" and tool_row["output"] == "hello-from-opencode\n"
    session = session_row(local_db, sid)
    assert (session["input_tokens"], session["output_tokens"]) == (1000, 37)
    assert session["cost_usd"] == pytest.approx(0.00408)


def test_replayed_twice_and_reconciled_no_duplicates(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    router = OpencodeRouter()
    replay(router, events("tool_bash"))
    replay(router, events("tool_bash"))
    router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    assert counts(local_db) == (1, 6, 1)
    assert router.stats.get("reconciled_rows", 0) == 0  # the stream had everything
    assert_tool_bash_rows(local_db, sid)


def test_tool_execution_goes_pending_running_completed(local_db: Path) -> None:
    router = OpencodeRouter()
    seen: list[tuple[str, str | None, int | None]] = []
    for event in events("tool_bash"):
        router.handle(event)
        part = event["properties"].get("part", {})
        if event["type"] == "message.part.updated" and part.get("type") == "tool":
            assert cpl.flush(5)
            rows = query(local_db, "SELECT status, ended_at, duration_ms FROM tool_executions")
            seen.append(rows[0])
    statuses = [s[0] for s in seen]
    assert statuses == ["pending", "running", "running", "running", "completed"]
    assert all(ended is None for status, ended, _ in seen if status != "completed")
    assert seen[-1][1] is not None and seen[-1][2] == 1585
    # A late, older snapshot (reconciliation racing the stream) never moves a tool back.
    running = next(
        e
        for e in events("tool_bash")
        if e["properties"].get("part", {}).get("state", {}).get("status") == "running"
    )
    router.handle(running)
    router.close()
    assert cpl.flush(5)
    assert query(local_db, "SELECT status FROM tool_executions") == [("completed",)]
    assert query(local_db, "SELECT COUNT(*) FROM messages WHERE tool_name='bash'") == [(1,)]


def test_streaming_text_is_logged_once_final(local_db: Path) -> None:
    router = OpencodeRouter()
    evs = events("tool_bash")
    final_at = next(
        i
        for i, e in enumerate(evs)
        if e["type"] == "message.part.updated"
        and e["properties"]["part"].get("type") == "text"
        and e["properties"]["part"].get("time", {}).get("end")
    )
    replay(router, evs[:final_at])  # every delta and the empty start, not the final part
    assert cpl.flush(5)
    texts = query(local_db, "SELECT content FROM messages WHERE content LIKE 'All done%'")
    assert texts == []
    replay(router, evs[final_at:])
    router.close()
    assert cpl.flush(5)
    texts = query(local_db, "SELECT content FROM messages WHERE content LIKE 'All done%'")
    assert texts == [("All done: the command printed hello-from-opencode.",)]


# ----- gaps -----------------------------------------------------------------------------------


def test_gap_in_the_stream_is_filled_by_reconciliation(local_db: Path) -> None:
    """Events lost on a reconnect (here: the tool call and the whole second step)."""
    oc_sid = only_sid("tool_bash")
    evs = events("tool_bash")
    first_tool = next(
        i for i, e in enumerate(evs) if e["properties"].get("part", {}).get("type") == "tool"
    )
    idle = next(i for i, e in enumerate(evs) if e["type"] == "session.status" and i > first_tool
                and e["properties"]["status"]["type"] == "idle")  # fmt: skip
    router = OpencodeRouter()
    replay(router, evs[:first_tool])
    replay(router, evs[idle:])  # idle arrives, but nothing of the gap
    assert router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    assert router.stats["reconciled_rows"] == 3  # tool, second message, its text
    assert_tool_bash_rows(local_db, sid)


def test_reconcile_skips_history_from_before_watching(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    msgs = stored("tool_bash")[oc_sid]
    router = OpencodeRouter()
    router._state(oc_sid, floor_ms=msgs[2]["info"]["time"]["created"])
    router.reconcile(oc_sid, msgs)
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    rows = message_rows(local_db, sid)
    assert [r["external_id"] for r in rows] == [msgs[2]["info"]["id"], msgs[2]["parts"][1]["id"]]


# ----- parallel and error scenarios -----------------------------------------------------------


def test_parallel_sessions_are_logged_separately(local_db: Path) -> None:
    router = OpencodeRouter(agent_type="parallel-agents")
    replay(router, events("parallel"))
    all_msgs = stored("parallel")
    ids = {oc_sid: logged_id(router, oc_sid) for oc_sid in all_msgs}
    for oc_sid, msgs in all_msgs.items():
        router.reconcile(oc_sid, msgs)
    router.close()
    assert cpl.flush(5)
    assert counts(local_db) == (2, 10, 2)
    assert len(set(ids.values())) == 2
    for oc_sid, sid in ids.items():
        name = "alpha" if "alpha" in all_msgs[oc_sid][0]["parts"][0]["text"] else "beta"
        rows = message_rows(local_db, sid)
        assert rows[0]["role"] == "user" and rows[0]["content"] == f"[session:{name}] please work"
        assert rows[-1]["content"] == f"{name} is finished"
        assert [r["sequence"] for r in rows] == [1, 2, 3, 4, 5]
        (tool_row,) = tool_rows(local_db, sid)
        assert tool_row["output"] == f"{name}-output\n" and tool_row["status"] == "completed"
        assert tool_row["duration_ms"] is not None and tool_row["duration_ms"] >= 0
        infos = assistants("parallel", oc_sid)
        session = session_row(local_db, sid)
        assert session["external_id"] == oc_sid and session["agent_type"] == "parallel-agents"
        assert session["status"] == "completed"
        assert session["input_tokens"] == sum(i["tokens"]["input"] for i in infos) == 200
        assert session["output_tokens"] == sum(i["tokens"]["output"] for i in infos) == 40
        assert session["cost_usd"] == pytest.approx(sum(i["cost"] for i in infos))


def test_model_error_ends_the_turn_as_error(local_db: Path) -> None:
    oc_sid = only_sid("error")
    router = OpencodeRouter()
    evs = events("error")
    first_idle = next(i for i, e in enumerate(evs) if e["type"] == "session.idle")
    replay(router, evs[: first_idle + 1])
    sid = logged_id(router, oc_sid)
    assert cpl.flush(5)
    message = "APIError: scripted model failure: the prompt was rejected"
    turn = session_row(local_db, sid)
    assert (turn["status"], turn["error_message"]) == ("error", message)
    assert turn["ended_at"] is not None  # the turn is over: visible as finished at once
    replay(router, evs[first_idle + 1 :])
    router.reconcile(oc_sid, stored("error")[oc_sid])
    router.close()
    assert cpl.flush(5)
    session = session_row(local_db, sid)
    assert (session["status"], session["error_message"]) == ("error", message)
    rows = message_rows(local_db, sid)
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "This prompt will fail"),
        ("assistant", message),
    ]
    error = json.loads(rows[1]["metadata"])["error"]
    assert error["data"]["statusCode"] == 400
    assert (session["input_tokens"], session["cost_usd"]) == (0, 0.0)


def test_next_successful_turn_reopens_and_completes(local_db: Path) -> None:
    """One logged session per OpenCode session: each turn's outcome shows on the session."""
    router = OpencodeRouter()
    replay(router, events("error"))
    oc_sid = only_sid("error")
    sid = logged_id(router, oc_sid)
    for event in events("tool_bash"):  # a second turn in the same OpenCode session, later
        text = json.dumps(event).replace(only_sid("tool_bash"), oc_sid)
        router.handle(later(json.loads(text), 60_000))
    assert cpl.flush(5)
    assert session_row(local_db, sid)["status"] == "completed"
    router.close()
    assert cpl.flush(5)
    session = session_row(local_db, sid)
    assert (session["status"], session["error_message"]) == ("completed", None)
    assert session["input_tokens"] == 1000 and session["num_turns"] == 3
    assert counts(local_db) == (1, 8, 1)


# ----- robustness -----------------------------------------------------------------------------


def test_unknown_events_and_fields_are_kept_and_never_crash(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    evs = events("tool_bash")
    router = OpencodeRouter()
    replay(router, evs[:6])  # up to the user's prompt
    future = {
        "id": "evt_future_1",
        "type": "session.next.tool.success",
        "properties": {"sessionID": oc_sid, "callID": "x", "output": {"a": [1, 2]}},
    }
    garbage: list[Any] = [
        None,
        42,
        "not json",
        b"{}",
        {"type": 7},
        {"no": "type"},
        {"type": "message.updated", "properties": None},
        {"type": "message.updated", "properties": {"info": {"id": 5}}},
        {"type": "message.part.updated", "properties": {"part": {"type": "tool", "id": "p"}}},
        {"type": "session.error", "properties": {"error": "no session id"}},
        {"type": "something.new.delta", "properties": {"sessionID": oc_sid, "delta": "x"}},
        {"type": "plugin.added", "properties": {"name": "x"}},
        {"payload": {"type": "server.heartbeat", "properties": {}}, "directory": "/"},
        future,
        future,  # the same event again: kept once
    ]
    for event in garbage:
        router.handle(event)
    for event in evs[6:]:
        event = json.loads(json.dumps(event))
        if event["type"] == "message.updated":
            event["properties"]["info"]["newField"] = {"nested": True}
        part = event["properties"].get("part", {})
        if part.get("type") == "tool" and part["state"]["status"] == "running":
            part["state"]["status"] = "queued"  # a status this version does not know
        router.handle(event)
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    stats = router.stats
    assert stats["bad_events"] >= 3 and stats.get("mapping_errors", 0) == 0
    (future_row,) = query(
        local_db,
        "SELECT content, metadata FROM messages WHERE role='event' AND session_id=?",
        (sid,),
    )
    assert future_row[0] == "session.next.tool.success"
    assert json.loads(future_row[1])["properties"]["output"] == {"a": [1, 2]}
    extra = query(
        local_db,
        "SELECT metadata FROM messages WHERE session_id=? AND role='assistant' AND tool_name IS NULL"
        " AND content IS NULL",
        (sid,),
    )
    assert extra and all(json.loads(m[0])["extra"] == {"newField": {"nested": True}} for m in extra)
    (tool_row,) = tool_rows(local_db, sid)  # an unknown status in between did no harm
    assert tool_row["status"] == "completed"


def test_logged_session_joins_and_owns_the_outcome(local_db: Path) -> None:
    oc_sid = only_sid("error")
    router = OpencodeRouter()
    with cpl.logged_session("review", metadata={"pr": 7}, instrument=False) as block:
        assert router.attach(oc_sid) is block
        replay(router, events("error"))
        assert cpl.flush(5)
        assert session_row(local_db, block.id)["status"] == "running"  # the block decides
    router.close()
    assert cpl.flush(5)
    assert counts(local_db) == (1, 2, 0)  # no session of our own next to the block
    session = session_row(local_db, block.id)
    assert session["status"] == "error"
    assert "the prompt was rejected" in session["error_message"]
    assert (session["model"], session["provider"]) == ("scripted-main", "scripted")
    assert session["external_id"] == oc_sid
    meta = json.loads(session["metadata"])
    assert meta["pr"] == 7 and meta["opencode_sessions"][oc_sid]["title"] == "Scripted title"
    rows = message_rows(local_db, block.id)
    assert all(json.loads(r["metadata"])["opencode_session_id"] == oc_sid for r in rows)


def test_chat_prompt_is_adopted_by_the_user_message(local_db: Path) -> None:
    """The prompt logged before a chat call and the server's user message are one row."""
    oc_sid = only_sid("tool_bash")
    router = OpencodeRouter()
    st = router.begin_chat(
        oc_sid, "Run echo for me", model="scripted-main", provider="scripted", message_id=None
    )
    assert st is not None
    replay(router, events("tool_bash"))
    router.end_chat(st, None)
    sid = logged_id(router, oc_sid)
    router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    router.close()
    assert cpl.flush(5)
    assert counts(local_db) == (1, 6, 1)
    assert_tool_bash_rows(local_db, sid)


def test_logging_off_is_a_no_op() -> None:
    router = OpencodeRouter()
    replay(router, events("tool_bash"))
    router.close()
    assert router.session_for(only_sid("tool_bash")) is None
    assert router.stats.get("mapping_errors", 0) == 0


def test_sse_parser_and_error_text() -> None:
    lines = ['data: {"a":', "data: 1}", "", ": comment", "event: x", "", "data: 2", ""]
    assert list(sse_data(lines)) == ['{"a":\n1}', "2"]
    assert list(sse_data(["data:3"])) == ["3"]
    assert error_text({"name": "APIError", "data": {"message": "boom"}}) == "APIError: boom"
    assert error_text({"name": "MessageAbortedError"}) == "MessageAbortedError"
    assert error_text("plain") == "plain" and error_text(None) is None


def test_deleted_session_ends_and_child_session_joins_its_parent(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    router = OpencodeRouter()
    replay(router, events("tool_bash"))
    sid = logged_id(router, oc_sid)
    child = "ses_child_of_tool_bash"
    for event in (
        {"type": "session.created", "properties": {"info": {"id": child, "parentID": oc_sid}}},
        {
            "type": "message.updated",
            "properties": {"info": {"id": "msg_c1", "sessionID": child, "role": "user"}},
        },
        {
            "type": "message.part.updated",
            "properties": {
                "part": {
                    "id": "prt_c1",
                    "messageID": "msg_c1",
                    "sessionID": child,
                    "type": "text",
                    "text": "subtask prompt",
                }
            },
        },
        {"type": "session.idle", "properties": {"sessionID": child}},
    ):
        router.handle(event)
    assert router.session_for(child) is router.session_for(oc_sid)
    router.handle({"type": "session.deleted", "properties": {"info": {"id": oc_sid}}})
    assert cpl.flush(5)
    assert counts(local_db) == (1, 7, 1)
    (child_row,) = query(
        local_db, "SELECT content, metadata FROM messages WHERE external_id='msg_c1'"
    )
    assert child_row[0] == "subtask prompt"
    assert json.loads(child_row[1])["opencode_session_id"] == child
    session = session_row(local_db, sid)
    assert session["status"] == "completed" and session["ended_at"] is not None
    assert query(local_db, "SELECT duration_ms IS NOT NULL FROM sessions") == [(1,)]
    router.close()


def test_monitor_with_logging_off_does_nothing() -> None:
    monitor = cpl.monitor_opencode("http://127.0.0.1:9/")  # nothing listens there
    with monitor as m:
        assert m is monitor and not m.connected
        assert m.attach("ses_x") is None
    assert monitor.stats["connections"] == 0


def test_tool_error_state(local_db: Path) -> None:
    router = OpencodeRouter()
    for event in events("tool_bash"):
        state = event["properties"].get("part", {}).get("state", {})
        if state.get("status") == "completed":
            for key in ("output", "metadata", "title"):
                state.pop(key)
            state.update(status="error", error="Error: permission denied")
        router.handle(event)
    sid = logged_id(router, only_sid("tool_bash"))
    router.close()
    assert cpl.flush(5)
    (tool_row,) = tool_rows(local_db, sid)
    assert (tool_row["status"], tool_row["error"], tool_row["output"]) == (
        "error",
        "Error: permission denied",
        None,
    )
    assert tool_row["duration_ms"] == 1585 and tool_row["ended_at"] == "2026-11-22T02:47:12.271Z"
    (meta,) = query(local_db, "SELECT metadata FROM messages WHERE tool_name='bash'")
    assert json.loads(meta[0])["error"] == "Error: permission denied"
    assert session_row(local_db, sid)["status"] == "completed"  # a failed tool is not a failed turn


def test_chat_with_its_own_message_id(local_db: Path) -> None:
    oc_sid = only_sid("tool_bash")
    user_id = stored("tool_bash")[oc_sid][0]["info"]["id"]
    router = OpencodeRouter()
    st = router.begin_chat(oc_sid, "Run echo for me", model=None, provider=None, message_id=user_id)
    assert st is not None
    replay(router, events("tool_bash"))
    router.reconcile(oc_sid, stored("tool_bash")[oc_sid])
    router.end_chat(st, None)
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    assert counts(local_db) == (1, 6, 1)
    assert_tool_bash_rows(local_db, sid)


# ----- cache writes ---------------------------------------------------------------------------


def test_cache_writes_are_summed_and_kept_per_message(local_db: Path) -> None:
    """Providers that report prompt-cache writes (Anthropic through OpenCode) fill
    ``tokens.cache.write``: each message keeps its own, the session holds their sum, and
    snapshots repeated by the stream and by reconciliation count once."""
    oc_sid = only_sid("tool_bash")
    first, second = assistants("tool_bash", oc_sid)
    writes = {first["id"]: 250, second["id"]: 130}

    def with_writes(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: with_writes(v) for k, v in value.items()}
            if out.get("role") == "assistant" and out.get("id") in writes:
                out["tokens"] = {
                    **out["tokens"],
                    "cache": {**out["tokens"]["cache"], "write": writes[out["id"]]},
                }
            return out
        if isinstance(value, list):
            return [with_writes(v) for v in value]
        return value

    evs = with_writes(events("tool_bash"))
    updated = [
        e for e in evs
        if e["type"] == "message.updated" and e["properties"]["info"]["id"] in writes
    ]  # fmt: skip
    assert {e["properties"]["info"]["tokens"]["cache"]["write"] for e in updated} == {250, 130}
    router = OpencodeRouter()
    replay(router, evs)
    replay(router, updated)  # the same snapshots again
    router.reconcile(oc_sid, with_writes(stored("tool_bash"))[oc_sid])
    sid = logged_id(router, oc_sid)
    router.close()
    assert cpl.flush(5)
    session = session_row(local_db, sid)
    assert session["cache_creation_tokens"] == 380
    assert session["cache_read_tokens"] == 1500 and session["input_tokens"] == 1000
    rows = {r["external_id"]: r for r in message_rows(local_db, sid)}
    for mid, written in writes.items():
        meta = json.loads(rows[mid]["metadata"])
        assert meta["cache_write_tokens"] == written
        assert meta["cache_read_tokens"] == (400 if mid == first["id"] else 1100)
    from claude_parallel_logging import query as queries

    (row,) = queries.usage_summary("agent_type")
    assert (row.cache_creation_tokens, row.cache_read_tokens) == (380, 1500)


# ----- a monitor entered inside a logged session ----------------------------------------------


def test_monitor_entered_in_a_logged_session_joins_new_sessions(local_db: Path) -> None:
    """What ``with logged_session(...): with monitor_opencode(...):`` does: OpenCode sessions
    the monitor sees start go into that block; after the block, they get their own again."""
    router = OpencodeRouter()
    all_msgs = stored("parallel")
    with cpl.logged_session("block", instrument=False) as block:
        router.watch(7, "ignored-while-joined", block)
        for event in events("parallel"):
            router.handle(event, watcher=7)
        for oc_sid, msgs in all_msgs.items():
            assert router.reconcile(oc_sid, msgs)
        assert {router.session_for(s) for s in all_msgs} == {block}
        router.release(7)
    assert cpl.flush(5)
    assert counts(local_db) == (1, 10, 2)
    session = session_row(local_db, block.id)
    assert (session["agent_type"], session["status"]) == ("block", "completed")
    assert set(json.loads(session["metadata"])["opencode_sessions"]) == set(all_msgs)
    assert session["input_tokens"] == 400 and session["num_turns"] == 4
    rows = message_rows(local_db, block.id)
    for oc_sid in all_msgs:
        mine = [r for r in rows if json.loads(r["metadata"])["opencode_session_id"] == oc_sid]
        assert mine[0]["role"] == "user" and len(mine) == 5

    # The block is over: the same monitor state no longer joins it.
    later_router = OpencodeRouter()
    later_router.watch(8, "afterwards", block)
    for event in events("tool_bash"):
        later_router.handle(event, watcher=8)
    own = later_router.session_for(only_sid("tool_bash"))
    assert own is not None and own is not block and own.agent_type == "afterwards"
    later_router.release(8)


def test_monitors_in_two_logged_sessions_do_not_guess(local_db: Path) -> None:
    """Two monitors on one server, entered in two different blocks: every monitor sees every
    OpenCode session, so a new one belongs to neither block (it gets its own session)."""
    router = OpencodeRouter()
    with cpl.logged_session("a", instrument=False) as a, cpl.logged_session("b", instrument=False) as b:  # fmt: skip
        router.watch(1, None, a)
        router.watch(2, None, b)
        for event in events("tool_bash"):
            router.handle(event, watcher=1)
            router.handle(event, watcher=2)
        own = router.session_for(only_sid("tool_bash"))
        assert own is not None and own not in (a, b)
        assert router.stats["ambiguous_joins"] >= 1
        router.release(1)
        router.release(2)
    assert cpl.flush(5)
    assert_tool_bash_rows(local_db, own.id)
