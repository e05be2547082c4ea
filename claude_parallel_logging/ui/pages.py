"""The HTML pages: sessions, one session (with its live updates and transcript pages), the
parallel timeline, usage charts and search."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ..query import (
    SearchHit,
    SessionSummary,
    UsageRow,
    costliest_sessions,
    decode_cursor,
    get_session,
    iter_sessions,
    list_sessions,
    parse_time,
    search_sessions,
    short_ids,
    tool_usage,
    usage_summary,
)
from . import charts, params
from .export import export_html
from .viewer import BadRequest, NotFound, Viewer
from .views import (
    TRANSCRIPT_PAGE,
    entries_page,
    epoch_ms,
    fingerprint,
    now_ms,
    session_context,
    swimlanes,
)

TIMELINE_MAX = 400  # lanes drawn at most
DEFAULT_STATS_SINCE = "30d"


def sessions(viewer: Viewer, request: Request) -> Response:
    args = params.list_arguments(request)
    page = list_sessions(client=viewer.client, **args)
    shown = {k: request.query_params.get(k, "") for k in
             ("agent_type", "status", "model", "since", "until", "min_cost", "cursor")}  # fmt: skip
    shown["meta"] = ", ".join(request.query_params.getlist("meta"))
    shown["limit"] = str(args["limit"])
    if args["cursor"]:
        kept = decode_cursor(args["cursor"])[2]
        if kept is not None:  # the cursor's filters are the page's filters
            for name in ("agent_type", "status", "model"):
                shown[name] = ",".join(getattr(kept, name))
            shown["since"], shown["until"] = kept.since or "", kept.until or ""
            shown["meta"] = ", ".join(f"{k}={v}" for k, v in kept.metadata)
            shown["min_cost"] = "" if kept.min_cost is None else f"{kept.min_cost:g}"
    api = [(k, v) for k, v in request.query_params.multi_items()]
    first = [(k, v) for k, v in api if k != "cursor"]
    return viewer.page(
        "sessions.html",
        page="sessions",
        sessions=list(page),
        short=short_ids([s.id for s in page], client=viewer.client),
        next_cursor=page.next_cursor,
        f=shown,
        api_params=api,
        first_page=first,
    )


def _detail(viewer: Viewer, request: Request) -> Any:
    session_id = request.path_params["session_id"]
    detail = get_session(session_id, client=viewer.client)
    if detail is None:
        raise NotFound(f"no session {session_id!r} (looked up by id, SDK session id and prefix)")
    return detail


def session(viewer: Viewer, request: Request) -> Response:
    detail = _detail(viewer, request)
    fmt = params.text(request, "format")
    if fmt not in ("", "html"):
        raise BadRequest(f"format: only html is offered here, got {fmt!r} (JSON: /api/sessions/ID)")
    if fmt == "html":
        name = f"session-{detail.session.id[:12]}.html"
        return Response(
            viewer.scrub(export_html(detail, viewer.env)),
            media_type="text/html; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{quote(name)}"'},
        )
    return viewer.page("session.html", page="session", **session_context(detail))


def session_live(viewer: Viewer, request: Request) -> Response:
    """204 while nothing changed since ``fp``; else the session's main part, re-rendered with
    at least ``shown`` transcript entries (the ones the reader already loaded)."""
    detail = _detail(viewer, request)
    fp = fingerprint(detail)
    if params.text(request, "fp") == fp:
        return Response(status_code=204)
    shown = params.integer(request, "shown", TRANSCRIPT_PAGE, lo=1, hi=10_000_000)
    context = session_context(detail, max(shown, TRANSCRIPT_PAGE))
    response = viewer.fragment("_session_main.html", **context)
    response.headers["x-fingerprint"] = fp
    response.headers["x-status"] = detail.session.status
    return response


def session_entries(viewer: Viewer, request: Request) -> Response:
    detail = _detail(viewer, request)
    offset = params.integer(request, "offset", 0, lo=0, hi=10_000_000)
    return viewer.fragment("_entries.html", **entries_page(detail, offset))


def _iso(ms: float) -> str:
    return parse_time(datetime.fromtimestamp(ms / 1000, timezone.utc))


def _drawn_end(s: SessionSummary) -> float:
    """Where a session's bar ends by default: its end; for one still running, now if it
    started in the last hour, else its start (one left "running" by a crashed process must
    not stretch the axis to today)."""
    end = epoch_ms(s.ended_at)
    if end is not None:
        return end
    start = epoch_ms(s.started_at) or 0.0
    return now_ms() if start > now_ms() - 3600_000 else start


def timeline(viewer: Viewer, request: Request) -> Response:
    since, until = params.time_text(request, "since"), params.time_text(request, "until")
    if since:
        found = []
        for s in iter_sessions(since=since, until=until or None, client=viewer.client):
            found.append(s)
            if len(found) >= TIMELINE_MAX:
                break
    else:  # the newest sessions
        found = list(list_sessions(100, until=until or None, client=viewer.client))
    capped = len(found) >= TIMELINE_MAX
    lo = epoch_ms(parse_time(since)) if since else None
    if lo is None:
        lo = min((epoch_ms(s.started_at) or 0.0 for s in found), default=now_ms() - 3600_000)
    hi = epoch_ms(parse_time(until)) if until else None
    if hi is None:
        ends = [_drawn_end(s) for s in found]
        hi = max([*ends, lo + 1000.0])
    lanes = swimlanes(found, lo, hi)
    ticks = [
        {"x": lanes["width"] * i / 5, "label": _iso(lo + (hi - lo) * i / 5)[5:19].replace("T", " ")}
        for i in range(6)
    ]
    return viewer.page(
        "timeline.html",
        page="timeline",
        lanes=lanes,
        ticks=ticks,
        since_text=since,
        until_text=until,
        lo_text=_iso(lo),
        hi_text=_iso(hi),
        capped=capped,
    )


def _total(rows: list[UsageRow]) -> dict[str, Any]:
    """The period's totals, added up from the rows per day."""
    n = sum(r.sessions for r in rows)
    done = sum(r.completed for r in rows)
    finished = n - sum(r.running for r in rows)
    calls = sum(r.tool_calls for r in rows)
    errs = sum(r.tool_errors for r in rows)
    return {
        "sessions": n,
        "success_rate": done / finished if finished else None,
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost_usd": round(sum(round(r.cost_usd * 1e9) for r in rows) / 1e9, 9),
        "tool_calls": calls,
        "tool_error_rate": errs / calls if calls else None,
    }


def stats(viewer: Viewer, request: Request) -> Response:
    since = params.time_text(request, "since") or DEFAULT_STATS_SINCE
    until = params.time_text(request, "until") or None
    by = params.text(request, "by") or "agent_type"
    if by not in ("agent_type", "model"):
        raise BadRequest(f"by: agent_type or model, got {by!r}")
    c = viewer.client
    days = usage_summary("day", since, until, client=c)
    groups = [r.group for r in usage_summary(by, since, until, client=c)]
    cost: dict[str, dict[str, float]] = {}
    tokens: dict[str, dict[str, float]] = {}
    for g in groups:
        for r in usage_summary("day", since, until, **{by: g}, client=c):  # type: ignore[arg-type]
            cost.setdefault(g, {})[r.group] = r.cost_usd
            tokens.setdefault(g, {})[r.group] = float(r.input_tokens + r.output_tokens)
    day_names = [r.group for r in days]
    tool_rows = tool_usage(since, until, client=c)
    return viewer.page(
        "stats.html",
        page="stats",
        since_text=since,
        until_text=until or "",
        by=by,
        total=_total(days),
        cost=charts.stacked_per_day("cost", f"Cost per day by {by}", day_names, cost, charts.money),
        tokens=charts.stacked_per_day(
            "tokens", f"Tokens (in + out) per day by {by}", day_names, tokens, charts.tokens
        ),
        sessions=charts.sessions_per_day(days),
        tools=charts.per_tool(tool_rows),
        tool_rows=tool_rows,
        top=costliest_sessions(10, since, until, client=c),
    )


WHERE_LABELS = {
    "message.content": "message",
    "message.tool_input": "tool input (message)",
    "message.tool_output": "tool output (message)",
    "tool.input": "tool input",
    "tool.output": "tool output",
    "tool.error": "tool error",
    "session.error_message": "session error",
}


def _hit_view(hit: SearchHit, text: str) -> dict[str, Any]:
    where = WHERE_LABELS.get(hit.where, hit.where)
    if hit.sequence is not None:
        where += f" #{hit.sequence}"
    if hit.tool_name:
        where += f" ({hit.tool_name})"
    href = f"/sessions/{quote(hit.session.id)}?find={quote(text)}"
    if hit.sequence is not None:
        href += f"#m-{hit.sequence}"
    return {"session": hit.session, "snippet": hit.snippet, "where_label": where, "href": href}


def search(viewer: Viewer, request: Request) -> Response:
    text = request.query_params.get("q") or ""
    hits = []
    if text.strip():
        found = search_sessions(
            text, limit=params.integer(request, "limit", 50), **params.session_filters(request),
            client=viewer.client,
        )  # fmt: skip
        hits = [_hit_view(h, text) for h in found]
    return viewer.page("search.html", page="search", search_text=text, hits=hits)


ROUTES: tuple[tuple[str, Callable[[Viewer, Request], Response]], ...] = (
    ("/", sessions),
    ("/sessions/{session_id}", session),
    ("/sessions/{session_id}/live", session_live),
    ("/sessions/{session_id}/entries", session_entries),
    ("/timeline", timeline),
    ("/stats", stats),
    ("/search", search),
)
