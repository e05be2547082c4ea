"""Turning arbitrary agent data into safe, bounded database text (used by both threads).

The agent's thread only bounds what it hands over (``cut_for_queue``); the writer thread does
the rest (JSON, exact cuts with a marker that keeps the original size, timestamps). Nothing
here raises: whatever cannot be stored as-is is replaced by a clear marker.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

# ASCII on purpose: one non-ASCII character would make CPython store the whole cut text with
# two bytes per character, doubling what a cut ASCII payload holds in the queue.
TRUNCATED_MARK = "...[truncated by claude-parallel-logging: original {size} chars]"
MAX_DEPTH = 64


_iso_day: tuple[int, str] = (-1, "")


def iso_utc(ts: float) -> str:
    """UTC ISO-8601 with milliseconds: sorts as text and keeps durations exact.

    The date part is formatted once per day and the time by arithmetic: ``strftime`` for each
    value was a tenth of the writer's conversion time for timestamps spread over days.
    """
    global _iso_day
    ms = int(ts * 1000)
    sec, frac = divmod(ms, 1000)
    day, in_day = divmod(sec, 86_400)
    cached_day, date = _iso_day
    if day != cached_day:
        date = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%dT")
        _iso_day = (day, date)
    hour, rest = divmod(in_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{date}{hour:02d}:{minute:02d}:{second:02d}.{frac:03d}Z"


def clean_text(text: str) -> str:
    """Make a Python string storable: lone surrogates and NUL bytes become visible markers."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    return text


_MARK_RE = re.compile(
    r"(?:\.\.\.|…)\[truncated by claude-parallel-logging: original (\d+) chars\]\Z"
)

_INNER_MARK_RE = re.compile(
    r"(?:\.\.\.|…)\[truncated by claude-parallel-logging: original (\d+) chars\]"
)

# The caller's thread keeps this much more than the limit, so that a credential straddling the
# limit is still whole when the writer redacts it; the writer cuts to the limit afterwards.
REDACT_MARGIN = 4096
_WALK_BUDGET = 1000  # nodes of a structure the caller's thread looks at, at most


def truncate(text: str, limit: int) -> str:
    """Cut to ``limit`` characters with a marker that keeps the original size (idempotent)."""
    if len(text) <= limit:
        return text
    original = len(text)
    mark = _MARK_RE.search(text, max(0, len(text) - 120))
    if mark is not None:
        original = int(mark.group(1))
        text = text[: mark.start()]
        if len(text) <= limit:
            return text + TRUNCATED_MARK.format(size=original)
    return text[:limit] + TRUNCATED_MARK.format(size=original)


def split_mark(text: str) -> tuple[str, int | None]:
    """``(text without a truncation marker, the original size it states)``."""
    if len(text) < 60 or not text.endswith(" chars]"):
        return text, None
    mark = _MARK_RE.search(text, max(0, len(text) - 120))
    if mark is None:
        return text, None
    return text[: mark.start()], int(mark.group(1))


def cut_for_queue(value: Any, limit: int) -> Any:
    """Bound what the caller's thread hands over: long text (also inside lists and dicts, and
    bytes) is cut to ``limit`` plus a margin, so a huge tool output never sits in the queue.

    Runs on the agent's thread, so it only looks at ``_WALK_BUDGET`` nodes and copies only what
    it cuts; the writer does the exact cut after redaction. Never raises.
    """
    keep = limit + REDACT_MARGIN
    t = type(value)
    if t is str:
        return truncate(value, keep) if len(value) > keep else value
    if t is dict:  # the usual tool input: a flat dict of short values, checked without a call
        for v in value.values():
            tv = type(v)
            if tv is str:
                if len(v) > keep:
                    break
            elif not (v is None or tv is int or tv is bool or tv is float):
                break
        else:
            return value
    elif value is None or t is int or t is float or t is bool:
        return value
    try:
        return _cut_nested(value, keep, [_WALK_BUDGET], 0)
    except Exception:  # e.g. the caller mutates the dict meanwhile: keep it as it is
        return value


def _cut_nested(value: Any, keep: int, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or depth > 16:
        return value
    if isinstance(value, str):
        return truncate(value, keep) if len(value) > keep else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) <= keep:
            return value
        head = bytes(value[: keep * 4]).decode("utf-8", "replace")[:keep]
        return head + TRUNCATED_MARK.format(size=len(value))
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for k, v in list(itertools.islice(value.items(), max(0, budget[0]))):
            cut = _cut_nested(v, keep, budget, depth + 1)
            if cut is not v:
                if out is None:
                    out = dict(value)
                out[k] = cut
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items: list[Any] | None = None
        for i, v in enumerate(value[: max(0, budget[0])]):
            cut = _cut_nested(v, keep, budget, depth + 1)
            if cut is not v:
                if items is None:
                    items = list(value)
                items[i] = cut
        return value if items is None else items
    return value


def cut_text(text: str, limit: int, redact: Callable[[str], str]) -> str:
    """Redact, then cut to ``limit`` with the marker (the original size survives a pre-cut)."""
    body, original = split_mark(text)
    body = redact(body)
    if original is None and len(body) <= limit:
        return body
    return body[:limit] + TRUNCATED_MARK.format(size=original or len(body))


def cut_json(text: str, limit: int, keep: int = 0) -> str:
    """A JSON value too long for ``limit`` becomes a smaller JSON object that says so.

    Cutting the text itself would store invalid JSON, which ``json_extract`` and every reader
    then choke on. ``keep`` is what the caller's thread kept of each string it cut, so that
    ``original_chars`` counts what those strings had before.
    """
    if len(text) <= limit:
        return text
    original = len(text)
    if "[truncated by claude-parallel-logging" in text:  # strings the caller's thread cut
        for m in _INNER_MARK_RE.finditer(text):
            original += int(m.group(1)) - (keep + len(m.group(0))) if keep else 0
    preview = text[: max(0, limit - 120)]
    return json.dumps(
        {"__truncated__": True, "original_chars": original, "preview": preview},
        ensure_ascii=False,
    )


def to_text(value: Any) -> str:
    """A value for a TEXT column: strings as they are, bytes decoded, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    text = to_json(value)
    if text.startswith('"'):  # an object that became a string: store the string itself
        try:
            out = json.loads(text)
            return out if isinstance(out, str) else text
        except ValueError:
            pass
    return text


def to_json(value: Any) -> str:
    """Valid JSON for anything; non-serialisable parts become descriptive strings."""
    try:
        return json.dumps(value, ensure_ascii=False, default=_default, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        return json.dumps(_safe(value, 0, set()), ensure_ascii=False, allow_nan=False)
    except Exception as exc:  # pragma: no cover - _safe only returns JSON types
        return json.dumps({"__unserializable__": type(value).__name__, "error": str(exc)})


def to_jsonable(value: Any) -> Any:
    """``value`` rebuilt from JSON types only (SDK objects converted, cycles and depth cut)."""
    try:
        return _safe(value, 0, set())
    except Exception:
        return f"<{type(value).__name__}>"


def _default(obj: Any) -> Any:
    """``json.dumps`` fallback for SDK objects (dataclasses, pydantic models) and the rest."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
        return {"__type__": type(obj).__name__, **data}
    for attr in ("model_dump", "to_dict"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            try:
                return fn()
            except Exception:
                break
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, datetime):
        return obj.isoformat()
    return f"<{type(obj).__name__}: {_short_repr(obj)}>"


def _short_repr(obj: Any) -> str:
    try:
        r = repr(obj)
    except Exception:
        return "unrepresentable"
    return r if len(r) <= 200 else r[:200] + "…"


def _safe(value: Any, depth: int, seen: set[int]) -> Any:
    """Rebuild ``value`` from JSON types only, cutting cycles and excessive depth."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return "[max depth reached]"
    oid = id(value)
    if oid in seen:
        return "[circular reference]"
    if isinstance(value, dict):
        seen.add(oid)
        out = {str(k): _safe(v, depth + 1, seen) for k, v in list(value.items())}
        seen.discard(oid)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seen.add(oid)
        items = [_safe(v, depth + 1, seen) for v in list(value)]
        seen.discard(oid)
        return items
    try:
        converted = _default(value)
    except Exception:
        return f"<{type(value).__name__}>"
    if isinstance(converted, str):
        return converted
    seen.add(oid)
    out2 = _safe(converted, depth + 1, seen)
    seen.discard(oid)
    return out2
