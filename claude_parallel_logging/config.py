"""Configuration: one place that decides where logs go and how the writer behaves.

Precedence: ``configure(...)`` in code, then ``TURSO_DATABASE_URL`` / ``TURSO_AUTH_TOKEN``
(and ``CPL_*`` tuning variables), then defaults. Logging is off unless a database is named.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ._log import log

REMOTE_SCHEMES = ("libsql://", "https://", "http://", "turso://", "wss://", "ws://")
ACCEPTED_FORMS = "a file path, file:PATH, libsql://, https:// or http://"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a database (an unknown scheme such as ``foo://``), or ``None``.

    Anything without ``scheme://`` is a file path: a typo'd scheme must not become a file."""
    match = _SCHEME.match(url.strip())
    if match is None or url.strip().startswith(("file:", *REMOTE_SCHEMES)):
        return None
    return (
        f"unknown database URL scheme {match.group(1)!r} in {_redact_url(url.strip())!r}:"
        f" use {ACCEPTED_FORMS}"
    )


Redactor = Callable[[str], str]


def mask_secret(value: str | None) -> str:
    """A token is shown as its length only: even a prefix can help an attacker."""
    if not value:
        return "<none>"
    return f"<secret: {len(value)} chars>"


@dataclass(frozen=True)
class TursoConfig:
    """Where logs go. ``auth_token`` is never shown by ``repr``."""

    url: str
    auth_token: str | None = field(default=None, repr=False)

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(REMOTE_SCHEMES)

    @property
    def local_path(self) -> str:
        """The database file for local mode (``file:`` prefix and query string removed)."""
        url = self.url
        if url.startswith("file://"):
            url = url[len("file://") :]
        elif url.startswith("file:"):
            url = url[len("file:") :]
        url = url.split("?", 1)[0]
        return os.path.abspath(os.path.expanduser(url))

    @property
    def display(self) -> str:
        """Where logs go, fit for messages: the file's path, or the URL without credentials."""
        return _redact_url(self.url) if self.is_remote else self.local_path

    def __repr__(self) -> str:
        return (
            f"TursoConfig(url={_redact_url(self.url)!r}, auth_token={mask_secret(self.auth_token)})"
        )


@dataclass(frozen=True)
class Settings:
    """Everything the writer, store and logger need; defaults are documented in README."""

    config: TursoConfig | None = None
    replica_dir: str | None = None
    flush_interval: float = 0.2
    batch_size: int = 1000
    queue_capacity: int = 100_000
    max_payload_chars: int = 256 * 1024
    push_interval: float = 5.0
    shutdown_timeout: float = 5.0
    lock_timeout: float = 2.0
    # Cloud mode: a read on a machine with no read replica yet is answered on the remote when
    # the remote database holds at least this many bytes (below, pulling all of it is cheap and
    # makes later reads local).
    remote_read_threshold: int = 64 * 1024 * 1024
    redact: Redactor | None = None
    redact_defaults: bool = True

    def resolved_replica_dir(self) -> str:
        if self.replica_dir:
            return os.path.abspath(os.path.expanduser(self.replica_dir))
        env = os.environ.get("CPL_REPLICA_DIR")
        if env:
            return os.path.abspath(os.path.expanduser(env))
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        if not os.access(os.path.dirname(base) or "/", os.W_OK) and not os.path.isdir(base):
            import tempfile  # here: it imports shutil, bz2, lzma, random (start-up time)

            base = tempfile.gettempdir()
        return os.path.join(base, "claude-parallel-logging", "replicas")

    def __repr__(self) -> str:
        return (
            f"Settings(config={self.config!r}, replica_dir={self.replica_dir!r}, "
            f"flush_interval={self.flush_interval}, batch_size={self.batch_size}, "
            f"queue_capacity={self.queue_capacity}, max_payload_chars={self.max_payload_chars}, "
            f"push_interval={self.push_interval}, "
            f"remote_read_threshold={self.remote_read_threshold})"
        )


def byte_size(text: str) -> int:
    """``"67108864"``, ``"64MB"``, ``"64M"``, ``"1.5GB"`` or ``"0"`` as bytes (K, M, G: powers
    of 1024)."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, size in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if raw.endswith(suffix):
            raw, factor = raw[: -len(suffix)], size
            break
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"not a size in bytes: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a size in bytes: {text!r}")
    return int(value * factor)


_lock = threading.Lock()
_overrides: dict[str, Any] = {}
_warned_missing_token = False

_TUNING_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "flush_interval": ("CPL_FLUSH_INTERVAL", float),
    "batch_size": ("CPL_BATCH_SIZE", int),
    "queue_capacity": ("CPL_QUEUE_CAPACITY", int),
    "max_payload_chars": ("CPL_MAX_PAYLOAD_CHARS", int),
    "push_interval": ("CPL_PUSH_INTERVAL", float),
    "shutdown_timeout": ("CPL_SHUTDOWN_TIMEOUT", float),
    "remote_read_threshold": ("CPL_REMOTE_READ_THRESHOLD", byte_size),
}


_UNSET: Any = object()


def configure(
    database_url: str | None = _UNSET,
    auth_token: str | None = _UNSET,
    replica_dir: str | None = _UNSET,
    *,
    flush_interval: float = _UNSET,
    batch_size: int = _UNSET,
    queue_capacity: int = _UNSET,
    max_payload_chars: int = _UNSET,
    push_interval: float = _UNSET,
    shutdown_timeout: float = _UNSET,
    lock_timeout: float = _UNSET,
    remote_read_threshold: int = _UNSET,
    redact: Redactor | None = _UNSET,
    redact_defaults: bool = _UNSET,
) -> None:
    """Set configuration in code; wins over the environment.

    Call it before the first log call. Calling it again replaces the shared client: what the old
    one had accepted is flushed first (within ``shutdown_timeout``).
    """
    given = {k: v for k, v in locals().items() if v is not _UNSET}
    _validate(given)
    with _lock:
        _overrides.update(given)
    _changed()


def reset_configuration() -> None:
    """Forget everything set by ``configure`` (tests use this)."""
    with _lock:
        _overrides.clear()
    _changed()


# Called after every change of configuration: the client module registers the reset of the
# shared client here, so that this bottom module never imports it.
_on_change: list[Callable[[], None]] = []


def on_change(hook: Callable[[], None]) -> None:
    """Run ``hook()`` after every ``configure``/``reset_configuration``."""
    _on_change.append(hook)


def _changed() -> None:
    for hook in list(_on_change):
        hook()


def _validate(given: dict[str, Any]) -> None:
    for key in ("flush_interval", "push_interval", "shutdown_timeout", "lock_timeout"):
        if key in given and not (isinstance(given[key], (int, float)) and given[key] > 0):
            raise ValueError(f"{key} must be a positive number of seconds, got {given[key]!r}")
    for key in ("batch_size", "queue_capacity", "max_payload_chars"):
        if key in given and not (isinstance(given[key], int) and given[key] >= 1):
            raise ValueError(f"{key} must be a positive integer, got {given[key]!r}")
    threshold = given.get("remote_read_threshold", 0)
    if not (isinstance(threshold, int) and not isinstance(threshold, bool) and threshold >= 0):
        raise ValueError(f"remote_read_threshold must be a number of bytes >= 0, got {threshold!r}")
    url = given.get("database_url")
    if url is not None:
        if not isinstance(url, str):
            raise TypeError(f"database_url must be a string, got {type(url).__name__}")
        problem = database_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
    if "redact" in given and given["redact"] is not None and not callable(given["redact"]):
        raise TypeError("redact must be a callable taking and returning a string")


def get_turso_config() -> TursoConfig | None:
    """The database to log into, or ``None`` when logging is off.

    A remote URL needs a token; without one logging is off and a single warning is logged.
    """
    global _warned_missing_token
    with _lock:
        url = _overrides.get("database_url", _UNSET)
        token = _overrides.get("auth_token", _UNSET)
    if url is _UNSET:
        url = os.environ.get("TURSO_DATABASE_URL") or None
    if token is _UNSET:
        token = os.environ.get("TURSO_AUTH_TOKEN") or None
    if not url:
        return None
    url = str(url).strip()
    if database_url_problem(url) is not None:  # only the environment can hold one
        _warn_env_once("TURSO_DATABASE_URL", f"{database_url_problem(url)}; logging is off")
        return None
    cfg = TursoConfig(url=url, auth_token=token)
    if cfg.is_remote and not token:
        if not _warned_missing_token:
            _warned_missing_token = True
            log.warning(
                "%s is a remote database but TURSO_AUTH_TOKEN is not set; logging is off",
                _redact_url(url),
            )
        return None
    return cfg


_warned_env: set[str] = set()


def configuration_problem() -> str:
    """Why logging is off, in one line: what to set (the reason ``get_turso_config`` is None)."""
    with _lock:
        url = _overrides.get("database_url", _UNSET)
        token = _overrides.get("auth_token", _UNSET)
    url_from = "configure(database_url=...)"
    if url is _UNSET:
        url, url_from = os.environ.get("TURSO_DATABASE_URL") or None, "TURSO_DATABASE_URL"
    if token is _UNSET:
        token = os.environ.get("TURSO_AUTH_TOKEN") or None
    if url:
        url = str(url).strip()
        problem = database_url_problem(url)
        if problem is not None:
            return f"{url_from}: {problem}"
        if TursoConfig(url=url).is_remote and not token:
            return (
                f"{_redact_url(url)} ({url_from}) is a remote database but no auth token is"
                " set: set TURSO_AUTH_TOKEN or call configure(auth_token=...)"
            )
    return (
        "no database is configured: set TURSO_DATABASE_URL (and TURSO_AUTH_TOKEN for a"
        " remote database), call configure(database_url=...), or pass client=...;"
        " on the command line pass --database PATH_OR_URL"
    )


def _warn_env_once(env: str, message: str) -> None:
    if env not in _warned_env:
        _warned_env.add(env)
        log.warning("%s", message)


def _redact_url(url: str) -> str:
    """Drop a query string (some users put ``authToken=`` there) and ``user:password@``."""
    url = url.split("?", 1)[0]
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return scheme + sep + rest.split("@", 1)[1]
    return url


def get_settings() -> Settings:
    """The effective settings (code over environment over defaults)."""
    with _lock:
        over = dict(_overrides)
    values: dict[str, Any] = {}
    for key, (env, conv) in _TUNING_ENV.items():
        raw = os.environ.get(env)
        if raw:
            try:
                value = conv(raw)
                _validate({key: value})
            except (ValueError, TypeError) as exc:
                _warn_env_once(env, f"ignoring {env}={raw!r} ({exc}); using the default")
            else:
                values[key] = value
    for key in (*_TUNING_ENV, "lock_timeout", "redact", "redact_defaults", "replica_dir"):
        if key in over:
            values[key] = over[key]
    return replace(Settings(), config=get_turso_config(), **values)
