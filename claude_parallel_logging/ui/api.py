"""``/api/...``: JSON documents of the same shape as ``cpl sessions|show|search|stats --json``
(the builders in ``query.documents`` are shared)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from ..query import (
    get_session,
    list_sessions,
    search_document,
    search_sessions,
    session_document,
    sessions_document,
    stats_document,
    usage_summary,
)
from . import params
from .viewer import BadRequest, NotFound, Viewer


def sessions(viewer: Viewer, request: Request) -> Response:
    page = list_sessions(client=viewer.client, **params.list_arguments(request))
    return viewer.json(sessions_document(page))


def session(viewer: Viewer, request: Request) -> Response:
    session_id = request.path_params["session_id"]
    detail = get_session(session_id, client=viewer.client)
    if detail is None:
        raise NotFound(f"no session {session_id!r}")
    return viewer.json(session_document(detail))


def search(viewer: Viewer, request: Request) -> Response:
    text = request.query_params.get("q") or ""
    if not text.strip():
        raise BadRequest("q: search text must not be empty")
    hits = search_sessions(
        text,
        limit=params.integer(request, "limit", 20),
        **params.session_filters(request),
        client=viewer.client,
    )
    return viewer.json(search_document(text, hits))


def stats(viewer: Viewer, request: Request) -> Response:
    by = params.group_by(request)
    rows = usage_summary(
        by,
        since=params.time_text(request, "since") or None,
        until=params.time_text(request, "until") or None,
        client=viewer.client,
    )
    return viewer.json(stats_document(by, rows))


ROUTES: tuple[tuple[str, Callable[[Viewer, Request], Response]], ...] = (
    ("/api/sessions", sessions),
    ("/api/sessions/{session_id}", session),
    ("/api/search", search),
    ("/api/stats", stats),
)
