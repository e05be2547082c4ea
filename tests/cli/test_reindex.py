"""``cpl reindex`` rebuilds the derived search index and usage rollups; ``cpl doctor`` reports
their state (rows behind included); both derived indexes work the same in cloud mode, through
the read replica."""

from __future__ import annotations

from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.query import search_sessions, tool_usage, usage_summary
from tests.cli.helpers import Cli
from tests.conftest import SECRET_TOKEN, SyncServer
from tests.populate import local_client, populate, populated_database


def test_reindex_and_doctor(tmp_path: Path, cli: Cli) -> None:
    data = populated_database(tmp_path, 40, seed=4)
    db = str(data.path)
    r = cli("--database", db, "doctor")
    assert r.code == 0 and "search index" in r.out and "not built yet" in r.out
    r = cli("--database", db, "reindex", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert report["sessions"] == 40 and report["documents"] > 40 and report["lag_rows"] == 0
    assert report["rollups"]["sessions"] == 40 and report["rollups"]["tools"] > 0
    r = cli("--database", db, "doctor")
    assert "[INFO] search index" in r.out and "over 40 sessions, 0 rows not indexed yet" in r.out
    assert "[INFO] usage rollups" in r.out and "40 sessions" in r.out
    client = local_client(data.path)  # more sessions: the index is behind until a search
    try:
        populate(client, 5, seed=9, prefix="more-")
    finally:
        assert client.shutdown(10)
    r = cli("--database", db, "doctor", "--json")
    line = next(c for c in r.json()["checks"] if c["check"] == "search index")
    assert " 0 rows not indexed" not in line["detail"] and "over 40 sessions" in line["detail"]
    assert cli("--database", db, "search", "the", "--json").code == 0
    r = cli("--database", db, "doctor")
    assert "over 45 sessions, 0 rows not indexed yet" in r.out
    r = cli("--database", db, "reindex")
    assert r.code == 0 and "search index rebuilt" in r.out and "usage rollups rebuilt" in r.out


def test_cloud_reads_use_the_derived_indexes(cloud: SyncServer) -> None:
    writer = cpl.get_turso_client()
    assert writer is not None
    populate(writer, 25, seed=3)
    assert writer.flush(30)

    def same() -> int:
        for q in ("the", "error", "bash", "zz-none"):
            assert search_sessions(q, 50) == search_sessions(q, 50, use_index=False), q
        for group_by in ("agent_type", "model", "day"):
            assert usage_summary(group_by) == usage_summary(group_by, use_index=False)
        assert tool_usage() == tool_usage(use_index=False)
        return len(search_sessions("the", 500))

    first = same()
    populate(writer, 10, seed=8, prefix="later-")  # pushed after the indexes were built
    assert writer.flush(30)
    assert same() >= first
    reader = cpl.TursoClient(
        cpl.TursoConfig(url=cloud.url, auth_token=SECRET_TOKEN),
        cpl.Settings(config=cpl.TursoConfig(url=cloud.url, auth_token=SECRET_TOKEN)),
    )
    try:  # another client (its own read replica) shares the index of the same database
        assert search_sessions("the", 500, client=reader) == search_sessions(
            "the", 500, client=reader, use_index=False
        )
        assert sum(r.sessions for r in usage_summary(client=reader)) == 35
    finally:
        reader.shutdown(5)
