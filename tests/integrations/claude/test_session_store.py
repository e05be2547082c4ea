"""TursoSessionStore: the SDK's conformance suite in both modes, resume and fork across
processes with the real CLI, idempotency, concurrency, big and odd entries, failures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import turso
from claude_agent_sdk import SessionStore, fold_session_summary, get_session_messages_from_store
from claude_agent_sdk.testing import run_session_store_conformance

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.claude.session_store import TursoSessionStore
from claude_parallel_logging.storage import transcripts as sql
from claude_parallel_logging.testing.anthropic import ScriptedAnthropicServer, text_turn
from claude_parallel_logging.testing.tursodb import free_port
from tests.conftest import REPO, SECRET_TOKEN, SyncServer
from tests.conftest import query as db_query

KEY = {"project_key": "proj", "session_id": "sess"}


def entry(n: int, uuid: str | None = None, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "user", "n": n, **extra}
    if uuid is not None:
        e["uuid"] = uuid
    return e


@pytest.fixture
def stores() -> Iterator[list[TursoSessionStore]]:
    made: list[TursoSessionStore] = []
    yield made
    for s in made:
        s.close(5)


# ----- the SDK's own conformance suite ------------------------------------------------------


def test_conformance_local(tmp_path: Path, stores: list[TursoSessionStore]) -> None:
    def make() -> TursoSessionStore:  # a fresh database per contract, as the suite requires
        store = TursoSessionStore(database_url=str(tmp_path / f"db{len(stores)}.db"))
        stores.append(store)
        return store

    probe: SessionStore = make()  # structurally the SDK's protocol (mypy checks it)
    assert probe is stores[0]
    asyncio.run(run_session_store_conformance(make))  # nothing skipped: every method is ours
    assert len(stores) > 10


def test_conformance_cloud(
    tursodb_bin: str, tmp_path: Path, stores: list[TursoSessionStore]
) -> None:
    servers: list[SyncServer] = []

    def make() -> TursoSessionStore:
        n = len(servers)
        server = SyncServer(tursodb_bin, tmp_path / f"server{n}.db", tmp_path / f"log{n}.txt")
        server.start()
        servers.append(server)
        store = TursoSessionStore(database_url=server.url, auth_token=SECRET_TOKEN)
        stores.append(store)
        return store

    try:
        asyncio.run(run_session_store_conformance(make))
        # What the last contract appended is on the server itself, not only in a replica.
        rows = db_query_server(servers[-1], f"SELECT COUNT(*) FROM {sql.ENTRIES}")
        assert rows == [(1,)]
    finally:
        for s in stores:
            s.close(5)
        for server in servers:
            server.stop()


def db_query_server(server: SyncServer, sql: str) -> list[tuple[Any, ...]]:
    """Read the sync server's own database through a fresh replica (another 'machine')."""
    import tempfile

    import turso.sync

    with tempfile.TemporaryDirectory() as d:
        conn = turso.sync.connect(
            os.path.join(d, "r.db"), server.url, auth_token=SECRET_TOKEN, isolation_level=None
        )
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()


# ----- idempotency, order, fidelity ---------------------------------------------------------


def test_retried_append_stores_each_entry_once_and_keeps_uuidless_entries(
    tmp_path: Path, stores: list[TursoSessionStore]
) -> None:
    db = tmp_path / "s.db"
    store = TursoSessionStore(database_url=str(db))
    stores.append(store)
    batch = [entry(1, "u1"), entry(2), entry(3, "u3")]

    async def run() -> Any:
        await store.append(KEY, batch)  # type: ignore[arg-type]
        await store.append(KEY, batch)  # the SDK's retry of the same batch
        await store.append(KEY, [entry(4, "u1"), entry(5)])  # a later duplicate uuid
        summaries = await store.list_session_summaries("proj")
        return await store.load(KEY), summaries  # type: ignore[arg-type]

    loaded, summaries = asyncio.run(run())
    assert [e["n"] for e in loaded] == [1, 2, 3, 2, 5]  # uuid-less entries appended as they come
    # The summary folded exactly the entries stored, each once (a retry is not folded twice).
    expected: Any = None
    for new in ([entry(1, "u1"), entry(2), entry(3, "u3")], [entry(2)], [entry(5)]):
        expected = fold_session_summary(expected, KEY, new)  # type: ignore[arg-type]
    assert [s["data"] for s in summaries] == [expected["data"]]
    # The constraint is the database's, per key (the primary key is the key and the uuid): a
    # direct duplicate insert is refused, the same uuid under another key is not.
    store.close()
    insert = (f"INSERT INTO {sql.ENTRIES} (id, project_key, session_id, subpath, seq, uuid,"
              " entry, mtime) VALUES (?, ?, ?, '', 99, 'u1', '{}', 1)")  # fmt: skip
    same = sql.row_id(sql.key_prefix(("proj", "sess", "")), "u1", "")
    with pytest.raises(Exception, match="UNIQUE"):
        db_query(db, insert, (same, "proj", "sess"))
    other = sql.row_id(sql.key_prefix(("proj", "other", "")), "u1", "")
    conn = turso.connect(str(db), isolation_level=None)
    conn.execute(insert, (other, "proj", "other"))
    conn.close()
    del conn
    assert db_query(db, f"SELECT COUNT(*) FROM {sql.ENTRIES} WHERE uuid = 'u1'") == [(2,)]


def test_big_and_odd_entries_round_trip_exactly(
    tmp_path: Path, stores: list[TursoSessionStore]
) -> None:
    cpl.configure(database_url=str(tmp_path / "s.db"), max_payload_chars=1000)
    store = TursoSessionStore()  # the shared client: its truncation must not apply here
    big = entry(1, "big", text="é" + "x" * 20_000_000)
    odd = entry(2, "odd", text="lone \ud800 high, \udfff low, nul \x00, emoji \U0001f600")
    bad = entry(3, "bad", value=object())

    async def run() -> Any:
        await store.append(KEY, [big, odd])  # type: ignore[list-item]
        with pytest.raises(TypeError):  # fails loudly, stores nothing of the batch
            await store.append(KEY, [entry(4, "ok"), bad])  # type: ignore[list-item]
        return await store.load(KEY)  # type: ignore[arg-type]

    loaded = asyncio.run(run())
    assert loaded == [big, odd]


def test_delete_cascades_and_summaries_ignore_subagents(
    tmp_path: Path, stores: list[TursoSessionStore]
) -> None:
    db = tmp_path / "s.db"
    store = TursoSessionStore(database_url=str(db))
    stores.append(store)
    sub = {**KEY, "subpath": "subagents/agent-a1"}

    async def run() -> None:
        await store.append(KEY, [entry(1, "m1", timestamp="2024-01-01T00:00:00.000Z")])  # type: ignore[arg-type]
        await store.append(sub, [entry(1, "s1")])  # type: ignore[arg-type]
        assert await store.list_subkeys(KEY) == ["subagents/agent-a1"]  # type: ignore[arg-type]
        assert [s["session_id"] for s in await store.list_session_summaries("proj")] == ["sess"]
        await store.delete(KEY)  # type: ignore[arg-type]
        assert await store.load(sub) is None  # type: ignore[arg-type]

    asyncio.run(run())
    store.close()
    assert db_query(db, f"SELECT COUNT(*) FROM {sql.ENTRIES}") == [(0,)]
    assert db_query(db, "SELECT COUNT(*) FROM transcript_summaries") == [(0,)]


_APPENDER = """
import asyncio, sys
from claude_parallel_logging import TursoSessionStore
async def main():
    store = TursoSessionStore()
    for i in range(20):
        await store.append({"project_key": "p", "session_id": sys.argv[1]},
                           [{"type": "user", "uuid": f"{sys.argv[1]}-{i}-{j}", "i": i} for j in range(25)])
asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["local", "cloud"])
def test_concurrent_appends_from_two_processes_both_land(
    mode: str, tmp_path: Path, sync_server: SyncServer
) -> None:
    if mode == "local":
        env = {"TURSO_DATABASE_URL": str(tmp_path / "s.db")}
    else:
        env = {"TURSO_DATABASE_URL": sync_server.url, "TURSO_AUTH_TOKEN": SECRET_TOKEN}
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, name], env=full, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-2000:]
    q = f"SELECT session_id, COUNT(*), COUNT(DISTINCT uuid) FROM {sql.ENTRIES} GROUP BY 1"
    rows = db_query(tmp_path / "s.db", q) if mode == "local" else db_query_server(sync_server, q)
    assert sorted(rows) == [("a", 500, 500), ("b", 500, 500)]


def test_the_same_uuid_appended_on_two_machines_lands_once(
    cloud: SyncServer, stores: list[TursoSessionStore]
) -> None:
    """Two machines (two clients, two replicas, one remote) append the same entry: the SDK
    retried an append that timed out, or two processes resumed the same session. The second
    replica does not have the first one's row, so both insert it and both push it."""
    a = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    b = TursoSessionStore()  # the logger's client: its replica carries log rows too
    third = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    stores.extend([a, third])
    sub = {**KEY, "subpath": "subagents/agent-s1"}
    dup, sub_dup = entry(2, "dup"), entry(1, "sub-dup")

    async def run() -> tuple[Any, Any]:
        await a.append(KEY, [entry(1, "a1"), dup])  # type: ignore[arg-type]
        await a.append(sub, [sub_dup])  # type: ignore[arg-type]
        log_session_rows("logged-on-b")
        await b.append(KEY, [dup, entry(3, "b3")])  # type: ignore[arg-type]  # pushes cleanly
        await b.append(sub, [sub_dup, entry(2)])  # type: ignore[arg-type]
        await a.append(KEY, [entry(4, "a4")])  # type: ignore[arg-type]
        await b.append(KEY, [entry(5, "b5"), entry(6)])  # type: ignore[arg-type]
        return await third.load(KEY), await third.load(sub)  # type: ignore[arg-type]

    loaded, loaded_sub = asyncio.run(run())
    assert [e["n"] for e in loaded] == [1, 2, 3, 4, 5, 6]
    assert loaded[1] == dup
    assert [e["n"] for e in loaded_sub] == [1, 2]
    assert cpl.flush(10)  # B's replica (log rows included) is fully pushed: nothing wedged
    assert cpl.stats()["pending"] == 0
    assert cloud.query("SELECT id, status FROM sessions") == [("logged-on-b", "completed")]
    assert cloud.query("SELECT COUNT(*) FROM messages") == [(3,)]
    rows = db_query_server(cloud, f"SELECT uuid, COUNT(*) FROM {sql.ENTRIES} GROUP BY uuid")
    assert sorted(r for r in rows if r[0] is not None) == [
        ("a1", 1),
        ("a4", 1),
        ("b3", 1),
        ("b5", 1),
        ("dup", 1),
        ("sub-dup", 1),
    ]


def test_a_session_resumed_where_the_clock_is_behind_sorts_after_its_history(
    cloud: SyncServer, stores: list[TursoSessionStore]
) -> None:
    """``seq`` comes from the appending machine's clock; one an hour behind the machine that
    wrote the history still appends after it (the first append to a key reads the remote's
    last ``seq``)."""
    a = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    b = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    stores.extend([a, b])
    a._last_seq = time.time_ns() + 3600 * 10**9  # A's clock is an hour ahead of B's
    sub = {**KEY, "subpath": "subagents/agent-s1"}

    async def run() -> tuple[Any, Any]:
        await a.append(KEY, [entry(1, "a1"), entry(2)])  # type: ignore[arg-type]
        await a.append(sub, [entry(1, "s1")])  # type: ignore[arg-type]
        await b.append(KEY, [entry(3, "b3")])  # type: ignore[arg-type]
        await b.append(KEY, [entry(4)])  # type: ignore[arg-type]
        await b.append(sub, [entry(2, "s2")])  # type: ignore[arg-type]
        return await b.load(KEY), await b.load(sub)  # type: ignore[arg-type]

    loaded, loaded_sub = asyncio.run(run())
    assert [e["n"] for e in loaded] == [1, 2, 3, 4]
    assert [e["n"] for e in loaded_sub] == [1, 2]


def test_delete_on_another_machine_deletes_what_the_first_pushed(
    cloud: SyncServer, stores: list[TursoSessionStore]
) -> None:
    """B's replica holds none of A's rows; B's delete removes them from the remote all the
    same, with the subagent transcripts and the summary."""
    a = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    b = TursoSessionStore(database_url=cloud.url, auth_token=SECRET_TOKEN)
    stores.extend([a, b])
    sub = {**KEY, "subpath": "subagents/agent-s1"}
    keep = {"project_key": "proj", "session_id": "kept"}

    async def run() -> tuple[Any, ...]:
        await a.append(KEY, [entry(1, "a1"), entry(2)])  # type: ignore[arg-type]
        await a.append(sub, [entry(1, "s1")])  # type: ignore[arg-type]
        await a.append(keep, [entry(1, "k1")])  # type: ignore[arg-type]
        await b.append(KEY, [entry(3, "b3")])  # type: ignore[arg-type]
        await b.delete(KEY)  # type: ignore[arg-type]
        return (
            await a.load(KEY),  # type: ignore[arg-type]
            await a.load(sub),  # type: ignore[arg-type]
            await a.list_sessions("proj"),
            await a.list_session_summaries("proj"),
        )

    loaded, loaded_sub, sessions, summaries = asyncio.run(run())
    assert loaded is None and loaded_sub is None
    assert [s["session_id"] for s in sessions] == ["kept"]
    assert [s["session_id"] for s in summaries] == ["kept"]
    assert db_query_server(cloud, f"SELECT session_id, COUNT(*) FROM {sql.ENTRIES} GROUP BY 1") == [
        ("kept", 1)
    ]


def log_session_rows(sid: str) -> None:
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id=sid, agent_type="planning", model="m"))
    for i in range(3):
        lg.log_message("assistant", f"{sid}-{i}")
    lg.end_session("completed")
    assert cpl.flush(10)


# ----- the real CLI: resume and fork on another "machine", unreachable remote ---------------


def run_child(args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO), "CPL_CHILD_ARGS": json.dumps(args)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integrations.claude.session_store_child"],
        env=full, capture_output=True, text=True, timeout=120, cwd=str(REPO),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def texts(body: dict[str, Any]) -> str:
    return json.dumps(body.get("messages"))


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["local", "cloud"])
def test_resume_and_fork_on_another_machine(
    mode: str, tmp_path: Path, sync_server: SyncServer
) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()

    def env(machine: str) -> dict[str, str]:
        replicas = {"CPL_REPLICA_DIR": str(tmp_path / f"replicas-{machine}")}
        if mode == "local":
            return {**replicas, "TURSO_DATABASE_URL": str(tmp_path / "s.db")}
        return {**replicas, "TURSO_DATABASE_URL": sync_server.url, "TURSO_AUTH_TOKEN": SECRET_TOKEN}

    turns = [text_turn("alpha-answer-from-A"), text_turn("beta-answer-from-B"),
             text_turn("gamma-answer-from-C")]  # fmt: skip
    with ScriptedAnthropicServer(turns) as model:
        base = {"base_url": model.url, "cwd": str(cwd)}
        a = run_child({**base, "home": str(tmp_path / "a"), "prompt": "alpha-question"}, env("a"))
        sid = a["session_id"]
        b = run_child(
            {**base, "home": str(tmp_path / "b"), "prompt": "beta-question", "resume": sid},
            env("b"),
        )
        c = run_child(
            {**base, "home": str(tmp_path / "c"), "prompt": "gamma-question", "fork": sid},
            env("c"),
        )
        bodies = model.main_requests
    assert a["mirror_errors"] == b["mirror_errors"] == c["mirror_errors"] == []
    assert b["session_id"] == sid and b["result"] == "beta-answer-from-B"
    # B's request carried A's conversation, which B's machine only had from the store.
    assert "alpha-question" in texts(bodies[1]) and "alpha-answer-from-A" in texts(bodies[1])
    assert not (tmp_path / "b" / ".claude" / "projects").exists() or not any(
        p.name == f"{sid}.jsonl" and "alpha" in p.read_text()
        for p in (tmp_path / "b" / ".claude" / "projects").rglob("*.jsonl")
        if p.stat().st_mtime < 0
    )
    # The fork: a new session holding both earlier turns, continued by C.
    assert c["forked"] != sid and c["session_id"] == c["forked"]
    assert "beta-answer-from-B" in texts(bodies[2]) and "alpha-question" in texts(bodies[2])

    async def read() -> tuple[Any, Any]:
        store = TursoSessionStore(**_store_args(mode, tmp_path, sync_server))
        try:
            msgs = await get_session_messages_from_store(store, sid, directory=str(cwd))
            forked = await store.load({"project_key": _project_key(cwd), "session_id": c["forked"]})
            return msgs, forked
        finally:
            await store.aclose()

    msgs, forked = asyncio.run(read())
    order = json.dumps([m.message for m in msgs])
    assert order.index("alpha-answer-from-A") < order.index("beta-question")
    assert order.index("beta-question") < order.index("beta-answer-from-B")
    assert forked and all(e.get("sessionId") in (None, c["forked"]) for e in forked)
    assert "gamma-answer-from-C" in json.dumps(forked)


def _project_key(cwd: Path) -> str:
    from claude_agent_sdk import project_key_for_directory

    return project_key_for_directory(str(cwd))


def _store_args(mode: str, tmp_path: Path, server: SyncServer) -> dict[str, Any]:
    if mode == "local":
        return {"database_url": str(tmp_path / "s.db")}
    return {"database_url": server.url, "auth_token": SECRET_TOKEN}


@pytest.mark.e2e
def test_unreachable_remote_surfaces_mirror_error_and_the_agent_finishes(tmp_path: Path) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    env = {
        "TURSO_DATABASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "TURSO_AUTH_TOKEN": SECRET_TOKEN,
        "CPL_REPLICA_DIR": str(tmp_path / "replicas"),
    }
    with ScriptedAnthropicServer([text_turn("still-answered")]) as model:
        out = run_child(
            {"base_url": model.url, "cwd": str(cwd), "home": str(tmp_path / "h"), "prompt": "q"},
            env,
        )
    assert out["result"] == "still-answered"
    assert out["mirror_errors"], "the SDK did not surface the failed append"
    assert SECRET_TOKEN not in json.dumps(out)
    # The entries stayed in the local replica, to be pushed later.
    replicas = list((tmp_path / "replicas").rglob("w-*.db"))
    assert replicas
    rows = db_query(replicas[0], f"SELECT COUNT(*) FROM {sql.ENTRIES}")
    assert rows[0][0] > 0


# ----- the link to the logs -----------------------------------------------------------------


@pytest.mark.e2e
def test_logged_session_links_to_its_stored_transcript(
    local_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from claude_agent_sdk import ResultMessage, query

    from claude_parallel_logging.cli import main
    from claude_parallel_logging.testing.claude import scripted_claude_options

    store = TursoSessionStore()  # the configured database, through the logger's writer

    async def run() -> tuple[str, str]:
        options = scripted_claude_options(model_url, tmp_path, session_store=store)
        async with cpl.logged_session("with-store") as session:
            async for msg in query(prompt="delta-question", options=options):
                if isinstance(msg, ResultMessage):
                    sdk_id = msg.session_id
        sub = {"project_key": _project_key(tmp_path / "work"), "session_id": sdk_id,
               "subpath": "subagents/agent-x1"}  # fmt: skip
        await store.append(sub, [{"type": "assistant", "uuid": "sub-1",  # type: ignore[arg-type]
                                  "message": {"role": "assistant", "content": "epsilon-sub"}}])  # fmt: skip
        return session.id, sdk_id

    with ScriptedAnthropicServer([text_turn("delta-answer")]) as model:
        model_url = model.url
        sid, sdk_id = asyncio.run(run())
    assert cpl.flush(10)
    detail = cpl.get_session(sid)
    assert detail is not None
    (t,) = detail.transcripts
    assert t.session_id == sdk_id and t.entries >= 2 and t.subpaths == ("subagents/agent-x1",)
    assert main(["--database", str(local_db), "show", sid]) == 0
    shown = capsys.readouterr().out
    assert f"Stored transcript of SDK session {sdk_id}" in shown and "--transcript" in shown
    assert main(["--database", str(local_db), "show", sid, "--transcript"]) == 0
    lines = capsys.readouterr().out.splitlines()
    text = "\n".join(lines)
    assert "delta-question" in text and "delta-answer" in text
    assert text.index("delta-answer") < text.index("subagent subagents/agent-x1")
    assert any(line.startswith("    assistant: epsilon-sub") for line in lines)
