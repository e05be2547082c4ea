"""The ``cpl`` argument parser: common options, then one subcommand per ``commands`` module.

A subcommand's help is its module's docstring; its options come from ``add_arguments`` and
``handle`` runs it. Only the module of the command being run is imported (start-up time: the
others pull in the viewer, search, usage figures, ...): ``COMMANDS`` names each command's
module and repeats its docstring for ``cpl --help`` (a test keeps the two equal).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn, TypeVar

from .. import __version__
from .base import EXIT_USAGE, PROG
from .output import scrub

# Each command, in the order ``cpl --help`` lists them: its module and that module's docstring.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("sessions", "list sessions, newest first"),
    ("show", "one session's transcript"),
    ("search", "find sessions containing a text"),
    ("stats", "usage figures per agent, model or day"),
    ("ui", "browse the logs in a web browser (local, read-only)"),
    ("sync", "push what is pending to the remote and bring the local read replica up to date"),
    ("doctor", "check configuration and database"),
    (
        "reindex",
        "rebuild the search index and usage rollups (derived from the tables, in the user's cache dir)",
    ),
)


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
    """The package's ``__version__`` (a test keeps it equal to the installed metadata, which
    takes 40 ms to read: ``importlib.metadata`` alone is a large import)."""
    return __version__


class _VersionAction(argparse.Action):
    """``--version``, reading the installed metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        sys.stdout.write(f"{parser.prog} {_package_version()}\n")
        parser.exit()


def command_module(name: str) -> ModuleType:
    """The module of the command ``name`` (imported now)."""
    return importlib.import_module(f"{__package__}.commands.{name}")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first word that names one and is not an option's value."""
    names = {name for name, _ in COMMANDS}
    takes_value = ("--database", "--auth-token", "--replica-dir", "--color")
    others = ("--json", "--version", "--help")
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("--") and "=" not in arg:  # argparse accepts unique prefixes
            matches = [o for o in takes_value + others if o.startswith(arg)]
            skip = len(matches) == 1 and matches[0] in takes_value
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg if arg in names else None
    return None


def build_parser(
    secrets: Sequence[str] = (), argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it runs gets its options (and its module
    imported); without it, every command does."""

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
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = _common(Parser, False)
    chosen = None if argv is None else chosen_command(argv)
    for name, help_text in COMMANDS:
        if chosen is not None and name != chosen:
            continue  # each subparser costs ~1 ms of argparse set-up: only the one run is built
        p = sub.add_parser(name, parents=[common], help=help_text)
        if argv is None or name == chosen:
            command = command_module(name)
            command.add_arguments(p)
            p.set_defaults(handler=command.handle)
    return parser
