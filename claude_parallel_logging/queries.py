"""Reading the logs back: sessions, transcripts, search and usage figures.

Every function takes an optional ``client`` (default: the shared one) and only reads. In local mode
each call opens the file briefly (other processes wait for its lock); in cloud mode it reads a
replica pulled from the remote first, so it sees what every process has pushed, not only ours.
Rows this process logged but has not yet flushed (or pushed) are not visible: ``flush()`` first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from .client import TursoClient, get_turso_client
from .errors import DatabaseUnavailable, InvalidCursor, LoggingNotConfigured
from .schema import current_version
from .session_store_sql import StoredTranscript, load_transcript, transcripts_for

__all__ = [
    "MIN_PREFIX_LENGTH",
    "DatabaseUnavailable",
    "InvalidCursor",
    "LoggingNotConfigured",
    "MessageRecord",
    "SearchHit",
    "SessionDetail",
    "SessionPage",
    "SessionSummary",
    "ToolExecutionRecord",
    "UsageRow",
    "aget_session",
    "aiter_sessions",
    "alist_sessions",
    "asearch_sessions",
    "ausage_summary",
    "get_session",
    "iter_sessions",
    "list_sessions",
    "parse_time",
    "sdk_session_ids",
    "search_sessions",
    "short_ids",
    "usage_summary",
]

GroupBy = Literal["agent_type", "model", "day"]
GROUP_BY_CHOICES: tuple[str, ...] = ("agent_type", "model", "day")
TimeLike = str | float | int | datetime | date
Filter = str | Sequence[str] | None

SNIPPET_CONTEXT = 60
MIN_PREFIX_LENGTH = 6  # shorter prefixes of our ids are not looked up (too likely to be ambiguous)
_PREFIX_MIN = MIN_PREFIX_LENGTH
_RESULT_ROLE = "result"  # the Claude SDK's end-of-turn summary: its tokens repeat the turn's


# ----- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSummary:
    """One session with its totals. Tokens fall back to the sum over its messages when the session
    itself has none yet (still running, or an agent that reports tokens per message only);
    ``result`` rows are left out of that sum since they repeat the turn's totals.

    Two durations, which differ: ``wall_duration_ms`` is ``ended_at - started_at`` (the session's
    wall time; ``None`` while running) and ``agent_duration_ms`` the duration the agent reported
    (the Claude CLI's ``duration_ms``, summed over turns; for an agent that reports none, the
    logger's own measure of the session). ``duration_ms`` is kept for compatibility: the agent's
    figure when there is one, else the wall time. ``cost_usd`` is rounded to 1e-9 dollars."""

    id: str
    agent_type: str
    model: str
    provider: str | None
    status: str
    started_at: str
    ended_at: str | None
    error_message: str | None
    external_id: str | None
    metadata: Any
    message_count: int
    tool_count: int
    tool_error_count: int
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    cost_usd: float | None
    duration_ms: int | None
    num_turns: int | None
    agent_duration_ms: int | None = None

    @property
    def wall_duration_ms(self) -> int | None:
        """``ended_at - started_at`` in milliseconds; ``None`` while the session runs."""
        return _duration(self.started_at, self.ended_at)

    @property
    def total_tokens(self) -> int | None:
        """Every token the model read or wrote: input + output + cache read + cache write;
        ``None`` when none is known."""
        parts = (
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_creation_tokens,
        )
        known = [p for p in parts if p is not None]
        return sum(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "wall_duration_ms": self.wall_duration_ms,
            "total_tokens": self.total_tokens,
        }


class SessionPage(list[SessionSummary]):
    """A page of sessions; ``next_cursor`` fetches the next one (``None`` on the last page)."""

    def __init__(
        self, items: Iterable[SessionSummary] = (), next_cursor: str | None = None
    ) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


@dataclass(frozen=True)
class MessageRecord:
    id: str
    session_id: str
    sequence: int
    role: str
    content: str | None
    tool_name: str | None
    tool_input: Any
    tool_output: Any
    created_at: str
    token_count: int | None
    external_id: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    parent_tool_use_id: str | None
    metadata: Any = None


@dataclass(frozen=True)
class ToolExecutionRecord:
    id: str
    session_id: str
    message_id: str | None
    tool_name: str
    status: str
    input: Any
    output: str | None
    error: str | None
    started_at: str
    ended_at: str | None
    duration_ms: int | None
    tool_use_id: str | None
    parent_tool_use_id: str | None


@dataclass(frozen=True)
class SessionDetail:
    session: SessionSummary
    messages: tuple[MessageRecord, ...]
    tool_executions: tuple[ToolExecutionRecord, ...]
    # Full-fidelity transcripts a ``TursoSessionStore`` holds for this session's SDK session ids.
    transcripts: tuple[StoredTranscript, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session.to_dict(),
            "messages": [asdict(m) for m in self.messages],
            "tool_executions": [asdict(t) for t in self.tool_executions],
            "transcripts": [asdict(t) for t in self.transcripts],
        }


@dataclass(frozen=True)
class SearchHit:
    """A matching session, with the first place it matched (see ``WHERE_*``) and text around it.

    For a JSON column the snippet starts with the key path of the value that matched. A hit is
    also usable as the session it found: ``hit.id``, ``hit.agent_type``, ``hit.total_tokens``
    and every other :class:`SessionSummary` attribute read through to ``hit.session``."""

    session: SessionSummary
    where: str
    snippet: str
    sequence: int | None = None
    role: str | None = None
    tool_name: str | None = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names the hit itself lacks; private and dunder names are not the
        # session's (copy/pickle probe them before ``session`` is set).
        if name.startswith("_") or name not in _SUMMARY_ATTRS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, "session"), name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_SUMMARY_ATTRS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session.to_dict(),
            "where": self.where,
            "snippet": self.snippet,
            "sequence": self.sequence,
            "role": self.role,
            "tool_name": self.tool_name,
        }


_SUMMARY_ATTRS = frozenset({*SessionSummary.__dataclass_fields__, "total_tokens"})

WHERE_MESSAGE = "message.content"
WHERE_MESSAGE_TOOL_INPUT = "message.tool_input"
WHERE_MESSAGE_TOOL_OUTPUT = "message.tool_output"
WHERE_TOOL_INPUT = "tool.input"
WHERE_TOOL_OUTPUT = "tool.output"
WHERE_TOOL_ERROR = "tool.error"
WHERE_SESSION_ERROR = "session.error_message"


@dataclass(frozen=True)
class UsageRow:
    """Figures for one group. Rates count finished sessions and tools only (not ``running``);
    percentiles interpolate linearly between ranks, over tools (sessions) with a known duration.
    ``cost_usd`` is summed in whole nano-dollars, so it is the exact decimal sum (no float noise).
    Session durations: ``p50_wall_ms`` over ``ended_at - started_at`` of finished sessions,
    ``p50_agent_ms`` over the durations the agents reported (see ``SessionSummary``)."""

    group: str
    sessions: int
    completed: int
    errors: int
    running: int
    success_rate: float | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float
    tool_calls: int
    tool_errors: int
    tool_error_rate: float | None
    p50_tool_ms: float | None
    p95_tool_ms: float | None
    p50_wall_ms: float | None = None
    p50_agent_ms: float | None = None

    @property
    def total_tokens(self) -> int:
        """Input + output + cache read + cache write."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_creation_tokens
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


# ----- helpers ----------------------------------------------------------------------------------


def _resolve(client: TursoClient | None) -> TursoClient:
    resolved = client if client is not None else get_turso_client()
    if resolved is None:
        from .config import configuration_problem

        raise LoggingNotConfigured(configuration_problem())
    return resolved


def _where_label(client: TursoClient) -> str:
    if client.config.is_remote:
        return client.config.url.split("?", 1)[0]
    return client.config.local_path


@contextmanager
def _reading(client: TursoClient | None, *, missing_ok: bool = False) -> Iterator[Any | None]:
    """A connection, or ``None`` when there is nothing to read yet (an empty file or remote).

    A missing local file is not created (a typo in a path must not leave databases around) and
    is an error, as in ``cpl``: an empty result would hide the typo (``missing_ok``: ``None``).
    A file this user may read but not write (another user's file, a read-only mount) is read
    from a private snapshot copy: pyturso opens every database read-write and has no read-only
    mode.
    """
    resolved = _resolve(client)
    store = resolved.reader()
    if store.mode == "local":
        path = resolved.config.local_path
        if not _exists(path):
            if not missing_ok:
                raise DatabaseUnavailable(missing_file_message(path))
            yield None
            return
        if os.path.isdir(path):
            raise DatabaseUnavailable(f"cannot open database {path}: it is a directory")
        if needs_snapshot(path):
            with snapshot(path) as copy:
                from .config import TursoConfig
                from .store import LocalStore

                with _open_read(LocalStore(TursoConfig(url=copy), resolved.settings), path) as conn:
                    yield conn
            return
    with _open_read(store, _where_label(resolved)) as conn:
        yield conn


@contextmanager
def _open_read(store: Any, label: str) -> Iterator[Any | None]:
    ctx = store.read()
    try:
        conn = ctx.__enter__()
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot open database {label}: {_one_line(exc)}") from exc
    try:
        yield conn if current_version(conn) > 0 else None
    except BaseException as exc:
        if not ctx.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        ctx.__exit__(None, None, None)


def missing_file_message(path: str) -> str:
    """The one-line error for a local database file that does not exist (API and CLI)."""
    return (
        f"database file {path} does not exist (check the path; it is created when the first"
        " session is logged into it)"
    )


def _exists(path: str) -> bool:
    """Like ``os.path.exists``, but a path we may not even look at is an error, not absent."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except PermissionError:
        raise DatabaseUnavailable(
            f"cannot open database {path}: permission denied (a parent directory is not"
            " accessible to this user)"
        ) from None
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot open database {path}: {exc.strerror or exc}") from None
    return True


def needs_snapshot(path: str) -> bool:
    """Whether a local database can only be read from a copy: pyturso opens files read-write
    (and creates the ``-wal`` file next to them), so it fails on a file this user cannot write.

    Raises :class:`DatabaseUnavailable` when the file (or its WAL) cannot be read at all.
    """
    wal = path + "-wal"
    wal_exists = os.path.exists(wal)
    for target in (path, wal) if wal_exists else (path,):
        if not os.access(target, os.R_OK):
            raise DatabaseUnavailable(
                f"cannot open database {path}: permission denied ({os.path.basename(target)}"
                " is not readable by this user)"
            )
    if not os.access(path, os.W_OK):
        return True
    if wal_exists:
        return not os.access(wal, os.W_OK)
    return not os.access(os.path.dirname(path) or ".", os.W_OK)


_SNAPSHOT_ATTEMPTS = 5


def _fingerprint(path: str) -> tuple[tuple[int, int] | None, ...]:
    out: list[tuple[int, int] | None] = []
    for p in (path, path + "-wal"):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


@contextmanager
def snapshot(path: str) -> Iterator[str]:
    """A private copy of a local database (file and WAL), removed afterwards.

    The copy is retried while the files change under it (a writer committing meanwhile), so it
    is a consistent state of the database, as of the moment it was taken.
    """
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="cpl-read-")
    copy = os.path.join(directory, os.path.basename(path) or "logs.db")
    try:
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            before = _fingerprint(path)
            try:
                shutil.copyfile(path, copy)
                if before[1] is not None:
                    shutil.copyfile(path + "-wal", copy + "-wal")
                elif os.path.exists(copy + "-wal"):
                    os.remove(copy + "-wal")
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot read database {path}: {exc.strerror or exc}"
                ) from None
            if _fingerprint(path) == before:
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            raise DatabaseUnavailable(
                f"cannot read database {path}: it kept changing while a read-only copy was taken"
            )
        yield copy
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def parse_time(value: TimeLike) -> str:
    """A bound for ``since``/``until`` as stored text (UTC, milliseconds).

    Accepts datetimes (naive ones are UTC), dates, epoch seconds, ISO-8601 strings and relative
    ages such as ``"90m"``, ``"24h"``, ``"7d"``, ``"2w"`` (that long before now). Anything else,
    or a time out of range, raises ``ValueError`` ("not a time: ...").
    """
    try:
        return _parse_time(value)
    except ValueError as exc:
        if str(exc).startswith("not a time"):
            raise
        raise ValueError(f"not a time: {value!r} (out of range)") from None
    except (OverflowError, OSError):
        raise ValueError(f"not a time: {value!r} (out of range)") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _now() -> datetime:
    """What a relative age (``"7d"``) counts back from."""
    return datetime.now(timezone.utc)


def _utc_text(dt: datetime) -> str:
    """Stored time text (``iso_utc``'s format, the year always four digits): milliseconds,
    truncated."""
    ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    utc = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}"
        f":{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def _parse_time(value: TimeLike) -> str:
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return _utc_text(_EPOCH + timedelta(milliseconds=int(float(value) * 1000)))
    if isinstance(value, datetime):
        return _utc_text(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00.000Z"
    text = str(value).strip()
    age = _age_seconds(text)
    if age is not None:
        return _utc_text(_now() - timedelta(seconds=age))
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    iso = re.sub(r"(\.\d{1,6})\d*", lambda m: m.group(1).ljust(7, "0"), iso, count=1)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso):
            return f"{date.fromisoformat(iso).isoformat()}T00:00:00.000Z"
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (use ISO-8601 such as 2026-01-31 or 2026-01-31T12:00:00Z, "
            "or an age such as 24h or 7d)"
        ) from None
    return _parse_time(parsed)


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _age_seconds(value: Any) -> float | None:
    """How long ago a relative age such as ``"7d"`` means, in seconds; ``None`` for anything
    else (absolute times, datetimes, numbers)."""
    if not isinstance(value, str):
        return None
    rel = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value.strip(), re.IGNORECASE)
    if rel is None:
        return None
    return float(rel.group(1)) * _AGE_UNITS[rel.group(2).lower()]


def _json(value: Any) -> Any:
    """JSON columns back to Python; text that is not JSON is returned as it is."""
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


_CURSOR_VERSION = 2
_LIST_FILTERS = ("agent_type", "status", "model")
_TIME_FILTERS = ("since", "until")


@dataclass(frozen=True)
class _PageQuery:
    """What a page of ``list_sessions`` selects, resolved: list filters sorted and deduplicated,
    ``since``/``until`` as stored time text. An age such as ``"7d"`` is resolved once, when the
    query is made, and remembered (``*_age``, seconds) so the same age given again matches."""

    agent_type: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    since_age: float | None = None
    until_age: float | None = None

    @classmethod
    def build(
        cls,
        agent_type: Filter = None,
        status: Filter = None,
        model: Filter = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
    ) -> _PageQuery:
        return cls(
            agent_type=tuple(sorted(set(_values(agent_type)))),
            status=tuple(sorted(set(_values(status)))),
            model=tuple(sorted(set(_values(model)))),
            since=None if since is None else parse_time(since),
            until=None if until is None else parse_time(until),
            since_age=_age_seconds(since),
            until_age=_age_seconds(until),
        )

    @property
    def empty(self) -> bool:
        return not (self.agent_type or self.status or self.model) and (
            self.since is None and self.until is None
        )

    def same_as(self, other: _PageQuery) -> bool:
        """Whether these filters (given with a cursor) select what ``other`` (the cursor's)
        does: equal lists, and each time bound the same age or the same instant."""
        for name in _LIST_FILTERS:
            if getattr(self, name) != getattr(other, name):
                return False
        for name in _TIME_FILTERS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                return False
            age = getattr(self, f"{name}_age")
            if age is not None:
                if age != getattr(other, f"{name}_age"):
                    return False
            elif mine != theirs:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{n}={','.join(getattr(self, n))}" for n in _LIST_FILTERS if getattr(self, n)]
        for name in _TIME_FILTERS:
            value = getattr(self, name)
            if value is not None:
                age = getattr(self, f"{name}_age")
                parts.append(
                    f"{name}={value}" + (f" (age {_fmt_age(age)})" if age is not None else "")
                )
        return " ".join(parts) or "no filters"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: list(getattr(self, n)) for n in _LIST_FILTERS if getattr(self, n)}
        for name in _TIME_FILTERS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
            if getattr(self, f"{name}_age") is not None:
                out[f"{name}_age"] = getattr(self, f"{name}_age")
        return out

    @classmethod
    def from_json(cls, data: Any) -> _PageQuery:
        """The cursor's filters; ``ValueError`` on anything ``to_json`` does not make."""
        allowed = {*_LIST_FILTERS, *_TIME_FILTERS, *(f"{n}_age" for n in _TIME_FILTERS)}
        if not isinstance(data, dict) or not set(data) <= allowed:
            raise ValueError("unknown filters")
        lists: dict[str, tuple[str, ...]] = {}
        for name in _LIST_FILTERS:
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(name)
            lists[name] = tuple(sorted(set(value)))
        times: dict[str, Any] = {}
        for name in _TIME_FILTERS:
            value, age = data.get(name), data.get(f"{name}_age")
            if value is not None and (not isinstance(value, str) or parse_time(value) != value):
                raise ValueError(name)
            if age is not None and (
                value is None
                or isinstance(age, bool)
                or not isinstance(age, (int, float))
                or not math.isfinite(age)
                or age < 0
            ):
                raise ValueError(f"{name}_age")
            times[name] = value
            times[f"{name}_age"] = None if age is None else float(age)
        return cls(
            agent_type=lists["agent_type"],
            status=lists["status"],
            model=lists["model"],
            since=times["since"],
            until=times["until"],
            since_age=times["since_age"],
            until_age=times["until_age"],
        )


def _fmt_age(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _AGE_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _encode_cursor(started_at: str, session_id: str, query: _PageQuery) -> str:
    body: dict[str, Any] = {"v": _CURSOR_VERSION, "at": started_at, "id": session_id}
    filters = query.to_json()
    if filters:
        body["q"] = filters
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, _PageQuery | None]:
    """``(started_at, id, filters)`` of a cursor ``list_sessions`` returned; the filters are
    ``None`` for a cursor of an older version (``[started_at, id]``: it did not keep them).
    Raises :class:`InvalidCursor` for anything else."""
    bad = InvalidCursor(
        f"invalid cursor: {str(cursor)[:60]!r} (give a cursor exactly as a page of sessions"
        " returned it)"
    )
    if not isinstance(cursor, str):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor.strip() + "=" * (-len(cursor.strip()) % 4))
        data = json.loads(raw)
        if isinstance(data, list):  # before version 2: no filters
            started_at, session_id = data
            query = None
        elif isinstance(data, dict) and data.get("v") == _CURSOR_VERSION:
            if not set(data) <= {"v", "at", "id", "q"}:
                raise ValueError("unknown keys")
            started_at, session_id = data["at"], data["id"]
            query = _PageQuery.from_json(data.get("q", {}))
        else:
            raise ValueError("unknown format")
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise bad from None
    if not isinstance(started_at, str) or not isinstance(session_id, str):
        raise bad
    return started_at, session_id, query


def _page_query(
    agent_type: Filter,
    status: Filter,
    model: Filter,
    since: TimeLike | None,
    until: TimeLike | None,
    cursor: str | None,
) -> tuple[_PageQuery, tuple[str, str] | None]:
    """The filters a ``list_sessions`` call applies and where its page starts (``None``: at
    the newest session). See ``list_sessions`` for the rule on filters given with a cursor."""
    given = _PageQuery.build(agent_type, status, model, since, until)
    if not cursor:
        return given, None
    started_at, last_id, kept = decode_cursor(cursor)
    if kept is None or given.empty or given.same_as(kept):
        return (given if kept is None else kept), (started_at, last_id)
    raise InvalidCursor(
        "the cursor belongs to a query with other filters (the cursor's: "
        f"{kept.describe()}; given: {given.describe()}): pass the cursor alone, or with"
        " exactly the filters of the page that returned it"
    )


def check_list_arguments(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = None,
) -> None:
    """Raise the ``ValueError`` (:class:`InvalidCursor` for the cursor) ``list_sessions`` would
    raise for these arguments, without reading anything."""
    _page_query(agent_type, status, model, since, until, cursor)


def _values(value: Filter) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _filters(
    alias: str,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
) -> tuple[list[str], list[Any]]:
    """``since`` is inclusive, ``until`` exclusive, both on ``started_at``."""
    clauses: list[str] = []
    params: list[Any] = []
    for col, value in (("agent_type", agent_type), ("status", status), ("model", model)):
        vals = _values(value)
        if vals:
            clauses.append(f"{alias}.{col} IN ({', '.join('?' for _ in vals)})")
            params.extend(vals)
    if since is not None:
        clauses.append(f"{alias}.started_at >= ?")
        params.append(parse_time(since))
    if until is not None:
        clauses.append(f"{alias}.started_at < ?")
        params.append(parse_time(until))
    return clauses, params


_SESSION_COLS = (
    "id, agent_type, model, provider, status, started_at, ended_at, error_message, external_id, "
    "metadata, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd, "
    "duration_ms, num_turns"
)


def _session_cols(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _SESSION_COLS.split(","))


def _chunks(items: Sequence[str], size: int = 400) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _duration(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0, round((b - a).total_seconds() * 1000))


_NANO = 1_000_000_000


def _dollars(value: Any) -> float | None:
    """A stored cost as the decimal it stands for: sums of float costs (``0.0003 + 0.000225``)
    carry noise (``0.0005250000000000001``); rounded to whole nano-dollars they do not."""
    if value is None:
        return None
    return round(float(value) * _NANO) / _NANO


def _summaries(conn: Any, rows: Sequence[Sequence[Any]]) -> list[SessionSummary]:
    """Session rows (``_SESSION_COLS`` order) plus message and tool totals, in three queries."""
    ids = [str(r[0]) for r in rows]
    msg: dict[str, tuple[int, int | None, int | None]] = {}
    tools: dict[str, tuple[int, int]] = {}
    for part in _chunks(ids):
        marks = ", ".join("?" for _ in part)
        for sid, n, itok, otok in conn.execute(
            "SELECT session_id, COUNT(*),"
            f" SUM(CASE WHEN role = '{_RESULT_ROLE}' THEN NULL ELSE input_tokens END),"
            f" SUM(CASE WHEN role = '{_RESULT_ROLE}' THEN NULL ELSE output_tokens END)"
            f" FROM messages WHERE session_id IN ({marks}) GROUP BY session_id",
            tuple(part),
        ).fetchall():
            msg[sid] = (int(n), itok, otok)
        for sid, n, errors in conn.execute(
            "SELECT session_id, COUNT(*), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)"
            f" FROM tool_executions WHERE session_id IN ({marks}) GROUP BY session_id",
            tuple(part),
        ).fetchall():
            tools[sid] = (int(n), int(errors or 0))
    out: list[SessionSummary] = []
    for r in rows:
        sid = str(r[0])
        n_msg, m_in, m_out = msg.get(sid, (0, None, None))
        n_tool, n_err = tools.get(sid, (0, 0))
        out.append(
            SessionSummary(
                id=sid,
                agent_type=r[1],
                model=r[2],
                provider=r[3],
                status=r[4],
                started_at=r[5],
                ended_at=r[6],
                error_message=r[7],
                external_id=r[8],
                metadata=_json(r[9]),
                message_count=n_msg,
                tool_count=n_tool,
                tool_error_count=n_err,
                input_tokens=r[10] if r[10] is not None else m_in,
                output_tokens=r[11] if r[11] is not None else m_out,
                cache_read_tokens=r[12],
                cache_creation_tokens=r[13],
                cost_usd=_dollars(r[14]),
                duration_ms=r[15] if r[15] is not None else _duration(r[5], r[6]),
                num_turns=r[16],
                agent_duration_ms=r[15],
            )
        )
    return out


# ----- list -------------------------------------------------------------------------------------


# ``cursor`` left out: the first page. ``cursor=None`` is what the last page's ``next_cursor``
# holds, so it means "nothing more" (an empty page): ``list_sessions(cursor=page.next_cursor)``
# in a loop ends instead of starting over with every session.
_FIRST_PAGE: Any = object()


def list_sessions(
    limit: int = 50,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = _FIRST_PAGE,
    *,
    client: TursoClient | None = None,
) -> SessionPage:
    """Newest first. Pages are keyset-based on ``(started_at, id)``: sessions that arrive
    between two pages never shift or repeat rows of the pages still to come.

    ``next_cursor`` keeps the query's filters, with a relative ``since``/``until`` (``"7d"``)
    fixed to the instant it meant on the first page, so ``list_sessions(cursor=c)`` alone
    continues the same query (``limit`` is not kept: it is each call's page size). Filters
    given with a cursor must be exactly the cursor's (the same age, such as ``"7d"`` again,
    counts as the same), else :class:`InvalidCursor` (a ``ValueError``) is raised: "the cursor
    belongs to a query with other filters". An older cursor (made before cursors kept their
    filters) is still accepted: with it, the filters given apply, as they did then.

    Leave ``cursor`` out (or pass ``""``) for the first page; ``cursor=None``, the last page's
    ``next_cursor``, returns an empty page (after checking the other arguments), so paging with
    ``list_sessions(cursor=page.next_cursor)`` stops. :func:`iter_sessions` pages for you.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if cursor is None:  # past the last page
        _page_query(agent_type, status, model, since, until, None)
        return SessionPage()
    if cursor is _FIRST_PAGE:
        cursor = None
    query, after = _page_query(agent_type, status, model, since, until, cursor)
    clauses, params = _filters("s", query.agent_type, query.status, query.model)
    for bound, op in ((query.since, ">="), (query.until, "<")):
        if bound is not None:
            clauses.append(f"s.started_at {op} ?")
            params.append(bound)
    if after is not None:
        clauses.append("(s.started_at < ? OR (s.started_at = ? AND s.id < ?))")
        params.extend([after[0], after[0], after[1]])
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {_session_cols('s')} FROM sessions s {where}"
        " ORDER BY s.started_at DESC, s.id DESC LIMIT ?"
    )
    with _reading(client) as conn:
        if conn is None:
            return SessionPage()
        rows = conn.execute(sql, (*params, limit + 1)).fetchall()
        summaries = _summaries(conn, rows[:limit])
    next_cursor = None
    if len(rows) > limit and summaries:
        last = summaries[-1]
        next_cursor = _encode_cursor(last.started_at, last.id, query)
    return SessionPage(summaries, next_cursor)


_ITER_PAGE_SIZE = 200


def iter_sessions(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    page_size: int = _ITER_PAGE_SIZE,
    client: TursoClient | None = None,
) -> Iterator[SessionSummary]:
    """Every session the filters select, newest first, read ``page_size`` at a time (the same
    keyset pages as ``list_sessions``: sessions that arrive meanwhile never repeat or shift
    rows). Arguments are checked, and the first page read, on the first ``next()``."""
    page = list_sessions(page_size, agent_type, status, model, since, until, client=client)
    for _ in range(100_000_000):  # bounded: each page moves strictly past the previous one
        yield from page
        if page.next_cursor is None:
            return
        page = list_sessions(page_size, cursor=page.next_cursor, client=client)


# ----- one session ------------------------------------------------------------------------------

_MESSAGE_COLS = (
    "id, session_id, sequence, role, content, tool_name, tool_input, tool_output, created_at, "
    "token_count, external_id, model, input_tokens, output_tokens, parent_tool_use_id"
)


def _has_column(conn: Any, table: str, column: str) -> bool:
    """Schema 3 added ``messages.metadata``; a remote written by older versions lacks it."""
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})").fetchall())


_TOOL_COLS = (
    "id, session_id, message_id, tool_name, status, input, output, error, started_at, ended_at, "
    "duration_ms, tool_use_id, parent_tool_use_id"
)


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """``id >= lo AND id < hi`` selects the ids starting with ``prefix`` (and uses the primary
    key's index, unlike ``substr``): text compares as UTF-8 bytes, and no id holds U+10FFFF."""
    return prefix, prefix + "\U0010ffff"


def _by_prefix(conn: Any, prefix: str, cols: str = "s.id") -> list[Sequence[Any]]:
    lo, hi = _prefix_bounds(prefix)
    rows = conn.execute(
        f"SELECT {cols} FROM sessions s WHERE s.id >= ? AND s.id < ? ORDER BY s.id LIMIT 2",
        (lo, hi),
    ).fetchall()
    return [r for r in rows if str(r[0]).startswith(prefix)]


def sdk_session_ids(metadata: Any) -> list[str]:
    """The SDK / OpenCode session ids a session's metadata records: ``sdk_session_ids`` (every
    Claude CLI session the logged session ran) and the keys of ``opencode_sessions`` (every
    OpenCode session that joined it)."""
    if not isinstance(metadata, dict):
        return []
    found: list[str] = []
    claude = metadata.get("sdk_session_ids")
    if isinstance(claude, list):
        found += [x for x in claude if isinstance(x, str)]
    opencode = metadata.get("opencode_sessions")
    if isinstance(opencode, dict):
        found += [k for k in opencode if isinstance(k, str)]
    return found


def _by_metadata_id(conn: Any, cols: str, session_id: str) -> Sequence[Any] | None:
    """The newest session whose metadata records ``session_id`` as one of its SDK sessions.

    ``LIKE`` narrows to metadata containing the id as a JSON string; the JSON decides."""
    needle = json.dumps(session_id, ensure_ascii=False)
    cur = conn.execute(
        f"SELECT {cols} FROM sessions s WHERE s.metadata {_LIKE}"
        " ORDER BY s.started_at DESC, s.id DESC",
        ("%" + _like_escape(needle) + "%",),
    )
    meta_at = [c.strip() for c in _SESSION_COLS.split(",")].index("metadata")
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        if session_id in sdk_session_ids(_json(row[meta_at])):
            return row  # type: ignore[no-any-return]
    return None


def _find_session_row(conn: Any, session_id: str) -> Sequence[Any] | None:
    """Our id; else the SDK's id (``external_id``, newest); else a unique prefix of our id
    (at least ``_PREFIX_MIN`` characters); else any SDK / OpenCode session id a session ran: the
    ones its metadata records (``external_id`` holds one of them), then the Claude CLI session
    ids on its ``result`` rows (a scan of the messages, so only when nothing else matched)."""
    cols = _session_cols("s")
    row = conn.execute(f"SELECT {cols} FROM sessions s WHERE s.id = ?", (session_id,)).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {cols} FROM sessions s WHERE s.external_id = ?"
            " ORDER BY s.started_at DESC, s.id DESC LIMIT 1",
            (session_id,),
        ).fetchone()
    if row is None and len(session_id) >= _PREFIX_MIN:
        rows = _by_prefix(conn, session_id, cols)
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        row = _by_metadata_id(conn, cols, session_id)
    if row is None:  # a Claude CLI session's id is also on each of its turns' ``result`` rows
        hit = conn.execute(
            f"SELECT session_id FROM messages WHERE role = '{_RESULT_ROLE}' AND external_id = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        if hit is not None:
            row = conn.execute(
                f"SELECT {cols} FROM sessions s WHERE s.id = ?", (hit[0],)
            ).fetchone()
    return row  # type: ignore[no-any-return]


def _shortest_unique(conn: Any, session_id: str, min_length: int) -> str:
    """The shortest prefix (at least ``min_length``) that ``get_session`` resolves to this id:
    longer than what it shares with its neighbours in id order, and no session's SDK id."""
    if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
        return session_id
    lcp = 0
    for op, order in (("<", "DESC"), (">", "ASC")):
        row = conn.execute(
            f"SELECT id FROM sessions WHERE id {op} ? ORDER BY id {order} LIMIT 1", (session_id,)
        ).fetchone()
        if row is not None:
            other = str(row[0])
            n = 0
            for a, b in zip(session_id, other):
                if a != b:
                    break
                n += 1
            lcp = max(lcp, n)
    length = max(min_length, _PREFIX_MIN, lcp + 1)
    for _ in range(len(session_id) + 1):
        if length >= len(session_id):
            return session_id
        prefix = session_id[:length]
        taken = conn.execute(
            "SELECT 1 FROM sessions WHERE id = ? OR external_id = ? LIMIT 1", (prefix, prefix)
        ).fetchone()
        if taken is None:
            return prefix
        length += 1
    return session_id


def short_ids(
    session_ids: Iterable[str], min_length: int = 8, *, client: TursoClient | None = None
) -> dict[str, str]:
    """Short, unique forms of session ids (like git's short hashes) for narrow displays: each
    is the shortest prefix of at least ``min_length`` characters that ``get_session`` (and
    ``cpl show``) resolves to that session right now. Ids not in the database map to
    themselves."""
    ids = [str(i) for i in session_ids]
    out = {i: i for i in ids}
    with _reading(client, missing_ok=True) as conn:
        if conn is None:
            return out
        for sid in ids:
            out[sid] = _shortest_unique(conn, sid, min_length)
    return out


def get_session(session_id: str, *, client: TursoClient | None = None) -> SessionDetail | None:
    """The whole session: messages in sequence order, tool executions in start order.

    ``session_id`` is our id, the id of any Claude CLI / OpenCode session it ran, or a unique
    prefix of our id (6 characters or more); ``None`` when nothing matches."""
    session_id = str(session_id).strip()
    if not session_id:
        return None
    with _reading(client) as conn:
        if conn is None:
            return None
        row = _find_session_row(conn, session_id)
        if row is None:
            return None
        summary = _summaries(conn, [row])[0]
        meta_col = "metadata" if _has_column(conn, "messages", "metadata") else "NULL"
        msg_rows = conn.execute(
            f"SELECT {_MESSAGE_COLS}, {meta_col} FROM messages WHERE session_id = ?"
            " ORDER BY sequence, created_at, rowid",
            (summary.id,),
        ).fetchall()
        tool_rows = conn.execute(
            f"SELECT {_TOOL_COLS} FROM tool_executions WHERE session_id = ?"
            " ORDER BY started_at, rowid",
            (summary.id,),
        ).fetchall()
        sdk_ids = [summary.external_id or "", *sdk_session_ids(summary.metadata)]
        transcripts = tuple(transcripts_for(conn, sdk_ids))
    messages = tuple(
        MessageRecord(
            id=r[0],
            session_id=r[1],
            sequence=int(r[2]),
            role=r[3],
            content=r[4],
            tool_name=r[5],
            tool_input=_json(r[6]),
            tool_output=_json(r[7]),
            created_at=r[8],
            token_count=r[9],
            external_id=r[10],
            model=r[11],
            input_tokens=r[12],
            output_tokens=r[13],
            parent_tool_use_id=r[14],
            metadata=_json(r[15]),
        )
        for r in msg_rows
    )
    tools = tuple(
        ToolExecutionRecord(
            id=r[0],
            session_id=r[1],
            message_id=r[2],
            tool_name=r[3],
            status=r[4],
            input=_json(r[5]),
            output=r[6],
            error=r[7],
            started_at=r[8],
            ended_at=r[9],
            duration_ms=r[10] if r[10] is not None else _duration(r[8], r[9]),
            tool_use_id=r[11],
            parent_tool_use_id=r[12],
        )
        for r in tool_rows
    )
    return SessionDetail(summary, messages, tools, transcripts)


def get_stored_transcripts(
    detail: SessionDetail, *, client: TursoClient | None = None
) -> list[tuple[StoredTranscript, dict[str, list[Any]]]]:
    """The stored transcripts ``detail.transcripts`` names, each as ``{subpath: entries}``
    (``""``: the main transcript; ``subagents/...``: its subagents')."""
    if not detail.transcripts:
        return []
    with _reading(client) as conn:
        if conn is None:
            return []
        return [(t, load_transcript(conn, t)) for t in detail.transcripts]


# ----- search -----------------------------------------------------------------------------------


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, text) of every string and number inside a JSON value; keys are not content."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield path, json.dumps(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _json_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_values(v, f"{path}[{i}]")


@dataclass(frozen=True)
class _Matcher:
    """SQL ``LIKE`` narrows the candidates, Python decides.

    ``LIKE`` folds ASCII case only, so other cased letters become ``_`` in the pattern. JSON columns
    are matched on the values inside them (the SQL looks for the JSON-escaped text as well), so
    ``\\`` or ``"`` do not match JSON's own escapes and quotes.
    """

    needle: str
    raw: str
    pattern: str
    json_pattern: str

    @classmethod
    def build(cls, query: str) -> _Matcher:
        def pattern(text: str) -> str:
            parts = [
                "_" if ord(c) >= 128 and c.lower() != c.upper() else _like_escape(c) for c in text
            ]
            return "%" + "".join(parts) + "%"

        json_form = json.dumps(query, ensure_ascii=False)[1:-1]
        return cls(query.lower(), query, pattern(query), pattern(json_form))

    def find_text(self, text: Any) -> str | None:
        """A snippet around the first hit in ``text``, or ``None``."""
        if not isinstance(text, str):
            return None
        pos = text.lower().find(self.needle)
        return None if pos < 0 else self._snippet(text, pos)

    def find_json(self, stored: Any) -> str | None:
        """A snippet (``key: …text…``) of the first value inside stored JSON containing the text;
        stored text that is not JSON (cut by the payload limit, say) is searched as it is."""
        if not isinstance(stored, str):
            return None
        try:
            value = json.loads(stored)
        except ValueError:
            return self.find_text(stored)
        for path, text in _json_values(value):
            snippet = self.find_text(text)
            if snippet is not None:
                return f"{path}: {snippet}" if path else snippet
        return None

    def _snippet(self, text: str, pos: int) -> str:
        start = max(0, pos - SNIPPET_CONTEXT)
        end = min(len(text), pos + len(self.raw) + SNIPPET_CONTEXT)
        body = " ".join(text[start:end].split())
        return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


_LIKE = "LIKE ? ESCAPE '\\'"


def _match_sql(cols: Sequence[tuple[str, bool]]) -> str:
    return " OR ".join(
        f"{col} {_LIKE}" + (f" OR {col} {_LIKE}" if is_json else "") for col, is_json in cols
    )


def _match_params(m: _Matcher, cols: Sequence[tuple[str, bool]]) -> list[str]:
    params: list[str] = []
    for _col, is_json in cols:
        params.append(m.pattern)
        if is_json:
            params.append(m.json_pattern)
    return params


_MESSAGE_MATCH = (("content", False), ("tool_input", True), ("tool_output", True))
_TOOL_MATCH = (("input", True), ("output", False), ("error", False))


@dataclass(frozen=True)
class _Hit:
    at: str
    where: str
    snippet: str
    sequence: int | None = None
    role: str | None = None
    tool_name: str | None = None


def _first_message_hit(conn: Any, m: _Matcher, session_id: str) -> _Hit | None:
    cur = conn.execute(
        "SELECT created_at, sequence, role, tool_name, content, tool_input, tool_output"
        f" FROM messages WHERE session_id = ? AND ({_match_sql(_MESSAGE_MATCH)})"
        " ORDER BY sequence, rowid",
        (session_id, *_match_params(m, _MESSAGE_MATCH)),
    )
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        for where, snippet in (
            (WHERE_MESSAGE, m.find_text(row[4])),
            (WHERE_MESSAGE_TOOL_INPUT, m.find_json(row[5])),
            (WHERE_MESSAGE_TOOL_OUTPUT, m.find_json(row[6])),
        ):
            if snippet is not None:
                return _Hit(row[0], where, snippet, int(row[1]), row[2], row[3])
    return None


def _first_tool_hit(conn: Any, m: _Matcher, session_id: str) -> _Hit | None:
    cur = conn.execute(
        "SELECT started_at, tool_name, input, output, error FROM tool_executions"
        f" WHERE session_id = ? AND ({_match_sql(_TOOL_MATCH)}) ORDER BY started_at, rowid",
        (session_id, *_match_params(m, _TOOL_MATCH)),
    )
    for _ in range(10_000_000):
        row = cur.fetchone()
        if row is None:
            return None
        for where, snippet in (
            (WHERE_TOOL_INPUT, m.find_json(row[2])),
            (WHERE_TOOL_OUTPUT, m.find_text(row[3])),
            (WHERE_TOOL_ERROR, m.find_text(row[4])),
        ):
            if snippet is not None:
                return _Hit(row[0], where, snippet, tool_name=row[1])
    return None


def _first_hit(conn: Any, m: _Matcher, session_id: str, error_message: Any) -> _Hit | None:
    """The earliest place in the session that contains the text; the session's error last."""
    msg = _first_message_hit(conn, m, session_id)
    tool = _first_tool_hit(conn, m, session_id)
    if msg is not None and (tool is None or msg.at <= tool.at):
        return msg
    if tool is not None:
        return tool
    snippet = m.find_text(error_message)
    return None if snippet is None else _Hit("", WHERE_SESSION_ERROR, snippet)


def search_sessions(
    query: str,
    limit: int = 20,
    *,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    client: TursoClient | None = None,
) -> list[SearchHit]:
    """Sessions (newest first) whose messages, tool inputs/outputs or errors contain ``query``.

    Case-insensitive; every character, ``%``, ``_``, quotes and backslashes included, is literal.
    """
    if not isinstance(query, str) or not query:
        raise ValueError("search text must not be empty")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    m = _Matcher.build(query)
    clauses, params = _filters("s", agent_type, status, model, since, until)
    clauses.append(
        f"(s.error_message {_LIKE}"
        f" OR s.id IN (SELECT session_id FROM messages WHERE {_match_sql(_MESSAGE_MATCH)})"
        f" OR s.id IN (SELECT session_id FROM tool_executions WHERE {_match_sql(_TOOL_MATCH)}))"
    )
    params.extend([m.pattern, *_match_params(m, _MESSAGE_MATCH), *_match_params(m, _TOOL_MATCH)])
    base = f"SELECT {_session_cols('s')} FROM sessions s WHERE {' AND '.join(clauses)}"
    batch = max(2 * limit, 50)
    hits: list[tuple[Sequence[Any], _Hit]] = []
    with _reading(client) as conn:
        if conn is None:
            return []
        after: tuple[str, str] | None = None
        for _ in range(1_000_000):  # candidate batches, newest first, until ``limit`` hits
            keyset, extra = "", []
            if after is not None:
                keyset = " AND (s.started_at < ? OR (s.started_at = ? AND s.id < ?))"
                extra = [after[0], after[0], after[1]]
            rows = conn.execute(
                f"{base}{keyset} ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
                (*params, *extra, batch),
            ).fetchall()
            for row in rows:
                hit = _first_hit(conn, m, row[0], row[7])
                if hit is not None:
                    hits.append((row, hit))
                    if len(hits) >= limit:
                        break
            if len(hits) >= limit or len(rows) < batch:
                break
            after = (rows[-1][5], rows[-1][0])
        summaries = _summaries(conn, [row for row, _ in hits])
    return [
        SearchHit(summary, h.where, h.snippet, h.sequence, h.role, h.tool_name)
        for summary, (_, h) in zip(summaries, hits)
    ]


# ----- usage ------------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, ``method='inclusive'``)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def usage_summary(
    group_by: GroupBy | str = "agent_type",
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
) -> list[UsageRow]:
    """Per group (sorted by key): sessions, success rate, tokens, cost, tool error rate and
    p50/p95 tool duration. A day is the UTC date the session started."""
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}, got {group_by!r}")
    key = "substr(s.started_at, 1, 10)" if group_by == "day" else f"s.{group_by}"
    clauses, params = _filters("s", agent_type, None, model, since, until)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

    def msum(col: str) -> str:
        return (
            f"SUM(COALESCE(s.{col}, (SELECT SUM(m.{col}) FROM messages m"
            f" WHERE m.session_id = s.id AND m.role <> '{_RESULT_ROLE}')))"
        )

    session_sql = (
        f"SELECT {key} AS k, COUNT(*),"
        " SUM(CASE WHEN s.status = 'completed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN s.status = 'error' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN s.status = 'running' THEN 1 ELSE 0 END),"
        f" {msum('input_tokens')}, {msum('output_tokens')},"
        " SUM(s.cache_read_tokens), SUM(s.cache_creation_tokens),"
        f" SUM(CAST(ROUND(s.cost_usd * {_NANO}) AS INTEGER))"
        f" FROM sessions s {where} GROUP BY k ORDER BY k"
    )
    tool_sql = (
        f"SELECT {key} AS k, COUNT(*),"
        " SUM(CASE WHEN t.status = 'running' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN t.status = 'error' THEN 1 ELSE 0 END)"
        f" FROM tool_executions t JOIN sessions s ON s.id = t.session_id {where} GROUP BY k"
    )
    dur_where = " AND ".join([*clauses, "t.duration_ms IS NOT NULL"])
    duration_sql = (
        f"SELECT {key} AS k, t.duration_ms FROM tool_executions t"
        f" JOIN sessions s ON s.id = t.session_id WHERE {dur_where}"
    )
    span_sql = (
        f"SELECT {key} AS k, s.started_at, s.ended_at, s.duration_ms FROM sessions s"
        f" WHERE {' AND '.join([*clauses, 's.ended_at IS NOT NULL'])}"
    )
    with _reading(client) as conn:
        if conn is None:
            return []
        session_rows = conn.execute(session_sql, tuple(params)).fetchall()
        tool_rows = {r[0]: r for r in conn.execute(tool_sql, tuple(params)).fetchall()}
        durations: dict[Any, list[float]] = {}
        cur = conn.execute(duration_sql, tuple(params))
        for _ in range(100_000_000):
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for k, ms in chunk:
                durations.setdefault(k, []).append(float(ms))
        walls: dict[Any, list[float]] = {}
        agents: dict[Any, list[float]] = {}
        cur = conn.execute(span_sql, tuple(params))
        for _ in range(100_000_000):
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for k, started, ended, reported in chunk:
                wall = _duration(started, ended)
                if wall is not None:
                    walls.setdefault(k, []).append(float(wall))
                if reported is not None:
                    agents.setdefault(k, []).append(float(reported))
    out: list[UsageRow] = []
    for k, n, done, err, running, itok, otok, cread, ccreate, cost in session_rows:
        _, tools, tools_running, tool_err = tool_rows.get(k, (k, 0, 0, 0))
        finished = int(n) - int(running or 0)
        tools_finished = int(tools) - int(tools_running or 0)
        ds = sorted(durations.get(k, []))
        out.append(
            UsageRow(
                group="<none>" if k is None else str(k),
                sessions=int(n),
                completed=int(done or 0),
                errors=int(err or 0),
                running=int(running or 0),
                success_rate=(int(done or 0) / finished) if finished else None,
                input_tokens=int(itok or 0),
                output_tokens=int(otok or 0),
                cache_read_tokens=int(cread or 0),
                cache_creation_tokens=int(ccreate or 0),
                cost_usd=int(cost or 0) / _NANO,
                tool_calls=int(tools),
                tool_errors=int(tool_err or 0),
                tool_error_rate=(int(tool_err or 0) / tools_finished) if tools_finished else None,
                p50_tool_ms=_percentile(ds, 0.5),
                p95_tool_ms=_percentile(ds, 0.95),
                p50_wall_ms=_percentile(sorted(walls.get(k, [])), 0.5),
                p50_agent_ms=_percentile(sorted(agents.get(k, [])), 0.5),
            )
        )
    return out


# ----- asyncio ----------------------------------------------------------------------------------


async def alist_sessions(
    limit: int = 50,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = _FIRST_PAGE,
    *,
    client: TursoClient | None = None,
) -> SessionPage:
    """``list_sessions`` in a worker thread, so the event loop keeps running."""
    return await asyncio.to_thread(
        list_sessions, limit, agent_type, status, model, since, until, cursor, client=client
    )


async def aiter_sessions(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    page_size: int = _ITER_PAGE_SIZE,
    client: TursoClient | None = None,
) -> AsyncIterator[SessionSummary]:
    """``iter_sessions`` for ``async for``: each page is read in a worker thread."""
    page = await alist_sessions(page_size, agent_type, status, model, since, until, client=client)
    for _ in range(100_000_000):
        for summary in page:
            yield summary
        if page.next_cursor is None:
            return
        page = await alist_sessions(page_size, cursor=page.next_cursor, client=client)


async def aget_session(
    session_id: str, *, client: TursoClient | None = None
) -> SessionDetail | None:
    """``get_session`` in a worker thread."""
    return await asyncio.to_thread(get_session, session_id, client=client)


async def asearch_sessions(
    query: str,
    limit: int = 20,
    *,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    client: TursoClient | None = None,
) -> list[SearchHit]:
    """``search_sessions`` in a worker thread."""
    return await asyncio.to_thread(
        search_sessions,
        query,
        limit,
        agent_type=agent_type,
        status=status,
        model=model,
        since=since,
        until=until,
        client=client,
    )


async def ausage_summary(
    group_by: GroupBy | str = "agent_type",
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
) -> list[UsageRow]:
    """``usage_summary`` in a worker thread."""
    return await asyncio.to_thread(
        usage_summary, group_by, since, until, agent_type=agent_type, model=model, client=client
    )
