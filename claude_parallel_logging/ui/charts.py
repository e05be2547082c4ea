"""The ``/stats`` charts as geometry for inline SVG, computed on the server from the read API's
usage figures: the templates only draw rectangles and circles (no script, no library)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..query import ToolUsageRow, UsageRow
from ..query.figures import fmt_cost, fmt_int, fmt_ms, fmt_pct

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
)  # fmt: skip
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760.0, 220.0, 64.0, 36.0, 10.0


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str
    series: str = ""


@dataclass
class Chart:
    """A chart's shapes: ``groups`` (one per day or tool, each with its rects), axis ticks,
    dots (a rate drawn over bars) and the legend."""

    name: str
    title: str
    groups: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    dots: list[dict[str, Any]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    width: float = WIDTH
    height: float = HEIGHT


def _ticks(top: float, fmt: Callable[[float], str]) -> list[tuple[float, str]]:
    plot = HEIGHT - BOTTOM - TOP
    return [(HEIGHT - BOTTOM - plot * f, fmt(top * f)) for f in (0.0, 0.5, 1.0)]


def stacked_per_day(
    name: str,
    title: str,
    days: Sequence[str],
    series: dict[str, dict[str, float]],
    fmt: Callable[[float], str],
) -> Chart:
    """One column per day, stacked by series (``{series: {day: value}}``)."""
    totals = [sum(s.get(d, 0.0) for s in series.values()) for d in days]
    top = max(totals, default=0.0) or 1.0
    plot = HEIGHT - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(len(days), 1)
    bar = max(2.0, step * 0.7)
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(series)}
    chart = Chart(name, title, ticks=_ticks(top, fmt), legend=list(colors.items()))
    for i, day in enumerate(days):
        x = LEFT + i * step + (step - bar) / 2
        y = HEIGHT - BOTTOM
        rects = []
        for key, values in series.items():
            v = values.get(day, 0.0)
            if v <= 0:
                continue
            h = v / top * plot
            y -= h
            rects.append(Rect(x, y, bar, h, colors[key], f"{day} · {key}: {fmt(v)}", key))
        chart.groups.append(
            {
                "label": day,
                "short": day[5:],
                "x": x + bar / 2,
                "rects": rects,
                "total": fmt(totals[i]),
            }
        )
    return chart


def sessions_per_day(rows: Sequence[UsageRow]) -> Chart:
    """Sessions per day as columns (completed / error / running stacked), the success rate of
    finished sessions as a dot per day on a 0-100 % scale."""
    days = [r.group for r in rows]
    series = {
        "completed": {r.group: float(r.completed) for r in rows},
        "error": {r.group: float(r.errors) for r in rows},
        "running": {r.group: float(r.running) for r in rows},
    }
    chart = stacked_per_day(
        "sessions", "Sessions and success rate per day", days, series, lambda v: f"{v:,.0f}"
    )
    chart.legend = [("completed", "#59a14f"), ("error", "#e15759"), ("running", "#4e79a7")]
    colors = dict(chart.legend)
    for g in chart.groups:
        for r in g["rects"]:
            r.color = colors[r.series]
    plot = HEIGHT - BOTTOM - TOP
    for g, r in zip(chart.groups, rows):
        if r.success_rate is not None:
            chart.dots.append(
                {
                    "x": g["x"],
                    "y": HEIGHT - BOTTOM - r.success_rate * plot,
                    "title": f"{r.group} · success {fmt_pct(r.success_rate)}",
                }
            )
    return chart


def per_tool(rows: Sequence[ToolUsageRow]) -> Chart:
    """One row per tool: the error rate as a bar (0-100 %), p50 and p95 durations as marks on
    a shared duration scale."""
    chart = Chart("tools", "Tools: error rate, p50 and p95 duration")
    row_h = 26.0
    chart.height = TOP + row_h * max(len(rows), 1) + 24
    half = (WIDTH - 160) / 2
    slowest = max((r.p95_ms or 0.0 for r in rows), default=0.0) or 1.0
    for i, r in enumerate(rows):
        y = TOP + i * row_h
        rate = r.error_rate or 0.0
        rects = [Rect(150, y + 4, max(1.0, rate * (half - 20)), row_h - 10, "#e15759",
                      f"{r.tool_name}: {fmt_pct(r.error_rate)} errors ({r.errors} of {r.calls})")]  # fmt: skip
        marks = []
        for label, value, color in (("p50", r.p50_ms, "#4e79a7"), ("p95", r.p95_ms, "#f28e2b")):
            if value is not None:
                marks.append(
                    {
                        "x": 150 + half + value / slowest * (half - 20),
                        "y": y + row_h / 2,
                        "color": color,
                        "title": f"{r.tool_name} {label}: {fmt_ms(value)}",
                    }
                )
        chart.groups.append(
            {"label": r.tool_name, "y": y + row_h / 2, "rects": rects, "marks": marks,
             "calls": fmt_int(r.calls), "rate": fmt_pct(r.error_rate),
             "p50": fmt_ms(r.p50_ms), "p95": fmt_ms(r.p95_ms)}
        )  # fmt: skip
    chart.legend = [("error rate", "#e15759"), ("p50", "#4e79a7"), ("p95", "#f28e2b")]
    chart.ticks = [(150 + half, "0 ms"), (150 + 2 * half - 20, fmt_ms(slowest))]
    return chart


def money(v: float) -> str:
    return fmt_cost(v)


def tokens(v: float) -> str:
    return fmt_int(round(v))
