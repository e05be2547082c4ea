"""``cpl`` on a machine with no read replica of a big remote (the threshold forced low): every
command answers on the remote, prints what a replica-reading ``cpl`` prints, says so in one
line on stderr, downloads no replica; ``doctor`` reports the mode and ``sync`` makes a replica
that later commands read instead."""

from __future__ import annotations

import re
from pathlib import Path

import claude_parallel_logging as cpl
from tests.cli.helpers import Result, run_cli
from tests.conftest import SECRET_TOKEN, SyncServer
from tests.populate import populate


def _read_replicas(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("read-*.db"))


def test_cli_answers_on_the_remote_as_from_a_replica(cloud: SyncServer, tmp_path: Path) -> None:
    writer = cpl.get_turso_client()
    assert writer is not None
    sessions = populate(writer, 80, seed=21)
    base = {"TURSO_DATABASE_URL": cloud.url, "TURSO_AUTH_TOKEN": SECRET_TOKEN}
    remote_env = {
        **base,
        "CPL_REPLICA_DIR": str(tmp_path / "fresh"),
        "CPL_CACHE_DIR": str(tmp_path / "fresh-cache"),
        "CPL_REMOTE_READ_THRESHOLD": "0",
    }
    replica_env = {
        **base,
        "CPL_REPLICA_DIR": str(tmp_path / "replica"),
        "CPL_CACHE_DIR": str(tmp_path / "replica-cache"),
    }
    one = sessions[4]
    commands = [
        ("sessions", "--limit", "20"),
        ("sessions", "--json", "--limit", "200", "--status", "error"),
        ("show", one.id),
        ("show", one.external_id, "--json"),
        ("search", "parser", "--limit", "15"),
        ("search", "FUZZER WITH", "--json", "--limit", "100"),
        ("stats", "--group-by", "model"),
        ("stats", "--group-by", "day", "--json"),
        ("stats", "--group-by", "agent_type", "--json"),
    ]
    outputs: list[Result] = []
    for argv in commands:
        asked = run_cli(*argv, env=remote_env)
        pulled = run_cli(*argv, env=replica_env)
        outputs += [asked, pulled]
        assert asked.code == 0 and pulled.code == 0, (argv, asked.err, pulled.err)
        assert asked.out == pulled.out, argv
        assert asked.out.strip() and "answered on the remote" not in asked.out  # stdout: results
        note = [line for line in asked.err.splitlines() if line.startswith("cpl: note:")]
        assert len(note) == 1 and "answered on the remote" in note[0], asked.err
        assert "cpl sync" in note[0]
        assert pulled.err == "", pulled.err
    # No download on the remote side: no read replica, no derived index built from it.
    assert _read_replicas(tmp_path / "fresh") == []
    assert not list((tmp_path / "fresh-cache").rglob("*.sqlite"))
    assert _read_replicas(tmp_path / "replica") == ["read-0.db"]

    r = run_cli("doctor", env=remote_env)
    outputs.append(r)
    assert r.code == 0, r.out
    assert re.search(r"\[INFO\] reads +answered on the remote: no read replica on this machine", r.out)
    assert "asked the remote" in r.out and "80 sessions" in r.out
    assert _read_replicas(tmp_path / "fresh") == []
    r = run_cli("doctor", env=replica_env)
    assert re.search(r"\[INFO\] reads +local read replica read-0\.db", r.out)

    # ``cpl sync`` keeps a replica on this machine; later reads use it, without a note.
    r = run_cli("sync", env=remote_env)
    outputs.append(r)
    assert r.code == 0 and "read replica" in r.out and "reads on this machine are local" in r.out
    assert _read_replicas(tmp_path / "fresh") == ["read-0.db"]
    r = run_cli("sessions", "--limit", "20", env=remote_env)
    assert r.code == 0 and r.err == "" and r.out == outputs[0].out

    # Errors on the remote path: one line, with the URL, never the token.
    cloud.stop()
    r = run_cli("sessions", env={**remote_env, "CPL_REPLICA_DIR": str(tmp_path / "other")})
    outputs.append(r)
    assert r.code == 1 and r.err.startswith("cpl: error: cannot open database")
    assert cloud.url in r.err and len(r.err.strip().splitlines()) == 1
    for result in outputs:
        assert SECRET_TOKEN not in result.out + result.err
        assert "Traceback" not in result.err
