"""Turning arbitrary agent data into safe, bounded, redacted database text.

Runs on the writer thread, never on the agent's: the hot path only hands objects over.
Nothing here raises: whatever cannot be stored as-is is replaced by a clear marker.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from .config import Redactor

REDACTED = "[REDACTED]"
# ASCII on purpose: one non-ASCII character would make CPython store the whole cut text with
# two bytes per character, doubling what a cut ASCII payload holds in the queue.
TRUNCATED_MARK = "...[truncated by claude-parallel-logging: original {size} chars]"
MAX_DEPTH = 64

# Built-in credential patterns, on by default (configure(redact_defaults=False) turns them off).
_DEFAULT_PATTERNS = (
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic API / admin keys
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI keys
    r"(?i:\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*)",  # HTTP bearer tokens
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWTs (Turso tokens)
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub tokens
    r"\bxox[baprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
)


_iso_cache: tuple[int, str] = (-1, "")


def iso_utc(ts: float) -> str:
    """UTC ISO-8601 with milliseconds: sorts as text and keeps durations exact."""
    global _iso_cache
    ms = int(ts * 1000)
    sec, frac = divmod(ms, 1000)
    cached_sec, prefix = _iso_cache
    if sec != cached_sec:  # most timestamps of a batch share their second
        prefix = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _iso_cache = (sec, prefix)
    return f"{prefix}.{frac:03d}Z"


# Cheap substring checks that every default pattern needs: the full regex runs only on text
# that could contain a credential (a plain sub() over every value was the writer's hot spot).
# No default pattern matches fewer characters (``sk-ant-`` + 8, ``bearer `` + 8, ``xoxb-`` + 10).
_SHORTEST_MATCH = 15
_CACHED_CHARS = 64  # values this short are remembered (bounded: _CACHE_ENTRIES)
_CACHE_ENTRIES = 4096
_TRIGGERS = ("sk-", "eyJ", "AKIA", "xox", "earer", "EARER", "ghp_", "gho_", "ghu_", "ghs_", "ghr_")


def build_redactor(
    custom: Redactor | None, use_defaults: bool, secrets: Iterable[str | None] = ()
) -> Callable[[str], str]:
    """One function applied to every stored string; literal secrets (the auth token) always."""
    literal = [s for s in secrets if s and len(s) >= 4]
    parts = [re.escape(s) for s in literal]
    triggers = tuple(literal)
    if use_defaults:
        parts.extend(_DEFAULT_PATTERNS)
        triggers += _TRIGGERS
    pattern = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None
    shortest = min([len(s) for s in literal] + ([_SHORTEST_MATCH] if use_defaults else []) or [0])

    seen: dict[str, str] = {}  # short values (models, tool names, ids) repeat all the time

    def scan(text: str) -> str:
        for trigger in triggers:
            if trigger in text:
                return pattern.sub(REDACTED, text) if pattern is not None else text
        return text

    def builtin(text: str) -> str:
        n = len(text)
        if n < shortest or pattern is None:
            return text
        if n > _CACHED_CHARS:
            return scan(text)
        out = seen.get(text)
        if out is None:
            if len(seen) >= _CACHE_ENTRIES:
                seen.clear()
            out = seen[text] = scan(text)
        return out

    if custom is None:
        return builtin

    def redact(text: str) -> str:
        text = builtin(text)
        try:
            out = custom(text)
            text = out if isinstance(out, str) else str(out)
        except Exception as exc:  # a broken hook must not leak the unredacted text
            text = f"[redaction hook failed: {type(exc).__name__}; value withheld]"
        return builtin(text)

    return redact


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


def precut(value: Any, limit: int) -> Any:
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
        return _precut(value, keep, [_WALK_BUDGET], 0)
    except Exception:  # e.g. the caller mutates the dict meanwhile: keep it as it is
        return value


def _precut(value: Any, keep: int, budget: list[int], depth: int) -> Any:
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
            cut = _precut(v, keep, budget, depth + 1)
            if cut is not v:
                if out is None:
                    out = dict(value)
                out[k] = cut
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items: list[Any] | None = None
        for i, v in enumerate(value[: max(0, budget[0])]):
            cut = _precut(v, keep, budget, depth + 1)
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


def redact_values(value: Any, hook: Callable[[str], str], depth: int = 0) -> Any:
    """Apply ``hook`` to every string (keys too) of a structure before it becomes JSON.

    A hook sees the real text, not its JSON escaping (a secret with a quote or a newline would
    otherwise slip through), and cannot break the JSON it is part of.
    """
    if isinstance(value, str):
        return hook(value)
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            (hook(k) if isinstance(k, str) else k): redact_values(v, hook, depth + 1)
            for k, v in list(value.items())
        }
    if isinstance(value, (list, tuple)):
        return [redact_values(v, hook, depth + 1) for v in list(value)]
    return value


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
