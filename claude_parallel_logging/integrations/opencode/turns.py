"""Turns of an OpenCode session: opened by a prompt or a busy status, finished when the session
goes idle (reconciled from the server first), at a monitor's release or around a chat call.

The fourth layer of :class:`~.router.OpencodeRouter` (http -> bindings -> rows -> turns ->
router). A session of our own shows each turn: ``running`` while busy, ``completed``/``error``
once idle.
"""

from __future__ import annotations

import time
from typing import Any

from ..._log import log
from ..session import current_session
from ..shapes import as_float, describe
from .bindings import MARGIN_MS
from .events import BUSY
from .fields import JSON, as_dict, error_text, latest_message
from .rows import MAX_OMITTED, MAX_PARTS, PROMPT_PLACEHOLDER, RowMapper
from .state import PendingPrompt, SessionState


class TurnTracker(RowMapper):
    """Opens and finishes turns; reconciles stored messages; binds and closes chat calls."""

    def _on_error(self, state: SessionState, error: Any) -> None:
        text = error_text(error) or "OpenCode reported an error"
        state.turn_error = text
        state.dirty = True
        session = self._live(state)
        if session is not None:
            session.note_result_error(text)
            state.noted_error = True

    # ----- turns, idle, reconciliation ------------------------------------------------------

    def _reconcile(self, state: SessionState, messages: list[JSON]) -> None:
        self._count("reconciles")
        if not isinstance(messages, (list, tuple)):
            self._count("bad_messages")
            return
        for item in messages:
            info = as_dict(as_dict(item).get("info"))
            mid = info.get("id")
            if not isinstance(mid, str):
                continue
            if mid not in state.messages and not self._after_floor(state, info):
                continue  # history from before we were watching
            self._on_message(state, info, reconciling=True)
            self._reconcile_parts(state, mid, item.get("parts"))
            if info.get("role") == "user" and mid not in state.rows:
                self._write_user(state, mid, reconciling=True)  # a prompt without text parts

    def _reconcile_parts(self, state: SessionState, mid: str, parts: Any) -> None:
        """A stored message's parts: a bounded number one by one (``_on_part`` also caps the
        rows), the rest counted at once; another shape than a list is one row describing it."""
        if isinstance(parts, list):
            head = 2 * MAX_PARTS  # room for parts that give no row (step-start/-finish)
            for part in parts[:head]:
                if isinstance(part, dict):
                    self._on_part(state, part, reconciling=True)
            if len(parts) > head:
                role = state.messages.get(mid, {}).get("role")
                rest = (as_dict(p).get("id") for p in parts[head : head + MAX_OMITTED])
                self._omit(
                    state, mid, role if isinstance(role, str) and role else "assistant", rest, True
                )
        elif parts is not None:
            self._count("bad_parts")
            key = f"parts:{mid}"
            meta = {"part": "unexpected", "message_id": mid, "unexpected_parts": describe(parts)}
            self._row(state, key, "event", {"metadata": self._tag(state, key, meta)}, True)

    def _idle(self, state: SessionState, *, fetch: bool = True) -> None:
        with state.lock:
            if not (state.dirty or state.turn_open):
                return
        messages = self.fetch_messages(state.sid) if fetch and self.base_url else None
        with state.lock:
            if messages is not None:
                self._reconcile(state, messages)
            self._finish_turn(state)

    def _finish_turn(self, state: SessionState, exc_text: str | None = None) -> None:
        """Idle after the prompt: the turn is complete; our own session shows its outcome."""
        for mid in [m for m, i in state.messages.items() if i.get("role") == "user"]:
            if mid not in state.rows:  # a prompt without text parts (files only)
                self._write_user(state, mid, reconciling=False)
        for mid in list(state.orphans):  # parts whose message never showed up
            for part in state.orphans.pop(mid):
                state.messages.setdefault(mid, {"id": mid, "role": "assistant"})
                self._on_part(state, part, reconciling=True)
        state.orphan_count = 0
        outcome = self._outcome(state, exc_text)
        state.turn_open = False
        state.dirty = False
        session = state.session
        if session is not None:
            if outcome is not None:
                session.note_result_error(outcome)
                state.noted_error = True
            elif state.noted_error:
                session.clear_result_error()
                state.noted_error = False
            if session is state.owned and not session.ended:
                status = ("error", outcome) if outcome is not None else ("completed", None)
                state.status = status
                session.logger.update_session(
                    status=status[0], error_message=status[1], ended_at=time.time()
                )
        with self._cond:
            state.turns_finished += 1
            self._cond.notify_all()

    def _outcome(self, state: SessionState, exc_text: str | None) -> str | None:
        latest = latest_message(state.messages.values())
        if latest is not None and latest.get("role") == "assistant" and latest.get("error"):
            return error_text(latest.get("error"))
        return state.turn_error or exc_text

    def catch_up(self, since_ms: float, *, watcher: int | None = None) -> None:
        """After a gap in the stream: reconcile every session that changed since, and finish the
        turns that ended unseen."""
        try:
            floor = since_ms - MARGIN_MS
            listed = self._get("/session")
            changed = {
                str(s["id"])
                for s in (listed if isinstance(listed, list) else [])
                if isinstance(s, dict)
                and isinstance(s.get("id"), str)
                and (as_float(as_dict(s.get("time")).get("updated")) or 0) >= floor
            }
            with self._lock:
                known = {sid for sid, state in self._states.items() if state.turn_open}
            status = self._server_status()
            for sid in sorted(changed | known):
                state = self._state(sid, watcher if sid in changed else None, floor_ms=floor)
                messages = self.fetch_messages(sid)
                busy = as_dict(as_dict(status).get(sid)).get("type") in BUSY
                with state.lock:
                    if messages is not None:
                        self._reconcile(state, messages)
                    if busy and not state.turn_open:
                        self._begin_turn(state)
                    elif not busy and status is not None and (state.dirty or state.turn_open):
                        self._finish_turn(state)
            self._count("catch_ups")
        except Exception:
            self._count("mapping_errors")
            log.debug("OpenCode catch-up failed", exc_info=True)

    def release(self, watcher: int | None) -> None:
        """A monitor stopped: sessions nobody watches any more are reconciled one last time, and
        the ones we created are ended (as ``error`` when a turn was still running)."""
        with self._lock:
            self._watcher_agents.pop(watcher if watcher is not None else -1, None)
            self._watcher_joins.pop(watcher if watcher is not None else -1, None)
            states = [
                state
                for state in self._states.values()
                if watcher is None or watcher in state.watchers
            ]
            for state in states:
                state.watchers.discard(watcher if watcher is not None else -1)
            todo = [state for state in states if watcher is None or not state.watchers]
        if not todo:
            return
        status = self._server_status() if self.base_url else None
        for state in todo:
            try:
                self._release_one(state, status)
            except Exception:
                self._count("mapping_errors")
                log.debug("OpenCode release failed", exc_info=True)

    def _release_one(self, state: SessionState, status: dict[str, Any] | None) -> None:
        if state.session is None:
            with self._lock:
                self._forget(state.sid, state)
            return
        messages = self.fetch_messages(state.sid) if self.base_url else None
        with state.lock:
            if messages is not None:
                self._reconcile(state, messages)
            if status is None:
                busy = state.turn_open and self.base_url is not None
            else:
                busy = as_dict(status.get(state.sid)).get("type") in BUSY
            if not busy and (state.dirty or state.turn_open):
                self._finish_turn(state)
            owned = state.owned
            if owned is not None and not owned.ended:
                owned.end(
                    "the OpenCode session was still running when logging stopped" if busy else None
                )
            if state.live() is None:
                with self._lock:
                    self._forget(state.sid, state)

    # ----- chat calls -----------------------------------------------------------------------

    def begin_chat(
        self,
        session_id: str,
        text: str | None,
        *,
        model: str | None,
        provider: str | None,
        message_id: str | None,
    ) -> SessionState | None:
        """Before a chat call: bind the session, open the turn and log the prompt."""
        state = self._state(session_id)
        with state.lock:
            if model:
                state.model_hint = (model, provider)
            join = current_session()
            if join is not None and not join.ended:
                self._bind(state, join)
            session = self._live(state)
            if session is None:
                return None
            self._begin_turn(state)
            if message_id is not None:
                state.messages.setdefault(message_id, {"id": message_id, "role": "user"})
                if text is not None:
                    state.user_text.setdefault(message_id, {})[PROMPT_PLACEHOLDER] = text
                self._write_user(state, message_id, reconciling=False)
            elif text is not None:
                row = session.logger.log_message(
                    "user", text, metadata=self._tag(state, "", {"kind": "prompt"})
                )
                state.prompts.append(PendingPrompt(text, row, session))
        return state

    def end_chat(self, state: SessionState, exc: BaseException | None) -> None:
        """After a chat call: everything of the turn is stored on the server; log what is
        missing and close the turn."""
        info = self._get(f"/session/{state.sid}")  # title and directory, with no monitor running
        messages = self.fetch_messages(state.sid)
        with state.lock:
            if isinstance(info, dict):
                self._on_session_info(state, info)
            if messages is not None:
                self._reconcile(state, messages)
            state.prompts.clear()  # a prompt the server never stored stays a row of its own
            exc_text = None
            if exc is not None:
                exc_text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._finish_turn(state, exc_text)
