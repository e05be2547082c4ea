"""Finding one session: by any SDK / OpenCode session id it ran, by the short ids the terminal
tables print, and from a snapshot copy of a database this user cannot write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import claude_parallel_logging as cpl
from claude_parallel_logging import query as q
from claude_parallel_logging.integrations.opencode.router import OpencodeRouter
from claude_parallel_logging.testing.recorded import load_raw, load_recorded
from tests.conftest import query

DATA = Path(__file__).parent.parent / "data"


def opencode_events(name: str) -> list[dict[str, Any]]:
    lines = (DATA / "opencode" / f"{name}.events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def opencode_stored(name: str) -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(
        (DATA / "opencode" / f"{name}.messages.json").read_text()
    )
    return data


def cli_session_id(name: str) -> str:
    frames = load_raw(DATA / "claude" / f"{name}.jsonl")
    return str(next(f["session_id"] for f in frames if f.get("subtype") == "init"))


async def replay(messages: list[Any]) -> AsyncIterator[Any]:
    for m in messages:
        yield m


# ----- any SDK / OpenCode session id ------------------------------------------------------------


def test_every_joined_opencode_session_finds_the_logged_session(local_db: Path) -> None:
    first, second = opencode_stored("parallel")
    router = OpencodeRouter()
    with cpl.logged_session("review", instrument=False) as block:
        assert router.attach(first) is block and router.attach(second) is block
        for event in opencode_events("parallel"):
            router.handle(event)
        for sid, messages in opencode_stored("parallel").items():
            assert router.reconcile(sid, messages)
    router.close()
    # A newer session that only mentions the id somewhere in its metadata is not a match.
    other = cpl.ConversationLogger()
    other.start_session(
        cpl.SessionInfo(id="mentions-it", agent_type="x", model="m", metadata={"about": second})
    )
    other.end_session()
    assert cpl.flush(5)
    (external,) = query(local_db, "SELECT external_id FROM sessions WHERE id=?", (block.id,))
    assert external == (first,)  # the column holds only the first one
    for sid in (first, second):
        detail = q.get_session(sid)
        assert detail is not None and detail.session.id == block.id, sid
        assert sid in q.sdk_session_ids(detail.session.metadata)
    assert q.get_session(second.upper()) is None  # ids are exact, not case-folded
    assert q.get_session(second[:-1]) is None  # nor prefixes of an SDK id


async def test_every_claude_cli_session_finds_the_logged_session(local_db: Path) -> None:
    names = ("tool_bash", "text_only")
    async with cpl.logged_session("planning", instrument=False) as block:
        for name in names:
            async for _ in block.track(replay(load_recorded(DATA / "claude" / f"{name}.jsonl"))):
                pass
    assert cpl.flush(5)
    for name in names:
        detail = q.get_session(cli_session_id(name))
        assert detail is not None and detail.session.id == block.id, name


def test_sdk_session_ids_reads_both_shapes() -> None:
    meta = {"sdk_session_ids": ["a", 3, "b"], "opencode_sessions": {"ses_1": {}}, "x": "ses_2"}
    assert q.sdk_session_ids(meta) == ["a", "b", "ses_1"]
    assert q.sdk_session_ids("not a dict") == [] and q.sdk_session_ids(None) == []


# ----- short ids --------------------------------------------------------------------------------


def test_short_ids_are_unique_prefixes_that_resolve(local_db: Path) -> None:
    ids = [
        "abcdef12-3456-7890-aaaa-000000000001",
        "abcdef12-3456-7890-aaaa-000000000002",  # shares 35 characters with the one above
        "abcdef99-0000-0000-0000-000000000000",
        "zzzzzzzz-1111",  # its 8-character prefix is another session's SDK id
        "short",
    ]
    for sid in ids:
        lg = cpl.ConversationLogger()
        lg.start_session(cpl.SessionInfo(id=sid, agent_type="a", model="m"))
        lg.end_session()
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="holder", agent_type="a", model="m"))
    lg.update_session(external_id="zzzzzzzz")
    lg.end_session()
    assert cpl.flush(5)
    short = q.short_ids([*ids, "not-in-the-database"])
    assert short == {
        ids[0]: ids[0],  # no shorter prefix is unique
        ids[1]: ids[1],
        ids[2]: "abcdef99",
        ids[3]: "zzzzzzzz-",
        "short": "short",
        "not-in-the-database": "not-in-the-database",
    }
    for full, prefix in short.items():
        if full != "not-in-the-database":
            detail = q.get_session(prefix)
            assert detail is not None and detail.session.id == full, prefix
    assert q.get_session("zzzzzzzz") is not None
    assert q.get_session("zzzzzzzz").session.id == "holder"  # type: ignore[union-attr]
    assert q.get_session("abcdef12-3456") is None  # ambiguous


def test_short_ids_of_an_empty_or_missing_database(tmp_path: Path) -> None:
    cpl.configure(database_url=str(tmp_path / "none.db"))
    assert q.short_ids(["abc"]) == {"abc": "abc"}
    assert not (tmp_path / "none.db").exists()


# ----- snapshots --------------------------------------------------------------------------------


def test_snapshot_is_a_consistent_private_copy(local_db: Path) -> None:
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s1", agent_type="a", model="m"))
    lg.log_message("user", "in the WAL, maybe")
    lg.end_session()
    assert cpl.flush(5)
    with q.snapshot(str(local_db)) as copy:
        assert Path(copy).parent != local_db.parent
        rows = query(copy, "SELECT s.id, m.content FROM sessions s JOIN messages m"
                           " ON m.session_id = s.id")  # fmt: skip
        assert rows == [("s1", "in the WAL, maybe")]
        where = Path(copy).parent
    assert not where.exists()  # removed afterwards
    assert q.needs_snapshot(str(local_db)) is False  # ours to write: read in place


@pytest.mark.parametrize("bad", ["dir", "missing"])
def test_snapshot_errors_are_clear(tmp_path: Path, bad: str) -> None:
    path = tmp_path if bad == "dir" else tmp_path / "missing.db"
    with pytest.raises(q.DatabaseUnavailable, match="cannot read database"):
        with q.snapshot(str(path)):
            pass
