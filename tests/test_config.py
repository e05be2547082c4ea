from __future__ import annotations

import logging
from pathlib import Path

import pytest

import claude_parallel_logging as cpl
from tests.conftest import SECRET_TOKEN


def test_logging_off_without_url() -> None:
    assert cpl.get_turso_config() is None
    assert cpl.get_turso_client() is None


def test_env_local_path_needs_no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TURSO_DATABASE_URL", f"file:{tmp_path}/x.db")
    cfg = cpl.get_turso_config()
    assert cfg is not None and not cfg.is_remote
    assert cfg.local_path == str(tmp_path / "x.db")


@pytest.mark.parametrize(
    "url", ["libsql://db.example.turso.io", "https://x.io", "http://127.0.0.1:1"]
)
def test_remote_url_without_token_is_off_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    import claude_parallel_logging.config as config_mod

    monkeypatch.setattr(config_mod, "_warned_missing_token", False)
    monkeypatch.setenv("TURSO_DATABASE_URL", url)
    with caplog.at_level(logging.WARNING, logger="claude_parallel_logging"):
        assert cpl.get_turso_config() is None
        assert cpl.get_turso_config() is None
    warnings = [r for r in caplog.records if "TURSO_AUTH_TOKEN" in r.getMessage()]
    assert len(warnings) == 1


def test_remote_url_with_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURSO_DATABASE_URL", "libsql://db.example.turso.io")
    monkeypatch.setenv("TURSO_AUTH_TOKEN", SECRET_TOKEN)
    cfg = cpl.get_turso_config()
    assert cfg is not None and cfg.is_remote and cfg.auth_token == SECRET_TOKEN


def test_configure_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TURSO_DATABASE_URL", str(tmp_path / "env.db"))
    monkeypatch.setenv("CPL_BATCH_SIZE", "7")
    cpl.configure(database_url=str(tmp_path / "code.db"), flush_interval=0.5)
    cfg = cpl.get_turso_config()
    assert cfg is not None and cfg.local_path == str(tmp_path / "code.db")
    from claude_parallel_logging.config import get_settings

    s = get_settings()
    assert s.flush_interval == 0.5 and s.batch_size == 7
    client = cpl.get_turso_client()
    assert client is not None and client is cpl.get_turso_client()


def test_configure_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        cpl.configure(batch_size=0)
    with pytest.raises(ValueError, match="flush_interval"):
        cpl.configure(flush_interval=-1)
    with pytest.raises(TypeError, match="redact"):
        cpl.configure(redact="nope")  # type: ignore[arg-type]


def test_token_never_in_repr() -> None:
    cpl.configure(database_url="libsql://db.example.turso.io", auth_token=SECRET_TOKEN)
    cfg = cpl.get_turso_config()
    client = cpl.get_turso_client()
    from claude_parallel_logging.config import get_settings

    for text in (repr(cfg), str(cfg), repr(client), repr(get_settings())):
        assert SECRET_TOKEN not in text
        assert SECRET_TOKEN[:8] not in text


def test_invalid_tuning_variables_are_ignored_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from claude_parallel_logging.config import get_settings

    monkeypatch.setenv("CPL_BATCH_SIZE", "0")
    monkeypatch.setenv("CPL_QUEUE_CAPACITY", "-5")
    monkeypatch.setenv("CPL_SHUTDOWN_TIMEOUT", "nope")
    monkeypatch.setenv("CPL_FLUSH_INTERVAL", "0.05")  # a valid one still applies
    settings = get_settings()
    get_settings()
    assert (settings.batch_size, settings.queue_capacity, settings.shutdown_timeout) == (1000, 100_000, 5.0)
    assert settings.flush_interval == 0.05
    warned = [r.getMessage() for r in caplog.records if "ignoring CPL_" in r.getMessage()]
    assert len(warned) == 3 and any("CPL_BATCH_SIZE='0'" in w for w in warned)
    cpl.configure(database_url=str(tmp_path / "x.db"))  # and logging works with the defaults
    lg = cpl.ConversationLogger()
    lg.start_session(cpl.SessionInfo(id="s", agent_type="a"))
    assert cpl.flush(5)


def test_token_in_the_url_never_shown_by_repr() -> None:
    cfg = cpl.TursoConfig("libsql://db.turso.io?authToken=eyJhbGciOi.hidden.part", "tok-123456")
    text = repr(cfg) + repr(cpl.TursoClient(cfg))
    assert "eyJ" not in text and "hidden" not in text and "tok-123456" not in text
    assert "libsql://db.turso.io" in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("1048576", 1 << 20), ("64MB", 64 << 20), ("64M", 64 << 20), ("64 MiB", 64 << 20),
     ("1.5GB", 3 << 29), ("512k", 512 << 10)],
)  # fmt: skip
def test_remote_read_threshold_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    from claude_parallel_logging.config import get_settings

    assert get_settings().remote_read_threshold == 64 << 20  # the default
    monkeypatch.setenv("CPL_REMOTE_READ_THRESHOLD", raw)
    assert get_settings().remote_read_threshold == expected


def test_a_bad_remote_read_threshold_is_refused_or_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from claude_parallel_logging.config import get_settings

    with pytest.raises(ValueError, match="remote_read_threshold"):
        cpl.configure(remote_read_threshold=-1)
    cpl.configure(remote_read_threshold=0)
    assert get_settings().remote_read_threshold == 0
    cpl.reset_configuration()
    for raw in ("lots", "-3MB", "inf"):
        monkeypatch.setenv("CPL_REMOTE_READ_THRESHOLD", raw)
        assert get_settings().remote_read_threshold == 64 << 20
    assert any("ignoring CPL_REMOTE_READ_THRESHOLD" in r.getMessage() for r in caplog.records)
