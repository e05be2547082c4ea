"""OpenCode messages and parts as rows: one row per message, per text/reasoning part, per tool
call (plus its ``tool_executions`` row), per other part and per unknown event.

The third layer of :class:`~.router.OpencodeRouter` (http -> bindings -> rows -> turns ->
router). Row ids are deterministic per logged session (:func:`row_id`), so the event stream
and reconciliation upsert the same row: the first sight inserts, later ones update what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

from ...schema.tables import MESSAGE_UPDATABLE
from ..session import LoggedSession
from ..shapes import as_float, as_int
from .bindings import SessionBindings
from .fields import JSON, as_dict, drop_empty, error_text, iso_time, seconds, unknown_fields
from .state import MessageUsage, SessionState

_MAX_EVENT_ROWS = 500  # per OpenCode session: unknown events are kept, but not without bound
_MAX_ORPHANS = 1000  # parts held back until their message is known
# Parts of one message logged one by one; the others are counted in one row per message, so a
# message with a huge number of parts cannot flood the queue (nor keep a chat call busy).
MAX_PARTS = 500
MAX_OMITTED = 10_000  # omitted part ids remembered per message (the count stops there)
_TOOL_RANK = {"pending": 0, "running": 1, "completed": 2, "error": 2}
_SKIPPED_PARTS = frozenset({"step-start", "step-finish"})  # step usage repeats the message's
PROMPT_PLACEHOLDER = "\0prompt"  # a chat call's text until the server's text part arrives
_MESSAGE_KEYS = frozenset(
    {
        "id", "sessionID", "role", "time", "error", "parentID", "modelID", "providerID", "mode",
        "agent", "path", "summary", "cost", "tokens", "finish", "model",
    }
)  # fmt: skip
_PART_KEYS = frozenset(
    {"id", "sessionID", "messageID", "type", "text", "time", "synthetic", "ignored", "metadata"}
)


def fingerprint(value: Any) -> int:
    """A cheap fingerprint of a written value, so an unchanged snapshot writes nothing."""
    if isinstance(value, (str, int, float, bool)):
        return hash((type(value).__name__, value))
    return hash(json.dumps(value, sort_keys=True, default=str))


def row_id(session_id: str, oc_session: str, key: str) -> str:
    """Deterministic per logged session: the stream and reconciliation upsert one row, while two
    processes logging the same OpenCode session into different sessions never collide."""
    digest = hashlib.sha1(f"{session_id}\0{oc_session}\0{key}".encode()).hexdigest()
    return f"oc-{digest[:24]}"


def slim_part(part: JSON) -> JSON:
    """Inline data URLs (pasted images) would fill the database; their size is enough."""
    url = part.get("url")
    if isinstance(url, str) and url.startswith("data:") and len(url) > 256:
        return {**part, "url": f"{url[:40]}... ({len(url)} chars)"}
    return part


class RowMapper(SessionBindings):
    """Maps messages, parts and unknown events of the OpenCode sessions onto rows."""

    def _event_row(self, state: SessionState, key: str, etype: str, props: JSON) -> None:
        key = f"event:{key}"
        if key in state.rows:
            return
        if state.event_rows >= _MAX_EVENT_ROWS:
            self._count("events_not_kept")
            return
        state.event_rows += 1
        fields: JSON = {"content": etype, "metadata": {"type": etype, "properties": props}}
        self._row(state, key, "event", fields, reconciling=False)

    # ----- messages and parts ---------------------------------------------------------------

    def _after_floor(self, state: SessionState, info: JSON) -> bool:
        created = as_float(as_dict(info.get("time")).get("created"))
        return state.floor_ms is None or created is None or created >= state.floor_ms

    def _on_message(self, state: SessionState, info: JSON, *, reconciling: bool) -> None:
        mid = info.get("id")
        if not isinstance(mid, str):
            return
        role = info.get("role")
        new = mid not in state.messages
        state.messages[mid] = info
        created = as_float(as_dict(info.get("time")).get("created"))
        if created is not None:
            state.last_created_ms = max(state.last_created_ms, created)
        if role == "user":
            model = as_dict(info.get("model"))
            if isinstance(model.get("modelID"), str):
                state.model_hint = (model["modelID"], model.get("providerID"))
            if new and not reconciling:
                self._begin_turn(state)
            if mid in state.rows:
                self._write_user(state, mid, reconciling)
        elif role == "assistant":
            parent = info.get("parentID")
            if isinstance(parent, str) and parent in state.messages and parent not in state.rows:
                self._write_user(state, parent, reconciling)
            self._on_assistant(state, mid, info, reconciling)
        else:
            fields: JSON = {
                "external_id": mid,
                "created_at": seconds(created),
                "metadata": {"kind": "message", "data": info},
            }
            self._row(
                state,
                mid,
                role if isinstance(role, str) and role else "unknown",
                fields,
                reconciling,
            )
        for part in state.orphans.pop(mid, []):
            state.orphan_count -= 1
            self._on_part(state, part, reconciling=reconciling)

    def _on_assistant(self, state: SessionState, mid: str, info: JSON, reconciling: bool) -> None:
        tokens = as_dict(info.get("tokens"))
        cache = as_dict(tokens.get("cache"))
        times = as_dict(info.get("time"))
        created, completed = as_float(times.get("created")), as_float(times.get("completed"))
        error = info.get("error")
        model, provider = info.get("modelID"), info.get("providerID")
        if isinstance(model, str):
            self._note_model(state, model, provider if isinstance(provider, str) else None)
        meta = drop_empty(
            {
                "kind": "message",
                "provider": provider,
                "reasoning_tokens": as_int(tokens.get("reasoning")),
                "cache_read_tokens": as_int(cache.get("read")),
                "cache_write_tokens": as_int(cache.get("write")),
                "cost_usd": as_float(info.get("cost")),
                "completed_at": iso_time(completed),
                "duration_ms": (
                    round(completed - created)
                    if completed is not None and created is not None
                    else None
                ),
                "finish": info.get("finish"),
                "agent": info.get("agent"),
                "mode": info.get("mode"),
                "parent_id": info.get("parentID"),
                "cwd": as_dict(info.get("path")).get("cwd"),
                "error": error,
                "extra": unknown_fields(info, _MESSAGE_KEYS),
            }
        )
        fields: JSON = {
            "content": error_text(error),
            "external_id": mid,
            "model": model if isinstance(model, str) else None,
            "input_tokens": as_int(tokens.get("input")),
            "output_tokens": as_int(tokens.get("output")),
            "token_count": as_int(tokens.get("total")),
            "created_at": seconds(created),
            "metadata": self._tag(state, mid, meta),
        }
        self._row(state, mid, "assistant", fields, reconciling)
        session = state.owner.get(mid)
        if session is not None:
            usage = MessageUsage(
                input=as_int(tokens.get("input")) or 0,
                output=as_int(tokens.get("output")) or 0,
                cache_read=as_int(cache.get("read")) or 0,
                cache_write=as_int(cache.get("write")) or 0,
                cost=as_float(info.get("cost")) or 0.0,
            )
            old = state.usage.get(mid)
            if old is None or old[1] != usage:
                state.usage[mid] = (session, usage)
                self._totals(state, session)

    def _totals(self, state: SessionState, session: LoggedSession) -> None:
        """Session totals are the sum over this session's assistant messages."""
        usages = [u for s, u in state.usage.values() if s is session]
        session.set_source_totals(
            state,
            {
                "input_tokens": sum(u.input for u in usages),
                "output_tokens": sum(u.output for u in usages),
                "cache_read_tokens": sum(u.cache_read for u in usages),
                "cache_creation_tokens": sum(u.cache_write for u in usages),
                "cost_usd": round(sum(u.cost for u in usages), 10),
                "num_turns": len(usages),
            },
        )

    def _write_user(self, state: SessionState, mid: str, reconciling: bool) -> None:
        info = state.messages.get(mid, {})
        texts = state.user_text.get(mid) or {}
        text = "\n".join(texts.values()) or None
        if mid not in state.rows and state.prompts:
            self._adopt(state, mid, text)
        model = as_dict(info.get("model"))
        summary = as_dict(info.get("summary"))
        meta = drop_empty(
            {
                "kind": "message",
                "agent": info.get("agent"),
                "provider": model.get("providerID"),
                "model": model.get("modelID"),
                "summary_title": summary.get("title"),
                "extra": unknown_fields(info, _MESSAGE_KEYS),
            }
        )
        fields: JSON = {
            "content": text,
            "external_id": mid,
            "created_at": seconds(as_dict(info.get("time")).get("created")),
            "metadata": self._tag(state, mid, meta),
        }
        self._row(state, mid, "user", fields, reconciling)

    def _adopt(self, state: SessionState, mid: str, text: str | None) -> None:
        """The prompt a chat call logged becomes this user message's row (no second row)."""
        pick = next((p for p in state.prompts if text is not None and p.text == text), None)
        if pick is None:
            pick = state.prompts[0]  # the server may normalise the text; the order is the same
        state.prompts.remove(pick)
        state.rows[mid] = pick.row
        state.owner[mid] = pick.session
        state.written[mid] = {"content": fingerprint(pick.text)}

    def _on_part(
        self, state: SessionState, part: JSON, *, reconciling: bool, event_ms: float | None = None
    ) -> None:
        ptype, pid, mid = part.get("type"), part.get("id"), part.get("messageID")
        if not isinstance(ptype, str):
            ptype = None  # a list or dict would not even be hashable: kept as an unknown part
        if not isinstance(pid, str) or not isinstance(mid, str) or ptype in _SKIPPED_PARTS:
            return
        info = state.messages.get(mid)
        if info is None:
            if state.orphan_count < _MAX_ORPHANS:  # its message.updated was not seen yet
                state.orphans.setdefault(mid, []).append(part)
                state.orphan_count += 1
            return
        role = info.get("role")
        role = role if isinstance(role, str) and role else "assistant"
        logged = state.parts.setdefault(mid, set())
        if pid not in logged:
            if len(logged) >= MAX_PARTS:
                self._omit(state, mid, role, (pid,), reconciling)
                return
            logged.add(pid)
        if ptype in ("text", "reasoning"):
            self._text_part(state, part, pid, mid, info, role, reconciling)
        elif ptype == "tool":
            self._tool_part(state, part, pid, mid, info, reconciling, event_ms)
        else:
            fields: JSON = {
                "external_id": pid,
                "created_at": seconds(event_ms),
                "metadata": self._tag(
                    state, pid, {"part": ptype, "message_id": mid, "data": slim_part(part)}
                ),
            }
            self._row(state, pid, role, fields, reconciling)

    def _omit(
        self, state: SessionState, mid: str, role: str, pids: Iterable[Any], reconciling: bool
    ) -> None:
        """Parts beyond ``MAX_PARTS``: one row per message counting them."""
        seen = state.omitted.setdefault(mid, set())
        for pid in pids:
            if len(seen) >= MAX_OMITTED:
                break
            if isinstance(pid, str):
                seen.add(pid)
        meta = {"part": "omitted", "message_id": mid, "omitted_parts": len(seen)}
        key = f"omitted:{mid}"
        self._row(state, key, role, {"metadata": self._tag(state, key, meta)}, reconciling)

    def _text_part(
        self,
        state: SessionState,
        part: JSON,
        pid: str,
        mid: str,
        info: JSON,
        role: str,
        reconciling: bool,
    ) -> None:
        text = part.get("text")
        if not isinstance(text, str) or not text:
            return
        times = part.get("time")
        streaming = isinstance(times, dict) and times.get("end") is None
        if streaming and not reconciling and not as_dict(info.get("time")).get("completed"):
            return  # still streaming: the final text comes with ``time.end``
        if role == "user" and part.get("type") == "text" and not part.get("synthetic"):
            texts = state.user_text.setdefault(mid, {})
            texts.pop(PROMPT_PLACEHOLDER, None)  # the server's own text replaces the call's
            texts[pid] = text
            self._write_user(state, mid, reconciling)
            return
        times = as_dict(times)
        start, end = as_float(times.get("start")), as_float(times.get("end"))
        meta = drop_empty(
            {
                "part": part.get("type"),
                "message_id": mid,
                "synthetic": part.get("synthetic"),
                "ignored": part.get("ignored"),
                "duration_ms": round(end - start)
                if start is not None and end is not None
                else None,
                "extra": unknown_fields(part, _PART_KEYS),
            }
        )
        model = info.get("modelID")
        fields: JSON = {
            "content": text,
            "external_id": pid,
            "model": model if isinstance(model, str) else None,
            "created_at": seconds(start) or seconds(as_dict(info.get("time")).get("created")),
            "metadata": self._tag(state, pid, meta),
        }
        self._row(state, pid, role, fields, reconciling)

    def _tool_part(
        self,
        state: SessionState,
        part: JSON,
        pid: str,
        mid: str,
        info: JSON,
        reconciling: bool,
        event_ms: float | None,
    ) -> None:
        tool_state = as_dict(part.get("state"))
        status = tool_state.get("status")
        call_id = part.get("callID") if isinstance(part.get("callID"), str) else pid
        key = f"call:{call_id}"
        rank = _TOOL_RANK.get(status) if isinstance(status, str) else None
        prev = state.tool_rank.get(key, -1)
        if rank is not None and rank < prev:
            return  # an older snapshot (reconcile racing the stream): never go back
        tool = part.get("tool")
        name = tool if isinstance(tool, str) and tool else "unknown"
        tool_input = tool_state.get("input") or None
        output = tool_state.get("output") if status == "completed" else None
        error = tool_state.get("error") if status == "error" else None
        times = as_dict(tool_state.get("time"))
        start, end = as_float(times.get("start")), as_float(times.get("end"))
        meta = drop_empty(
            {
                "part": "tool",
                "message_id": mid,
                "call_id": call_id,
                "status": status,
                "title": tool_state.get("title"),
                "error": error,
                "tool_metadata": tool_state.get("metadata") if rank == 2 else None,
                "attachments": tool_state.get("attachments"),
                "extra": unknown_fields(part, _PART_KEYS | {"callID", "tool", "state"}),
            }
        )
        model = info.get("modelID")
        fields: JSON = {
            "tool_name": name,
            "tool_input": tool_input,
            "tool_output": output,
            "external_id": pid,
            "model": model if isinstance(model, str) else None,
            "created_at": seconds(start) or seconds(event_ms),
            "metadata": self._tag(state, pid, meta),
        }
        row = self._row(state, pid, "assistant", fields, reconciling)
        session = state.owner.get(pid)
        if row is None or session is None or rank is None or rank == prev:
            return
        logger = session.logger
        exec_id = state.rows.setdefault(key, row_id(session.id, state.sid, key))
        state.owner.setdefault(key, session)
        state.tool_rank[key] = rank
        state.dirty = True
        common: JSON = {"message_id": row, "tool_use_id": call_id, "execution_id": exec_id}
        if status == "pending":
            started = seconds(event_ms)
            logger.log_tool_execution(
                name, "pending", input=tool_input, started_at=started or time.time(), **common
            )
        elif status == "running":
            logger.log_tool_execution(
                name, "running", input=tool_input, started_at=seconds(start), **common
            )
        else:
            duration = max(0, round(end - start)) if start is not None and end is not None else None
            if exec_id in logger.running_tools():  # closes the logger's running entry too
                logger.finish_tool_execution(
                    exec_id,
                    str(status),
                    output=output,
                    error=error,
                    ended_at=seconds(end),
                    duration_ms=duration,
                )
            else:
                logger.log_tool_execution(
                    name,
                    str(status),
                    input=tool_input,
                    output=output,
                    error=error,
                    started_at=seconds(start),
                    ended_at=seconds(end),
                    duration_ms=duration,
                    **common,
                )

    def _tag(self, state: SessionState, key: str, meta: JSON) -> JSON:
        """Rows in a shared logged session say which OpenCode session they came from."""
        session = state.owner.get(key) or self._live(state)
        if session is not None and session is not state.owned:
            return {**meta, "opencode_session_id": state.sid}
        return meta

    def _row(
        self, state: SessionState, key: str, role: str, fields: JSON, reconciling: bool
    ) -> str | None:
        """Insert on first sight (taking the next sequence), afterwards update what changed."""
        session = state.owner.get(key)
        if session is None:
            session = self._live(state)
            if session is None:
                return None
            state.owner[key] = session
            row = state.rows.setdefault(key, row_id(session.id, state.sid, key))
            values = dict(fields)
            content = values.pop("content", None)
            session.logger.log_message(role, content, message_id=row, **values)
            state.written[key] = {
                k: fingerprint(v) for k, v in fields.items() if v is not None and k != "created_at"
            }
            state.dirty = True
            if reconciling:
                self._count("reconciled_rows")
            return row
        row = state.rows[key]
        prev = state.written.setdefault(key, {})
        changed: JSON = {}
        for col, value in fields.items():
            if value is None or col not in MESSAGE_UPDATABLE:
                continue
            new_fp = fingerprint(value)
            if prev.get(col) != new_fp:
                prev[col] = new_fp
                changed[col] = value
        if changed:
            state.dirty = True
            session.logger.update_message(row, **changed)
        return row
