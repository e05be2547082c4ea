"""OpenCode: the server's raw events and stored messages, mapped onto logged sessions.

Everything is read as raw JSON (dicts), never through the SDK's models: the PyPI SDK is older
than current servers, so unknown event types and fields must pass through (they are kept as JSON
in ``metadata``) and nothing here may break on them.

Three ways in share one state per OpenCode session (a process-wide registry keyed by server URL
and OpenCode session id), so whichever sees a message first logs it and the others only update it:

* ``monitor_opencode(client)`` reads ``GET /event`` (SSE) in a thread and routes every event by
  its session id. The stream can drop events, so an idle session, a reconnect and the monitor's
  exit reconcile from ``GET /session/{id}/message``.
* ``instrument()`` patches ``session.chat``: the prompt is logged before the call, and the whole
  turn is reconciled from the server when it returns (no monitor needed).
* :class:`OpencodeRouter` can be fed by hand (``handle(event)``, ``reconcile(sid, messages)``),
  e.g. with recorded streams.

Rows (ids are deterministic per logged session, so every path upserts the same row):

* a user message: one ``user`` row, content = its text parts;
* an assistant message: one ``assistant`` row with model, tokens, cost and times (the turn's
  usage row); each text/reasoning part is its own ``assistant`` row with the final text; each
  tool part is an ``assistant`` row with ``tool_name``/``tool_input``/``tool_output`` plus a
  ``tool_executions`` row (pending -> running -> completed/error) keyed by the call id;
* other parts and unknown session events: rows with the raw JSON in ``metadata``.

Lifecycle: an OpenCode session joins a ``logged_session`` when a chat call or ``monitor.attach()``
binds it inside one, or when its first content arrives while a monitor entered inside one is
running (a child session joins its parent's); otherwise it gets its own logged session. OpenCode
sessions are long-lived, so a session of our own shows each turn: ``running`` while busy,
``completed``/``error`` (with ``ended_at``) once idle, ``running`` again at the next prompt. It is
ended when the last monitor watching it exits (as ``error`` if a turn was still running then) or
when the OpenCode session is deleted.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import get_turso_client
from ..serialize import iso_utc
from ..store import MESSAGE_UPDATABLE
from .claude import describe
from .session import LoggedSession, current_session

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("claude_parallel_logging")

JSON = dict[str, Any]

_MARGIN_MS = 10_000.0  # clock slack when deciding which stored messages are "from now on"
_HTTP_TIMEOUT = 10.0
_MAX_EVENT_ROWS = 500  # per OpenCode session: unknown events are kept, but not without bound
_MAX_ORPHANS = 1000  # parts held back until their message is known
# Parts of one message logged one by one; the others are counted in one row per message, so a
# message with a huge number of parts cannot flood the queue (nor keep a chat call busy).
_MAX_PARTS = 500
_MAX_OMITTED = 10_000  # omitted part ids remembered per message (the count stops there)
_MAX_STATES = 4096  # per server; idle ones beyond this are forgotten
_TOOL_RANK = {"pending": 0, "running": 1, "completed": 2, "error": 2}
_SKIPPED_PARTS = frozenset({"step-start", "step-finish"})  # step usage repeats the message's
_QUIET_EVENTS = frozenset(
    {"server.connected", "server.heartbeat", "message.part.delta", "session.diff"}
)
_BUSY = frozenset({"busy", "retry"})
_PROMPT_PLACEHOLDER = "\0prompt"  # a chat call's text until the server's text part arrives
_MESSAGE_KEYS = frozenset(
    {
        "id", "sessionID", "role", "time", "error", "parentID", "modelID", "providerID", "mode",
        "agent", "path", "summary", "cost", "tokens", "finish", "model",
    }
)  # fmt: skip
_PART_KEYS = frozenset(
    {"id", "sessionID", "messageID", "type", "text", "time", "synthetic", "ignored", "metadata"}
)
_SESSION_KEYS = frozenset(
    {
        "id", "slug", "projectID", "workspaceID", "directory", "path", "parentID", "title",
        "version", "agent", "share",
        # volatile: they change on every update and say nothing about the session's identity
        "time", "cost", "tokens", "summary", "model", "revert", "permission", "metadata",
    }
)  # fmt: skip


# ----- small helpers ------------------------------------------------------------------------


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _sec(ms: Any) -> float | None:
    """OpenCode times are epoch milliseconds; the logger takes epoch seconds."""
    value = _num(ms)
    return None if value is None else value / 1000.0


def _iso(ms: Any) -> str | None:
    value = _sec(ms)
    return None if value is None else iso_utc(value)


def _clean(values: Mapping[str, Any]) -> JSON:
    return {k: v for k, v in values.items() if v is not None and v != {}}


def _extra(data: JSON, known: frozenset[str]) -> JSON | None:
    """Fields this version does not know: kept, so a newer server loses nothing."""
    extra = {k: v for k, v in data.items() if k not in known}
    return extra or None


def _fp(value: Any) -> int:
    """A cheap fingerprint of a written value, so an unchanged snapshot writes nothing."""
    if isinstance(value, (str, int, float, bool)):
        return hash((type(value).__name__, value))
    return hash(json.dumps(value, sort_keys=True, default=str))


def _row_id(session_id: str, oc_session: str, key: str) -> str:
    """Deterministic per logged session: the stream and reconciliation upsert one row, while two
    processes logging the same OpenCode session into different sessions never collide."""
    digest = hashlib.sha1(f"{session_id}\0{oc_session}\0{key}".encode()).hexdigest()
    return f"oc-{digest[:24]}"


def error_text(error: Any) -> str | None:
    """``{name, data: {message}}`` (OpenCode's NamedError) as one line."""
    if error is None:
        return None
    if not isinstance(error, dict):
        return str(error)
    data = _dict(error.get("data"))
    message = data.get("message") or error.get("message")
    name = error.get("name")
    if message and name:
        return f"{name}: {message}"
    return str(message or name or json.dumps(error, default=str))


def _latest(infos: Iterable[JSON]) -> JSON | None:
    """OpenCode ids ascend with time; ``time.created`` first in case a server changes that."""
    best: JSON | None = None
    best_key: tuple[float, str] = (-1.0, "")
    for info in infos:
        key = (_num(_dict(info.get("time")).get("created")) or 0.0, str(info.get("id", "")))
        if key >= best_key:
            best, best_key = info, key
    return best


def _slim_part(part: JSON) -> JSON:
    """Inline data URLs (pasted images) would fill the database; their size is enough."""
    url = part.get("url")
    if isinstance(url, str) and url.startswith("data:") and len(url) > 256:
        return {**part, "url": f"{url[:40]}... ({len(url)} chars)"}
    return part


def _event_session_id(etype: str, props: JSON) -> str | None:
    sid = props.get("sessionID")
    if isinstance(sid, str):
        return sid
    for key in ("info", "part"):
        inner = _dict(props.get(key))
        value = inner.get("sessionID")
        if isinstance(value, str):
            return value
        if key == "info" and etype.startswith("session.") and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return None


# ----- logged-session bookkeeping -----------------------------------------------------------


@dataclass
class _Group:
    """What one logged session knows about the OpenCode sessions writing into it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    details: dict[str, JSON] = field(default_factory=dict)
    external_id: str | None = None
    model_set: bool = False


_groups: weakref.WeakKeyDictionary[LoggedSession, _Group] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def _group(session: LoggedSession) -> _Group:
    with _groups_lock:
        group = _groups.get(session)
        if group is None:
            group = _groups[session] = _Group()
        return group


@dataclass
class _Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: float = 0.0


@dataclass
class _Prompt:
    """A prompt logged from a chat call, waiting for the server's user message to adopt it."""

    text: str
    row: str
    session: LoggedSession


class _OcSession:
    """Everything known about one OpenCode session, and where its rows go."""

    def __init__(self, sid: str, floor_ms: float | None) -> None:
        self.sid = sid
        self.lock = threading.RLock()
        self.session: LoggedSession | None = None  # where new rows go
        self.owned: LoggedSession | None = None  # a session we created (and end)
        self.floor_ms = floor_ms  # stored messages older than this predate us: not logged
        self.info: JSON = {}
        self.model_hint: tuple[str | None, str | None] = (None, None)
        self.messages: dict[str, JSON] = {}  # message id -> latest info
        self.user_text: dict[str, dict[str, str]] = {}  # user message -> part id -> text
        self.rows: dict[str, str] = {}  # OpenCode key -> row id (messages or tool_executions)
        self.owner: dict[str, LoggedSession] = {}  # OpenCode key -> session holding the row
        self.written: dict[str, dict[str, int]] = {}  # key -> column -> fingerprint
        self.tool_rank: dict[str, int] = {}
        self.usage: dict[str, tuple[LoggedSession, _Usage]] = {}
        self.prompts: collections.deque[_Prompt] = collections.deque(maxlen=32)
        self.orphans: dict[str, list[JSON]] = {}
        self.parts: dict[str, set[str]] = {}  # message id -> parts logged one by one
        self.omitted: dict[str, set[str]] = {}  # message id -> parts only counted
        self.orphan_count = 0
        self.event_rows = 0
        self.last_created_ms = 0.0
        self.turn_open = False
        self.dirty = False
        self.turn_error: str | None = None
        self.noted_error = False
        self.status: tuple[str, str | None] = ("running", None)
        self.turns_finished = 0
        self.watchers: set[int] = set()

    def live(self) -> LoggedSession | None:
        session = self.session
        return session if session is not None and not session.ended else None


# ----- the router ---------------------------------------------------------------------------


class OpencodeRouter:
    """Routes the raw events of one OpenCode server into logged sessions.

    ``base_url`` enables reconciliation over HTTP; without it (replaying recordings) stored
    messages are given to :meth:`reconcile` by hand. Never raises into the caller.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        agent_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = _HTTP_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.agent_type = agent_type
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._states: dict[str, _OcSession] = {}
        self._floors: dict[str, float] = {}  # forgotten sessions: where logging resumes
        self._watcher_agents: dict[int, str] = {}  # a monitor's agent_type, while it runs
        self._watcher_joins: dict[int, LoggedSession] = {}  # the session a monitor was entered in
        self._http: httpx.Client | None = None
        self._stats: collections.Counter[str] = collections.Counter()

    # ----- public ---------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def session_for(self, session_id: str) -> LoggedSession | None:
        """The logged session an OpenCode session writes into (``None`` before any content)."""
        with self._lock:
            st = self._states.get(session_id)
        return None if st is None else st.session

    def handle(self, event: Any, *, watcher: int | None = None) -> None:
        """One raw event: the ``data:`` of ``/event``, as text or parsed."""
        try:
            self._handle(event, watcher)
        except Exception:
            self._count("mapping_errors")
            log.debug("claude-parallel-logging: cannot map OpenCode event", exc_info=True)

    def reconcile(self, session_id: str, messages: list[JSON] | None = None) -> bool:
        """Log whatever of the stored messages is missing (fetched when not given)."""
        try:
            if messages is None:
                messages = self.fetch_messages(session_id)
            if messages is None:
                return False
            st = self._state(session_id)
            with st.lock:
                self._reconcile(st, messages)
            return True
        except Exception:
            self._count("mapping_errors")
            log.debug("claude-parallel-logging: OpenCode reconcile failed", exc_info=True)
            return False

    def attach(
        self,
        session_id: str,
        session: LoggedSession | None = None,
        *,
        watcher: int | None = None,
    ) -> LoggedSession | None:
        """Bind an OpenCode session now: to ``session``, the current logged session, or its own."""
        try:
            st = self._state(session_id, watcher)
            with st.lock:
                join = session or current_session()
                if join is not None:
                    self._bind(st, join)
                return self._live(st)
        except Exception:
            log.debug("claude-parallel-logging: OpenCode attach failed", exc_info=True)
            return None

    def wait_idle(self, session_id: str, timeout: float = 60.0, *, turns: int = 1) -> bool:
        """Block until ``turns`` turns of the session finished (and were reconciled)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                st = self._states.get(session_id)
                if st is not None and st.turns_finished >= turns and not st.turn_open:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        """Finish every session (what a monitor's exit does for the sessions it watched)."""
        self.release(None)

    # ----- HTTP -----------------------------------------------------------------------------

    def _client(self) -> httpx.Client | None:
        if self.base_url is None:
            return None
        with self._lock:
            if self._http is None:
                import httpx

                self._http = httpx.Client(
                    base_url=self.base_url,
                    headers=self.headers,
                    timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                )
            return self._http

    def _get(self, path: str) -> Any:
        client = self._client()
        if client is None:
            return None
        try:
            resp = client.get(path)
            resp.raise_for_status()
            return resp.json()
        except Exception as exc:
            self._count("http_errors")
            log.debug("claude-parallel-logging: GET %s failed: %s", path, exc)
            return None

    def fetch_messages(self, session_id: str) -> list[JSON] | None:
        """The server's stored messages, ``[{info, parts}]`` in order (``None`` on failure)."""
        data = self._get(f"/session/{session_id}/message")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else None

    def _server_status(self) -> dict[str, Any] | None:
        data = self._get("/session/status")
        return data if isinstance(data, dict) else None

    # ----- states ---------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    def _state(
        self, sid: str, watcher: int | None = None, *, floor_ms: float | None = None
    ) -> _OcSession:
        with self._lock:
            st = self._states.get(sid)
            if st is None:
                floor = floor_ms  # replaying (no server): everything is "now"
                if self.base_url is not None:
                    start = time.time() * 1000 - _MARGIN_MS if floor_ms is None else floor_ms
                    floor = max(start, self._floors.pop(sid, start))
                st = self._states[sid] = _OcSession(sid, floor)
                self._trim()
            if watcher is not None:
                st.watchers.add(watcher)
            return st

    def _trim(self) -> None:
        """Bound memory on a long-lived server: forget the oldest idle, unwatched sessions."""
        if len(self._states) <= _MAX_STATES:
            return
        for sid, st in list(self._states.items()):
            if len(self._states) <= _MAX_STATES * 3 // 4:
                break
            if not st.turn_open and not st.watchers:
                self._forget(sid, st)

    def _forget(self, sid: str, st: _OcSession) -> None:
        self._states.pop(sid, None)
        self._floors[sid] = st.last_created_ms + 1
        while len(self._floors) > _MAX_STATES:
            self._floors.pop(next(iter(self._floors)))

    def watch(
        self, watcher: int, agent_type: str | None, join: LoggedSession | None = None
    ) -> None:
        """A monitor starts: sessions it creates get its ``agent_type``; with ``join`` (the
        logged session it was entered in), new OpenCode sessions go into that one instead."""
        with self._lock:
            if agent_type is not None:
                self._watcher_agents[watcher] = agent_type
            if join is not None:
                self._watcher_joins[watcher] = join

    def _monitor_join(self) -> LoggedSession | None:
        """The logged session the running monitors were entered in. Every monitor of a server
        sees every OpenCode session on it, so when monitors inside different logged sessions
        run at once nobody can tell whose a new OpenCode session is: it gets its own session
        (``attach()`` or an instrumented chat inside the right block says where it belongs)."""
        with self._lock:
            live = {id(j): j for j in self._watcher_joins.values() if not j.ended}
        if len(live) == 1:
            return next(iter(live.values()))
        if live:
            self._count("ambiguous_joins")
        return None

    def _agent_type(self, st: _OcSession) -> str:
        from .instrument import _settings

        with self._lock:
            for watcher in sorted(st.watchers):
                if watcher in self._watcher_agents:
                    return self._watcher_agents[watcher]
        return self.agent_type or str(_settings.get("opencode_agent_type") or "opencode")

    def _live(self, st: _OcSession) -> LoggedSession | None:
        """The session new rows go to, created (or the parent's joined) on first content."""
        session = st.live()
        if session is not None:
            return session
        parent_id = st.info.get("parentID")
        if isinstance(parent_id, str):
            with self._lock:
                parent = self._states.get(parent_id)
            parent_session = parent.live() if parent is not None else None
            if parent_session is not None:
                self._bind(st, parent_session)
                return parent_session
        join = self._monitor_join()
        if join is not None:
            self._bind(st, join)
            return join
        model, provider = st.model_hint
        new = LoggedSession(self._agent_type(st), model=model, provider=provider, instrument=False)
        if not new.logger.enabled:
            return None
        new.start()
        self._bind(st, new, owned=True)
        return new

    def _bind(self, st: _OcSession, session: LoggedSession, *, owned: bool = False) -> None:
        if st.session is session:
            return
        if st.session is not None:
            # Rows already logged stay where they are; only messages from now on move.
            floor = st.last_created_ms + 1
            st.floor_ms = floor if st.floor_ms is None else max(st.floor_ms, floor)
        st.session = session
        if owned:
            st.owned = session
            st.status = ("running", None)
        self._write_session_info(st)
        model, provider = st.model_hint
        if model:
            self._note_model(st, model, provider)

    # ----- events ---------------------------------------------------------------------------

    def _handle(self, event: Any, watcher: int | None) -> None:
        if isinstance(event, (str, bytes)):
            try:
                event = json.loads(event)
            except ValueError:
                event = None
        if not isinstance(event, dict):
            self._count("bad_events")
            return
        if "type" not in event and isinstance(event.get("payload"), dict):
            event = event["payload"]  # /global/event wraps events as {directory, payload}
        etype = event.get("type")
        props = _dict(event.get("properties"))
        if not isinstance(etype, str):
            self._count("bad_events")
            return
        self._count("events")
        if etype in _QUIET_EVENTS or etype.endswith(".delta"):
            return
        sid = _event_session_id(etype, props)
        if sid is None:
            self._count("instance_events")  # plugin.added, catalog.updated, ...: no session
            return
        st = self._state(sid, watcher)
        if etype == "session.idle" or (
            etype == "session.status" and _dict(props.get("status")).get("type") == "idle"
        ):
            self._idle(st)
            return
        with st.lock:
            self._on_event(st, etype, props, event)

    def _on_event(self, st: _OcSession, etype: str, props: JSON, event: JSON) -> None:
        if etype in ("session.created", "session.updated"):
            self._on_session_info(st, _dict(props.get("info")))
        elif etype == "session.status":
            status = _dict(props.get("status"))
            if status.get("type") in _BUSY and not st.turn_open:
                self._begin_turn(st)
            if status.get("type") == "retry":
                key = f"retry:{status.get('attempt')}:{status.get('next')}"
                self._event_row(st, key, etype, props)
        elif etype == "session.error":
            self._on_error(st, props.get("error"))
        elif etype == "session.deleted":
            self._finish_turn(st)
            if st.owned is not None and not st.owned.ended:
                st.owned.end(None)
        elif etype == "message.updated":
            self._on_message(st, _dict(props.get("info")), rec=False)
        elif etype == "message.part.updated":
            part = _dict(props.get("part"))
            self._on_part(st, part, rec=False, event_ms=_num(props.get("time")))
        else:
            self._count("other_events")
            self._event_row(st, str(event.get("id") or f"{etype}:{_fp(props)}"), etype, props)

    def _on_session_info(self, st: _OcSession, info: JSON) -> None:
        if not info:
            return
        st.info = info
        model = _dict(info.get("model"))
        if isinstance(model.get("id"), str) and st.model_hint[0] is None:
            st.model_hint = (model["id"], model.get("providerID"))
        if st.session is not None:
            self._write_session_info(st)

    def _on_error(self, st: _OcSession, error: Any) -> None:
        text = error_text(error) or "OpenCode reported an error"
        st.turn_error = text
        st.dirty = True
        session = self._live(st)
        if session is not None:
            session.note_result_error(text)
            st.noted_error = True

    def _begin_turn(self, st: _OcSession) -> None:
        st.turn_open = True
        st.dirty = True
        st.turn_error = None
        session = st.session
        if session is not None and session is st.owned and not session.ended:
            if st.status != ("running", None):
                session.logger.update_session(status="running", error_message=None, ended_at=None)
                st.status = ("running", None)

    def _event_row(self, st: _OcSession, key: str, etype: str, props: JSON) -> None:
        key = f"event:{key}"
        if key in st.rows:
            return
        if st.event_rows >= _MAX_EVENT_ROWS:
            self._count("events_not_kept")
            return
        st.event_rows += 1
        fields: JSON = {"content": etype, "metadata": {"type": etype, "properties": props}}
        self._row(st, key, "event", fields, rec=False)

    # ----- messages and parts ---------------------------------------------------------------

    def _after_floor(self, st: _OcSession, info: JSON) -> bool:
        created = _num(_dict(info.get("time")).get("created"))
        return st.floor_ms is None or created is None or created >= st.floor_ms

    def _on_message(self, st: _OcSession, info: JSON, *, rec: bool) -> None:
        mid = info.get("id")
        if not isinstance(mid, str):
            return
        role = info.get("role")
        new = mid not in st.messages
        st.messages[mid] = info
        created = _num(_dict(info.get("time")).get("created"))
        if created is not None:
            st.last_created_ms = max(st.last_created_ms, created)
        if role == "user":
            model = _dict(info.get("model"))
            if isinstance(model.get("modelID"), str):
                st.model_hint = (model["modelID"], model.get("providerID"))
            if new and not rec:
                self._begin_turn(st)
            if mid in st.rows:
                self._write_user(st, mid, rec)
        elif role == "assistant":
            parent = info.get("parentID")
            if isinstance(parent, str) and parent in st.messages and parent not in st.rows:
                self._write_user(st, parent, rec)
            self._on_assistant(st, mid, info, rec)
        else:
            fields: JSON = {
                "external_id": mid,
                "created_at": _sec(created),
                "metadata": {"kind": "message", "data": info},
            }
            self._row(st, mid, role if isinstance(role, str) and role else "unknown", fields, rec)
        for part in st.orphans.pop(mid, []):
            st.orphan_count -= 1
            self._on_part(st, part, rec=rec)

    def _on_assistant(self, st: _OcSession, mid: str, info: JSON, rec: bool) -> None:
        tokens = _dict(info.get("tokens"))
        cache = _dict(tokens.get("cache"))
        times = _dict(info.get("time"))
        created, completed = _num(times.get("created")), _num(times.get("completed"))
        error = info.get("error")
        model, provider = info.get("modelID"), info.get("providerID")
        if isinstance(model, str):
            self._note_model(st, model, provider if isinstance(provider, str) else None)
        meta = _clean(
            {
                "kind": "message",
                "provider": provider,
                "reasoning_tokens": _int(tokens.get("reasoning")),
                "cache_read_tokens": _int(cache.get("read")),
                "cache_write_tokens": _int(cache.get("write")),
                "cost_usd": _num(info.get("cost")),
                "completed_at": _iso(completed),
                "duration_ms": (
                    round(completed - created)
                    if completed is not None and created is not None
                    else None
                ),
                "finish": info.get("finish"),
                "agent": info.get("agent"),
                "mode": info.get("mode"),
                "parent_id": info.get("parentID"),
                "cwd": _dict(info.get("path")).get("cwd"),
                "error": error,
                "extra": _extra(info, _MESSAGE_KEYS),
            }
        )
        fields: JSON = {
            "content": error_text(error),
            "external_id": mid,
            "model": model if isinstance(model, str) else None,
            "input_tokens": _int(tokens.get("input")),
            "output_tokens": _int(tokens.get("output")),
            "token_count": _int(tokens.get("total")),
            "created_at": _sec(created),
            "metadata": self._tag(st, mid, meta),
        }
        self._row(st, mid, "assistant", fields, rec)
        session = st.owner.get(mid)
        if session is not None:
            usage = _Usage(
                input=_int(tokens.get("input")) or 0,
                output=_int(tokens.get("output")) or 0,
                cache_read=_int(cache.get("read")) or 0,
                cache_write=_int(cache.get("write")) or 0,
                cost=_num(info.get("cost")) or 0.0,
            )
            old = st.usage.get(mid)
            if old is None or old[1] != usage:
                st.usage[mid] = (session, usage)
                self._totals(st, session)

    def _totals(self, st: _OcSession, session: LoggedSession) -> None:
        """Session totals are the sum over this session's assistant messages."""
        usages = [u for s, u in st.usage.values() if s is session]
        session.set_source_totals(
            st,
            {
                "input_tokens": sum(u.input for u in usages),
                "output_tokens": sum(u.output for u in usages),
                "cache_read_tokens": sum(u.cache_read for u in usages),
                "cache_creation_tokens": sum(u.cache_write for u in usages),
                "cost_usd": round(sum(u.cost for u in usages), 10),
                "num_turns": len(usages),
            },
        )

    def _write_user(self, st: _OcSession, mid: str, rec: bool) -> None:
        info = st.messages.get(mid, {})
        texts = st.user_text.get(mid) or {}
        text = "\n".join(texts.values()) or None
        if mid not in st.rows and st.prompts:
            self._adopt(st, mid, text)
        model = _dict(info.get("model"))
        summary = _dict(info.get("summary"))
        meta = _clean(
            {
                "kind": "message",
                "agent": info.get("agent"),
                "provider": model.get("providerID"),
                "model": model.get("modelID"),
                "summary_title": summary.get("title"),
                "extra": _extra(info, _MESSAGE_KEYS),
            }
        )
        fields: JSON = {
            "content": text,
            "external_id": mid,
            "created_at": _sec(_dict(info.get("time")).get("created")),
            "metadata": self._tag(st, mid, meta),
        }
        self._row(st, mid, "user", fields, rec)

    def _adopt(self, st: _OcSession, mid: str, text: str | None) -> None:
        """The prompt a chat call logged becomes this user message's row (no second row)."""
        pick = next((p for p in st.prompts if text is not None and p.text == text), None)
        if pick is None:
            pick = st.prompts[0]  # the server may normalise the text; the order is the same
        st.prompts.remove(pick)
        st.rows[mid] = pick.row
        st.owner[mid] = pick.session
        st.written[mid] = {"content": _fp(pick.text)}

    def _on_part(
        self, st: _OcSession, part: JSON, *, rec: bool, event_ms: float | None = None
    ) -> None:
        ptype, pid, mid = part.get("type"), part.get("id"), part.get("messageID")
        if not isinstance(ptype, str):
            ptype = None  # a list or dict would not even be hashable: kept as an unknown part
        if not isinstance(pid, str) or not isinstance(mid, str) or ptype in _SKIPPED_PARTS:
            return
        info = st.messages.get(mid)
        if info is None:
            if st.orphan_count < _MAX_ORPHANS:  # its message.updated was not seen yet
                st.orphans.setdefault(mid, []).append(part)
                st.orphan_count += 1
            return
        role = info.get("role")
        role = role if isinstance(role, str) and role else "assistant"
        logged = st.parts.setdefault(mid, set())
        if pid not in logged:
            if len(logged) >= _MAX_PARTS:
                self._omit(st, mid, role, (pid,), rec)
                return
            logged.add(pid)
        if ptype in ("text", "reasoning"):
            self._text_part(st, part, pid, mid, info, role, rec)
        elif ptype == "tool":
            self._tool_part(st, part, pid, mid, info, rec, event_ms)
        else:
            fields: JSON = {
                "external_id": pid,
                "created_at": _sec(event_ms),
                "metadata": self._tag(
                    st, pid, {"part": ptype, "message_id": mid, "data": _slim_part(part)}
                ),
            }
            self._row(st, pid, role, fields, rec)

    def _omit(self, st: _OcSession, mid: str, role: str, pids: Iterable[Any], rec: bool) -> None:
        """Parts beyond ``_MAX_PARTS``: one row per message counting them."""
        seen = st.omitted.setdefault(mid, set())
        for pid in pids:
            if len(seen) >= _MAX_OMITTED:
                break
            if isinstance(pid, str):
                seen.add(pid)
        meta = {"part": "omitted", "message_id": mid, "omitted_parts": len(seen)}
        key = f"omitted:{mid}"
        self._row(st, key, role, {"metadata": self._tag(st, key, meta)}, rec)

    def _text_part(
        self, st: _OcSession, part: JSON, pid: str, mid: str, info: JSON, role: str, rec: bool
    ) -> None:
        text = part.get("text")
        if not isinstance(text, str) or not text:
            return
        times = part.get("time")
        streaming = isinstance(times, dict) and times.get("end") is None
        if streaming and not rec and not _dict(info.get("time")).get("completed"):
            return  # still streaming: the final text comes with ``time.end``
        if role == "user" and part.get("type") == "text" and not part.get("synthetic"):
            texts = st.user_text.setdefault(mid, {})
            texts.pop(_PROMPT_PLACEHOLDER, None)  # the server's own text replaces the call's
            texts[pid] = text
            self._write_user(st, mid, rec)
            return
        times = _dict(times)
        start, end = _num(times.get("start")), _num(times.get("end"))
        meta = _clean(
            {
                "part": part.get("type"),
                "message_id": mid,
                "synthetic": part.get("synthetic"),
                "ignored": part.get("ignored"),
                "duration_ms": round(end - start)
                if start is not None and end is not None
                else None,
                "extra": _extra(part, _PART_KEYS),
            }
        )
        model = info.get("modelID")
        fields: JSON = {
            "content": text,
            "external_id": pid,
            "model": model if isinstance(model, str) else None,
            "created_at": _sec(start) or _sec(_dict(info.get("time")).get("created")),
            "metadata": self._tag(st, pid, meta),
        }
        self._row(st, pid, role, fields, rec)

    def _tool_part(
        self,
        st: _OcSession,
        part: JSON,
        pid: str,
        mid: str,
        info: JSON,
        rec: bool,
        event_ms: float | None,
    ) -> None:
        state = _dict(part.get("state"))
        status = state.get("status")
        call_id = part.get("callID") if isinstance(part.get("callID"), str) else pid
        key = f"call:{call_id}"
        rank = _TOOL_RANK.get(status) if isinstance(status, str) else None
        prev = st.tool_rank.get(key, -1)
        if rank is not None and rank < prev:
            return  # an older snapshot (reconcile racing the stream): never go back
        tool = part.get("tool")
        name = tool if isinstance(tool, str) and tool else "unknown"
        tool_input = state.get("input") or None
        output = state.get("output") if status == "completed" else None
        error = state.get("error") if status == "error" else None
        times = _dict(state.get("time"))
        start, end = _num(times.get("start")), _num(times.get("end"))
        meta = _clean(
            {
                "part": "tool",
                "message_id": mid,
                "call_id": call_id,
                "status": status,
                "title": state.get("title"),
                "error": error,
                "tool_metadata": state.get("metadata") if rank == 2 else None,
                "attachments": state.get("attachments"),
                "extra": _extra(part, _PART_KEYS | {"callID", "tool", "state"}),
            }
        )
        model = info.get("modelID")
        fields: JSON = {
            "tool_name": name,
            "tool_input": tool_input,
            "tool_output": output,
            "external_id": pid,
            "model": model if isinstance(model, str) else None,
            "created_at": _sec(start) or _sec(event_ms),
            "metadata": self._tag(st, pid, meta),
        }
        row = self._row(st, pid, "assistant", fields, rec)
        session = st.owner.get(pid)
        if row is None or session is None or rank is None or rank == prev:
            return
        logger = session.logger
        exec_id = st.rows.setdefault(key, _row_id(session.id, st.sid, key))
        st.owner.setdefault(key, session)
        st.tool_rank[key] = rank
        st.dirty = True
        common: JSON = {"message_id": row, "tool_use_id": call_id, "execution_id": exec_id}
        if status == "pending":
            started = _sec(event_ms)
            logger.log_tool_execution(
                name, "pending", input=tool_input, started_at=started or time.time(), **common
            )
        elif status == "running":
            logger.log_tool_execution(
                name, "running", input=tool_input, started_at=_sec(start), **common
            )
        else:
            duration = max(0, round(end - start)) if start is not None and end is not None else None
            if exec_id in logger.running_tools():  # closes the logger's running entry too
                logger.finish_tool_execution(
                    exec_id,
                    str(status),
                    output=output,
                    error=error,
                    ended_at=_sec(end),
                    duration_ms=duration,
                )
            else:
                logger.log_tool_execution(
                    name,
                    str(status),
                    input=tool_input,
                    output=output,
                    error=error,
                    started_at=_sec(start),
                    ended_at=_sec(end),
                    duration_ms=duration,
                    **common,
                )

    def _tag(self, st: _OcSession, key: str, meta: JSON) -> JSON:
        """Rows in a shared logged session say which OpenCode session they came from."""
        session = st.owner.get(key) or self._live(st)
        if session is not None and session is not st.owned:
            return {**meta, "opencode_session_id": st.sid}
        return meta

    def _row(self, st: _OcSession, key: str, role: str, fields: JSON, rec: bool) -> str | None:
        """Insert on first sight (taking the next sequence), afterwards update what changed."""
        session = st.owner.get(key)
        if session is None:
            session = self._live(st)
            if session is None:
                return None
            st.owner[key] = session
            row = st.rows.setdefault(key, _row_id(session.id, st.sid, key))
            values = dict(fields)
            content = values.pop("content", None)
            session.logger.log_message(role, content, message_id=row, **values)
            st.written[key] = {
                k: _fp(v) for k, v in fields.items() if v is not None and k != "created_at"
            }
            st.dirty = True
            if rec:
                self._count("reconciled_rows")
            return row
        row = st.rows[key]
        prev = st.written.setdefault(key, {})
        changed: JSON = {}
        for col, value in fields.items():
            if value is None or col not in MESSAGE_UPDATABLE:
                continue
            fp = _fp(value)
            if prev.get(col) != fp:
                prev[col] = fp
                changed[col] = value
        if changed:
            st.dirty = True
            session.logger.update_message(row, **changed)
        return row

    # ----- session-level writes -------------------------------------------------------------

    def _write_session_info(self, st: _OcSession) -> None:
        session = st.session
        if session is None:
            return
        info = st.info
        details = _clean(
            {
                "title": info.get("title"),
                "directory": info.get("directory"),
                "slug": info.get("slug"),
                "version": info.get("version"),
                "project_id": info.get("projectID"),
                "workspace_id": info.get("workspaceID"),
                "parent_id": info.get("parentID"),
                "agent": info.get("agent"),
                "share_url": _dict(info.get("share")).get("url"),
                "server": self.base_url,
                "extra": _extra(info, _SESSION_KEYS),
            }
        )
        group = _group(session)
        updates: JSON = {}
        with group.lock:
            if group.details.get(st.sid) == details:
                return
            group.details[st.sid] = details
            if session is st.owned:
                updates["external_id"] = st.sid
                flat = {"title": details.get("title"), "directory": details.get("directory")}
                updates["metadata"] = _clean({**flat, "opencode": details})
            else:
                if group.external_id is None:
                    group.external_id = updates["external_id"] = st.sid
                updates["metadata"] = {"opencode_sessions": dict(group.details)}
        session.logger.update_session(**updates)

    def _note_model(self, st: _OcSession, model: str, provider: str | None) -> None:
        """Our own session takes the model in use; a joined one only when it had none."""
        session = st.session
        if session is None:
            return
        group = _group(session)
        with group.lock:
            if session is st.owned:
                if session.model == model and session.provider == provider:
                    return
            elif group.model_set or session.model is not None:
                return
            group.model_set = True
            session.model, session.provider = model, provider
        session.logger.update_session(model=model, provider=provider)

    # ----- turns, idle, reconciliation ------------------------------------------------------

    def _reconcile(self, st: _OcSession, messages: list[JSON]) -> None:
        self._count("reconciles")
        if not isinstance(messages, (list, tuple)):
            self._count("bad_messages")
            return
        for item in messages:
            info = _dict(_dict(item).get("info"))
            mid = info.get("id")
            if not isinstance(mid, str):
                continue
            if mid not in st.messages and not self._after_floor(st, info):
                continue  # history from before we were watching
            self._on_message(st, info, rec=True)
            self._reconcile_parts(st, mid, item.get("parts"))
            if info.get("role") == "user" and mid not in st.rows:
                self._write_user(st, mid, rec=True)  # a prompt without text parts

    def _reconcile_parts(self, st: _OcSession, mid: str, parts: Any) -> None:
        """A stored message's parts: a bounded number one by one (``_on_part`` also caps the
        rows), the rest counted at once; another shape than a list is one row describing it."""
        if isinstance(parts, list):
            head = 2 * _MAX_PARTS  # room for parts that give no row (step-start/-finish)
            for part in parts[:head]:
                if isinstance(part, dict):
                    self._on_part(st, part, rec=True)
            if len(parts) > head:
                role = st.messages.get(mid, {}).get("role")
                rest = (_dict(p).get("id") for p in parts[head : head + _MAX_OMITTED])
                self._omit(
                    st, mid, role if isinstance(role, str) and role else "assistant", rest, True
                )
        elif parts is not None:
            self._count("bad_parts")
            key = f"parts:{mid}"
            meta = {"part": "unexpected", "message_id": mid, "unexpected_parts": describe(parts)}
            self._row(st, key, "event", {"metadata": self._tag(st, key, meta)}, True)

    def _idle(self, st: _OcSession, *, fetch: bool = True) -> None:
        with st.lock:
            if not (st.dirty or st.turn_open):
                return
        messages = self.fetch_messages(st.sid) if fetch and self.base_url else None
        with st.lock:
            if messages is not None:
                self._reconcile(st, messages)
            self._finish_turn(st)

    def _finish_turn(self, st: _OcSession, exc_text: str | None = None) -> None:
        """Idle after the prompt: the turn is complete; our own session shows its outcome."""
        for mid in [m for m, i in st.messages.items() if i.get("role") == "user"]:
            if mid not in st.rows:  # a prompt without text parts (files only)
                self._write_user(st, mid, rec=False)
        for mid in list(st.orphans):  # parts whose message never showed up
            for part in st.orphans.pop(mid):
                st.messages.setdefault(mid, {"id": mid, "role": "assistant"})
                self._on_part(st, part, rec=True)
        st.orphan_count = 0
        outcome = self._outcome(st, exc_text)
        st.turn_open = False
        st.dirty = False
        session = st.session
        if session is not None:
            if outcome is not None:
                session.note_result_error(outcome)
                st.noted_error = True
            elif st.noted_error:
                session.clear_result_error()
                st.noted_error = False
            if session is st.owned and not session.ended:
                status = ("error", outcome) if outcome is not None else ("completed", None)
                st.status = status
                session.logger.update_session(
                    status=status[0], error_message=status[1], ended_at=time.time()
                )
        with self._cond:
            st.turns_finished += 1
            self._cond.notify_all()

    def _outcome(self, st: _OcSession, exc_text: str | None) -> str | None:
        latest = _latest(st.messages.values())
        if latest is not None and latest.get("role") == "assistant" and latest.get("error"):
            return error_text(latest.get("error"))
        return st.turn_error or exc_text

    def catch_up(self, since_ms: float, *, watcher: int | None = None) -> None:
        """After a gap in the stream: reconcile every session that changed since, and finish the
        turns that ended unseen."""
        try:
            floor = since_ms - _MARGIN_MS
            listed = self._get("/session")
            changed = {
                str(s["id"])
                for s in (listed if isinstance(listed, list) else [])
                if isinstance(s, dict)
                and isinstance(s.get("id"), str)
                and (_num(_dict(s.get("time")).get("updated")) or 0) >= floor
            }
            with self._lock:
                known = {sid for sid, st in self._states.items() if st.turn_open}
            status = self._server_status()
            for sid in sorted(changed | known):
                st = self._state(sid, watcher if sid in changed else None, floor_ms=floor)
                messages = self.fetch_messages(sid)
                busy = _dict(_dict(status).get(sid)).get("type") in _BUSY
                with st.lock:
                    if messages is not None:
                        self._reconcile(st, messages)
                    if busy and not st.turn_open:
                        self._begin_turn(st)
                    elif not busy and status is not None and (st.dirty or st.turn_open):
                        self._finish_turn(st)
            self._count("catch_ups")
        except Exception:
            self._count("mapping_errors")
            log.debug("claude-parallel-logging: OpenCode catch-up failed", exc_info=True)

    def release(self, watcher: int | None) -> None:
        """A monitor stopped: sessions nobody watches any more are reconciled one last time, and
        the ones we created are ended (as ``error`` when a turn was still running)."""
        with self._lock:
            self._watcher_agents.pop(watcher if watcher is not None else -1, None)
            self._watcher_joins.pop(watcher if watcher is not None else -1, None)
            states = [
                st for st in self._states.values() if watcher is None or watcher in st.watchers
            ]
            for st in states:
                st.watchers.discard(watcher if watcher is not None else -1)
            todo = [st for st in states if watcher is None or not st.watchers]
        if not todo:
            return
        status = self._server_status() if self.base_url else None
        for st in todo:
            try:
                self._release_one(st, status)
            except Exception:
                self._count("mapping_errors")
                log.debug("claude-parallel-logging: OpenCode release failed", exc_info=True)

    def _release_one(self, st: _OcSession, status: dict[str, Any] | None) -> None:
        if st.session is None:
            with self._lock:
                self._forget(st.sid, st)
            return
        messages = self.fetch_messages(st.sid) if self.base_url else None
        with st.lock:
            if messages is not None:
                self._reconcile(st, messages)
            if status is None:
                busy = st.turn_open and self.base_url is not None
            else:
                busy = _dict(status.get(st.sid)).get("type") in _BUSY
            if not busy and (st.dirty or st.turn_open):
                self._finish_turn(st)
            owned = st.owned
            if owned is not None and not owned.ended:
                owned.end(
                    "the OpenCode session was still running when logging stopped" if busy else None
                )
            if st.live() is None:
                with self._lock:
                    self._forget(st.sid, st)

    # ----- chat calls -----------------------------------------------------------------------

    def begin_chat(
        self,
        session_id: str,
        text: str | None,
        *,
        model: str | None,
        provider: str | None,
        message_id: str | None,
    ) -> _OcSession | None:
        """Before a chat call: bind the session, open the turn and log the prompt."""
        st = self._state(session_id)
        with st.lock:
            if model:
                st.model_hint = (model, provider)
            join = current_session()
            if join is not None and not join.ended:
                self._bind(st, join)
            session = self._live(st)
            if session is None:
                return None
            self._begin_turn(st)
            if message_id is not None:
                st.messages.setdefault(message_id, {"id": message_id, "role": "user"})
                if text is not None:
                    st.user_text.setdefault(message_id, {})[_PROMPT_PLACEHOLDER] = text
                self._write_user(st, message_id, rec=False)
            elif text is not None:
                row = session.logger.log_message(
                    "user", text, metadata=self._tag(st, "", {"kind": "prompt"})
                )
                st.prompts.append(_Prompt(text, row, session))
        return st

    def end_chat(self, st: _OcSession, exc: BaseException | None) -> None:
        """After a chat call: everything of the turn is stored on the server; log what is
        missing and close the turn."""
        info = self._get(f"/session/{st.sid}")  # title and directory, with no monitor running
        messages = self.fetch_messages(st.sid)
        with st.lock:
            if isinstance(info, dict):
                self._on_session_info(st, info)
            if messages is not None:
                self._reconcile(st, messages)
            st.prompts.clear()  # a prompt the server never stored stays a row of its own
            exc_text = None
            if exc is not None:
                exc_text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._finish_turn(st, exc_text)


# ----- the registry -------------------------------------------------------------------------

_routers: dict[str, OpencodeRouter] = {}
_routers_lock = threading.Lock()


def router_for(base_url: str, headers: Mapping[str, str] | None = None) -> OpencodeRouter:
    """The process's router for one server: monitors and chat calls share its state."""
    key = str(base_url).rstrip("/")
    with _routers_lock:
        router = _routers.get(key)
        if router is None:
            router = _routers[key] = OpencodeRouter(key, headers=headers)
        elif headers:
            router.headers.update(headers)
        return router


def _client_target(client: Any) -> tuple[str, dict[str, str]]:
    """Base URL and headers (auth, custom) of an SDK client, or a plain URL string."""
    if isinstance(client, str):
        return client.rstrip("/"), {}
    base = getattr(client, "base_url", None)
    if base is None:
        raise TypeError(f"expected an Opencode/AsyncOpencode client or a URL, got {client!r}")
    raw = getattr(client, "default_headers", None) or {}
    headers = {
        str(k): v
        for k, v in dict(raw).items()
        if isinstance(v, str) and str(k).lower() not in ("accept", "content-type")
    }
    return str(base).rstrip("/"), headers


# ----- the monitor --------------------------------------------------------------------------


def _sse(lines: Iterable[str]) -> Iterator[str]:
    """``data:`` payloads of a server-sent event stream (one per blank-line-terminated event)."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)


_monitor_ids = iter(range(1, 1 << 62))


class OpencodeMonitor:
    """Consumes one server's ``/event`` stream in a background thread while the block runs.

    A thread for both clients: it never blocks an event loop and needs no async SDK support.
    Reconnects with bounded backoff; after a gap it reconciles what changed meanwhile.
    """

    def __init__(
        self,
        client: Any,
        agent_type: str | None = None,
        *,
        session: LoggedSession | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_failures: int = 8,
        max_reconnects: int = 10_000,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        base_url, headers = _client_target(client)
        self.base_url = base_url
        self.router = router_for(base_url, headers)
        self.agent_type = agent_type
        self.session = session  # where new OpenCode sessions go (default: the current one)
        self.joined: LoggedSession | None = None  # the logged session joined while running
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout  # OpenCode sends a heartbeat every 10 s
        self.max_failures = max_failures
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._id = next(_monitor_ids)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._resp: httpx.Response | None = None
        self._resp_lock = threading.Lock()
        self._last_event_ms: float | None = None
        self.connections = 0
        self.last_error: str | None = None

    # ----- lifecycle --------------------------------------------------------------------------

    def start(self) -> OpencodeMonitor:
        """Start reading; returns once connected (or after ``connect_timeout``).

        The logged session current now (``logged_session``/``@logged``), unless ``session`` was
        given, is where OpenCode sessions that start sending content from now on are logged."""
        if self._thread is not None:
            return self
        if get_turso_client() is None:
            return self  # logging is off: nothing to do
        import httpx

        # ``async with`` runs this in a worker thread: ``asyncio.to_thread`` copies the task's
        # context, so the current session is the one the ``async with`` was entered in.
        self.joined = self.session if self.session is not None else current_session()
        self.router.watch(self._id, self.agent_type, self.joined)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.router.headers,
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
        )
        self._thread = threading.Thread(target=self._run, name="cpl-opencode-monitor", daemon=True)
        self._thread.start()
        if not self._connected.wait(self.connect_timeout):
            log.warning(
                "claude-parallel-logging: OpenCode event stream at %s not connected yet (%s); "
                "retrying in the background",
                self.base_url,
                self.last_error,
            )
        return self

    def stop(self) -> None:
        """Stop reading, then reconcile and finish the sessions this monitor watched."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        try:
            self._abort()
            thread.join(timeout=5.0)
            if self._http is not None:
                self._http.close()
            self.router.release(self._id)
        except Exception:  # the block's own outcome must not be masked by logging
            log.debug(
                "claude-parallel-logging: stopping the OpenCode monitor failed", exc_info=True
            )

    def __enter__(self) -> OpencodeMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpencodeMonitor:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # ----- public helpers ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._resp is not None

    @property
    def stats(self) -> dict[str, int]:
        return {**self.router.stats, "connections": self.connections}

    def attach(self, session_id: str, session: LoggedSession | None = None) -> LoggedSession | None:
        """Log this OpenCode session into ``session`` (default: the current logged session)."""
        return self.router.attach(session_id, session, watcher=self._id)

    def session_for(self, session_id: str) -> LoggedSession | None:
        return self.router.session_for(session_id)

    def wait_idle(self, session_id: str, timeout: float = 60.0, *, turns: int = 1) -> bool:
        """Block until ``turns`` turns of the session finished and were reconciled."""
        return self.router.wait_idle(session_id, timeout, turns=turns)

    # ----- the reader thread ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        for _attempt in range(self.max_reconnects + 1):
            if self._stop.is_set():
                return
            gap_since = self._last_event_ms
            got_events = self._read_once(gap_since)
            if self._stop.is_set():
                return
            failures = 0 if got_events else failures + 1
            if failures > self.max_failures:
                log.warning(
                    "claude-parallel-logging: giving up on the OpenCode event stream at %s (%s)",
                    self.base_url,
                    self.last_error,
                )
                return
            delay = min(self.max_backoff, self.backoff * (2 ** max(0, failures - 1)))
            self._stop.wait(delay)
        log.warning("claude-parallel-logging: OpenCode event stream reconnected too often")

    def _read_once(self, gap_since: float | None) -> bool:
        """One connection: returns whether any event arrived (a healthy stream)."""
        http = self._http
        if http is None:
            return False
        got = False
        try:
            with http.stream("GET", "/event", headers={"Accept": "text/event-stream"}) as resp:
                with self._resp_lock:
                    self._resp = resp
                if self._stop.is_set():
                    return False
                resp.raise_for_status()
                for data in _sse(resp.iter_lines()):
                    if self._stop.is_set():
                        break
                    if not got:
                        got = True
                        self.connections += 1
                        if gap_since is not None:  # a reconnect: fill the gap first
                            self.router.catch_up(gap_since, watcher=self._id)
                        self._connected.set()
                    self._last_event_ms = time.time() * 1000
                    self.router.handle(data, watcher=self._id)
        except Exception as exc:
            if not self._stop.is_set():
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.debug("claude-parallel-logging: OpenCode event stream: %s", self.last_error)
        finally:
            with self._resp_lock:
                self._resp = None
        return got

    def _abort(self) -> None:
        """Unblock the reader: shutting the socket down wakes a blocked read at once."""
        with self._resp_lock:
            resp = self._resp
        if resp is None:
            return
        stream = resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def monitor_opencode(
    client: Any, agent_type: str | None = None, *, session: LoggedSession | None = None
) -> OpencodeMonitor:
    """``with``/``async with monitor_opencode(client):`` log every OpenCode session of the server.

    ``client`` is an ``Opencode``/``AsyncOpencode`` (its base URL and headers are used) or a
    base URL. Entered inside ``logged_session(...)``/``@logged`` (or given ``session``), the
    OpenCode sessions that start sending content while it runs join that logged session;
    otherwise each becomes its own logged session (with ``agent_type``). A chat call or
    :meth:`OpencodeMonitor.attach` inside a ``logged_session`` binds a session explicitly.
    With monitors inside different logged sessions running on one server at the same time, a
    new OpenCode session cannot be told apart and gets its own session: bind it explicitly.
    """
    return OpencodeMonitor(client, agent_type, session=session)


# ----- instrumentation ----------------------------------------------------------------------


def _prompt_text(parts: Any) -> str | None:
    if not isinstance(parts, (list, tuple)):
        return None
    texts = [
        str(p.get("text"))
        for p in parts
        if isinstance(p, dict) and p.get("type") == "text" and not p.get("synthetic")
    ]
    return "\n".join(texts) if texts else None


def _chat_model(kwargs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Current servers read ``model {providerID, modelID}`` (often sent via ``extra_body``)."""
    nested = _dict(_dict(kwargs.get("extra_body")).get("model")) or _dict(kwargs.get("model"))
    model = nested.get("modelID", kwargs.get("model_id"))
    provider = nested.get("providerID", kwargs.get("provider_id"))
    return (
        model if isinstance(model, str) else None,
        provider if isinstance(provider, str) else None,
    )


@dataclass
class _Call:
    router: OpencodeRouter
    state: _OcSession


def _begin_call(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Call | None:
    """Never raises: a logging failure must not change the call."""
    try:
        if get_turso_client() is None:
            return None
        sid = args[0] if args else kwargs.get("id")
        client = getattr(instance, "_client", None)
        if not isinstance(sid, str) or client is None:
            return None
        base_url, headers = _client_target(client)
        router = router_for(base_url, headers)
        model, provider = _chat_model(kwargs)
        message_id = kwargs.get("message_id")
        st = router.begin_chat(
            sid,
            _prompt_text(kwargs.get("parts")),
            model=model,
            provider=provider,
            message_id=message_id if isinstance(message_id, str) else None,
        )
        return None if st is None else _Call(router, st)
    except Exception:
        log.debug("claude-parallel-logging: OpenCode chat instrumentation failed", exc_info=True)
        return None


def _end_call(call: _Call, exc: BaseException | None) -> None:
    try:
        call.router.end_chat(call.state, exc)
    except Exception:
        log.debug("claude-parallel-logging: OpenCode chat reconcile failed", exc_info=True)


def _chat_sync(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _begin_call(instance, tuple(args), kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if call is not None:
            _end_call(call, exc)
        raise
    if call is not None:
        _end_call(call, None)
    return result


async def _chat_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _begin_call(instance, tuple(args), kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except Exception as exc:
        if call is not None:
            await asyncio.to_thread(_end_call, call, exc)
        raise
    except BaseException as exc:  # cancelled: do not hold the task up
        if call is not None:
            threading.Thread(target=_end_call, args=(call, exc), daemon=True).start()
        raise
    if call is not None:
        await asyncio.to_thread(_end_call, call, None)
    return result


def instrument_opencode(patch: Any) -> None:
    """Patch ``session.chat`` (and ``session.prompt`` where the SDK has it), sync and async."""
    from opencode_ai.resources import session as resources

    module = resources.__name__
    for cls, wrapper in (("SessionResource", _chat_sync), ("AsyncSessionResource", _chat_async)):
        owner = getattr(resources, cls, None)
        for method in ("chat", "prompt"):
            if owner is not None and method in owner.__dict__:
                patch(module, f"{cls}.{method}", wrapper)
