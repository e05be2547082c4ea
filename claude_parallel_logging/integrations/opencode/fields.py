"""Reading OpenCode's raw JSON: dicts, epoch-millisecond times, unknown fields, errors.

Everything OpenCode sends is read as plain JSON, never through the SDK's models: the PyPI SDK is
older than current servers, so unknown fields must pass through and nothing may break on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ...payload import iso_utc
from ..shapes import as_float

JSON = dict[str, Any]


def as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def seconds(ms: Any) -> float | None:
    """OpenCode times are epoch milliseconds; the logger takes epoch seconds."""
    value = as_float(ms)
    return None if value is None else value / 1000.0


def iso_time(ms: Any) -> str | None:
    value = seconds(ms)
    return None if value is None else iso_utc(value)


def drop_empty(values: Mapping[str, Any]) -> JSON:
    return {k: v for k, v in values.items() if v is not None and v != {}}


def unknown_fields(data: JSON, known: frozenset[str]) -> JSON | None:
    """Fields this version does not know: kept, so a newer server loses nothing."""
    extra = {k: v for k, v in data.items() if k not in known}
    return extra or None


def error_text(error: Any) -> str | None:
    """``{name, data: {message}}`` (OpenCode's NamedError) as one line."""
    if error is None:
        return None
    if not isinstance(error, dict):
        return str(error)
    data = as_dict(error.get("data"))
    message = data.get("message") or error.get("message")
    name = error.get("name")
    if message and name:
        return f"{name}: {message}"
    return str(message or name or json.dumps(error, default=str))


def latest_message(infos: Iterable[JSON]) -> JSON | None:
    """OpenCode ids ascend with time; ``time.created`` first in case a server changes that."""
    best: JSON | None = None
    best_key: tuple[float, str] = (-1.0, "")
    for info in infos:
        key = (as_float(as_dict(info.get("time")).get("created")) or 0.0, str(info.get("id", "")))
        if key >= best_key:
            best, best_key = info, key
    return best
