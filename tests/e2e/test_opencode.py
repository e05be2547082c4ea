"""End-to-end: the real ``opencode serve`` (offline, scripted model) logged into a real database.

One server per module; each test scripts its own conversation by a marker in its prompt.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.integrations.opencode.router import router_for
from claude_parallel_logging.testing.openai_compat import Script, ScriptedOpenAIServer, Turn, Usage
from claude_parallel_logging.testing.opencode import (
    OpencodeServer,
    async_client,
    chat,
    chat_async,
    opencode_bin,
    sync_client,
)
from tests.conftest import query

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

WAIT = 60.0  # every wait for the agent is bounded by this


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def opencode(model: ScriptedOpenAIServer) -> Iterator[OpencodeServer]:
    try:
        opencode_bin()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with OpencodeServer(model.url) as server:
        yield server


@pytest.fixture(autouse=True)
def _not_instrumented() -> Iterator[None]:
    cpl.uninstrument()
    yield
    cpl.uninstrument()


def bash_script(marker: str, word: str, *, delay: float = 0.0) -> Script:
    return Script(
        [
            Turn.bash(
                f"echo {word}",
                reasoning=f"I will run echo {word}.",
                usage=Usage(prompt_tokens=1200, completion_tokens=30, cached_tokens=400),
                delay=delay,
            ),
            Turn.reply(
                f"Done: {word}.",
                usage=Usage(prompt_tokens=1300, completion_tokens=12, cached_tokens=1100),
            ),
        ],
        marker=marker,
    )


# ----- assertions on rows -------------------------------------------------------------------


def logged_session_of(db: Path, oc_sid: str) -> str:
    """The one logged session whose rows came from this OpenCode session."""
    rows = query(db, "SELECT id FROM sessions WHERE external_id=?", (oc_sid,))
    assert len(rows) == 1, rows
    return str(rows[0][0])


def expected_rows(messages: list[dict[str, Any]]) -> tuple[set[str], int]:
    """External ids of the rows a stored conversation must give, and its tool parts."""
    ids: set[str] = set()
    tools = 0
    for message in messages:
        ids.add(message["info"]["id"])
        if message["info"]["role"] == "user":
            continue  # its text parts are the user row's content
        for part in message["parts"]:
            if part["type"] in ("step-start", "step-finish"):
                continue
            if part["type"] in ("text", "reasoning") and not part.get("text"):
                continue
            ids.add(part["id"])
            tools += part["type"] == "tool"
    return ids, tools


def assert_conversation(
    db: Path, sid: str, messages: list[dict[str, Any]], prompt: str, word: str
) -> None:
    """Every stored message and part is one row (no more, no fewer); the numbers match."""
    rows = query(
        db,
        "SELECT role, content, tool_name, external_id, sequence FROM messages"
        " WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    ids, n_tools = expected_rows(messages)
    external = [r[3] for r in rows]
    assert sorted(external) == sorted(ids), (external, ids)  # each exactly once
    assert [r[4] for r in rows] == sorted(r[4] for r in rows)
    assert rows[0][:2] == ("user", prompt)
    assert rows[-1][:2] == ("assistant", f"Done: {word}.")
    tools = query(
        db,
        "SELECT tool_name, status, output, duration_ms, tool_use_id, started_at <= ended_at"
        " FROM tool_executions WHERE session_id=?",
        (sid,),
    )
    assert len(tools) == n_tools == 1
    name, status, output, duration, call_id, ordered = tools[0]
    assert (name, status, output.strip(), ordered) == ("bash", "completed", word, 1)
    assert duration is not None and duration >= 0 and call_id.startswith("call_scripted_")
    assistants = [m["info"] for m in messages if m["info"]["role"] == "assistant"]
    (session,) = query(
        db,
        "SELECT input_tokens, output_tokens, cache_read_tokens, cost_usd, model, provider,"
        " num_turns FROM sessions WHERE id=?",
        (sid,),
    )
    assert session[0] == sum(a["tokens"]["input"] for a in assistants) == 1000
    assert session[1] == sum(a["tokens"]["output"] for a in assistants) == 42
    assert session[2] == sum(a["tokens"]["cache"]["read"] for a in assistants) == 1500
    assert session[3] == pytest.approx(sum(a["cost"] for a in assistants)) and session[3] > 0
    assert session[4:] == ("scripted-main", "scripted", 2)


def session_status(db: Path, sid: str) -> tuple[Any, ...]:
    (row,) = query(
        db, "SELECT status, error_message, ended_at IS NOT NULL FROM sessions WHERE id=?", (sid,)
    )
    return tuple(row)


# ----- the monitor ----------------------------------------------------------------------------


def test_monitor_logs_a_sync_chat_with_a_real_tool(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(bash_script("[e2e:sync]", "hello-from-opencode"))
    prompt = "[e2e:sync] Run echo for me"
    with sync_client(opencode.base_url, timeout=WAIT) as client:
        with cpl.monitor_opencode(client) as monitor:
            oc_sid = client.session.create().id
            result = chat(client, oc_sid, prompt, timeout=WAIT)
            assert monitor.wait_idle(oc_sid, WAIT)
            assert cpl.flush(5)
            sid = logged_session_of(local_db, oc_sid)
            assert session_status(local_db, sid) == ("completed", None, 1)  # the turn is done
    assert [p.get("text") for p in result.to_dict()["parts"] if p.get("type") == "text"] == [
        "Done: hello-from-opencode."
    ]
    assert cpl.flush(5)
    assert_conversation(local_db, sid, opencode.messages(oc_sid), prompt, "hello-from-opencode")
    assert session_status(local_db, sid) == ("completed", None, 1)
    (meta,) = query(local_db, "SELECT metadata, agent_type FROM sessions WHERE id=?", (sid,))
    assert json.loads(meta[0])["directory"] == str(opencode.project_dir)
    assert meta[1] == "opencode"


async def test_async_monitor_two_parallel_sessions(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    names = ("alpha", "beta")
    for name in names:
        model.add_script(bash_script(f"[e2e:{name}]", f"{name}-output", delay=0.3))
    async with async_client(opencode.base_url, timeout=WAIT) as client:
        async with cpl.monitor_opencode(client, agent_type="parallel") as monitor:
            sessions = [(await client.session.create()).id for _ in names]
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        chat_async(client, oc_sid, f"[e2e:{name}] please work", timeout=WAIT)
                        for oc_sid, name in zip(sessions, names)
                    )
                ),
                timeout=WAIT,
            )
            for oc_sid in sessions:
                assert await asyncio.to_thread(monitor.wait_idle, oc_sid, WAIT)
    assert cpl.flush(5)
    logged = [logged_session_of(local_db, oc_sid) for oc_sid in sessions]
    assert len(set(logged)) == 2
    for oc_sid, sid, name in zip(sessions, logged, names):
        messages = opencode.messages(oc_sid)
        assert_conversation(local_db, sid, messages, f"[e2e:{name}] please work", f"{name}-output")
        assert session_status(local_db, sid) == ("completed", None, 1)
        (agent,) = query(local_db, "SELECT agent_type FROM sessions WHERE id=?", (sid,))
        assert agent == ("parallel",)
    # Both conversations really ran at the same time.
    a, b = (model.main_requests(f"[e2e:{n}]") for n in names)
    assert a[0].at < b[1].at and b[0].at < a[1].at


def test_model_error_is_the_session_error(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(Script([Turn.fail(400, "scripted failure: rejected")], marker="[e2e:error]"))
    with cpl.monitor_opencode(opencode.base_url) as monitor:
        oc_sid = opencode.create_session()["id"]
        opencode.prompt_async(oc_sid, "[e2e:error] This prompt will fail")
        assert monitor.wait_idle(oc_sid, WAIT)
        assert cpl.flush(5)
        sid = logged_session_of(local_db, oc_sid)
        status, message, ended = session_status(local_db, sid)
        assert (status, ended) == ("error", 1) and "scripted failure: rejected" in message
    assert cpl.flush(5)
    status, message, _ = session_status(local_db, sid)
    assert status == "error" and message.startswith("APIError: ")
    rows = query(
        local_db,
        "SELECT role, content FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    assert rows[0] == ("user", "[e2e:error] This prompt will fail")
    assert rows[1][0] == "assistant" and "scripted failure: rejected" in rows[1][1]
    assert len(rows) == 2
    assert len(model.main_requests("[e2e:error]")) == 1


# ----- instrument() ---------------------------------------------------------------------------


async def test_instrumented_chat_without_monitor(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    """No event stream at all: the prompt is logged, the turn comes from reconciliation."""
    assert "opencode_ai" in cpl.instrument(opencode_agent_type="oc-agent")
    model.add_script(bash_script("[e2e:inst-sync]", "sync-word"))
    model.add_script(bash_script("[e2e:inst-async]", "async-word"))
    with sync_client(opencode.base_url, timeout=WAIT) as client:
        sync_sid = client.session.create().id
        chat(client, sync_sid, "[e2e:inst-sync] go", timeout=WAIT)
    async with async_client(opencode.base_url, timeout=WAIT) as aclient:
        async_sid = (await aclient.session.create()).id
        await chat_async(aclient, async_sid, "[e2e:inst-async] go", timeout=WAIT)
    assert cpl.flush(5)  # nothing to wait for: the call itself reconciled
    for oc_sid, word in ((sync_sid, "sync-word"), (async_sid, "async-word")):
        sid = logged_session_of(local_db, oc_sid)
        marker = "inst-sync" if word == "sync-word" else "inst-async"
        messages = opencode.messages(oc_sid)
        assert_conversation(local_db, sid, messages, f"[e2e:{marker}] go", word)
        assert session_status(local_db, sid) == ("completed", None, 1)
        (agent,) = query(local_db, "SELECT agent_type FROM sessions WHERE id=?", (sid,))
        assert agent == ("oc-agent",)
    cpl.uninstrument()
    from opencode_ai.resources.session import AsyncSessionResource, SessionResource

    assert not hasattr(SessionResource.chat, "__wrapped__")
    assert not hasattr(AsyncSessionResource.chat, "__wrapped__")


def test_instrumented_chat_error_is_unchanged(local_db: Path, opencode: OpencodeServer) -> None:
    """A failing call raises exactly as without logging; its prompt and error are logged."""
    from opencode_ai import APIStatusError

    with sync_client(opencode.base_url, timeout=WAIT) as client:
        with pytest.raises(APIStatusError) as plain:
            chat(client, "ses_does_not_exist", "[e2e:nope] hello", timeout=WAIT)
        cpl.instrument()
        with pytest.raises(APIStatusError) as logged:
            chat(client, "ses_does_not_exist", "[e2e:nope] hello", timeout=WAIT)
    assert type(logged.value) is type(plain.value)
    assert logged.value.status_code == plain.value.status_code
    assert cpl.flush(5)
    sid = logged_session_of(local_db, "ses_does_not_exist")
    status, message, ended = session_status(local_db, sid)
    assert (status, ended) == ("error", 1) and type(plain.value).__name__ in message
    rows = query(local_db, "SELECT role, content FROM messages WHERE session_id=?", (sid,))
    assert rows == [("user", "[e2e:nope] hello")]


def test_instrument_and_monitor_together_log_once(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    cpl.instrument()
    model.add_script(bash_script("[e2e:both]", "both-word"))
    model.add_script(bash_script("[e2e:both2]", "second-word"))
    with sync_client(opencode.base_url, timeout=WAIT) as client:
        with cpl.monitor_opencode(client) as monitor:
            oc_sid = client.session.create().id
            chat(client, oc_sid, "[e2e:both] go", timeout=WAIT)
            assert monitor.wait_idle(oc_sid, WAIT)
            stats = monitor.stats
    assert cpl.flush(5)
    sid = logged_session_of(local_db, oc_sid)
    assert_conversation(local_db, sid, opencode.messages(oc_sid), "[e2e:both] go", "both-word")
    assert stats["events"] > 20 and stats.get("mapping_errors", 0) == 0


async def test_async_instrumented_chat_and_monitor_log_once(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    """The async client's chat() is instrumented and an ``async with`` monitor runs: both see
    the whole turn, each stored message and part is one row, the tool one execution."""
    cpl.instrument()
    model.add_script(bash_script("[e2e:abothx]", "async-both-word"))
    async with async_client(opencode.base_url, timeout=WAIT) as client:
        async with cpl.monitor_opencode(client) as monitor:
            oc_sid = (await client.session.create()).id
            await asyncio.wait_for(
                chat_async(client, oc_sid, "[e2e:abothx] go", timeout=WAIT), WAIT
            )
            assert await asyncio.to_thread(monitor.wait_idle, oc_sid, WAIT)
    stats = monitor.stats
    assert cpl.flush(5)
    sid = logged_session_of(local_db, oc_sid)
    messages = opencode.messages(oc_sid)
    assert_conversation(local_db, sid, messages, "[e2e:abothx] go", "async-both-word")
    assert stats["events"] > 20 and stats.get("mapping_errors", 0) == 0
    assert query(local_db, "SELECT COUNT(*) FROM sessions") == [(1,)]
    (dupes,) = query(
        local_db,
        "SELECT COUNT(*) - COUNT(DISTINCT external_id) FROM messages WHERE session_id=?",
        (sid,),
    )
    assert dupes == (0,)
    assert session_status(local_db, sid) == ("completed", None, 1)


# ----- logged_session -------------------------------------------------------------------------


def test_logged_session_is_joined(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(bash_script("[e2e:join-chat]", "chat-word"))
    model.add_script(bash_script("[e2e:join-attach]", "attach-word"))
    with sync_client(opencode.base_url, timeout=WAIT) as client:
        with cpl.monitor_opencode(client) as monitor:
            with cpl.logged_session("review", metadata={"pr": 42}) as block:
                chat_sid = client.session.create().id  # joins through the instrumented chat
                chat(client, chat_sid, "[e2e:join-chat] go", timeout=WAIT)
                attach_sid = opencode.create_session()["id"]  # joins through attach()
                assert monitor.attach(attach_sid) is block
                opencode.prompt_async(attach_sid, "[e2e:join-attach] go")
                assert monitor.wait_idle(attach_sid, WAIT)
                assert monitor.wait_idle(chat_sid, WAIT)
    assert cpl.flush(5)
    sessions = query(local_db, "SELECT id, status, agent_type, metadata FROM sessions")
    assert len(sessions) == 1  # nothing of our own next to the block
    sid, status, agent, meta = sessions[0]
    assert (sid, status, agent) == (block.id, "completed", "review")
    details = json.loads(meta)
    assert details["pr"] == 42 and set(details["opencode_sessions"]) == {chat_sid, attach_sid}
    rows = query(
        local_db,
        "SELECT external_id, metadata FROM messages WHERE session_id=? ORDER BY sequence",
        (sid,),
    )
    for oc_sid in (chat_sid, attach_sid):
        ids, _ = expected_rows(opencode.messages(oc_sid))
        mine = [r[0] for r in rows if json.loads(r[1])["opencode_session_id"] == oc_sid]
        assert sorted(mine) == sorted(ids)
    tools = query(local_db, "SELECT output FROM tool_executions WHERE session_id=?", (sid,))
    assert sorted(t[0].strip() for t in tools) == ["attach-word", "chat-word"]
    (totals,) = query(local_db, "SELECT input_tokens, num_turns FROM sessions")
    assert totals == (2000, 4)


def test_monitor_entered_in_a_logged_session_joins_it(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    """No chat call, no attach(): a session prompted while the monitor runs joins the block
    the monitor was entered in, and nothing of its own is created next to it."""
    model.add_script(bash_script("[e2e:mjoin]", "joined-word"))
    with cpl.logged_session("block", metadata={"task": 7}) as block:
        with cpl.monitor_opencode(opencode.base_url, agent_type="unused") as monitor:
            oc_sid = opencode.create_session()["id"]
            opencode.prompt_async(oc_sid, "[e2e:mjoin] go")
            assert monitor.wait_idle(oc_sid, WAIT)
            assert monitor.session_for(oc_sid) is block
    assert cpl.flush(5)
    sessions = query(local_db, "SELECT id, agent_type, status, metadata FROM sessions")
    assert len(sessions) == 1, sessions
    sid, agent, status, meta = sessions[0]
    assert (sid, agent, status) == (block.id, "block", "completed")
    details = json.loads(meta)
    assert details["task"] == 7 and list(details["opencode_sessions"]) == [oc_sid]
    assert_conversation(local_db, sid, opencode.messages(oc_sid), "[e2e:mjoin] go", "joined-word")
    detail = q.get_session(oc_sid)
    assert detail is not None and detail.session.id == block.id


def _assert_logged_call(db: Path, oc_sid: str, agent_type: str, word: str, prompt: str,
                        opencode: OpencodeServer) -> None:  # fmt: skip
    rows = query(db, "SELECT id, agent_type, status, external_id FROM sessions")
    mine = [r for r in rows if r[3] == oc_sid]
    assert len(mine) == 1, rows  # one session for the call, nothing of its own next to it
    sid, agent, status, _ = mine[0]
    assert (agent, status) == (agent_type, "completed")
    assert_conversation(db, sid, opencode.messages(oc_sid), prompt, word)


def test_logged_sync_function_with_opencode(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(bash_script("[e2e:deco-sync]", "deco-sync-word"))

    @cpl.logged(agent_type="deco-sync")
    def work() -> str:
        """An existing agent function, untouched."""
        with sync_client(opencode.base_url, timeout=WAIT) as client:
            oc_sid: str = client.session.create().id
            chat(client, oc_sid, "[e2e:deco-sync] go", timeout=WAIT)
            return oc_sid

    oc_sid = work()
    assert work.__doc__ == "An existing agent function, untouched."
    assert cpl.flush(5)
    assert query(local_db, "SELECT COUNT(*) FROM sessions") == [(1,)]
    _assert_logged_call(
        local_db, oc_sid, "deco-sync", "deco-sync-word", "[e2e:deco-sync] go", opencode
    )


async def test_logged_async_function_with_opencode(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(bash_script("[e2e:deco-async]", "deco-async-word"))

    @cpl.logged(agent_type="deco-async")
    async def work(prompt: str) -> str:
        async with async_client(opencode.base_url, timeout=WAIT) as client:
            oc_sid: str = (await client.session.create()).id
            await chat_async(client, oc_sid, prompt, timeout=WAIT)
            return oc_sid

    oc_sid = await asyncio.wait_for(work("[e2e:deco-async] go"), WAIT)
    assert cpl.flush(5)
    assert query(local_db, "SELECT COUNT(*) FROM sessions") == [(1,)]
    _assert_logged_call(
        local_db, oc_sid, "deco-async", "deco-async-word", "[e2e:deco-async] go", opencode
    )


def test_monitor_exit_during_a_turn_ends_the_session_as_error(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    model.add_script(bash_script("[e2e:busy]", "too-late", delay=3.0))
    with cpl.monitor_opencode(opencode.base_url) as monitor:
        oc_sid = opencode.create_session()["id"]
        opencode.prompt_async(oc_sid, "[e2e:busy] go")
        deadline = time.monotonic() + 20
        while monitor.session_for(oc_sid) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
    assert time.monotonic() - started < 3.0  # stopping does not wait for the agent
    assert cpl.flush(5)
    sid = logged_session_of(local_db, oc_sid)
    status, message, ended = session_status(local_db, sid)
    assert (status, ended) == ("error", 1) and "still running" in message
    rows = query(local_db, "SELECT role, content FROM messages WHERE session_id=?", (sid,))
    assert rows[0] == ("user", "[e2e:busy] go")


# ----- a cut stream -------------------------------------------------------------------------


class CutProxy:
    """A loopback TCP proxy the test can cut: open connections dropped, new ones refused."""

    def __init__(self, target_port: int, *, lifetime: float = 120.0) -> None:
        self.target_port = target_port
        self.deadline = time.monotonic() + lifetime
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.refuse_until = 0.0
        self.cuts = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if time.monotonic() < self.refuse_until:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            with self._lock:
                self._socks += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(60)  # a silent connection ends after a minute
        try:
            while time.monotonic() < self.deadline:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self, refuse_for: float) -> None:
        self.refuse_until = time.monotonic() + refuse_for
        self.cuts += 1
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.cut(0)
        self.listener.close()
        self._thread.join(timeout=5)


def test_cut_stream_reconnects_and_loses_nothing(
    local_db: Path, model: ScriptedOpenAIServer, opencode: OpencodeServer
) -> None:
    # The model waits 1.5 s before the tool call, so the cut falls inside the turn.
    model.add_script(bash_script("[e2e:cut]", "survivor", delay=1.5))
    proxy = CutProxy(opencode.port)
    try:
        with cpl.monitor_opencode(proxy.url) as monitor:
            oc_sid = opencode.create_session()["id"]
            opencode.prompt_async(oc_sid, "[e2e:cut] go")
            deadline = time.monotonic() + 20
            while monitor.session_for(oc_sid) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert monitor.session_for(oc_sid) is not None
            proxy.cut(refuse_for=4.0)  # the tool call and the answer happen meanwhile
            assert monitor.wait_idle(oc_sid, WAIT)
            assert cpl.flush(5)
            sid = logged_session_of(local_db, oc_sid)
            assert session_status(local_db, sid) == ("completed", None, 1)
        stats = monitor.stats  # the reader thread has stopped: final numbers
    finally:
        proxy.close()
    assert stats["connections"] >= 2 and stats.get("catch_ups", 0) >= 1
    assert stats["reconciled_rows"] >= 3  # the gap was filled from the stored messages
    assert cpl.flush(5)
    assert_conversation(local_db, sid, opencode.messages(oc_sid), "[e2e:cut] go", "survivor")
    assert router_for(proxy.url).session_for(oc_sid) is None  # released at exit
