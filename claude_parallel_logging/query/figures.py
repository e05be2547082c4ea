"""Figures as people read them, the same in the terminal (``cpl``) and the browser viewer:
times, counts, money, percentages, durations."""

from __future__ import annotations


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


def fmt_tokens(input_tokens: int | None, output_tokens: int | None) -> str | None:
    """A row's token pair, ``100 in / 20 out``; ``None`` when it has neither. An output count
    that is not final yet (streamed, ``None``) reads ``out: n/a (partial)``, never as a figure."""
    if input_tokens is None and output_tokens is None:
        return None
    if output_tokens is None:
        return f"{fmt_int(input_tokens)} in / out: n/a (partial)"
    return f"{fmt_int(input_tokens)} in / {fmt_int(output_tokens)} out"
