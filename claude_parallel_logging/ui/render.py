"""Turning views into HTML: the Jinja2 environment (autoescape on for everything), the filters
the templates use, JSON made safe for a ``<script type="application/json">`` block, and the
Content-Security-Policy of served pages and of the HTML export."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import jinja2
from markupsafe import Markup

from ..query.figures import fmt_cost, fmt_int, fmt_ms, fmt_pct, fmt_time

PACKAGE_DIR = files("claude_parallel_logging.ui")
STATIC_FILES = ("app.css", "app.js")

# Served pages: scripts and styles only from /static (no inline script, no eval, no CDN).
SERVED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: Any) -> Markup:
    """JSON to put inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` is left
    in it (they become ``\\u003c``...), so stored text holding ``</script>`` or ``<!--`` cannot
    end the block or start a comment; ``JSON.parse`` restores the text exactly."""
    text = json.dumps(value, ensure_ascii=False, default=str).translate(_SCRIPT_ESCAPES)
    return Markup(text)  # safe: nothing in it can close or confuse the script element


def static_text(name: str) -> str:
    """A file of ``ui/static`` (only the names in ``STATIC_FILES``)."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return (PACKAGE_DIR / "static" / name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def export_csp(script: str, style: str) -> str:
    """The export's policy: only its own inlined script and style (by hash), no network."""
    return (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)};"
        " img-src data:; base-uri 'none'; form-action 'none'"
    )


def _duration(ms: Any) -> str:
    return fmt_ms(ms) if isinstance(ms, (int, float)) else "-"


def _short(session_id: str, n: int = 8) -> str:
    return session_id[:n]


def _tokens(s: Any) -> str:
    parts = []
    for label, v in (("in", s.input_tokens), ("out", s.output_tokens)):
        if v is not None:
            parts.append(f"{fmt_int(v)} {label}")
    cache = [v for v in (s.cache_read_tokens, s.cache_creation_tokens) if v]
    if cache:
        parts.append(f"{fmt_int(sum(cache))} cache")
    return " · ".join(parts) or "-"


def _query_string(params: Sequence[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in params if v not in (None, "")])


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=fmt_time,
        ms=_duration,
        cost=fmt_cost,
        int=fmt_int,
        pct=fmt_pct,
        short=_short,
        tokens=_tokens,
        qs=_query_string,
    )
    env.globals["script_json"] = script_json
    return env
