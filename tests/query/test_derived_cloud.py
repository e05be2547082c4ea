"""Cloud mode, against the real ``tursodb --sync-server``: the derived indexes of a read replica
see rows changed long after they were indexed, pushed by the process that logged them or by
another one, in whatever order the pushes reach the remote (the ``row_changes`` journal is
pushed like any table, and the replica's rowids follow the remote's order)."""

from __future__ import annotations

from pathlib import Path

import claude_parallel_logging as cpl
from claude_parallel_logging.query import search_sessions, usage_summary

from ..conftest import SECRET_TOKEN, SyncServer

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def _client(server: SyncServer, replica_dir: Path) -> cpl.TursoClient:
    """A client of its own (another process's, in effect): its own writer replica."""
    config = cpl.TursoConfig(server.url, auth_token=SECRET_TOKEN)
    settings = cpl.Settings(
        config=config, replica_dir=str(replica_dir), flush_interval=0.05, push_interval=0.2
    )
    return cpl.TursoClient(config, settings)


def _same(reader: cpl.TursoClient, query: str) -> list[str]:
    hits = search_sessions(query, client=reader)
    assert hits == search_sessions(query, client=reader, use_index=False), query
    got = usage_summary("model", client=reader)
    assert got == usage_summary("model", client=reader, use_index=False)
    return [h.id for h in hits]


def test_late_changes_pushed_to_the_remote_reach_the_derived_indexes(
    sync_server: SyncServer, tmp_path: Path
) -> None:
    a = _client(sync_server, tmp_path / "a")
    b = _client(sync_server, tmp_path / "b")
    reader = _client(sync_server, tmp_path / "r")
    try:
        lg = cpl.ConversationLogger(a)
        lg.start_session(cpl.SessionInfo(id="c-1", agent_type="a", model="m1", started_at=T0))
        lg.log_message("user", "build the Capybara project")
        tid = lg.log_tool_execution("Bash", "running", input={"cmd": "make"}, started_at=T0 + 5)
        lg.end_session("completed", ended_at=T0 + 600)
        assert a.flush(30)
        assert _same(reader, "capybara") == ["c-1"]  # indexed from the read replica
        # another process pushes new sessions, then, hours later, the first one's results come
        other = cpl.ConversationLogger(b)
        other.start_session(cpl.SessionInfo(id="c-2", agent_type="a", model="m2"))
        other.log_message("user", "unrelated work")
        other.end_session("completed")
        assert b.flush(30)
        assert _same(reader, "unrelated work") == ["c-2"]  # the marks are past c-1's rows now
        lg.finish_tool_execution(tid, "completed", output="Axolotl-Output", ended_at=T0 + 4 * 3600)
        late = cpl.ConversationLogger(b)  # the session's error, set by the other process
        late.start_session(cpl.SessionInfo(id="c-1", agent_type="a", model="m1"))
        late.update_session(status="error", error_message="Quetzal-Error", cost_usd=2.5)
        assert b.flush(30)
        assert a.flush(30)
        assert _same(reader, "axolotl-output") == ["c-1"]
        assert _same(reader, "quetzal-error") == ["c-1"]
        (row,) = [r for r in usage_summary("model", client=reader) if r.group == "m1"]
        assert row.errors == 1 and row.cost_usd == 2.5 and row.tool_errors == 0
        pushed = sync_server.query("SELECT tbl, row_id FROM row_changes ORDER BY rowid")
        assert (2, tid) in pushed and (0, "c-1") in pushed
    finally:
        for client in (a, b, reader):
            client.shutdown(10)
