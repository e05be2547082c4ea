"""Options several commands share, and the types that check option values as they are parsed
(a bad value is a usage error, exit 2, before anything is read)."""

from __future__ import annotations

import argparse

from ..query import decode_cursor, parse_time


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """``--agent-type``, ``--status``, ``--model``, ``--since``, ``--until``."""
    p.add_argument("--agent-type", action="append", metavar="TYPE",
                   help="only this agent type (repeatable)")  # fmt: skip
    p.add_argument("--status", action="append", choices=("running", "completed", "error"),
                   help="only this status (repeatable)")  # fmt: skip
    p.add_argument("--model", action="append", metavar="MODEL", help="only this model")
    p.add_argument("--since", metavar="TIME", type=time_value,
                   help="started at or after: ISO date/time (UTC) or an age like 24h, 7d")  # fmt: skip
    p.add_argument("--until", metavar="TIME", type=time_value, help="started before this time")


def time_value(text: str) -> str:
    """A valid TIME, kept as typed: an age (``7d``) is resolved by the query, so that the same
    age given again with a ``--cursor`` matches the cursor's."""
    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cursor_value(text: str) -> str:
    try:
        decode_cursor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def search_text(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("search text must not be empty")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seconds_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
