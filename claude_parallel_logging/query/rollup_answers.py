"""Answering ``usage_summary`` and ``tool_usage`` from the rollups (``rollups.py`` keeps them):
the cells of a period's whole days, the per-session rows around them (partial days, starts that
are not canonical text), and exact percentiles found bucket by bucket."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from .records import ToolUsageRow, UsageRow
from .rollups import (
    AGENT_HIST,
    C_COLS,
    MIDNIGHT,
    TOOL_HIST,
    TOOL_NAME_HIST,
    WALL_HIST,
    Figures,
    FiguresUnavailable,
    blocks,
    day_after,
    full_days,
)
from .sql import NANO


def usage(
    fig: Figures,
    group_by: str,
    since: str | None,
    until: str | None,
    agent_types: Sequence[str],
    models: Sequence[str],
) -> list[UsageRow]:
    """``usage_summary``'s rows, from the cells and the sessions around them."""
    period = _Period(since, until)
    filters, fparams = _filters(agent_types, models)
    c_key = {"agent_type": "agent_type", "model": "model", "day": "day"}[group_by]
    sums: dict[Any, list[int]] = {}
    hists: dict[int, dict[Any, dict[int, int]]] = {TOOL_HIST: {}, WALL_HIST: {}, AGENT_HIST: {}}
    loose_keys: set[Any] = set()
    span: tuple[str, str] | None = None
    if period.days is not None:
        where, params = period.cells_where(filters, fparams)
        for row in fig.db.execute(
            f"SELECT {c_key}, {', '.join(f'SUM({c})' for c in C_COLS)} FROM c"
            f" WHERE {where} GROUP BY {c_key}",
            params,
        ):
            _add(sums, row[0], row[1:])
        span = _span(fig, period.days)
        if span is not None and group_by != "day":  # per day: cached below
            h_key = "g1" if group_by == "agent_type" else "g2"
            for kind, k, bk, n in _hist(fig, (TOOL_HIST, WALL_HIST, AGENT_HIST), h_key,
                                             blocks(*span), filters, fparams):  # fmt: skip
                _hist_add(hists[kind], k, bk, n)
    s_key = f"s.{c_key}"
    for part, pparams in period.loose_parts():
        where = " AND ".join(
            [part, *(["s." + f for f in filters.split(" AND ")] if filters else [])]
        )
        params = (*pparams, *fparams)
        for row in fig.db.execute(
            f"SELECT {s_key}, COUNT(*), SUM(s.status = 'completed'), SUM(s.status = 'error'),"
            " SUM(s.status = 'running'), SUM(s.itok), SUM(s.otok), SUM(s.cread),"
            " SUM(s.ccreate), SUM(s.cost_nano), 0, 0, 0"
            f" FROM sm s WHERE {where} GROUP BY {s_key}",
            params,
        ):
            _add(sums, row[0], row[1:])
            loose_keys.add(row[0])
        # tool executions carry their session's columns: no join (the planner would scan tm)
        t_where, t_key = where.replace("s.", "t."), f"t.{c_key}"
        for row in fig.db.execute(
            f"SELECT {t_key}, COUNT(*), SUM(t.status = 'running'), SUM(t.status = 'error')"
            f" FROM tm t WHERE {t_where} GROUP BY {t_key}",
            params,
        ):
            _add(sums, row[0], (0,) * 9 + tuple(row[1:]))
        for kind, sql in (
            (TOOL_HIST, f"SELECT {t_key}, t.bucket, COUNT(*) FROM tm t WHERE {t_where}"
                        f" AND t.bucket IS NOT NULL GROUP BY {t_key}, t.bucket"),
            (WALL_HIST, f"SELECT {s_key}, s.wall_b, COUNT(*) FROM sm s WHERE {where}"
                        f" AND s.wall_b IS NOT NULL GROUP BY {s_key}, s.wall_b"),
            (AGENT_HIST, f"SELECT {s_key}, s.agent_b, COUNT(*) FROM sm s WHERE {where}"
                         f" AND s.agent_b IS NOT NULL GROUP BY {s_key}, s.agent_b"),
        ):  # fmt: skip
            for k, bk, n in fig.db.execute(sql, params):
                _hist_add(hists[kind], k, int(bk), int(n))
    in_period, pp = period.session_where(filters, fparams)
    in_period = in_period.replace("s.", "")  # tm and sm both carry the session's columns
    sources = {TOOL_HIST: ("duration", "tm", "bucket"), WALL_HIST: ("wall", "sm", "wall_b"),
               AGENT_HIST: ("agent", "sm", "agent_b")}  # fmt: skip
    out: list[UsageRow] = []
    for k in sorted((k for k, v in sums.items() if v[0]), key=_sort_key):
        n, done, err, running, itok, otok, cread, ccreate, cost, tools, t_run, t_err = sums[k]
        finished = n - running
        tools_finished = tools - t_run

        def pick(kind: int, q: float, k: Any = k) -> float | None:
            col, table, bucket_col = sources[kind]
            sql = (f"SELECT {col} FROM {table} WHERE {c_key} = ? AND {bucket_col} = ?"
                   f" AND {in_period}")  # fmt: skip
            return _percentile(
                hists[kind].get(k, {}), q,
                lambda b: [float(v) for (v,) in fig.db.execute(sql, (k, b, *pp))],
            )  # fmt: skip

        whole_day = (group_by == "day" and span is not None and isinstance(k, str)
                     and span[0] <= k <= span[1])  # fmt: skip
        if whole_day and k not in loose_keys:
            p50_tool, p95_tool, p50_wall, p50_agent = _day_percentiles(
                fig, k, filters, fparams, agent_types, models
            )
        else:
            if whole_day:  # a day with sessions outside the cells too: its counts, merged
                for kind, _, bk, count in _hist(fig,
                    (TOOL_HIST, WALL_HIST, AGENT_HIST), "''", [(0, _ordinal(k))], filters,
                    fparams,
                ):  # fmt: skip
                    _hist_add(hists[kind], k, bk, count)
            p50_tool, p95_tool = pick(TOOL_HIST, 0.5), pick(TOOL_HIST, 0.95)
            p50_wall, p50_agent = pick(WALL_HIST, 0.5), pick(AGENT_HIST, 0.5)

        out.append(
            UsageRow(
                group="<none>" if k is None else str(k),
                sessions=n,
                completed=done,
                errors=err,
                running=running,
                success_rate=(done / finished) if finished else None,
                input_tokens=itok,
                output_tokens=otok,
                cache_read_tokens=cread,
                cache_creation_tokens=ccreate,
                cost_usd=cost / NANO,
                tool_calls=tools,
                tool_errors=t_err,
                tool_error_rate=(t_err / tools_finished) if tools_finished else None,
                p50_tool_ms=p50_tool,
                p95_tool_ms=p95_tool,
                p50_wall_ms=p50_wall,
                p50_agent_ms=p50_agent,
            )
        )
    return out


def _span(fig: Figures, days: tuple[str | None, str | None]) -> tuple[str, str] | None:
    """The whole days of a period, an open end closed at the first/last day with cells."""
    first, last = days
    if first is None or last is None:
        lo, hi = fig.db.execute("SELECT MIN(day), MAX(day) FROM c").fetchone()
        if lo is None:
            return None
        first = first if first is not None else str(lo)
        last = last if last is not None else str(hi)
    return (first, last) if first <= last else None


def _hist(
    fig: Figures,
    kinds: Sequence[int],
    key: str,
    legs: Sequence[tuple[int, int]],
    filters: str,
    fparams: Sequence[Any],
) -> list[tuple[int, Any, int, int]]:
    """(kind, key, bucket, count) merged over the blocks ``legs``."""
    h_filters = filters.replace("agent_type", "g1").replace("model", "g2")
    extra = f" AND {h_filters}" if h_filters else ""
    kinds_sql = ", ".join(str(int(k)) for k in kinds)
    union = " UNION ALL ".join(
        f"SELECT kind, {key} AS k, bucket, n FROM h WHERE kind IN ({kinds_sql})"
        f" AND level = ? AND blk = ?{extra}"
        for _ in legs
    )
    params = [v for level, blk in legs for v in (level, blk, *fparams)]
    return [
        (int(kind), k, int(b), int(n))
        for kind, k, b, n in fig.db.execute(
            f"SELECT kind, k, bucket, SUM(n) FROM ({union}) GROUP BY kind, k, bucket", params
        )
    ]


def _day_percentiles(
    fig: Figures,
    day: str,
    filters: str,
    fparams: Sequence[Any],
    agent_types: Sequence[str],
    models: Sequence[str],
) -> tuple[float | None, ...]:
    """p50/p95 tool, p50 wall and agent time of one whole day's sessions in the cells,
    kept until that day changes."""
    key = json.dumps([sorted(set(agent_types)), sorted(set(models))])
    row = fig.db.execute(
        "SELECT p50_tool, p95_tool, p50_wall, p50_agent FROM pc WHERE day = ? AND filters = ?",
        (day, key),
    ).fetchone()
    if row is not None:
        return tuple(row)
    hists: dict[int, dict[int, int]] = {TOOL_HIST: {}, WALL_HIST: {}, AGENT_HIST: {}}
    for kind, _, b, n in _hist(fig, (TOOL_HIST, WALL_HIST, AGENT_HIST), "''",
                                    [(0, _ordinal(day))], filters, fparams):  # fmt: skip
        hists[kind][b] = hists[kind].get(b, 0) + n
    extra = f" AND {filters}" if filters else ""

    def pick(kind: int, q: float) -> float | None:
        col, table, bucket_col = {TOOL_HIST: ("duration", "tm", "bucket"),
                                  WALL_HIST: ("wall", "sm", "wall_b"),
                                  AGENT_HIST: ("agent", "sm", "agent_b")}[kind]  # fmt: skip
        sql = (f"SELECT {col} FROM {table} WHERE day = ? AND {bucket_col} = ?"
               f" AND canon = 1{extra}")  # fmt: skip
        return _percentile(
            hists[kind], q,
            lambda b: [float(v) for (v,) in fig.db.execute(sql, (day, b, *fparams))],
        )  # fmt: skip

    found = (pick(TOOL_HIST, 0.5), pick(TOOL_HIST, 0.95), pick(WALL_HIST, 0.5),
             pick(AGENT_HIST, 0.5))  # fmt: skip
    try:
        with fig.transaction():
            fig.db.execute(
                "INSERT OR REPLACE INTO pc (day, filters, p50_tool, p95_tool, p50_wall,"
                " p50_agent) VALUES (?, ?, ?, ?, ?, ?)",
                (day, key, *found),
            )
    except sqlite3.OperationalError:  # busy: the next read stores it
        pass
    return found


def tool_usage(fig: Figures, since: str | None, until: str | None) -> list[ToolUsageRow]:
    """``tool_usage``'s rows (no agent type or model filter)."""
    period = _Period(since, until)
    counts: dict[Any, list[int]] = {}
    hist: dict[Any, dict[int, int]] = {}
    if period.days is not None:
        where, params = period.cells_where("", ())
        for name, calls, errors, running in fig.db.execute(
            f"SELECT tool_name, SUM(calls), SUM(errors), SUM(running) FROM tc WHERE {where}"
            " GROUP BY tool_name",
            params,
        ):
            _add(counts, name, (calls, errors, running))
        span = _span(fig, period.days)
        if span is not None:
            for _, name, b, n in _hist(fig, (TOOL_NAME_HIST,), "g1", blocks(*span), "", ()):
                _hist_add(hist, name, b, n)
    for part, pparams in period.loose_parts():
        t_part = part.replace("s.", "t.")
        for name, calls, errors, running in fig.db.execute(
            "SELECT t.tool_name, COUNT(*), SUM(t.status = 'error'), SUM(t.status = 'running')"
            f" FROM tm t WHERE {t_part} GROUP BY t.tool_name",
            pparams,
        ):
            _add(counts, name, (calls, errors, running))
        for name, b, n in fig.db.execute(
            "SELECT t.tool_name, t.bucket, COUNT(*) FROM tm t"
            f" WHERE {t_part} AND t.bucket IS NOT NULL GROUP BY t.tool_name, t.bucket",
            pparams,
        ):
            _hist_add(hist, name, int(b), int(n))
    in_period, pp = period.session_where("", ())
    in_period = in_period.replace("s.", "")
    out: list[ToolUsageRow] = []
    for name, (calls, errors, running) in counts.items():
        if not calls:
            continue

        def values(b: int, name: Any = name) -> list[float]:
            return [float(v) for (v,) in fig.db.execute(
                "SELECT duration FROM tm WHERE tool_name = ? AND bucket = ?"
                f" AND {in_period}", (name, b, *pp))]  # fmt: skip

        finished = calls - running
        out.append(
            ToolUsageRow(
                tool_name=str(name),
                calls=calls,
                errors=errors,
                running=running,
                error_rate=errors / finished if finished else None,
                p50_ms=_percentile(hist.get(name, {}), 0.5, values),
                p95_ms=_percentile(hist.get(name, {}), 0.95, values),
            )
        )
    out.sort(key=lambda r: (-r.calls, r.tool_name))
    return out


class _Period:
    """``[since, until)`` split into whole days (answered by the cells) and the rest."""

    def __init__(self, since: str | None, until: str | None) -> None:
        self.since, self.until = since, until
        self.days = full_days(since, until)

    def cells_where(self, filters: str, fparams: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        assert self.days is not None
        clauses, params = ["1"], []
        if self.days[0] is not None:
            clauses.append("day >= ?")
            params.append(self.days[0])
        if self.days[1] is not None:
            clauses.append("day <= ?")
            params.append(self.days[1])
        if filters:
            clauses.append(filters)
        return " AND ".join(clauses), (*params, *fparams)

    def session_where(self, filters: str, fparams: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """The whole period, on ``sm s``."""
        clauses, params = ["1"], []
        if self.since is not None:
            clauses.append("s.started_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("s.started_at < ?")
            params.append(self.until)
        if filters:
            clauses.extend("s." + f for f in filters.split(" AND "))
        return " AND ".join(clauses), (*params, *fparams)

    def loose_parts(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Conditions on ``sm s`` (disjoint) for the sessions of the period the cells miss."""
        if self.days is None:
            where, params = self.session_where("", ())
            return [(where, params)]
        d1, d2 = self.days
        lo = None if d1 is None else d1 + MIDNIGHT
        hi = None if d2 is None else day_after(d2) + MIDNIGHT
        parts: list[tuple[str, tuple[Any, ...]]] = []
        if self.since is not None and lo is not None and self.since < lo:
            parts.append(("s.started_at >= ? AND s.started_at < ?", (self.since, lo)))
        if self.until is not None and hi is not None and hi < self.until:
            parts.append(("s.started_at >= ? AND s.started_at < ?", (hi, self.until)))
        middle: list[str] = ["s.canon = 0"]
        bounds: list[Any] = []
        if lo is not None:
            middle.append("s.started_at >= ?")
            bounds.append(lo)
        if hi is not None:
            middle.append("s.started_at < ?")
            bounds.append(hi)
        parts.append((" AND ".join(middle), tuple(bounds)))
        return parts


def _ordinal(day: str) -> int:
    return date.fromisoformat(day).toordinal()


def _filters(agent_types: Sequence[str], models: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    for col, vals in (("agent_type", agent_types), ("model", models)):
        if vals:
            clauses.append(f"{col} IN ({', '.join('?' for _ in vals)})")
            params.extend(vals)
    return " AND ".join(clauses), tuple(params)


def _add(sums: dict[Any, list[int]], key: Any, values: Sequence[Any]) -> None:
    acc = sums.setdefault(key, [0] * len(values))
    for i, v in enumerate(values):
        acc[i] += int(v or 0)


def _hist_add(hists: dict[Any, dict[int, int]], key: Any, b: int, n: int) -> None:
    h = hists.setdefault(key, {})
    h[b] = h.get(b, 0) + n


def _sort_key(k: Any) -> tuple[int, Any]:
    return (0, "") if k is None else (1, k)


def _percentile(
    hist: dict[int, int], q: float, values: Callable[[int], list[float]]
) -> float | None:
    """The exact percentile (linear interpolation between closest ranks, as the table query
    computes it): the merged counts find the buckets of the two ranks, their exact values are
    read."""
    total = sum(hist.values())
    if total <= 0:
        return None
    pos = (total - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, total - 1)
    cache: dict[int, list[float]] = {}

    def at(rank: int) -> float:
        before = 0
        for b in sorted(hist):
            n = hist[b]
            if rank < before + n:
                if b not in cache:
                    cache[b] = sorted(values(b))
                    if len(cache[b]) != n:
                        raise FiguresUnavailable(f"bucket {b}: {len(cache[b])} values, {n} counted")
                return cache[b][rank - before]
            before += n
        raise FiguresUnavailable("rank beyond the counts")

    a, b = at(lo), at(hi)
    return float(a + (b - a) * (pos - lo))
