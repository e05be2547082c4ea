"""The ``cpl`` argument parser: common options, then one subcommand per ``commands`` module.

A subcommand's help is its module's docstring; its options come from ``add_arguments`` and
``handle`` runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import NoReturn, TypeVar

from .base import EXIT_USAGE, PROG
from .commands import doctor, reindex, search, sessions, show, stats, sync, ui
from .output import scrub

COMMANDS: tuple[ModuleType, ...] = (sessions, show, search, stats, ui, sync, doctor, reindex)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) with the token scrubbed."""

    secrets: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        message = scrub(message, self.secrets)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


P = TypeVar("P", bound=_Parser)


def _common(parser_class: type[P], defaults: bool) -> P:
    """Options accepted before and after the subcommand (``SUPPRESS`` keeps the first one)."""
    p = parser_class(add_help=False)
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p.add_argument("--database", metavar="PATH_OR_URL", default=d(None),
                   help="database file or Turso URL (default: $TURSO_DATABASE_URL)")  # fmt: skip
    p.add_argument("--auth-token", metavar="TOKEN", default=d(None),
                   help="token for a remote database (default: $TURSO_AUTH_TOKEN)")  # fmt: skip
    p.add_argument("--replica-dir", metavar="DIR", default=d(None),
                   help="where cloud-mode replicas live (default: $CPL_REPLICA_DIR)")  # fmt: skip
    p.add_argument("--json", action="store_true", default=d(False),
                   help="machine-readable JSON output")  # fmt: skip
    p.add_argument("--color", choices=("auto", "always", "never"), default=d("auto"),
                   help="colour and tables (auto: on a terminal with rich installed)")  # fmt: skip
    return p


def _package_version() -> str:
    """From the installed metadata: the package ``__init__`` may not have run (editable installs)."""
    try:
        return version("claude-parallel-logging")
    except PackageNotFoundError:
        return "unknown"


def command_name(module: ModuleType) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def build_parser(secrets: Sequence[str] = ()) -> argparse.ArgumentParser:
    class Parser(_Parser):
        pass

    Parser.secrets = tuple(secrets)
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parser = Parser(
        prog=invoked if invoked == "claude-parallel-logging" else PROG,
        description="Browse, search and check the agent conversations logged by "
        "claude-parallel-logging.",
        parents=[_common(Parser, True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = _common(Parser, False)
    for command in COMMANDS:
        help_text = (command.__doc__ or "").strip()
        p = sub.add_parser(command_name(command), parents=[common], help=help_text)
        command.add_arguments(p)
        p.set_defaults(handler=command.handle)
    return parser
