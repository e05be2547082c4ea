"""``cpl`` / ``claude-parallel-logging``: browse, search, export and check the logs from a shell.

Tables and colour on a terminal when ``rich`` is installed; plain text when piped or without it.
Every command has ``--json``. Errors are one line on stderr and a non-zero exit, never a
traceback, and the auth token is scrubbed from everything printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import (
    DatabaseUnavailable,
    InvalidCursor,
    LoggingNotConfigured,
    SchemaVersionError,
    one_line,
)
from .base import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError, UsageError, option
from .output import Output
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point; returns the exit status: 0 ok, 1 error (the database cannot be
    used, an unknown id, ...), 2 bad usage (an unknown option, or a value that cannot be used:
    a TIME that does not parse, an invalid cursor, ...)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    secrets = _secrets(None, argv)
    parser = build_parser(secrets, argv)  # only the command being run is imported
    try:
        args = parser.parse_args(argv)
        if getattr(args, "command", None) and getattr(args, "handler", None) is None:
            parser = build_parser(secrets)  # a command line ``chosen_command`` misread
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help(stderr)
        return EXIT_USAGE
    out = Output(stdout, stderr, args.color, _secrets(args, argv))
    try:
        code: int = args.handler(args, out)
        stdout.flush()
        _read_note(args, out)
        return code
    except (UsageError, InvalidCursor) as exc:  # argparse checked the rest; same format
        out.error(str(exc), prog=f"{parser.prog} {args.command}")
        return EXIT_USAGE
    except (CliError, LoggingNotConfigured, DatabaseUnavailable, SchemaVersionError) as exc:
        out.error(str(exc))
    except ValueError as exc:  # the values were checked when parsed: not a usage error
        out.error(str(exc))
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except BrokenPipeError:  # ``cpl ... | head``: the reader has what it wanted
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        out.error(f"{type(exc).__name__}: {one_line(exc)}")
    return EXIT_ERROR


def _read_note(args: argparse.Namespace, out: Output) -> None:
    """One line on stderr when reads were answered on the remote rather than a local replica
    (slower per read, and how to get a replica)."""
    client = getattr(args, "resolved_client", None)
    note = client.reader().read_note() if client is not None else None
    if note:
        out.note(note)


def _secrets(args: argparse.Namespace | None, argv: Sequence[str]) -> list[str]:
    """Every token we might print by accident: the option (even if parsing failed) and env."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--auth-token" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--auth-token="):
            found.append(arg.split("=", 1)[1])
    if args is not None and option(args, "auth_token"):
        found.append(args.auth_token)
    env = os.environ.get("TURSO_AUTH_TOKEN")
    if env:
        found.append(env)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def _silence_stdout() -> None:
    """The reader went away (``| head``): drop what is left instead of failing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
