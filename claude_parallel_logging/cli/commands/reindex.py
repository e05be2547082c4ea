"""rebuild the search index and usage rollups (derived from the tables, in the user's cache dir)"""

# ``cpl search`` and ``cpl stats`` keep them up to date by themselves; this rebuilds it from nothing (after
# an upgrade, to compact it, or when ``cpl doctor`` says it is unusable), with its progress on
# stderr on a terminal.

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ...query import check_readable, rebuild_search_index, rebuild_usage_rollups
from ..base import EXIT_OK
from ..database import resolve_client
from ..output import Output


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    check_readable(client)
    show = not args.json and sys.stderr.isatty()

    def progress(what: str) -> Callable[[int], None]:
        def show_count(n: int) -> None:
            if show:
                print(f"\r{what}: {n:,}", end="", file=sys.stderr, flush=True)

        return show_count

    rollups = rebuild_usage_rollups(client, progress("usage rollups, sessions"))
    if show:
        print(file=sys.stderr)
    state = rebuild_search_index(client, progress("search index, documents"))
    if show:
        print(file=sys.stderr)
    if args.json:
        out.json(
            {
                "path": state.path,
                "documents": state.documents,
                "sessions": state.sessions,
                "lag_rows": state.lag_rows,
                "size_bytes": state.size_bytes,
                "rollups": {
                    "path": rollups.path,
                    "sessions": rollups.sessions,
                    "tools": rollups.tools,
                    "size_bytes": rollups.size_bytes,
                },
            }
        )
        return EXIT_OK
    out.line(f"usage rollups rebuilt: {rollups.describe()}")
    out.line(f"search index rebuilt: {state.describe()}")
    return EXIT_OK
