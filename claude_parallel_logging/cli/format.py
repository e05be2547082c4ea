"""Figures and text as every command prints them: times, counts, money, durations, cut text,
and the token columns every table shares."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..query import SessionSummary, UsageRow, short_ids
from ..query.access import TursoClient
from ..query.figures import fmt_cost, fmt_int, fmt_ms, fmt_pct, fmt_time
from .output import STATUS_STYLE, Cell, Column

__all__ = [
    "TOKEN_COLUMNS",
    "as_text",
    "clip",
    "count_of",
    "fmt_cost",
    "fmt_int",
    "fmt_ms",
    "fmt_pct",
    "fmt_time",
    "short_id_forms",
    "status_cell",
    "token_cells",
]


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
