"""find sessions containing a text"""

from __future__ import annotations

import argparse

from ...query import check_readable, search_document, search_sessions
from ..base import EXIT_OK
from ..database import resolve_client
from ..format import fmt_time, short_id_forms, status_cell
from ..options import add_filter_options, positive_int, search_text
from ..output import Cell, Column, Output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", metavar="TEXT", type=search_text,
                   help="literal, case-insensitive text")  # fmt: skip
    add_filter_options(p)
    p.add_argument("--limit", type=positive_int, default=20, help="at most this many sessions")


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    check_readable(client)
    hits = search_sessions(
        args.text,
        limit=args.limit,
        agent_type=args.agent_type,
        status=args.status,
        model=args.model,
        since=args.since,
        until=args.until,
        client=client,
    )
    if args.json:
        out.json(search_document(args.text, hits))
        return EXIT_OK
    if not hits:
        out.line(f"No sessions match {args.text!r}.")
        return EXIT_OK
    columns = [
        Column("SESSION", keep=True),
        Column("STARTED (UTC)", keep=True, drop=3),
        Column("AGENT", shrink=6, drop=2),
        Column("STATUS", keep=True, drop=1),
        Column("WHERE", shrink=8),
        Column("SNIPPET", shrink=24),
    ]
    rows: list[list[Cell]] = []
    for h in hits:
        where = h.where
        if h.sequence is not None:
            where += f" #{h.sequence}"
        if h.tool_name:
            where += f" ({h.tool_name})"
        rows.append(
            [
                h.session.id,
                fmt_time(h.session.started_at),
                h.session.agent_type,
                status_cell(h.session.status),
                where,
                h.snippet,
            ]
        )
    out.table(columns, rows, {0: short_id_forms([h.session.id for h in hits], client)})
    return EXIT_OK
