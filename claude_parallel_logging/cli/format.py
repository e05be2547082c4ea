"""Figures and text as every command prints them: times, counts, money, durations, cut text,
and the token columns every table shares."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..query import SessionSummary, UsageRow, short_ids
from ..query.access import TursoClient
from .output import STATUS_STYLE, Cell, Column


def fmt_time(iso: str | None, ms: bool = False) -> str:
    """Stored UTC text, made readable: ``2026-01-31 12:00:05`` (UTC)."""
    if not iso:
        return "-"
    text = iso.replace("T", " ").rstrip("Z")
    return text if ms else text.split(".", 1)[0]


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_cost(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def fmt_ms(ms: float | None) -> str:
    """Durations at a glance: 850 ms, 12.3 s, 4m05s, 1h02m."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def clip(text: str, limit: int) -> str:
    """Cut long text for the terminal, saying how much was left out and the full length."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit:,} more chars, {len(text):,} in total]"


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# Token figures look the same in every table: input, output, and the cache (read + write)
# apart, never one sum that mixes them.
TOKEN_COLUMNS = (
    Column("TOK IN", right=True, drop=2),
    Column("TOK OUT", right=True, drop=4),
    Column("CACHE R+W", right=True, drop=7),
)


def token_cells(r: SessionSummary | UsageRow) -> list[str]:
    """The cells of ``TOKEN_COLUMNS``."""
    read, write = r.cache_read_tokens, r.cache_creation_tokens
    cache = None if read is None and write is None else (read or 0) + (write or 0)
    return [fmt_int(r.input_tokens), fmt_int(r.output_tokens), fmt_int(cache)]


def status_cell(status: str) -> Cell:
    return (status, STATUS_STYLE.get(status))


def short_id_forms(ids: list[str], client: TursoClient) -> Callable[[], Sequence[str]]:
    """Unique id prefixes (``cpl show`` takes them) for a terminal too narrow for whole ids."""

    def get() -> Sequence[str]:
        found = short_ids(ids, client=client)
        return [found.get(i, i) for i in ids]

    return get


def count_of(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
