"""Usage figures per agent type, model or day: sessions, success rate, tokens, cost, tool error
rate and duration percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from . import rollup_answers
from .access import TursoClient, database_identity, reading
from .derived import disabled
from .records import ToolUsageRow, UsageRow
from .rollups import FiguresState, figures_state, rebuild_figures, with_figures
from .sql import NANO, RESULT_ROLE, Filter, filter_clauses, filter_values, prefetch
from .times import TimeLike, duration_ms, parse_time

# Building the rollups per call while they are incomplete (meanwhile the tables answer): a
# read holds a local file's lock, so loggers wait that long; ``cpl reindex`` builds in slices.
REFRESH_BUDGET_S = 0.5

GroupBy = Literal["agent_type", "model", "day"]
GROUP_BY_CHOICES: tuple[str, ...] = ("agent_type", "model", "day")


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, ``method='inclusive'``)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def usage_summary(
    group_by: GroupBy | str = "agent_type",
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
    use_index: bool = True,
) -> list[UsageRow]:
    """Per group (sorted by key): sessions, success rate, tokens, cost, tool error rate and
    p50/p95 tool duration. A day is the UTC date the session started.

    Answered from derived per-day figures in the user's cache directory (``rollups.py``, ``rollup_answers.py``; the
    same figures, percentiles included, as reading the tables, which ``use_index=False`` or
    ``CPL_DERIVED_INDEXES=off`` does)."""
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}, got {group_by!r}")
    if use_index and not disabled():
        start = None if since is None else parse_time(since)
        end = None if until is None else parse_time(until)
        with reading(client) as conn:
            if conn is None:
                return []
            rows: list[UsageRow] | None = with_figures(
                conn,
                database_identity(client),
                REFRESH_BUDGET_S,
                lambda f: rollup_answers.usage(
                    f, str(group_by), start, end, filter_values(agent_type), filter_values(model)
                ),
            )
        if rows is not None:
            return rows
    key = "substr(s.started_at, 1, 10)" if group_by == "day" else f"s.{group_by}"
    clauses, params = filter_clauses("s", agent_type, None, model, since, until)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

    # Token columns summed as stored; sessions that lack one take their messages' sum, in a
    # second query over those sessions only (a per-session subquery would run for every one).
    session_sql = (
        f"SELECT {key} AS k, COUNT(*),"
        " SUM(CASE WHEN s.status = 'completed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN s.status = 'error' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN s.status = 'running' THEN 1 ELSE 0 END),"
        " SUM(s.input_tokens), SUM(s.output_tokens),"
        " SUM(s.cache_read_tokens), SUM(s.cache_creation_tokens),"
        f" SUM(CAST(ROUND(s.cost_usd * {NANO}) AS INTEGER))"
        f" FROM sessions s {where} GROUP BY k ORDER BY k"
    )
    fill_where = " AND ".join(
        [
            *clauses,
            "(s.input_tokens IS NULL OR s.output_tokens IS NULL)",
            f"m.role <> '{RESULT_ROLE}'",
        ]
    )
    fill_sql = (
        f"SELECT {key} AS k,"
        " SUM(CASE WHEN s.input_tokens IS NULL THEN m.input_tokens END),"
        " SUM(CASE WHEN s.output_tokens IS NULL THEN m.output_tokens END)"
        f" FROM sessions s JOIN messages m ON m.session_id = s.id WHERE {fill_where} GROUP BY k"
    )
    # one pass over the tool index (session_id, status, duration_ms, tool_name): no tool text read
    tool_sql = (
        f"SELECT {key} AS k, t.status, t.duration_ms FROM sessions s"
        f" JOIN tool_executions t ON t.session_id = s.id {where}"
    )
    span_sql = (
        f"SELECT {key} AS k, s.started_at, s.ended_at, s.duration_ms FROM sessions s"
        f" WHERE {' AND '.join([*clauses, 's.ended_at IS NOT NULL'])}"
    )
    with reading(client) as conn:
        if conn is None:
            return []
        prefetch(conn, [(q, tuple(params)) for q in (session_sql, fill_sql, tool_sql, span_sql)])
        session_rows = conn.execute(session_sql, tuple(params)).fetchall()
        fills = {r[0]: r for r in conn.execute(fill_sql, tuple(params)).fetchall()}
        tool_rows: dict[Any, list[int]] = {}  # key -> [calls, running, errors]
        durations: dict[Any, list[float]] = {}
        cur = conn.execute(tool_sql, tuple(params))
        for _ in range(100_000_000):
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for k, status, ms in chunk:
                c = tool_rows.setdefault(k, [0, 0, 0])
                c[0] += 1
                c[1] += status == "running"
                c[2] += status == "error"
                if ms is not None:
                    durations.setdefault(k, []).append(float(ms))
        walls: dict[Any, list[float]] = {}
        agents: dict[Any, list[float]] = {}
        cur = conn.execute(span_sql, tuple(params))
        for _ in range(100_000_000):
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for k, started, ended, reported in chunk:
                wall = duration_ms(started, ended)
                if wall is not None:
                    walls.setdefault(k, []).append(float(wall))
                if reported is not None:
                    agents.setdefault(k, []).append(float(reported))
    out: list[UsageRow] = []
    for k, n, done, err, running, itok, otok, cread, ccreate, cost in session_rows:
        tools, tools_running, tool_err = tool_rows.get(k, (0, 0, 0))
        _, fill_in, fill_out = fills.get(k, (k, None, None))
        itok = None if itok is None and fill_in is None else int(itok or 0) + int(fill_in or 0)
        otok = None if otok is None and fill_out is None else int(otok or 0) + int(fill_out or 0)
        finished = int(n) - int(running or 0)
        tools_finished = int(tools) - int(tools_running or 0)
        ds = sorted(durations.get(k, []))
        out.append(
            UsageRow(
                group="<none>" if k is None else str(k),
                sessions=int(n),
                completed=int(done or 0),
                errors=int(err or 0),
                running=int(running or 0),
                success_rate=(int(done or 0) / finished) if finished else None,
                input_tokens=int(itok or 0),
                output_tokens=int(otok or 0),
                cache_read_tokens=int(cread or 0),
                cache_creation_tokens=int(ccreate or 0),
                cost_usd=int(cost or 0) / NANO,
                tool_calls=int(tools),
                tool_errors=int(tool_err or 0),
                tool_error_rate=(int(tool_err or 0) / tools_finished) if tools_finished else None,
                p50_tool_ms=_percentile(ds, 0.5),
                p95_tool_ms=_percentile(ds, 0.95),
                p50_wall_ms=_percentile(sorted(walls.get(k, [])), 0.5),
                p50_agent_ms=_percentile(sorted(agents.get(k, [])), 0.5),
            )
        )
    return out


def tool_usage(
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
    use_index: bool = True,
) -> list[ToolUsageRow]:
    """Per tool name (most called first): calls, errors, error rate and p50/p95 duration, over
    the tool executions of the sessions the filters select (as ``usage_summary`` selects them).
    Without agent type or model filters, answered from the derived figures (as
    ``usage_summary``)."""
    if use_index and not disabled() and agent_type is None and model is None:
        start = None if since is None else parse_time(since)
        end = None if until is None else parse_time(until)
        with reading(client) as conn:
            if conn is None:
                return []
            found: list[ToolUsageRow] | None = with_figures(
                conn, database_identity(client), REFRESH_BUDGET_S,
                lambda f: rollup_answers.tool_usage(f, start, end),
            )  # fmt: skip
        if found is not None:
            return found
    clauses, params = filter_clauses("s", agent_type, None, model, since, until)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        "SELECT t.tool_name, t.status, t.duration_ms FROM tool_executions t"
        f" JOIN sessions s ON s.id = t.session_id {where}"
    )
    counts: dict[str, list[int]] = {}  # name -> [calls, errors, running]
    durations: dict[str, list[float]] = {}
    with reading(client) as conn:
        if conn is None:
            return []
        cur = conn.execute(sql, tuple(params))
        for _ in range(100_000_000):
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for name, status, ms in chunk:
                c = counts.setdefault(str(name), [0, 0, 0])
                c[0] += 1
                c[1] += status == "error"
                c[2] += status == "running"
                if ms is not None:
                    durations.setdefault(str(name), []).append(float(ms))
    out: list[ToolUsageRow] = []
    for name, (calls, errors, running) in counts.items():
        finished = calls - running
        ds = sorted(durations.get(name, []))
        out.append(
            ToolUsageRow(
                tool_name=name,
                calls=calls,
                errors=errors,
                running=running,
                error_rate=errors / finished if finished else None,
                p50_ms=_percentile(ds, 0.5),
                p95_ms=_percentile(ds, 0.95),
            )
        )
    out.sort(key=lambda r: (-r.calls, r.tool_name))
    return out


def usage_rollups_state(client: TursoClient | None = None) -> FiguresState:
    """The derived usage rollups of the database (never created here), for ``cpl doctor``."""
    return figures_state(database_identity(client))


def rebuild_usage_rollups(
    client: TursoClient | None = None, progress: Callable[[int], None] | None = None
) -> FiguresState:
    """Build the usage rollups again from the tables (``cpl reindex``); ``progress`` gets the
    number of sessions done so far."""
    return rebuild_figures(
        lambda: reading(client, allow_remote=False), database_identity(client), progress
    )
