"""End-to-end: the real ``opencode serve`` driven by the offline scripted model.

These prove the test harness itself (scripts, routing, error surfacing) and,
with ``CPL_RECORD_OPENCODE=<dir>`` set, re-record ``tests/data/opencode``
(read at import time because the autouse fixture clears ``CPL_*`` vars).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_parallel_logging.testing.openai_compat import (
    Script,
    ScriptedOpenAIServer,
    Turn,
    Usage,
)
from claude_parallel_logging.testing.opencode import (
    EventRecorder,
    OpencodeServer,
    async_client,
    chat,
    chat_async,
    opencode_bin,
    sync_client,
)

RECORD_DIR = os.environ.get("CPL_RECORD_OPENCODE")
WAIT = 60.0  # every wait for the agent is bounded by this


def _bin_or_skip() -> None:
    try:
        opencode_bin()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture
def opencode(model: ScriptedOpenAIServer) -> Iterator[OpencodeServer]:
    _bin_or_skip()
    with OpencodeServer(model.url) as server:
        yield server


@pytest.fixture
def events(opencode: OpencodeServer) -> Iterator[EventRecorder]:
    with EventRecorder(opencode.base_url) as recorder:
        yield recorder


def _record(name: str, recorder: EventRecorder, messages: dict[str, list[Any]]) -> None:
    if not RECORD_DIR:
        return
    out = Path(RECORD_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.events.jsonl").write_text("".join(line + "\n" for line in recorder.raw))
    (out / f"{name}.messages.json").write_text(json.dumps(messages, indent=1) + "\n")


def _parts(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [p for m in messages for p in m["parts"] if p["type"] == kind]


def _tool_messages(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [m for m in (body or {}).get("messages", []) if m.get("role") == "tool"]


# -- the scripted server alone (fast, no opencode) ---------------------------


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _chat_body(text: str, *, model: str = "scripted-main", stream: bool = True) -> dict[str, Any]:
    return {
        "model": model,
        "stream": stream,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}],
    }


def _sse_chunks(raw: bytes) -> list[Any]:
    datas = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    return [json.loads(d) for d in datas[:-1]]


def test_scripted_server_streams_tool_calls_and_usage() -> None:
    turn = Turn.bash("echo hi", reasoning="think", usage=Usage(50, 9, cached_tokens=20))
    with ScriptedOpenAIServer([turn]) as server:
        status, headers, raw = _post(server.url + "/chat/completions", _chat_body("go"))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    chunks = _sse_chunks(raw)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] == "call_scripted_1" and calls[0]["function"]["name"] == "bash"
    args = "".join(tc["function"]["arguments"] for tc in calls)
    assert json.loads(args)["command"] == "echo hi"
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "think"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 20


def test_scripted_server_routes_side_requests_markers_and_errors() -> None:
    scripts = [Script([Turn.reply("for A")], marker="[A]")]
    default = [Turn.fail(400, "nope", retry_after_ms=5), Turn.reply("second")]
    with ScriptedOpenAIServer(default, scripts=scripts) as server:
        url = server.url + "/chat/completions"
        status, _, raw = _post(url, _chat_body("title?", model="scripted-small", stream=False))
        assert status == 200
        assert json.loads(raw)["choices"][0]["message"]["content"] == "Scripted title"
        status, headers, raw = _post(url, _chat_body("plain"))
        assert status == 400 and headers["retry-after-ms"] == "5"
        assert json.loads(raw)["error"]["message"] == "nope"
        status, _, raw = _post(url, _chat_body("[A] hello", stream=False))
        assert json.loads(raw)["choices"][0]["message"]["content"] == "for A"
        status, _, raw = _post(url, _chat_body("[A] again", stream=False))
        assert json.loads(raw)["choices"][0]["message"]["content"] == server.exhausted_text
        status, _, raw = _post(url, _chat_body("plain", stream=False))
        assert json.loads(raw)["choices"][0]["message"]["content"] == "second"
        with urllib.request.urlopen(server.url + "/models", timeout=10) as resp:
            assert {m["id"] for m in json.load(resp)["data"]} >= {"scripted-main"}
        assert _post(server.url + "/unknown/path", {})[0] == 200
        kinds = [(r.kind, r.script, r.turn_index) for r in server.requests]
    assert kinds == [
        ("side", None, None),
        ("main", "default", 0),
        ("main", "[A]", 0),
        ("main", "[A]", 1),
        ("main", "default", 1),
        ("other", None, None),
        ("other", None, None),
    ]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_bash_tool_call_really_runs(
    model: ScriptedOpenAIServer, opencode: OpencodeServer, events: EventRecorder
) -> None:
    model.set_default(
        [
            Turn.bash(
                "echo hello-from-opencode",
                description="Print a greeting",
                reasoning="The user wants the greeting printed, so I will run echo.",
                usage=Usage(prompt_tokens=1200, completion_tokens=30, cached_tokens=400),
            ),
            Turn.reply(
                "All done: the command printed hello-from-opencode.",
                usage=Usage(
                    prompt_tokens=1300, completion_tokens=12, cached_tokens=1100, reasoning_tokens=5
                ),
            ),
        ]
    )
    session = opencode.create_session()
    sid = session["id"]
    started = time.monotonic()
    with sync_client(opencode.base_url, timeout=WAIT) as client:
        result = chat(client, sid, "Run echo for me")
    assert time.monotonic() - started < WAIT

    texts = [p.get("text") for p in result.to_dict()["parts"] if p.get("type") == "text"]
    assert texts == ["All done: the command printed hello-from-opencode."]

    events.wait_idle(sid, timeout=WAIT)
    events.wait_quiet()
    messages = opencode.messages(sid)
    _record("tool_bash", events, {sid: messages})
    if RECORD_DIR:  # the server's own OpenAPI document, for schema questions
        (Path(RECORD_DIR) / "openapi.json").write_text(json.dumps(opencode.get("/doc")) + "\n")

    assert [m["info"]["role"] for m in messages] == ["user", "assistant", "assistant"]
    (tool,) = _parts(messages, "tool")
    assert tool["tool"] == "bash"
    assert tool["state"]["status"] == "completed"
    assert tool["state"]["input"]["command"] == "echo hello-from-opencode"
    assert "hello-from-opencode" in tool["state"]["output"]
    assert all(m["info"]["cost"] > 0 for m in messages[1:])
    (reasoning,) = _parts(messages, "reasoning")
    assert reasoning["text"].startswith("The user wants the greeting printed")
    # opencode's token accounting: input excludes cached, output excludes reasoning.
    assert messages[2]["info"]["tokens"] == {
        "total": 1312,
        "input": 200,
        "output": 7,
        "reasoning": 5,
        "cache": {"read": 1100, "write": 0},
    }

    # The model saw the real shell output as a role=tool message.
    main = model.main_requests()
    assert [r.turn_index for r in main] == [0, 1]
    (tool_msg,) = _tool_messages(main[1].body)
    assert tool_msg["tool_call_id"] == tool["callID"]
    assert "hello-from-opencode" in str(tool_msg["content"])
    # Title generation went to the small model and consumed no turn.
    assert all(
        r.body and r.body["model"] == "scripted-small" for r in model.requests if r.kind == "side"
    )

    seen = events.events
    assert any(
        e["type"] == "message.part.updated"
        and e["properties"]["part"].get("type") == "tool"
        and e["properties"]["part"]["state"]["status"] == "completed"
        for e in seen
    )


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_parallel_sessions_follow_their_own_scripts(
    model: ScriptedOpenAIServer, opencode: OpencodeServer, events: EventRecorder
) -> None:
    names = ("alpha", "beta")
    for name in names:
        model.add_script(
            Script(
                [
                    Turn.bash(f"echo {name}-output", delay=0.3),
                    Turn.reply(f"{name} is finished"),
                ],
                marker=f"[session:{name}]",
            )
        )
    async with async_client(opencode.base_url, timeout=WAIT) as client:
        sessions = [await client.session.create() for _ in names]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    chat_async(client, s.id, f"[session:{name}] please work")
                    for s, name in zip(sessions, names)
                )
            ),
            timeout=WAIT,
        )
    for result, name in zip(results, names):
        texts = [p.get("text") for p in result.to_dict()["parts"] if p.get("type") == "text"]
        assert texts == [f"{name} is finished"]

    for s in sessions:
        await asyncio.to_thread(events.wait_idle, s.id, timeout=WAIT)
    await asyncio.to_thread(events.wait_quiet)
    all_messages = {s.id: opencode.messages(s.id) for s in sessions}
    _record("parallel", events, all_messages)

    for s, name in zip(sessions, names):
        (tool,) = _parts(all_messages[s.id], "tool")
        assert tool["state"]["output"].strip() == f"{name}-output"
        requests = model.main_requests(f"[session:{name}]")
        assert [r.turn_index for r in requests] == [0, 1]
    # Both conversations were in flight at once.
    a, b = (model.main_requests(f"[session:{n}]") for n in names)
    assert a[0].at < b[1].at and b[0].at < a[1].at
    # One /event stream carries every session of the instance.
    seen = {e.get("properties", {}).get("sessionID") for e in events.events}
    assert {s.id for s in sessions} <= seen


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_model_error_surfaces_as_session_error(
    model: ScriptedOpenAIServer, opencode: OpencodeServer, events: EventRecorder
) -> None:
    model.set_default([Turn.fail(400, "scripted model failure: the prompt was rejected")])
    sid = opencode.create_session()["id"]
    started = time.monotonic()
    opencode.prompt_async(sid, "This prompt will fail")
    error = events.wait_for(
        lambda e: e["type"] == "session.error" and e["properties"].get("sessionID") == sid,
        timeout=WAIT,
    )
    assert time.monotonic() - started < 20, "a 400 must not be retried"
    assert error["properties"]["error"]["name"] == "APIError"
    assert error["properties"]["error"]["data"]["statusCode"] == 400
    assert "the prompt was rejected" in error["properties"]["error"]["data"]["message"]

    events.wait_idle(sid, timeout=WAIT)
    events.wait_quiet()
    messages = opencode.messages(sid)
    _record("error", events, {sid: messages})

    assistant = [m for m in messages if m["info"]["role"] == "assistant"]
    assert len(assistant) == 1
    assert assistant[0]["info"]["error"]["data"]["statusCode"] == 400
    assert len(model.main_requests()) == 1


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_retryable_error_is_retried_then_succeeds(
    model: ScriptedOpenAIServer, opencode: OpencodeServer, events: EventRecorder
) -> None:
    model.set_default(
        [Turn.fail(503, "scripted overload", retry_after_ms=100), Turn.reply("recovered")]
    )
    sid = opencode.create_session()["id"]
    opencode.prompt_async(sid, "Retry me")
    events.wait_idle(sid, timeout=WAIT)
    retry = events.wait_for(
        lambda e: (
            e["type"] == "session.status" and e["properties"]["status"].get("type") == "retry"
        ),
        timeout=1,
    )
    assert retry["properties"]["status"]["attempt"] == 1
    texts = [p["text"] for p in _parts(opencode.messages(sid), "text")]
    assert texts[-1] == "recovered"
    assert len(model.main_requests()) == 2
