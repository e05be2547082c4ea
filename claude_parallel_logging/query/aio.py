"""The read API for asyncio: each call runs its synchronous form in a worker thread, so the
event loop keeps running while the database is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .access import TursoClient
from .records import SearchHit, SessionDetail, SessionPage, SessionSummary, UsageRow
from .search import search_sessions
from .sessions import FIRST_PAGE, ITER_PAGE_SIZE, get_session, list_sessions
from .sql import Filter
from .times import TimeLike
from .usage import GroupBy, usage_summary


async def alist_sessions(
    limit: int = 50,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = FIRST_PAGE,
    *,
    client: TursoClient | None = None,
) -> SessionPage:
    """``list_sessions`` in a worker thread, so the event loop keeps running."""
    return await asyncio.to_thread(
        list_sessions, limit, agent_type, status, model, since, until, cursor, client=client
    )


async def aiter_sessions(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    page_size: int = ITER_PAGE_SIZE,
    client: TursoClient | None = None,
) -> AsyncIterator[SessionSummary]:
    """``iter_sessions`` for ``async for``: each page is read in a worker thread."""
    page = await alist_sessions(page_size, agent_type, status, model, since, until, client=client)
    for _ in range(100_000_000):
        for summary in page:
            yield summary
        if page.next_cursor is None:
            return
        page = await alist_sessions(page_size, cursor=page.next_cursor, client=client)


async def aget_session(
    session_id: str, *, client: TursoClient | None = None
) -> SessionDetail | None:
    """``get_session`` in a worker thread."""
    return await asyncio.to_thread(get_session, session_id, client=client)


async def asearch_sessions(
    query: str,
    limit: int = 20,
    *,
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    client: TursoClient | None = None,
) -> list[SearchHit]:
    """``search_sessions`` in a worker thread."""
    return await asyncio.to_thread(
        search_sessions,
        query,
        limit,
        agent_type=agent_type,
        status=status,
        model=model,
        since=since,
        until=until,
        client=client,
    )


async def ausage_summary(
    group_by: GroupBy | str = "agent_type",
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    *,
    agent_type: Filter = None,
    model: Filter = None,
    client: TursoClient | None = None,
) -> list[UsageRow]:
    """``usage_summary`` in a worker thread."""
    return await asyncio.to_thread(
        usage_summary, group_by, since, until, agent_type=agent_type, model=model, client=client
    )
