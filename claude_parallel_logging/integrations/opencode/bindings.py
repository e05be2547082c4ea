"""Which logged session each OpenCode session writes into, and what that session shows.

The second layer of :class:`~.router.OpencodeRouter` (http -> bindings -> rows -> turns ->
router): the per-server registry of :class:`~.state.SessionState`, binding (a chat call's or a
monitor's logged session, the parent's, or one of its own) and the session-level writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from ..session import LoggedSession
from ..settings import agent_types
from .fields import JSON, as_dict, drop_empty, unknown_fields
from .http import ServerHttp
from .state import SessionState, group_of

MARGIN_MS = 10_000.0  # clock slack when deciding which stored messages are "from now on"
_MAX_STATES = 4096  # per server; idle ones beyond this are forgotten
_SESSION_KEYS = frozenset(
    {
        "id", "slug", "projectID", "workspaceID", "directory", "path", "parentID", "title",
        "version", "agent", "share",
        # volatile: they change on every update and say nothing about the session's identity
        "time", "cost", "tokens", "summary", "model", "revert", "permission", "metadata",
    }
)  # fmt: skip


class SessionBindings(ServerHttp):
    """The OpenCode sessions of one server and the logged sessions they write into."""

    def __init__(
        self,
        base_url: str | None,
        headers: Mapping[str, str] | None,
        timeout: float,
        agent_type: str | None,
    ) -> None:
        super().__init__(base_url, headers, timeout)
        self.agent_type = agent_type
        self._cond = threading.Condition(self._lock)
        self._states: dict[str, SessionState] = {}
        self._floors: dict[str, float] = {}  # forgotten sessions: where logging resumes
        self._watcher_agents: dict[int, str] = {}  # a monitor's agent_type, while it runs
        self._watcher_joins: dict[int, LoggedSession] = {}  # the session a monitor was entered in

    def session_for(self, session_id: str) -> LoggedSession | None:
        """The logged session an OpenCode session writes into (``None`` before any content)."""
        with self._lock:
            state = self._states.get(session_id)
        return None if state is None else state.session

    def _state(
        self, sid: str, watcher: int | None = None, *, floor_ms: float | None = None
    ) -> SessionState:
        with self._lock:
            state = self._states.get(sid)
            if state is None:
                floor = floor_ms  # replaying (no server): everything is "now"
                if self.base_url is not None:
                    start = time.time() * 1000 - MARGIN_MS if floor_ms is None else floor_ms
                    floor = max(start, self._floors.pop(sid, start))
                state = self._states[sid] = SessionState(sid, floor)
                self._trim()
            if watcher is not None:
                state.watchers.add(watcher)
            return state

    def _trim(self) -> None:
        """Bound memory on a long-lived server: forget the oldest idle, unwatched sessions."""
        if len(self._states) <= _MAX_STATES:
            return
        for sid, state in list(self._states.items()):
            if len(self._states) <= _MAX_STATES * 3 // 4:
                break
            if not state.turn_open and not state.watchers:
                self._forget(sid, state)

    def _forget(self, sid: str, state: SessionState) -> None:
        self._states.pop(sid, None)
        self._floors[sid] = state.last_created_ms + 1
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

    def _agent_type(self, state: SessionState) -> str:
        with self._lock:
            for watcher in sorted(state.watchers):
                if watcher in self._watcher_agents:
                    return self._watcher_agents[watcher]
        return self.agent_type or agent_types.opencode or "opencode"

    def _live(self, state: SessionState) -> LoggedSession | None:
        """The session new rows go to, created (or the parent's joined) on first content."""
        session = state.live()
        if session is not None:
            return session
        parent_id = state.info.get("parentID")
        if isinstance(parent_id, str):
            with self._lock:
                parent = self._states.get(parent_id)
            parent_session = parent.live() if parent is not None else None
            if parent_session is not None:
                self._bind(state, parent_session)
                return parent_session
        join = self._monitor_join()
        if join is not None:
            self._bind(state, join)
            return join
        model, provider = state.model_hint
        new = LoggedSession(
            self._agent_type(state), model=model, provider=provider, instrument=False
        )
        if not new.logger.enabled:
            return None
        new.start()
        self._bind(state, new, owned=True)
        return new

    def _bind(self, state: SessionState, session: LoggedSession, *, owned: bool = False) -> None:
        if state.session is session:
            return
        if state.session is not None:
            # Rows already logged stay where they are; only messages from now on move.
            floor = state.last_created_ms + 1
            state.floor_ms = floor if state.floor_ms is None else max(state.floor_ms, floor)
        state.session = session
        if owned:
            state.owned = session
            state.status = ("running", None)
        self._write_session_info(state)
        model, provider = state.model_hint
        if model:
            self._note_model(state, model, provider)

    def _on_session_info(self, state: SessionState, info: JSON) -> None:
        if not info:
            return
        state.info = info
        model = as_dict(info.get("model"))
        if isinstance(model.get("id"), str) and state.model_hint[0] is None:
            state.model_hint = (model["id"], model.get("providerID"))
        if state.session is not None:
            self._write_session_info(state)

    def _begin_turn(self, state: SessionState) -> None:
        state.turn_open = True
        state.dirty = True
        state.turn_error = None
        session = state.session
        if session is not None and session is state.owned and not session.ended:
            if state.status != ("running", None):
                session.logger.update_session(status="running", error_message=None, ended_at=None)
                state.status = ("running", None)

    # ----- session-level writes -------------------------------------------------------------

    def _write_session_info(self, state: SessionState) -> None:
        session = state.session
        if session is None:
            return
        info = state.info
        details = drop_empty(
            {
                "title": info.get("title"),
                "directory": info.get("directory"),
                "slug": info.get("slug"),
                "version": info.get("version"),
                "project_id": info.get("projectID"),
                "workspace_id": info.get("workspaceID"),
                "parent_id": info.get("parentID"),
                "agent": info.get("agent"),
                "share_url": as_dict(info.get("share")).get("url"),
                "server": self.base_url,
                "extra": unknown_fields(info, _SESSION_KEYS),
            }
        )
        group = group_of(session)
        updates: JSON = {}
        with group.lock:
            if group.details.get(state.sid) == details:
                return
            group.details[state.sid] = details
            if session is state.owned:
                updates["external_id"] = state.sid
                flat = {"title": details.get("title"), "directory": details.get("directory")}
                updates["metadata"] = drop_empty({**flat, "opencode": details})
            else:
                if group.external_id is None:
                    group.external_id = updates["external_id"] = state.sid
                updates["metadata"] = {"opencode_sessions": dict(group.details)}
        session.logger.update_session(**updates)

    def _note_model(self, state: SessionState, model: str, provider: str | None) -> None:
        """Our own session takes the model in use; a joined one only when it had none."""
        session = state.session
        if session is None:
            return
        group = group_of(session)
        with group.lock:
            if session is state.owned:
                if session.model == model and session.provider == provider:
                    return
            elif group.model_set or session.model is not None:
                return
            group.model_set = True
            session.model, session.provider = model, provider
        session.logger.update_session(model=model, provider=provider)
