"""A version-5 database with stored transcripts, opened by this version (schema 6): its
transcripts load deep-equal, keep their order, summaries and subkeys, take new appends after
them (a uuid stored before the upgrade is not stored again) and are deleted with their key."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import turso
from claude_agent_sdk import fold_session_summary

from claude_parallel_logging.integrations.claude.session_store import TursoSessionStore
from claude_parallel_logging.query.sessions import StoredTranscript
from claude_parallel_logging.schema.migrations import (
    SCHEMA_VERSION,
    current_version,
    migrate,
)
from claude_parallel_logging.storage import transcripts as sql
from tests.conftest import query
from tests.schema.old_versions import apply_migrations

KEY = {"project_key": "proj", "session_id": "sess"}
SUB = {**KEY, "subpath": "subagents/agent-a1"}
OTHER = {"project_key": "proj", "session_id": "other"}


def entry(n: int, uuid: str | None = None, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "user", "n": n, "text": f"é {n} \ud800", **extra}
    if uuid is not None:
        e["uuid"] = uuid
    return e


def write_v5_store(path: Path, transcripts: dict[tuple[str, str, str], list[Any]]) -> None:
    """Schema version 5 and rows as the version-5 store wrote them: ids ``<store tag>-<seq>``,
    ``seq`` from the clock in nanoseconds, the summary folded per main key."""
    conn = turso.connect(str(path), isolation_level=None)
    apply_migrations(conn, {1, 2, 3, 4, 5})
    seq, mtime = time.time_ns() // 1000 * 1000, 1_700_000_000_000
    for (project_key, session_id, subpath), entries in transcripts.items():
        for e in entries:
            conn.execute(
                "INSERT INTO transcript_entries (id, project_key, session_id, subpath, seq, uuid,"
                " entry, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (f"0123456789abcdef-{seq}", project_key, session_id, subpath, seq,
                 e.get("uuid"), sql.encode_entry(e), mtime),
            )  # fmt: skip
            seq += 1
        if not subpath:
            key = {"project_key": project_key, "session_id": session_id}
            summary: Any = fold_session_summary(None, key, entries)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO transcript_summaries (project_key, session_id, mtime, data)"
                " VALUES (?, ?, ?, ?)",
                (project_key, session_id, mtime, json.dumps(summary["data"])),
            )
        mtime += 1000
    conn.close()


def test_a_version_5_store_upgrades_in_place_and_keeps_loading(tmp_path: Path) -> None:
    db = tmp_path / "v5.db"
    main = [entry(1, "u1"), entry(2), entry(3, "u3", big="x" * 100_000), entry(4, "u4")]
    sub, other = [entry(1, "s1"), entry(2)], [entry(1, "o1")]
    write_v5_store(db, {("proj", "sess", ""): main, ("proj", "sess", SUB["subpath"]): sub,
                        ("proj", "other", ""): other})  # fmt: skip
    store = TursoSessionStore(database_url=str(db))

    async def before() -> tuple[Any, ...]:
        return (
            await store.load(KEY),  # type: ignore[arg-type]
            await store.load(SUB),  # type: ignore[arg-type]
            sorted((s["session_id"], s["mtime"]) for s in await store.list_sessions("proj")),
            await store.list_subkeys(KEY),  # type: ignore[arg-type]
            {s["session_id"]: s for s in await store.list_session_summaries("proj")},
        )

    loaded, loaded_sub, sessions, subkeys, summaries = asyncio.run(before())
    assert loaded == main and loaded_sub == sub
    assert sessions == [("other", 1_700_000_002_000), ("sess", 1_700_000_000_000)]
    assert subkeys == [SUB["subpath"]]
    assert summaries["sess"]["mtime"] == 1_700_000_000_000

    async def after() -> tuple[Any, ...]:
        # The SDK retries a batch it sent before the upgrade: u4 is not stored twice.
        await store.append(KEY, [entry(4, "u4"), entry(5, "u5"), entry(6)])  # type: ignore[arg-type]
        await store.append(SUB, [entry(3, "s3")])  # type: ignore[arg-type]
        summaries = {s["session_id"]: s for s in await store.list_session_summaries("proj")}
        return await store.load(KEY), await store.load(SUB), summaries  # type: ignore[arg-type]

    loaded, loaded_sub, summaries = asyncio.run(after())
    assert [e["n"] for e in loaded] == [1, 2, 3, 4, 5, 6] and loaded[:4] == main
    assert [e["n"] for e in loaded_sub] == [1, 2, 3]
    expected: Any = fold_session_summary(None, KEY, main)  # type: ignore[arg-type]
    expected = fold_session_summary(expected, KEY, [entry(5, "u5"), entry(6)])  # type: ignore[arg-type]
    assert summaries["sess"]["data"] == expected["data"]
    store.close()
    assert query(db, "SELECT version FROM schema_version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]
    assert query(db, "SELECT COUNT(*) FROM transcript_entries") == [(7,)]  # left where it was
    assert query(db, f"SELECT COUNT(*) FROM {sql.ENTRIES}") == [(3,)]

    # The logs' link (``cpl show``) sees both tables.
    conn = turso.connect(str(db), isolation_level=None)
    try:
        assert current_version(conn) == SCHEMA_VERSION
        assert sql.transcripts_for(conn, ["sess", "other"]) == [
            StoredTranscript("proj", "sess", 6, (SUB["subpath"],)),
            StoredTranscript("proj", "other", 1),
        ]
        assert (
            sql.load_transcript(conn, StoredTranscript("proj", "sess", 6, (SUB["subpath"],)))[
                SUB["subpath"]
            ]
            == loaded_sub
        )
        # In cloud mode another machine's replica (without the legacy rows) may push u1 again
        # into the current table: it is loaded once (the legacy copy is skipped).
        conn.execute(
            f"INSERT INTO {sql.ENTRIES} (id, project_key, session_id, subpath, seq, uuid, entry,"
            " mtime) VALUES (?, 'proj', 'sess', '', 1, 'u1', ?, 1)",
            (sql.row_id(sql.key_prefix(("proj", "sess", "")), "u1", ""), sql.encode_entry(main[0])),
        )  # fmt: skip
    finally:
        conn.close()
        del conn

    store = TursoSessionStore(database_url=str(db))
    again = asyncio.run(store.load(KEY))  # type: ignore[arg-type]
    assert again is not None and [e["n"] for e in again] == [1, 2, 3, 4, 5, 6]

    async def delete() -> tuple[Any, ...]:
        await store.delete(KEY)  # type: ignore[arg-type]
        return await store.load(KEY), await store.load(SUB), await store.list_sessions("proj")  # type: ignore[arg-type]

    gone, gone_sub, left = asyncio.run(delete())
    store.close()
    assert gone is None and gone_sub is None
    assert [s["session_id"] for s in left] == ["other"]
    assert query(db, "SELECT COUNT(*) FROM transcript_entries WHERE session_id = 'sess'") == [(0,)]


def test_a_database_at_7_without_6_gets_6(tmp_path: Path) -> None:
    """Migration 7 was released before 6: a database it left at 7 gets 6 too."""
    db = tmp_path / "v7.db"
    conn = turso.connect(str(db), isolation_level=None)
    apply_migrations(conn, {1, 2, 3, 4, 5, 7})
    assert migrate(conn) == 7
    assert migrate(conn) == SCHEMA_VERSION  # nothing left to do
    conn.close()
    del conn
    assert query(db, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]
    store = TursoSessionStore(database_url=str(db))
    asyncio.run(store.append(KEY, [entry(1, "u1")]))  # type: ignore[arg-type]
    assert asyncio.run(store.load(KEY)) == [entry(1, "u1")]  # type: ignore[arg-type]
    store.close()
