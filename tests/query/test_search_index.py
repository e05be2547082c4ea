"""The derived search index gives exactly the plain scan's hits (same sessions, order, snippets
and ``where``), on random queries over a database logged through the real logger, also after
rows were updated or added once the index was built, while it is only partly built, and when
its file is damaged or cannot be written (then the search scans)."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest
import turso

import claude_parallel_logging as cpl
import claude_parallel_logging.query.search as search_module
from claude_parallel_logging.query import rebuild_search_index, search_index_state
from claude_parallel_logging.query.access import reading
from claude_parallel_logging.query.search import search_sessions
from claude_parallel_logging.query.search_index import index_path
from tests.populate import BASE_TIME, expected_search, haystacks, local_client, populated_database

N_SESSIONS = 80


def _both(client: cpl.TursoClient, query: str, limit: int = 20, **filters: object) -> list:
    indexed = search_sessions(query, limit, client=client, **filters)  # type: ignore[arg-type]
    scanned = search_sessions(query, limit, client=client, use_index=False, **filters)  # type: ignore[arg-type]
    assert indexed == scanned, query
    return indexed


def _queries(rng: random.Random, texts: list[str], n: int) -> list[str]:
    """Substrings of stored texts (case changed at random), and texts found nowhere."""
    out: list[str] = []
    for _ in range(n):
        text = rng.choice(texts)
        if len(text) < 3:
            continue
        size = rng.randint(3, min(24, len(text)))
        start = rng.randrange(0, len(text) - size + 1)
        q = text[start : start + size]
        q = "".join(c.upper() if rng.random() < 0.3 else c for c in q)
        if q.strip():
            out.append(q)
    out += ["zz-nowhere-zz", "100%", 'said "hello', "C:\\temp", "ÉCOLE", "_case_", "%", "ab"]
    return out


def _present(sessions: list) -> str:  # type: ignore[type-arg]
    """A text several sessions contain."""
    return max(("the", "tool", "file", "error", "bash"),
               key=lambda q: len(expected_search(sessions, q)))  # fmt: skip


@pytest.fixture
def populated(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = populated_database(tmp_path, N_SESSIONS, seed=11)
    client = local_client(data.path)
    yield data, client
    client.shutdown(5)


def test_indexed_search_equals_the_scan_on_random_queries(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    rng = random.Random(3)
    texts = [h for s in data.sessions for h in haystacks(s)]
    found_any = 0
    for q in _queries(rng, texts, 120):
        hits = _both(client, q, limit=rng.choice((1, 5, 20, 200)))
        found_any += bool(hits)
    assert found_any > 100  # the comparison is not between empty lists
    for q in ("step", "the", "error", "ÉCOLE"):  # with filters, and against the expectation
        assert [h.id for h in _both(client, q, 500)] == expected_search(data.sessions, q)
        _both(client, q, 7, agent_type="planning")
        _both(client, q, 7, status=["completed", "error"], since="2026-09-23")
    state = search_index_state(None, client)
    assert state.exists and state.documents > N_SESSIONS  # the index was really used
    assert index_path(os.path.realpath(data.path)).exists()


def test_rows_updated_or_added_after_the_index_was_built_are_found(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    assert search_sessions("warmup", client=client) is not None  # builds the index
    before = search_index_state(None, client).documents
    lg = cpl.ConversationLogger(client)
    lg.start_session(cpl.SessionInfo(id="late-1", agent_type="review", model="m"))
    mid = lg.log_message("assistant", "first draft")
    tid = lg.log_tool_execution("Bash", "running", input={"command": "make"})
    assert client.flush(10)
    assert search_sessions("first draft", client=client)[0].id == "late-1"  # indexed while running
    # the tool's output and error arrive at its end, the message is rewritten, the session fails
    lg.finish_tool_execution(tid, "error", output="Quokka-Output here", error="Segfault-Zeta")
    lg.update_message(mid, content="second draft with Pelican-Words")
    lg.end_session("error", "Fatal-Heron happened")
    # a session that just ended gets a row updated afterwards (a late reconcile)
    lg2 = cpl.ConversationLogger(client)
    lg2.start_session(cpl.SessionInfo(id="late-2", agent_type="review", model="m"))
    mid2 = lg2.log_message("user", "plain prompt")
    lg2.end_session("completed")
    assert client.flush(10)
    assert _both(client, "plain prompt")[0].id == "late-2"
    lg2.update_message(mid2, content="rewritten later: Marmot-Text")
    assert client.flush(10)
    for q, sid in (("quokka-output", "late-1"), ("SEGFAULT-zeta", "late-1"),
                   ("pelican-words", "late-1"), ("fatal-heron", "late-1"),
                   ("marmot-text", "late-2")):  # fmt: skip
        hits = _both(client, q)
        assert [h.id for h in hits] == [sid], q
    assert _both(client, "first draft") == []  # the old text is gone from the database
    assert search_index_state(None, client).documents > before
    rng = random.Random(5)
    texts = [h for s in data.sessions for h in haystacks(s)]
    for q in _queries(rng, texts, 30):
        _both(client, q)


def test_a_partly_built_index_scans_the_rest(populated, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    monkeypatch.setattr(search_module, "REFRESH_BUDGET_S", 0.0)
    monkeypatch.setattr("claude_parallel_logging.query.search_index.CHUNK", 50)
    hits = _both(client, _present(data.sessions))
    assert hits
    assert search_index_state(None, client).documents < 3 * len(data.sessions)  # not all in
    for q in ("the", "error", "100%"):
        _both(client, q, 500)


def test_a_damaged_index_is_removed_and_the_search_scans(populated) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    word = _present(data.sessions)
    expected = search_sessions(word, client=client, use_index=False)
    assert expected
    path = index_path(os.path.realpath(data.path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an sqlite file" * 200)
    assert search_sessions(word, client=client) == expected
    assert not path.exists() or path.read_bytes()[:15] == b"SQLite format 3"
    assert search_sessions(word, client=client) == expected  # rebuilt
    assert search_index_state(None, client).documents > 0


def test_an_unwritable_cache_dir_scans(
    populated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("CPL_CACHE_DIR", str(blocker))
    assert _both(client, _present(data.sessions))
    assert not (blocker / "search").exists()


def test_a_replaced_database_resets_the_index(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    first = populated_database(tmp_path, 10, seed=1)
    client = local_client(path)
    try:
        assert _both(client, _present(first.sessions))
    finally:
        client.shutdown(5)
    for suffix in ("", "-wal"):
        if os.path.exists(str(path) + suffix):
            os.remove(str(path) + suffix)
    second = populated_database(tmp_path, 4, seed=2)
    client = local_client(path)
    try:
        ids = {s.id for s in second.sessions}
        hits = _both(client, _present(second.sessions), 100)
        assert hits and {h.id for h in hits} <= ids
        assert not {s.id for s in first.sessions} & {h.id for h in hits}
    finally:
        client.shutdown(5)


def test_rebuild_gives_the_same_index_state(populated, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    data, client = populated
    search_sessions(_present(data.sessions), client=client)
    built = search_index_state(None, client)
    seen: list[int] = []
    monkeypatch.setattr("claude_parallel_logging.query.search_index.CHUNK", 20)
    monkeypatch.setattr(search_module, "SLICE_S", 0.0)  # one step per opening of the database
    rebuilt = rebuild_search_index(client, seen.append)
    assert len(seen) > 5
    assert rebuilt.documents == built.documents and rebuilt.sessions == len(data.sessions)
    assert seen and seen[-1] == rebuilt.documents
    assert rebuilt.lag_rows == 0
    with sqlite3.connect(rebuilt.path) as db:
        assert db.execute("SELECT COUNT(*) FROM sess").fetchone()[0] == len(data.sessions)


HOUR = 3600.0


def _ids(path: Path, sql: str, *params: object) -> list[str]:
    conn = turso.connect(str(path))
    try:
        return [str(r[0]) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def test_rows_changed_hours_after_their_session_ended_are_found(populated) -> None:  # type: ignore[no-untyped-def]
    """No time window: a tool's output, a session's error or a message changed long after the
    session ended are indexed by the next search (the ``row_changes`` journal), and a search
    with nothing changed adds nothing."""
    data, client = populated
    t0 = BASE_TIME + 3 * 86400
    lg = cpl.ConversationLogger(client)
    lg.start_session(cpl.SessionInfo(id="old-1", agent_type="review", model="m", started_at=t0))
    lg.log_message("user", "run the slow build")
    tid = lg.log_tool_execution("Bash", "running", input={"command": "make"}, started_at=t0 + 60)
    lg.end_session("completed", ended_at=t0 + 600)  # closes the tool as an error meanwhile
    assert client.flush(10)
    assert _both(client, "slow build")[0].id == "old-1"  # indexed, the session finished
    before = search_index_state(None, client).documents
    assert [h.id for h in _both(client, "slow build")] == ["old-1"]
    assert search_index_state(None, client).documents == before  # nothing re-read
    # hours later: the tool's output arrives, the session gets an error (another process), a
    # message of a session of the populated database, days old, is rewritten
    lg.finish_tool_execution(tid, "completed", output="Ibex-Output at last", ended_at=t0 + 5 * HOUR)
    late = cpl.ConversationLogger(client)
    late.start_session(cpl.SessionInfo(id="old-1", agent_type="review", model="m"))
    late.update_session(status="error", error_message="Late-Walrus failure")
    other = data.sessions[0]
    sql = "SELECT id FROM messages WHERE session_id = ? ORDER BY sequence LIMIT 1"
    late.update_message(_ids(data.path, sql, other.id)[0], content="edited later: Narwhal-Text")
    assert client.flush(10)
    for q, sid in (("ibex-output", "old-1"), ("late-walrus", "old-1"), ("narwhal-text", other.id)):
        assert [h.id for h in _both(client, q)] == [sid], q
    assert search_index_state(None, client).documents == before + 3
    assert search_index_state(None, client).lag_rows == 0


def test_an_index_catching_up_finds_changed_rows_it_has_not_read_again(
    populated, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """While journal entries wait (the refresh budget spent), the rows they name are matched
    from the tables: the answer is still exact."""
    data, client = populated
    _both(client, _present(data.sessions))  # built
    target = data.sessions[1]
    lg = cpl.ConversationLogger(client)
    for s in data.sessions[2:40]:  # journal entries for other rows first: the target's come last
        lg.start_session(cpl.SessionInfo(id=s.id, agent_type=s.agent_type, model=s.model))
        lg.update_session(num_turns=99)
    assert client.flush(10)
    sql = "SELECT id FROM tool_executions WHERE session_id = ?"
    for tid in _ids(data.path, sql, target.id):
        lg.finish_tool_execution(tid, "completed", output="Okapi-Late-Output")
    assert client.flush(10)
    monkeypatch.setattr(search_module, "REFRESH_BUDGET_S", 0.0)
    monkeypatch.setattr("claude_parallel_logging.query.search_index.CHUNK", 1)
    with reading(client) as main:
        assert search_index_state(main, client).lag_rows > 1  # the journal's entries
    hits = search_sessions("okapi-late", client=client)
    assert [h.id for h in hits] == [target.id] and hits[0].where == "tool.output"
    with reading(client) as main:  # not all read again by that search
        assert search_index_state(main, client).lag_rows > 0
