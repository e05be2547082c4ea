"""rebuild the search index (derived from the tables, in the user's cache directory)"""

# ``cpl search`` keeps the index up to date by itself; this rebuilds it from nothing (after
# an upgrade, to compact it, or when ``cpl doctor`` says it is unusable), with its progress on
# stderr on a terminal.

from __future__ import annotations

import argparse
import sys

from ...query import check_readable, rebuild_search_index
from ..base import EXIT_OK
from ..database import resolve_client
from ..output import Output


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    check_readable(client)
    show = not args.json and sys.stderr.isatty()

    def progress(documents: int) -> None:
        if show:
            print(f"\rindexed {documents:,} documents", end="", file=sys.stderr, flush=True)

    state = rebuild_search_index(client, progress)
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
            }
        )
        return EXIT_OK
    out.line(f"search index rebuilt: {state.describe()}")
    return EXIT_OK
