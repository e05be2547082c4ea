"""What every part of the CLI shares: the program name, exit statuses and its two errors.

``CliError`` and ``UsageError`` stay here, not in ``errors.py``: they never leave the CLI
(``main`` turns them into one line on stderr and an exit status).
"""

from __future__ import annotations

import argparse
from typing import Any

PROG = "cpl"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem to report as one line, without a traceback."""


class UsageError(CliError):
    """An argument value that cannot be used (exit 2, like argparse's own errors)."""


def option(args: argparse.Namespace, name: str) -> Any:
    """The value of an option, ``None`` when this command has no such option."""
    return getattr(args, name, None)
