"""usage figures per agent, model or day"""

from __future__ import annotations

import argparse

from ...query import GROUP_BY_CHOICES, check_readable, stats_document, usage_summary
from ..base import EXIT_OK
from ..database import resolve_client
from ..format import TOKEN_COLUMNS, fmt_cost, fmt_int, fmt_ms, fmt_pct, token_cells
from ..options import time_value
from ..output import Column, Output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-by", choices=GROUP_BY_CHOICES, default="agent_type")
    p.add_argument("--since", metavar="TIME", type=time_value,
                   help="sessions started at or after (24h, 7d, ISO)")  # fmt: skip
    p.add_argument("--until", metavar="TIME", type=time_value, help="sessions started before")


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    check_readable(client)
    rows = usage_summary(args.group_by, since=args.since, until=args.until, client=client)
    if args.json:
        out.json(stats_document(args.group_by, rows))
        return EXIT_OK
    if not rows:
        out.line("No sessions found.")
        return EXIT_OK
    columns = [
        Column(args.group_by.upper().replace("_", " "), keep=True),
        Column("SESSIONS", right=True),
        Column("SUCCESS", right=True),
        Column("ERRORS", right=True, drop=7),
        Column("RUNNING", right=True, drop=9),
        *TOKEN_COLUMNS,
        Column("COST", right=True),
        Column("TOOLS", right=True, drop=6),
        Column("TOOL ERR", right=True, drop=2),
        Column("P50 TOOL", right=True, drop=5),
        Column("P95 TOOL", right=True, drop=3),
        Column("P50 WALL", right=True, drop=10),
        Column("P50 AGENT", right=True, drop=11),
    ]
    table = [
        [
            r.group,
            fmt_int(r.sessions),
            fmt_pct(r.success_rate),
            fmt_int(r.errors),
            fmt_int(r.running),
            *token_cells(r),
            fmt_cost(r.cost_usd),
            fmt_int(r.tool_calls),
            fmt_pct(r.tool_error_rate),
            fmt_ms(r.p50_tool_ms),
            fmt_ms(r.p95_tool_ms),
            fmt_ms(r.p50_wall_ms),
            fmt_ms(r.p50_agent_ms),
        ]
        for r in rows
    ]
    out.table(columns, table)
    return EXIT_OK
