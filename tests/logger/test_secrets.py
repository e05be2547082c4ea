"""Secrets: built-in credential patterns and the redaction hook apply to every stored value;
the Turso auth token never appears in logs, errors, reprs or the database."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.conftest import SECRET_TOKEN, SyncServer, query

SECRETS = {
    "anthropic": "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdef",
    "openai": "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789",
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl",
    "github": "ghp_0123456789abcdefghijABCDEFGHIJ0123456789",
    "aws": "AKIAIOSFODNN7EXAMPLE",
}


def dump(db: Path) -> str:
    parts = []
    for table in ("sessions", "messages", "tool_executions"):
        parts.extend(repr(r) for r in query(db, f"SELECT * FROM {table}"))
    return "\n".join(parts)


def test_builtin_patterns_redact_everywhere(db_path: Path) -> None:
    cpl.configure(database_url=str(db_path), flush_interval=0.05)
    lg = cpl.ConversationLogger()
    lg.start_session(
        cpl.SessionInfo(id="s", agent_type="a", model="m", metadata={"env": SECRETS["openai"]})
    )
    lg.log_message("user", f"my key is {SECRETS['anthropic']}")
    t = lg.log_tool_execution(
        "Bash", "running", input={"command": f"curl -H 'Authorization: {SECRETS['bearer']}'"}
    )
    lg.finish_tool_execution(t, "completed", output=f"{SECRETS['github']} {SECRETS['aws']}")
    lg.log_message("tool", None, tool_output={"nested": [SECRETS["anthropic"]]})
    lg.end_session("error", f"failed with {SECRETS['openai']}")
    assert cpl.flush(5)
    stored = dump(db_path)
    for name, secret in SECRETS.items():
        core = secret.split()[-1]
        assert core not in stored, name
    assert stored.count("[REDACTED]") >= 7


def test_custom_redaction_hook(db_path: Path) -> None:
    cpl.configure(
        database_url=str(db_path),
        flush_interval=0.05,
        redact=lambda s: s.replace("customer-4711", "[CUSTOMER]"),
    )
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    lg.log_message("user", "look up customer-4711")
    lg.log_tool_execution("db", "completed", input={"id": "customer-4711"}, output="customer-4711")
    assert cpl.flush(5)
    stored = dump(db_path)
    assert "customer-4711" not in stored and stored.count("[CUSTOMER]") == 3


def test_broken_hook_withholds_value(db_path: Path) -> None:
    def hook(s: str) -> str:
        raise RuntimeError("oops")

    cpl.configure(database_url=str(db_path), flush_interval=0.05, redact=hook)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    lg.log_message("user", "private text")
    assert cpl.flush(5)
    assert "private text" not in dump(db_path)


def test_turso_token_never_leaks(
    sync_server: SyncServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="claude_parallel_logging")
    cpl.configure(
        database_url=sync_server.url,
        auth_token=SECRET_TOKEN,
        flush_interval=0.05,
        push_interval=0.2,
    )
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="tok", agent_type="a", model="m"))
    lg.log_message("user", f"the token is {SECRET_TOKEN}")
    assert cpl.flush(10)
    sync_server.stop()  # make errors happen: they must not contain the token either
    lg.log_message("user", "more")
    assert cpl.flush(1) is False
    texts = [
        caplog.text,
        repr(cpl.stats()),
        repr(cpl.get_turso_config()),
        repr(cpl.get_turso_client()),
        str(cpl.stats()["last_error"]),
    ]
    out = capsys.readouterr()
    texts += [out.out, out.err]
    for text in texts:
        assert SECRET_TOKEN not in text
    sync_server.start()
    assert cpl.flush(10)
    assert SECRET_TOKEN not in repr(sync_server.query("SELECT * FROM messages"))


def test_hook_sees_real_strings_inside_json_values(db_path: Path) -> None:
    """The hook runs on each string of metadata and tool input, not on their JSON escaping:
    a secret with a quote or a newline is still caught, and the JSON stays valid."""
    secret = 'pa"ss\nword-31337'
    cpl.configure(
        database_url=str(db_path), flush_interval=0.05, redact=lambda s: s.replace(secret, "[PW]")
    )
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a", metadata={"pw": secret}))
    lg.log_tool_execution("login", "completed", input={"args": [secret], secret: 1}, output=secret)
    lg.log_message("user", secret, tool_input={"deep": {"er": secret}})
    assert cpl.flush(5)
    stored = dump(db_path)
    assert "31337" not in stored
    import json

    (meta,) = query(db_path, "SELECT metadata FROM sessions")[0]
    assert json.loads(meta) == {"pw": "[PW]"}
    (inp,) = query(db_path, "SELECT input FROM tool_executions")[0]
    assert json.loads(inp) == {"args": ["[PW]"], "[PW]": 1}


@pytest.mark.parametrize("offset", [-30, -5, 0, 10])
def test_secret_straddling_the_size_limit_is_not_stored_in_part(db_path: Path, offset: int) -> None:
    """The caller's thread keeps a margin beyond the limit; the writer redacts before cutting."""
    limit = 1000
    cpl.configure(database_url=str(db_path), flush_interval=0.05, max_payload_chars=limit)
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a"))
    key = SECRETS["anthropic"]
    text = "x" * (limit + offset) + key + "y" * 50_000
    lg.log_message("tool", text)
    t = lg.log_tool_execution("Bash", "running")
    lg.finish_tool_execution(t, "completed", output=text)
    assert cpl.flush(5)
    stored = dump(db_path)
    for piece in (key[:12], key[-12:], key[10:22]):
        assert piece not in stored
    (content,) = query(db_path, "SELECT content FROM messages")[0]
    assert content.endswith(f"original {len(text)} chars]")


# One sample per built-in pattern, each matched by that pattern alone: removing any pattern
# lets its sample through (the JWT above is also a bearer token, and a long Anthropic key is
# also matched by the OpenAI pattern, so they cannot tell whether those patterns work).
ONE_PATTERN_SAMPLES = {
    "anthropic": "sk-ant-api03-Xy9_Zq",  # too short after "sk-" for the OpenAI pattern
    "openai": "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789",
    "bearer": "Bearer abc123def456ghi789",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_0123456789abcdefghijABCDEFGHIJ0123456789",
    "slack": "xoxb-1234567890-abcdefghij",
}


def test_each_builtin_pattern_has_a_sample_only_it_matches() -> None:
    import re

    from claude_parallel_logging.redact import _DEFAULT_PATTERNS

    assert len(_DEFAULT_PATTERNS) == len(ONE_PATTERN_SAMPLES)
    matrix = {
        name: [i for i, p in enumerate(_DEFAULT_PATTERNS) if re.search(p, sample)]
        for name, sample in ONE_PATTERN_SAMPLES.items()
    }
    # each sample is matched by exactly one pattern, and every pattern by exactly one sample
    assert all(len(hits) == 1 for hits in matrix.values()), matrix
    assert sorted(hits[0] for hits in matrix.values()) == list(range(len(_DEFAULT_PATTERNS)))


@pytest.mark.parametrize("name", sorted(ONE_PATTERN_SAMPLES))
def test_each_builtin_pattern_redacts_its_sample_in_the_database(local_db: Path, name: str) -> None:
    secret = ONE_PATTERN_SAMPLES[name]
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a", model="m"))
    lg.log_message("user", f"Authorization header: {secret} (sent)")
    lg.log_tool_execution("Bash", "completed", input={"env": secret}, output=f"{secret}\n")
    assert cpl.flush(5)
    stored = dump(local_db)
    core = secret.split()[-1]
    assert core not in stored, name
    assert query(local_db, "SELECT content FROM messages") == [
        ("Authorization header: [REDACTED] (sent)",)
    ]
    assert query(local_db, "SELECT input, output FROM tool_executions") == [
        ('{"env": "[REDACTED]"}', "[REDACTED]\n")
    ]
