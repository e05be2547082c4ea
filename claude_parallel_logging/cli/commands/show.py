"""one session's transcript"""

from __future__ import annotations

import argparse
import json
import os

from ...query import (
    MIN_PREFIX_LENGTH,
    SessionDetail,
    check_readable,
    get_session,
    session_document,
)
from ...query.documents import dumps
from ..base import EXIT_OK, CliError
from ..database import resolve_client
from ..options import non_negative_int
from ..output import Output
from ..stored import pointer_lines, show_stored
from ..transcript import jsonl_records, transcript_lines, transcript_markdown
from .ui import missing_ui_message

DEFAULT_MAX_CHARS = 500


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session_id", metavar="ID", help="session id, SDK session id or id prefix")
    p.add_argument("--format", choices=("text", "markdown", "jsonl", "html"), default="text",
                   help="text (default), or an export: markdown, jsonl, html (one self-contained"
                        " file: the viewer's session page, readable offline)")  # fmt: skip
    p.add_argument("--max-chars", type=non_negative_int, default=DEFAULT_MAX_CHARS,
                   help=f"cut long texts in the text view (default {DEFAULT_MAX_CHARS}; 0: never)")  # fmt: skip
    p.add_argument("--all", action="store_true",
                   help="every row, also tool results shown with their calls and status rows")  # fmt: skip
    p.add_argument("--metadata", action="store_true",
                   help="the session's whole metadata (tool lists, SDK ids, ...)")  # fmt: skip
    p.add_argument("--transcript", action="store_true",
                   help="the full transcript TursoSessionStore stored (subagents nested)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _html(detail: SessionDetail) -> str:
    problem = missing_ui_message(("jinja2",))
    if problem is not None:
        raise CliError(problem)
    from ...ui.export import export_html  # Jinja2 loads only for this format

    return export_html(detail)


def handle(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    check_readable(client)
    detail = get_session(args.session_id, client=client)
    if detail is None:
        ref = args.session_id.strip()
        if len(ref) < MIN_PREFIX_LENGTH:
            raise CliError(
                f"no session {args.session_id!r} (looked up by id and SDK session id; an id"
                f" prefix needs at least {MIN_PREFIX_LENGTH} characters, this one has {len(ref)})"
            )
        raise CliError(
            f"no session {args.session_id!r} (looked up by id, SDK session id and prefix)"
        )
    fmt = "json" if args.json else args.format
    if args.transcript:
        return show_stored(detail, client, args.json, args.max_chars, out)
    if fmt == "text" and args.output is None:
        for text, style in transcript_lines(detail, args.max_chars, args.all, args.metadata):
            out.line(text, style)
        for line in pointer_lines(detail, args.session_id.strip()):
            out.line(line, "dim")
        return EXIT_OK
    if fmt == "json":
        body = dumps(session_document(detail))
    elif fmt == "jsonl":
        body = "".join(
            json.dumps(record, ensure_ascii=False, default=str) + "\n"
            for record in jsonl_records(detail)
        )
    elif fmt == "markdown":
        body = transcript_markdown(detail)
    elif fmt == "html":
        body = _html(detail)
    else:
        lines = transcript_lines(detail, args.max_chars, args.all, args.metadata)
        body = "".join(t + "\n" for t, _ in lines)
    if args.output is None:
        out.write_raw(body)
        return EXIT_OK
    path = os.path.abspath(os.path.expanduser(args.output))
    if os.path.isdir(path):
        raise CliError(f"cannot write {path}: it is a directory")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(out.scrub(body))
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path} ({len(body):,} chars)", file=out.stderr)
    return EXIT_OK
