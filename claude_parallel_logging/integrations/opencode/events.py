"""OpenCode's ``/event`` stream: server-sent event payloads, and the session an event is about."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from .fields import JSON, as_dict

QUIET_EVENTS = frozenset(
    {"server.connected", "server.heartbeat", "message.part.delta", "session.diff"}
)
BUSY = frozenset({"busy", "retry"})  # session.status types while a turn runs


def sse_data(lines: Iterable[str]) -> Iterator[str]:
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


def parse_event(event: Any) -> JSON | None:
    """One event as a dict (the ``data:`` of ``/event``, as text or parsed), ``None`` if none."""
    if isinstance(event, (str, bytes)):
        try:
            event = json.loads(event)
        except ValueError:
            return None
    if not isinstance(event, dict):
        return None
    payload = event.get("payload")
    if "type" not in event and isinstance(payload, dict):
        return payload  # /global/event wraps events as {directory, payload}
    return event


def event_session_id(etype: str, props: JSON) -> str | None:
    """The OpenCode session an event is about (``None``: an instance-wide event)."""
    sid = props.get("sessionID")
    if isinstance(sid, str):
        return sid
    for key in ("info", "part"):
        inner = as_dict(props.get(key))
        value = inner.get("sessionID")
        if isinstance(value, str):
            return value
        if key == "info" and etype.startswith("session.") and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return None
