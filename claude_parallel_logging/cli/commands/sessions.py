"""list sessions, newest first"""

from __future__ import annotations

import argparse

from ...query import check_list_arguments, check_readable, list_sessions, sessions_document
from ..base import EXIT_OK, UsageError
from ..database import resolve_client
from ..format import (
    TOKEN_COLUMNS,
    fmt_cost,
    fmt_int,
    fmt_ms,
    fmt_time,
    short_id_forms,
    status_cell,
    token_cells,
)
from ..options import add_filter_options, cursor_value, positive_int
from ..output import Column, Output


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_filter_options(p)
    p.add_argument("--limit", type=positive_int, default=50, help="page size (default 50)")
    p.add_argument("--cursor", type=cursor_value,
                   help="the next page of the listing that printed this cursor (it keeps that"
                        " listing's filters: give it alone or with the same filters)")  # fmt: skip


def handle(args: argparse.Namespace, out: Output) -> int:
    try:  # a cursor given with other filters than its own: bad usage, before any reading
        check_list_arguments(
            args.agent_type, args.status, args.model, args.since, args.until, args.cursor
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    client = resolve_client(args)
    check_readable(client)
    page = list_sessions(
        limit=args.limit,
        agent_type=args.agent_type,
        status=args.status,
        model=args.model,
        since=args.since,
        until=args.until,
        cursor=args.cursor or "",  # "": the first page (None would mean past the last one)
        client=client,
    )
    if args.json:
        out.json(sessions_document(page))
        return EXIT_OK
    if not page:
        out.line("No sessions found.")
        return EXIT_OK
    columns = [
        Column("ID", keep=True),
        Column("STARTED (UTC)", keep=True),
        Column("AGENT", shrink=6),
        Column("MODEL", shrink=6, last=True),
        Column("STATUS", keep=True),
        Column("MSGS", right=True, drop=9),
        Column("TOOLS", right=True, drop=8),
        *TOKEN_COLUMNS,
        Column("COST", right=True, drop=1),
        Column("WALL TIME", right=True, drop=5),
        Column("AGENT TIME", right=True, drop=6),
    ]
    rows = [
        [
            s.id,
            fmt_time(s.started_at),
            s.agent_type,
            s.model,
            status_cell(s.status),
            fmt_int(s.message_count),
            f"{s.tool_count} ({s.tool_error_count} err)"
            if s.tool_error_count
            else str(s.tool_count),
            *token_cells(s),
            fmt_cost(s.cost_usd),
            fmt_ms(s.wall_duration_ms),
            fmt_ms(s.agent_duration_ms),
        ]
        for s in page
    ]
    out.table(columns, rows, {0: short_id_forms([s.id for s in page], client)})
    if page.next_cursor:
        out.line()
        out.line(f"More sessions: add --cursor {page.next_cursor}", style="dim")  # or alone
    return EXIT_OK
