"""Redaction: credentials out of every stored string, and out of what the package logs.

The built-in patterns are on by default (``configure(redact_defaults=False)`` turns them off);
the configured auth token is always redacted, and a user's hook (``configure(redact=...)``)
runs after them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .config import Redactor, Settings
from .payload import MAX_DEPTH

REDACTED = "[REDACTED]"

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


# Cheap substring checks that every default pattern needs: the full regex runs only on text
# that could contain a credential (a plain sub() over every value was the writer's hot spot).
# No default pattern matches fewer characters (``sk-ant-`` + 8, ``bearer `` + 8, ``xoxb-`` + 10).
_SHORTEST_MATCH = 15
_CACHED_CHARS = 64  # values this short are remembered (bounded: _CACHE_ENTRIES)
_CACHE_ENTRIES = 4096
_TRIGGERS = ("sk-", "eyJ", "AKIA", "xox", "earer", "EARER")
# GitHub's five prefixes all contain "_": one scan for it spares five on text without any.
_UNDERSCORE_TRIGGERS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")


def build_redactor(
    custom: Redactor | None, use_defaults: bool, secrets: Iterable[str | None] = ()
) -> Callable[[str], str]:
    """One function applied to every stored string; literal secrets (the auth token) always."""
    literal = [s for s in secrets if s and len(s) >= 4]
    parts = [re.escape(s) for s in literal]
    triggers = tuple(literal)
    underscore: tuple[str, ...] = ()
    if use_defaults:
        parts.extend(_DEFAULT_PATTERNS)
        triggers += _TRIGGERS
        underscore = _UNDERSCORE_TRIGGERS
    pattern = re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None
    shortest = min([len(s) for s in literal] + ([_SHORTEST_MATCH] if use_defaults else []) or [0])

    seen: dict[str, str] = {}  # short values (models, tool names, ids) repeat all the time

    def scan(text: str) -> str:
        for trigger in triggers:
            if trigger in text:
                return pattern.sub(REDACTED, text) if pattern is not None else text
        if underscore and "_" in text:
            for trigger in underscore:
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


def redactor_for(settings: Settings) -> Callable[[str], str]:
    """The redactor of a configuration: its hook, its defaults and its auth token."""
    token = settings.config.auth_token if settings.config else None
    return build_redactor(settings.redact, settings.redact_defaults, [token])


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
