"""The router: raw events of one OpenCode server in, rows of logged sessions out.

Built in layers, one module each, every one a base class of the next: ``http`` (server reads,
counters) -> ``bindings`` (states, which logged session) -> ``rows`` (messages and parts) ->
``turns`` (idle, reconciliation, release, chat calls) -> here (events and the public API). One
router per server and process (:func:`router_for`), shared by monitors and chat calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ..._log import log
from ..session import LoggedSession, current_session
from ..shapes import as_float
from .events import BUSY, QUIET_EVENTS, event_session_id, parse_event
from .fields import JSON, as_dict
from .http import HTTP_TIMEOUT
from .rows import fingerprint
from .state import SessionState
from .turns import TurnTracker


class OpencodeRouter(TurnTracker):
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
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        super().__init__(base_url, headers, timeout, agent_type)

    # ----- public ---------------------------------------------------------------------------

    def handle(self, event: Any, *, watcher: int | None = None) -> None:
        """One raw event: the ``data:`` of ``/event``, as text or parsed."""
        try:
            self._handle(event, watcher)
        except Exception:
            self._count("mapping_errors")
            log.debug("cannot map OpenCode event", exc_info=True)

    def reconcile(self, session_id: str, messages: list[JSON] | None = None) -> bool:
        """Log whatever of the stored messages is missing (fetched when not given)."""
        try:
            if messages is None:
                messages = self.fetch_messages(session_id)
            if messages is None:
                return False
            state = self._state(session_id)
            with state.lock:
                self._reconcile(state, messages)
            return True
        except Exception:
            self._count("mapping_errors")
            log.debug("OpenCode reconcile failed", exc_info=True)
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
            state = self._state(session_id, watcher)
            with state.lock:
                join = session or current_session()
                if join is not None:
                    self._bind(state, join)
                return self._live(state)
        except Exception:
            log.debug("OpenCode attach failed", exc_info=True)
            return None

    def wait_idle(self, session_id: str, timeout: float = 60.0, *, turns: int = 1) -> bool:
        """Block until ``turns`` turns of the session finished (and were reconciled)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                state = self._states.get(session_id)
                if state is not None and state.turns_finished >= turns and not state.turn_open:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        """Finish every session (what a monitor's exit does for the sessions it watched)."""
        self.release(None)

    # ----- events ---------------------------------------------------------------------------

    def _handle(self, raw: Any, watcher: int | None) -> None:
        event = parse_event(raw)
        etype = event.get("type") if event is not None else None
        if event is None or not isinstance(etype, str):
            self._count("bad_events")
            return
        props = as_dict(event.get("properties"))
        self._count("events")
        if etype in QUIET_EVENTS or etype.endswith(".delta"):
            return
        sid = event_session_id(etype, props)
        if sid is None:
            self._count("instance_events")  # plugin.added, catalog.updated, ...: no session
            return
        state = self._state(sid, watcher)
        if etype == "session.idle" or (
            etype == "session.status" and as_dict(props.get("status")).get("type") == "idle"
        ):
            self._idle(state)
            return
        with state.lock:
            self._on_event(state, etype, props, event)

    def _on_event(self, state: SessionState, etype: str, props: JSON, event: JSON) -> None:
        if etype in ("session.created", "session.updated"):
            self._on_session_info(state, as_dict(props.get("info")))
        elif etype == "session.status":
            status = as_dict(props.get("status"))
            if status.get("type") in BUSY and not state.turn_open:
                self._begin_turn(state)
            if status.get("type") == "retry":
                key = f"retry:{status.get('attempt')}:{status.get('next')}"
                self._event_row(state, key, etype, props)
        elif etype == "session.error":
            self._on_error(state, props.get("error"))
        elif etype == "session.deleted":
            self._finish_turn(state)
            if state.owned is not None and not state.owned.ended:
                state.owned.end(None)
        elif etype == "message.updated":
            self._on_message(state, as_dict(props.get("info")), reconciling=False)
        elif etype == "message.part.updated":
            part = as_dict(props.get("part"))
            self._on_part(state, part, reconciling=False, event_ms=as_float(props.get("time")))
        else:
            self._count("other_events")
            self._event_row(
                state, str(event.get("id") or f"{etype}:{fingerprint(props)}"), etype, props
            )


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


def client_target(client: Any) -> tuple[str, dict[str, str]]:
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
