"""Turning arbitrary agent data into safe, bounded, redacted database text.

Runs on the writer thread, never on the agent's: the hot path only hands objects over.
Nothing here raises: whatever cannot be stored as-is is replaced by a clear marker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from .config import Redactor

REDACTED = "[REDACTED]"
TRUNCATED_MARK = "…[truncated by claude-parallel-logging: original {size} chars]"
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

    def builtin(text: str) -> str:
        if pattern is None:
            return text
        for trigger in triggers:
            if trigger in text:
                return pattern.sub(REDACTED, text)
        return text

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


_MARK_RE = re.compile(r"…\[truncated by claude-parallel-logging: original \d+ chars\]\Z")


def truncate(text: str, limit: int) -> str:
    """Cut to ``limit`` characters with a marker that keeps the original size (idempotent)."""
    if len(text) <= limit:
        return text
    if len(text) <= limit + 80 and _MARK_RE.search(text, limit):
        return text  # already cut on the caller's thread
    return text[:limit] + TRUNCATED_MARK.format(size=len(text))


def to_text(value: Any) -> str:
    """A value for a TEXT column: strings as they are, bytes decoded, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return to_json(value)


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
