"""``cpl`` / ``claude-parallel-logging``: browse, search, export and check the logs from a shell.

Tables and colour on a terminal when ``rich`` is installed; plain text when piped or without it.
Every command has ``--json``. Errors are one line on stderr and a non-zero exit, never a
traceback, and the auth token is scrubbed from everything printed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Any, NoReturn, TypeVar

from .client import TursoClient, get_turso_client
from .config import TursoConfig, configure, database_url_problem, mask_secret
from .errors import SchemaVersionError
from .queries import (
    GROUP_BY_CHOICES,
    MIN_PREFIX_LENGTH,
    DatabaseUnavailable,
    InvalidCursor,
    LoggingNotConfigured,
    MessageRecord,
    SessionDetail,
    SessionSummary,
    ToolExecutionRecord,
    UsageRow,
    check_list_arguments,
    decode_cursor,
    get_session,
    get_stored_transcripts,
    list_sessions,
    missing_file_message,
    needs_snapshot,
    parse_time,
    search_sessions,
    short_ids,
    snapshot,
    usage_summary,
)
from .schema import SCHEMA_VERSION, current_version

PROG = "cpl"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_MAX_CHARS = 500
REDACTED = "[REDACTED]"


class CliError(Exception):
    """A problem to report as one line, without a traceback."""


class UsageError(CliError):
    """An argument value that cannot be used (exit 2, like argparse's own errors)."""


# ----- output -----------------------------------------------------------------------------------

Cell = str | tuple[str, str | None]  # text, or (text, rich style)


@dataclass(frozen=True)
class Column:
    """How a column behaves on a terminal that is too narrow for everything.

    ``keep`` and ``right`` columns (ids, dates, statuses, numbers) are never wrapped or cut;
    ``shrink`` columns are cut with "…" down to that width (one line per row); columns with a
    ``drop`` rank are hidden when even that does not fit, the highest rank first. A ``last``
    column (a model name) is cut only when every ``drop`` column is hidden, and grows back first.
    """

    header: str
    right: bool = False  # numbers: right-aligned, never wrapped or cut
    keep: bool = False  # ids, dates, statuses: never wrapped or cut
    shrink: int = 0  # > 0: free text, cut with "…" down to this many cells
    drop: int = 0  # > 0: may be hidden on a narrow terminal, highest rank first
    last: bool = False  # shrink: cut only once nothing else can give way


@dataclass(frozen=True)
class Layout:
    """What fits: the columns shown (indices), their widths, and whether ids were shortened."""

    visible: list[int]
    widths: list[int]
    compact: bool
    hidden: list[str]


def fit_columns(
    columns: Sequence[Column],
    texts: Sequence[Sequence[str]],
    width: int,
    overhead: Callable[[int], int],
    compact: Mapping[int, Sequence[str]] | None = None,
) -> tuple[Layout, list[list[str]]]:
    """Choose the columns and widths of a table ``width`` cells wide (``overhead(n)``: cells the
    table's own gaps take for ``n`` columns). First long ids give way to their ``compact``
    forms, then ``drop`` columns are hidden, then ``last`` columns are cut; what is left over
    widens ``shrink`` columns, ``last`` ones first."""
    from rich.cells import cell_len

    rows = [list(r) for r in texts]

    def natural(i: int) -> int:
        return max([cell_len(columns[i].header), *(cell_len(r[i]) for r in rows)])

    cut_last = False  # whether ``last`` columns may be cut yet

    def minimum(i: int) -> int:
        col = columns[i]
        if col.last and not cut_last:
            return natural(i)
        return min(natural(i), col.shrink) if col.shrink else natural(i)

    visible = list(range(len(columns)))

    def need() -> int:
        return sum(minimum(i) for i in visible) + overhead(len(visible))

    used_compact = False
    if compact and need() > width:
        for i, short in compact.items():
            for r, text in zip(rows, short):
                r[i] = text
        used_compact = True
    hidden: list[str] = []
    for _ in range(len(columns)):
        if need() <= width:
            break
        ranked = [i for i in visible if columns[i].drop]
        if not ranked:
            break
        gone = max(ranked, key=lambda i: (columns[i].drop, i))
        visible.remove(gone)
        hidden.append(columns[gone].header)
    cut_last = need() > width
    widths = {i: minimum(i) for i in visible}
    extra = width - need()
    for i in visible:  # ``last`` columns grow back first
        if columns[i].last and extra > 0:
            add = min(natural(i) - widths[i], extra)
            widths[i] += add
            extra -= add
    growing = [i for i in visible if columns[i].shrink and widths[i] < natural(i)]
    for _ in range(width + 1):
        if extra <= 0 or not growing:
            break
        share = max(1, extra // len(growing))
        for i in list(growing):
            add = min(share, natural(i) - widths[i], extra)
            widths[i] += add
            extra -= add
            if widths[i] >= natural(i):
                growing.remove(i)
            if extra <= 0:
                break
    layout = Layout(visible, [widths[i] for i in visible], used_compact, hidden)
    return layout, rows


_STATUS_STYLE = {"completed": "green", "error": "red", "running": "yellow"}


class Output:
    """Where results go: a rich console on a terminal, plain text otherwise."""

    def __init__(self, stdout: IO[str], stderr: IO[str], color: str, secrets: Sequence[str]):
        self.stdout = stdout
        self.stderr = stderr
        self.color = color
        self.secrets = [s for s in secrets if s]
        self.console: Any = self._console(stdout)

    def _console(self, stream: IO[str]) -> Any:
        if self.color == "always" or (self.color == "auto" and _isatty(stream)):
            try:
                from rich.console import Console
            except ImportError:
                return None
            return Console(
                file=stream,
                force_terminal=True if self.color == "always" else None,
                highlight=False,
                soft_wrap=False,
            )
        return None

    def progress_console(self) -> Any:
        """A console on stderr for progress bars (a terminal, or ``--color always``)."""
        return self._console(self.stderr)

    @property
    def tty(self) -> bool:
        return self.console is not None

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def line(self, text: str = "", style: str | None = None) -> None:
        text = self.scrub(text)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            self.stdout.write(text + "\n")

    def write_raw(self, text: str) -> None:
        self.stdout.write(self.scrub(text))

    def json(self, data: Any) -> None:
        self.write_raw(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")

    def error(self, message: str, prog: str = PROG) -> None:
        text = " ".join(self.scrub(message).split())
        self.stderr.write(f"{prog}: error: {text}\n")

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Cell]],
        compact: Mapping[int, Callable[[], Sequence[str]]] | None = None,
    ) -> None:
        """A table; on a terminal it fits the width: ``keep`` cells stay whole on one line (an id
        column may switch to its ``compact`` forms), free text is cut, minor columns hidden."""
        if self.console is not None:
            self._rich_table(columns, rows, compact or {})
            return
        texts = [[self.scrub(_text(c)) for c in row] for row in rows]
        widths = [len(c.header) for c in columns]
        for row in texts:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def fmt(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(widths[i]) if columns[i].right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ]
            return "  ".join(parts).rstrip()

        self.stdout.write(fmt([c.header for c in columns]) + "\n")
        for row in texts:
            self.stdout.write(fmt(row) + "\n")

    def _rich_table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Cell]],
        compact: Mapping[int, Callable[[], Sequence[str]]],
    ) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        def new_table() -> Any:
            return Table(
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                padding=(0, 1, 0, 0),
                header_style="bold",
            )

        def overhead(n: int) -> int:
            probe = new_table()
            for _ in range(n):
                probe.add_column("", width=1, no_wrap=True)
            return int(self.console.measure(probe).maximum) - n

        texts = [[self.scrub(_text(c)) for c in row] for row in rows]
        width = int(self.console.width)
        lazy = {i: _Lazy(get) for i, get in compact.items()}
        layout, fitted = fit_columns(columns, texts, width, overhead, _LazyMap(lazy))
        table = new_table()
        for i, w in zip(layout.visible, layout.widths):
            col = columns[i]
            table.add_column(
                col.header,
                justify="right" if col.right else "left",
                width=w,
                no_wrap=True,
                overflow="ellipsis",
            )
        for row, cells in zip(rows, fitted):
            table.add_row(
                *(Text(self.scrub(cells[i]), style=_style(row[i]) or "") for i in layout.visible)
            )
        self.console.print(table)
        if layout.hidden:  # wrapped at the terminal's width, like the table
            note = f"(too narrow for {', '.join(layout.hidden)}: widen the terminal or use --json)"
            self.console.print(Text(self.scrub(note), style="dim"))


class _Lazy:
    """Compact forms are computed (a database read) only when a table needs them."""

    def __init__(self, get: Callable[[], Sequence[str]]) -> None:
        self._get = get
        self._value: Sequence[str] | None = None

    def value(self) -> Sequence[str]:
        if self._value is None:
            self._value = self._get()
        return self._value


class _LazyMap(Mapping[int, Sequence[str]]):
    def __init__(self, items: dict[int, _Lazy]) -> None:
        self._items = items

    def __getitem__(self, key: int) -> Sequence[str]:
        return self._items[key].value()

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _style(cell: Cell) -> str | None:
    return None if isinstance(cell, str) else cell[1]


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ----- formatting -------------------------------------------------------------------------------


def fmt_time(iso: str | None, ms: bool = False) -> str:
    """Stored UTC text, made readable: ``2026-01-31 12:00:05`` (UTC)."""
    if not iso:
        return "-"
    text = iso.replace("T", " ").rstrip("Z")
    return text if ms else text.split(".", 1)[0]


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_cost(x: float | None) -> str:
    return "-" if x is None else f"${x:,.4f}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def fmt_ms(ms: float | None) -> str:
    """Durations at a glance: 850 ms, 12.3 s, 4m05s, 1h02m."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def clip(text: str, limit: int) -> str:
    """Cut long text for the terminal, saying how much was left out and the full length."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit:,} more chars, {len(text):,} in total]"


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# Token figures look the same in every table: input, output, and the cache (read + write)
# apart, never one sum that mixes them.
TOKEN_COLUMNS = (
    Column("TOK IN", right=True, drop=2),
    Column("TOK OUT", right=True, drop=4),
    Column("CACHE R+W", right=True, drop=7),
)


def token_cells(r: SessionSummary | UsageRow) -> list[str]:
    """The cells of ``TOKEN_COLUMNS``."""
    read, write = r.cache_read_tokens, r.cache_creation_tokens
    cache = None if read is None and write is None else (read or 0) + (write or 0)
    return [fmt_int(r.input_tokens), fmt_int(r.output_tokens), fmt_int(cache)]


def _status(status: str) -> Cell:
    return (status, _STATUS_STYLE.get(status))


def _short_ids(ids: list[str], client: TursoClient) -> Callable[[], Sequence[str]]:
    """Unique id prefixes (``cpl show`` takes them) for a terminal too narrow for whole ids."""

    def get() -> Sequence[str]:
        found = short_ids(ids, client=client)
        return [found.get(i, i) for i in ids]

    return get


# ----- configuration ----------------------------------------------------------------------------


def _given(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _secrets(args: argparse.Namespace | None, argv: Sequence[str]) -> list[str]:
    """Every token we might print by accident: the option (even if parsing failed) and env."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--auth-token" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--auth-token="):
            found.append(arg.split("=", 1)[1])
    if args is not None and _given(args, "auth_token"):
        found.append(args.auth_token)
    env = os.environ.get("TURSO_AUTH_TOKEN")
    if env:
        found.append(env)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def resolve_client(args: argparse.Namespace, *, without_token: bool = False) -> TursoClient:
    """Apply ``--database``/``--auth-token``/``--replica-dir`` (over the environment).

    ``without_token``: a remote URL without a token still gets a (private) client, for
    ``doctor`` to check everything and report the missing token as the failure."""
    overrides: dict[str, Any] = {}
    if _given(args, "database") is not None:
        overrides["database_url"] = args.database or None
    if _given(args, "auth_token") is not None:
        overrides["auth_token"] = args.auth_token or None
    if _given(args, "replica_dir") is not None:
        overrides["replica_dir"] = args.replica_dir
    url = overrides.get("database_url", os.environ.get("TURSO_DATABASE_URL") or None)
    token = overrides.get("auth_token", os.environ.get("TURSO_AUTH_TOKEN") or None)
    problem = database_url_problem(url) if url else None
    if problem is not None:
        source = "--database" if "database_url" in overrides else "TURSO_DATABASE_URL"
        raise UsageError(f"{source}: {problem}")
    if url and TursoConfig(url=url).is_remote and not token and without_token:
        if overrides:
            configure(**overrides)
        return TursoClient(TursoConfig(url=url.strip()))
    if url and TursoConfig(url=url).is_remote and not token:
        raise CliError(
            f"{url.split('?', 1)[0]} is a remote database but no auth token was given:"
            " pass --auth-token or set TURSO_AUTH_TOKEN"
        )
    if overrides:
        configure(**overrides)
    client = get_turso_client()
    if client is None:
        raise LoggingNotConfigured(
            "no database configured: pass --database PATH_OR_URL or set TURSO_DATABASE_URL"
        )
    return client


def _require_readable(client: TursoClient) -> None:
    """Reading commands refuse a missing file rather than show an empty (typo'd) database."""
    if client.config.is_remote:
        return
    path = client.config.local_path
    try:
        os.stat(path)
    except FileNotFoundError:
        raise CliError(missing_file_message(path)) from None
    except PermissionError:
        raise CliError(
            f"cannot access database file {path}: permission denied on a parent directory"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot access database file {path}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory, not a database file")
    if not os.access(path, os.R_OK):
        raise CliError(f"database file {path} is not readable by this user (permission denied)")


# ----- commands ---------------------------------------------------------------------------------


def cmd_sessions(args: argparse.Namespace, out: Output) -> int:
    try:  # a cursor given with other filters than its own: bad usage, before any reading
        check_list_arguments(
            args.agent_type, args.status, args.model, args.since, args.until, args.cursor
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    client = resolve_client(args)
    _require_readable(client)
    page = list_sessions(
        limit=args.limit,
        agent_type=args.agent_type,
        status=args.status,
        model=args.model,
        since=args.since,
        until=args.until,
        cursor=args.cursor or "",  # "": the first page (None would mean past the last one)
        client=client,
    )
    if args.json:
        out.json({"sessions": [s.to_dict() for s in page], "next_cursor": page.next_cursor})
        return EXIT_OK
    if not page:
        out.line("No sessions found.")
        return EXIT_OK
    columns = [
        Column("ID", keep=True),
        Column("STARTED (UTC)", keep=True),
        Column("AGENT", shrink=6),
        Column("MODEL", shrink=6, last=True),
        Column("STATUS", keep=True),
        Column("MSGS", right=True, drop=9),
        Column("TOOLS", right=True, drop=8),
        *TOKEN_COLUMNS,
        Column("COST", right=True, drop=1),
        Column("WALL TIME", right=True, drop=5),
        Column("AGENT TIME", right=True, drop=6),
    ]
    rows = [
        [
            s.id,
            fmt_time(s.started_at),
            s.agent_type,
            s.model,
            _status(s.status),
            fmt_int(s.message_count),
            f"{s.tool_count} ({s.tool_error_count} err)"
            if s.tool_error_count
            else str(s.tool_count),
            *token_cells(s),
            fmt_cost(s.cost_usd),
            fmt_ms(s.wall_duration_ms),
            fmt_ms(s.agent_duration_ms),
        ]
        for s in page
    ]
    out.table(columns, rows, {0: _short_ids([s.id for s in page], client)})
    if page.next_cursor:
        out.line()
        out.line(f"More sessions: add --cursor {page.next_cursor}", style="dim")  # or alone
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    _require_readable(client)
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
        return _show_stored_transcript(detail, client, args, out)
    if fmt == "text" and args.output is None:
        for text, style in transcript_lines(detail, args.max_chars, args.all, args.metadata):
            out.line(text, style)
        for t in detail.transcripts:
            subs = f", {_count(len(t.subpaths), 'subagent transcript')}" if t.subpaths else ""
            out.line(f"Stored transcript of SDK session {t.session_id}: {_entries(t.entries)}"
                     f"{subs} (cpl show {args.session_id.strip()} --transcript)", "dim")  # fmt: skip
        return EXIT_OK
    if fmt == "json":
        body = json.dumps(detail.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n"
    elif fmt == "jsonl":
        body = "".join(
            json.dumps(rec, ensure_ascii=False, default=str) + "\n" for rec in jsonl_records(detail)
        )
    elif fmt == "markdown":
        body = transcript_markdown(detail)
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


def _show_stored_transcript(
    detail: SessionDetail, client: TursoClient, args: argparse.Namespace, out: Output
) -> int:
    """The full-fidelity transcript a ``TursoSessionStore`` holds, subagents nested."""
    stored = get_stored_transcripts(detail, client=client)
    if not stored:
        raise CliError(f"session {detail.session.id} has no stored transcript (TursoSessionStore)")
    if args.json:
        out.json([{"project_key": t.project_key, "session_id": t.session_id,
                   "entries": parts[""], "subagents": {k: v for k, v in parts.items() if k}}
                  for t, parts in stored])  # fmt: skip
        return EXIT_OK
    for t, parts in stored:
        out.line(f"Stored transcript {t.session_id} (project {t.project_key})", "bold")
        for subpath, entries in parts.items():
            indent = "    " if subpath else "  "
            if subpath:
                out.line(f"  subagent {subpath}: {_entries(len(entries))}", "bold")
            for e in entries:
                out.line(indent + _entry_line(e, args.max_chars))
    return EXIT_OK


def _entries(n: int) -> str:
    return f"{n:,} entr{'y' if n == 1 else 'ies'}"


def _entry_line(entry: Any, limit: int) -> str:
    """``type role: text`` of one transcript entry (text, tool calls and results, flattened)."""
    if not isinstance(entry, dict):
        return as_text(entry)
    message = entry.get("message")
    role, content = "", entry.get("content") or entry.get("summary") or ""
    if isinstance(message, dict):
        role, content = str(message.get("role") or ""), message.get("content")
    if isinstance(content, list):
        pieces = []
        for block in content:
            if not isinstance(block, dict):
                pieces.append(as_text(block))
            elif block.get("type") == "text":
                pieces.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                pieces.append(f"[tool_use {block.get('name')} {as_text(block.get('input'))}]")
            elif block.get("type") == "tool_result":
                pieces.append(f"[tool_result {as_text(block.get('content'))}]")
            else:
                pieces.append(f"[{block.get('type')}]")
        content = " ".join(pieces)
    text = " ".join(as_text(content).split())
    if limit and len(text) > limit:
        text = text[:limit] + f"… [{len(text):,} chars]"
    head = f"{entry.get('type', '?')}{' ' + role if role and role != entry.get('type') else ''}"
    return f"{head}: {text}" if text else head


def cmd_search(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    _require_readable(client)
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
        out.json({"query": args.text, "hits": [h.to_dict() for h in hits]})
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
                _status(h.session.status),
                where,
                h.snippet,
            ]
        )
    out.table(columns, rows, {0: _short_ids([h.session.id for h in hits], client)})
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    _require_readable(client)
    rows = usage_summary(args.group_by, since=args.since, until=args.until, client=client)
    if args.json:
        out.json({"group_by": args.group_by, "rows": [r.to_dict() for r in rows]})
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


def _replica_dir(client: TursoClient) -> str | None:
    if not client.config.is_remote:
        return None
    from .store import CloudStore

    return CloudStore(client.config, client.settings).dir


def _other_writer_replicas(directory: str) -> list[str]:
    """Writer replicas of other processes (ours are named after our pid)."""
    mine = f"w-{os.getpid()}-"
    return [
        p
        for p in sorted(glob.glob(os.path.join(glob.escape(directory), "w-*.db")))
        if not os.path.basename(p).startswith(mine)
    ]


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args)
    deadline = time.monotonic() + args.timeout
    with _progress(out, enabled=not args.json) as bar:
        flushed = _flush(client, args.timeout, bar)
        report: dict[str, Any] = {
            "mode": "cloud" if client.config.is_remote else "local",
            "database": _where(client),
            "flushed": flushed,
        }
        ok = flushed
        if client.config.is_remote:
            try:
                with client.reader().read():
                    pass  # a pull: proves the remote is reachable before pushing
            except Exception as exc:
                raise CliError(f"cannot reach {_where(client)}: {_one_line(exc)}") from None
            left = max(0.1, deadline - time.monotonic())
            report["replicas"] = _push_stale(client, bar, left)
            ok = ok and report["replicas"]["failed"] == 0
    report["stats"] = asdict(client.stats())
    if args.json:
        out.json({**report, "ok": ok})
        return EXIT_OK if ok else EXIT_ERROR
    st = client.stats()
    out.line(f"{report['mode']} database {report['database']}", style="bold")
    out.line(
        f"this process: {st.written:,} written, {st.pending:,} pending, {st.pushes:,} pushes,"
        f" {st.push_failures:,} push failures"
    )
    if "replicas" in report:
        r = report["replicas"]
        out.line(
            f"replicas left by other processes: {r['found']} found, {r['pushed']} pushed"
            f" ({r['changes']:,} changes), {r['in_use']} in use by running processes,"
            f" {r['failed']} failed"
        )
    else:
        out.line("nothing to push: local mode writes straight to the database file")
    if st.last_error and not ok:
        out.line(f"last error: {st.last_error}", style="red")
    if not ok:
        out.error("not everything could be pushed; the rows stay in the replicas, run sync again")
    return EXIT_OK if ok else EXIT_ERROR


_POLL = 0.05


def _run_polling(
    work: Callable[[], Any], poll: Callable[[], None], timeout: float
) -> tuple[bool, Any]:
    """Run ``work`` in a thread, calling ``poll`` every 50 ms until it ends or ``timeout``
    passes; returns (finished, its result or None)."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception:
            result.append(None)

    worker = threading.Thread(target=run, name="cpl-sync", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / _POLL) + 2):
        worker.join(_POLL)
        poll()
        if not worker.is_alive() or time.monotonic() > deadline:
            break
    poll()
    done = not worker.is_alive()
    return done, (result[0] if done and result else None)


def _flush(client: TursoClient, timeout: float, bar: _Bar) -> bool:
    """Write (and in cloud mode push) what this process has queued, with the events written
    as progress."""
    start = client.stats()
    if start.pending <= 0:
        return client.flush(timeout)
    update = bar.task("writing this process's events", start.pending, "events")

    def poll() -> None:
        update(client.stats().written - start.written, "")

    done, flushed = _run_polling(lambda: client.flush(timeout), poll, timeout)
    return bool(done and flushed)


def _open_replica(client: Any, path: str) -> Any:
    """Open a replica file as it is: no download (a replica of another process, to inspect
    or push)."""
    import turso.sync

    return turso.sync.connect(
        path,
        client.config.url,
        auth_token=client.config.auth_token,
        bootstrap_if_empty=False,
        isolation_level=None,
    )


def _probe_replica(client: TursoClient, path: str) -> tuple[str, int | None]:
    """``("in_use", None)`` while a live process holds the replica, ``("stale", changes not
    pushed or None)`` when it can be opened, ``("unreadable", None)`` otherwise."""

    from .store import is_lock_error

    try:
        conn = _open_replica(client, path)
    except Exception as exc:
        return ("in_use" if is_lock_error(exc) else "unreadable"), None
    changes: int | None
    try:
        changes = int(conn.stats().cdc_operations)
    except Exception:
        changes = None
    finally:
        conn.close()
        del conn  # pyturso frees the file lock with the object, not on close()
    return "stale", changes


def _push_stale(client: TursoClient, bar: _Bar, timeout: float) -> dict[str, int]:
    """Push the replicas of processes that died (``CloudStore.recover_stale``), with progress in
    changes pushed (each replica's changes are counted first; a replica is done once pushed
    and removed)."""
    from .store import CloudStore

    store = CloudStore(client.config, client.settings)
    paths = _other_writer_replicas(store.dir)
    result = {"found": len(paths), "pushed": 0, "changes": 0, "in_use": 0, "failed": 0}
    probes = {p: _probe_replica(client, p) for p in paths}
    stale = [p for p in paths if probes[p][0] != "in_use"]
    if not stale:
        result["in_use"] = len(paths)
        return result
    weights = {p: probes[p][1] or 0 for p in stale}
    by_changes = all(probes[p][1] is not None for p in stale) and sum(weights.values()) > 0
    total = sum(weights.values()) if by_changes else len(stale)
    update = bar.task(
        f"pushing {len(stale)} replica(s) of exited processes",
        total,
        "changes" if by_changes else "replicas",
    )

    def poll() -> None:
        gone = [p for p in stale if not os.path.exists(p)]
        done = sum(weights[p] for p in gone) if by_changes else len(gone)
        update(done, f"{len(gone)}/{len(stale)} replicas")

    finished, all_done = _run_polling(store.recover_stale, poll, timeout)
    for path in paths:
        if not os.path.exists(path):
            result["pushed"] += 1
            result["changes"] += weights.get(path, 0)
            continue
        state, _ = _probe_replica(client, path)
        result["in_use" if state == "in_use" else "failed"] += 1
    if not finished or all_done is False:  # still pushing, or a push failed
        result["failed"] = max(result["failed"], 1)
    return result


class _Bar:
    """Progress on stderr (results stay alone on stdout): on a terminal or ``--color always``,
    never with ``--json``; nothing at all otherwise."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def task(self, description: str, total: int, unit: str) -> Callable[[int, str], None]:
        if self.progress is None:
            return lambda completed, note: None
        task = self.progress.add_task(description, total=max(total, 1), unit=unit, note="")
        progress = self.progress

        def update(completed: int, note: str) -> None:
            progress.update(task, completed=min(max(completed, 0), total), note=note)

        return update


@contextmanager
def _progress(out: Output, enabled: bool) -> Iterator[_Bar]:
    console = out.progress_console() if enabled else None
    if console is None:
        yield _Bar(None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[note]}", style="dim"),
        console=console,
        transient=True,
    ) as progress:
        yield _Bar(progress)


def cmd_doctor(args: argparse.Namespace, out: Output) -> int:
    client = resolve_client(args, without_token=True)
    if client.config.auth_token or not client.config.is_remote:  # the shared client
        return _doctor(args, out, client)
    try:  # a private client (a remote URL without a token): close its read replica
        return _doctor(args, out, client)
    finally:
        client.shutdown(5)


def _doctor(args: argparse.Namespace, out: Output, client: TursoClient) -> int:
    checks: list[dict[str, str]] = []

    def check(name: str, status: str, detail: str) -> None:
        checks.append({"check": name, "status": status, "detail": out.scrub(detail)})

    cfg = client.config
    source = "--database" if _given(args, "database") else "TURSO_DATABASE_URL or configure()"
    check("database", "ok", f"{_where(client)} (from {source})")
    check("mode", "ok", "cloud (Turso remote)" if cfg.is_remote else "local file")
    check("auth token", "ok" if cfg.auth_token or not cfg.is_remote else "fail",
          mask_secret(cfg.auth_token) if cfg.auth_token or not cfg.is_remote else
          "none: a remote database needs one (pass --auth-token or set TURSO_AUTH_TOKEN)")  # fmt: skip
    check("versions", "ok", _versions())
    if cfg.is_remote:
        _doctor_cloud(client, check)
    else:
        _doctor_local(client, check)
    st = client.stats()
    check("pending (this process)", "ok", f"{st.pending} events queued, {st.written} written")
    failed = any(c["status"] == "fail" for c in checks)
    if args.json:
        out.json({"ok": not failed, "checks": checks})
        return EXIT_ERROR if failed else EXIT_OK
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
    width = max(len(c["check"]) for c in checks)
    for c in checks:
        out.line(f"[{c['status'].upper():4}] {c['check'].ljust(width)}  {c['detail']}",
                 style=styles.get(c["status"]))  # fmt: skip
    return EXIT_ERROR if failed else EXIT_OK


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("claude-parallel-logging", "pyturso", "rich"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _counts(conn: Any) -> str:
    n_s, n_m, n_t = (
        conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("sessions", "messages", "tool_executions")
    )
    newest = conn.execute("SELECT MAX(started_at) FROM sessions").fetchone()[0]
    return (
        f"{n_s:,} sessions, {n_m:,} messages, {n_t:,} tool executions;"
        f" newest session started {fmt_time(newest)}"
    )


def _schema_check(version: int, check: Callable[[str, str, str], None]) -> None:
    if version == 0:
        check("schema", "warn", "no tables yet (created on the first write)")
    elif version > SCHEMA_VERSION:
        check("schema", "fail", f"version {version} is newer than this package understands"
              f" ({SCHEMA_VERSION}): upgrade claude-parallel-logging")  # fmt: skip
    elif version < SCHEMA_VERSION:
        check("schema", "warn", f"version {version}; upgraded to {SCHEMA_VERSION} on next write")
    else:
        check("schema", "ok", f"version {version} (current)")


def _doctor_local(client: TursoClient, check: Callable[[str, str, str], None]) -> None:
    from .store import LocalStore

    path = client.config.local_path
    if os.path.isdir(path):
        check("connectivity", "fail", f"{path} is a directory, not a database file")
        return
    if not os.path.exists(path):
        check("connectivity", "warn", f"{path} does not exist yet (created on the first write)")
        return
    try:
        read_only = needs_snapshot(path)
    except DatabaseUnavailable as exc:
        check("connectivity", "fail", str(exc))
        return
    with ExitStack() as stack:
        target = path
        if read_only:
            check("permissions", "warn", f"{path} is not writable by this user: logging into it"
                  " fails; reads use a private copy")  # fmt: skip
            try:
                target = stack.enter_context(snapshot(path))
            except DatabaseUnavailable as exc:
                check("connectivity", "fail", str(exc))
                return
        _doctor_open(LocalStore(TursoConfig(url=target), client.settings), path, check)
    check("pending (replicas)", "ok", "none: local mode writes straight to the database file")


def _doctor_open(store: Any, path: str, check: Callable[[str, str, str], None]) -> None:
    started = time.perf_counter()
    try:
        conn = store.connect(timeout=5.0)  # not ``read()``: the doctor must not migrate
    except Exception as exc:
        check("connectivity", "fail", f"cannot open {path}: {_one_line(exc)}")
        return
    try:
        took = (time.perf_counter() - started) * 1000
        size = os.path.getsize(path)
        check("connectivity", "ok", f"opened in {took:.1f} ms, {size:,} bytes")
        version = current_version(conn)
        _schema_check(version, check)
        if version:
            check("contents", "info", _counts(conn))
    except Exception as exc:
        check("connectivity", "fail", f"cannot read {path}: {_one_line(exc)}")
    finally:
        conn.close()
        del conn  # frees the file lock


def _doctor_cloud(client: TursoClient, check: Callable[[str, str, str], None]) -> None:
    from .store import is_lock_error

    directory = _replica_dir(client) or ""
    check("replica dir", "ok", directory)
    started = time.perf_counter()
    try:
        with client.reader().read() as conn:
            took = (time.perf_counter() - started) * 1000
            check("connectivity", "ok", f"pulled from the remote in {took:.0f} ms")
            version = current_version(conn)
            _schema_check(version, check)
            if version:
                check("contents", "info", _counts(conn))
    except Exception as exc:
        check("connectivity", "fail", f"cannot reach {_where(client)}: {_one_line(exc)}")
    writers = _other_writer_replicas(directory) if os.path.isdir(directory) else []
    mine = f"r-{os.getpid()}-"
    readers = [
        p
        for p in glob.glob(os.path.join(glob.escape(directory), "r-*.db"))
        if not os.path.basename(p).startswith(mine)
    ]
    in_use = stale = pending = 0
    unknown = 0
    for path in writers:
        try:
            conn = _open_replica(client, path)
        except Exception as exc:
            if is_lock_error(exc):
                in_use += 1
            else:
                unknown += 1
            continue
        try:
            stale += 1
            pending += int(conn.stats().cdc_operations)
        except Exception:
            unknown += 1
        finally:
            conn.close()
    detail = (
        f"{len(writers)} writer replica(s) of other processes: {in_use} in use by running"
        f" processes, {stale} left by exited processes ({pending:,} changes not pushed);"
        f" {len(readers)} read replica(s) of other processes"
    )
    if unknown:
        detail += f"; {unknown} could not be inspected"
    check("pending (replicas)", "warn" if pending or unknown else "ok",
          detail + ("; run `cpl sync` to push them" if pending else ""))  # fmt: skip


def _where(client: TursoClient) -> str:
    if client.config.is_remote:
        return client.config.url.split("?", 1)[0]
    return client.config.local_path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# ----- parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) with the token scrubbed."""

    secrets: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        for secret in self.secrets:
            message = message.replace(secret, REDACTED)
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


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent-type", action="append", metavar="TYPE",
                   help="only this agent type (repeatable)")  # fmt: skip
    p.add_argument("--status", action="append", choices=("running", "completed", "error"),
                   help="only this status (repeatable)")  # fmt: skip
    p.add_argument("--model", action="append", metavar="MODEL", help="only this model")
    p.add_argument("--since", metavar="TIME", type=_time,
                   help="started at or after: ISO date/time (UTC) or an age like 24h, 7d")  # fmt: skip
    p.add_argument("--until", metavar="TIME", type=_time, help="started before this time")


def _time(text: str) -> str:
    """A valid TIME, kept as typed: an age (``7d``) is resolved by the query, so that the same
    age given again with a ``--cursor`` matches the cursor's."""
    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cursor(text: str) -> str:
    try:
        decode_cursor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _search_text(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("search text must not be empty")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _package_version() -> str:
    """From the installed metadata: the package ``__init__`` may not have run (editable installs)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("claude-parallel-logging")
    except PackageNotFoundError:
        return "unknown"


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

    p = sub.add_parser("sessions", parents=[common], help="list sessions, newest first")
    _filters(p)
    p.add_argument("--limit", type=_positive, default=50, help="page size (default 50)")
    p.add_argument("--cursor", type=_cursor,
                   help="the next page of the listing that printed this cursor (it keeps that"
                        " listing's filters: give it alone or with the same filters)")  # fmt: skip
    p.set_defaults(handler=cmd_sessions)

    p = sub.add_parser("show", parents=[common], help="one session's transcript")
    p.add_argument("session_id", metavar="ID", help="session id, SDK session id or id prefix")
    p.add_argument("--format", choices=("text", "markdown", "jsonl"), default="text",
                   help="text (default), or an export: markdown, jsonl")  # fmt: skip
    p.add_argument("--max-chars", type=_non_negative, default=DEFAULT_MAX_CHARS,
                   help=f"cut long texts in the text view (default {DEFAULT_MAX_CHARS}; 0: never)")  # fmt: skip
    p.add_argument("--all", action="store_true",
                   help="every row, also tool results shown with their calls and status rows")  # fmt: skip
    p.add_argument("--metadata", action="store_true",
                   help="the session's whole metadata (tool lists, SDK ids, ...)")  # fmt: skip
    p.add_argument("--transcript", action="store_true",
                   help="the full transcript TursoSessionStore stored (subagents nested)")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("search", parents=[common], help="find sessions containing a text")
    p.add_argument("text", metavar="TEXT", type=_search_text,
                   help="literal, case-insensitive text")  # fmt: skip
    _filters(p)
    p.add_argument("--limit", type=_positive, default=20, help="at most this many sessions")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("stats", parents=[common], help="usage figures per agent, model or day")
    p.add_argument("--group-by", choices=GROUP_BY_CHOICES, default="agent_type")
    p.add_argument("--since", metavar="TIME", type=_time,
                   help="sessions started at or after (24h, 7d, ISO)")  # fmt: skip
    p.add_argument("--until", metavar="TIME", type=_time, help="sessions started before")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("sync", parents=[common], help="push what is pending to the remote")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds (default 60)")
    p.set_defaults(handler=cmd_sync)

    p = sub.add_parser("doctor", parents=[common], help="check configuration and database")
    p.set_defaults(handler=cmd_doctor)
    return parser


# ----- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point; returns the exit status: 0 ok, 1 error (the database cannot be
    used, an unknown id, ...), 2 bad usage (an unknown option, or a value that cannot be used:
    a TIME that does not parse, an invalid cursor, ...)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    secrets = _secrets(None, argv)
    parser = build_parser(secrets)
    try:
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
        out.error(f"{type(exc).__name__}: {_one_line(exc)}")
    return EXIT_ERROR


def _silence_stdout() -> None:
    """The reader went away (``| head``): drop what is left instead of failing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# ----- transcript -------------------------------------------------------------------------------


def _timeline(
    detail: SessionDetail,
) -> Iterator[tuple[MessageRecord | None, list[ToolExecutionRecord]]]:
    """Messages in order, each with the tool executions it asked for; tools not tied to a logged
    message come where their start time falls."""
    by_message: dict[str, list[ToolExecutionRecord]] = {}
    ids = {m.id for m in detail.messages}
    loose: list[ToolExecutionRecord] = []
    for t in detail.tool_executions:
        if t.message_id and t.message_id in ids:
            by_message.setdefault(t.message_id, []).append(t)
        else:
            loose.append(t)
    for m in detail.messages:
        early = [t for t in loose if t.started_at < m.created_at]
        if early:
            loose = [t for t in loose if t not in early]
            yield None, early
        yield m, by_message.get(m.id, [])
    if loose:
        yield None, loose


# Session metadata the integrations record; every other key is the caller's own.
_RECORDED_METADATA = frozenset(
    {
        "cwd", "tools", "permission_mode", "claude_code_version", "api_key_source",
        "mcp_servers", "agents", "sdk_session_ids", "title", "directory", "opencode",
        "opencode_sessions",
    }
)  # fmt: skip
_SHOWN_METADATA = ("cwd", "directory", "title", "permission_mode", "claude_code_version")


def _metadata_lines(meta: Any, everything: bool) -> list[tuple[str, str | None]]:
    """What a reader needs of the session's metadata: working directory, agent version,
    permission mode and the caller's own fields; the rest (tool lists, SDK ids, ...) is folded
    unless ``everything``."""
    if not meta:
        return []
    if everything or not isinstance(meta, dict):
        pretty = json.dumps(meta, ensure_ascii=False, indent=2, default=str)
        return [(x, "dim") for x in _indent(pretty, "  metadata: ")]
    opencode = meta.get("opencode")
    opencode = opencode if isinstance(opencode, dict) else {}
    cwd = meta.get("cwd") or meta.get("directory")
    version = None
    if meta.get("claude_code_version"):
        version = f"claude-code {meta['claude_code_version']}"
    elif opencode.get("version"):
        version = f"opencode {opencode['version']}"
    known = [
        ("cwd", cwd),
        ("version", version),
        ("permission mode", meta.get("permission_mode")),
        ("title", meta.get("title")),
    ]
    lines: list[tuple[str, str | None]] = []
    shown = "   ".join(f"{name}: {as_text(value)}" for name, value in known if value)
    if shown:
        lines.append((f"  {shown}", "dim"))
    own = {k: v for k, v in meta.items() if k not in _RECORDED_METADATA}
    if own:
        text = ", ".join(f"{k}: {as_text(v)}" for k, v in own.items())
        lines.append((f"  metadata: {text}", "dim"))
    folded = [k for k in meta if k in _RECORDED_METADATA and k not in _SHOWN_METADATA]
    if folded:
        lines.append((f"  (more metadata: {', '.join(folded)}; --metadata shows it)", "dim"))
    return lines


def _header_lines(s: SessionSummary, metadata: bool = False) -> list[tuple[str, str | None]]:
    lines: list[tuple[str, str | None]] = [(f"Session {s.id}", "bold")]
    if s.external_id:
        lines.append((f"  SDK session: {s.external_id}", None))
    provider = f" ({s.provider})" if s.provider else ""
    lines.append((f"  agent: {s.agent_type}   model: {s.model}{provider}", None))
    lines.append((f"  status: {s.status}", _STATUS_STYLE.get(s.status)))
    if s.error_message:
        lines.append((f"  error: {s.error_message}", "red"))
    lines.append(
        (
            f"  started: {fmt_time(s.started_at, ms=True)} UTC   ended:"
            f" {fmt_time(s.ended_at, ms=True)}{' UTC' if s.ended_at else ''}",
            None,
        )
    )
    lines.append(
        (
            f"  wall time: {fmt_ms(s.wall_duration_ms)} (ended - started)"
            f"   agent-reported time: {fmt_ms(s.agent_duration_ms)}",
            None,
        )
    )
    return lines + _metadata_lines(s.metadata, metadata)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def totals_line(s: SessionSummary) -> str:
    """Session totals; figures the agent did not report are left out rather than shown as 0."""
    parts = [_count(s.message_count, "message"), _count(s.tool_count, "tool call")]
    if s.tool_error_count:
        parts[-1] += f" ({s.tool_error_count} failed)"
    tokens = [
        f"{fmt_int(n)} {label}"
        for n, label in (
            (s.input_tokens, "in"),
            (s.output_tokens, "out"),
            (s.cache_read_tokens, "cache read"),
            (s.cache_creation_tokens, "cache write"),
        )
        if n is not None
    ]
    if tokens:
        parts.append("tokens " + ", ".join(tokens))
    if s.cost_usd is not None:
        parts.append(f"cost {fmt_cost(s.cost_usd)}")
    if s.num_turns is not None:
        parts.append(_count(s.num_turns, "turn"))
    if s.wall_duration_ms is not None:
        parts.append(f"wall time {fmt_ms(s.wall_duration_ms)}")
    if s.agent_duration_ms is not None:
        parts.append(f"agent-reported time {fmt_ms(s.agent_duration_ms)}")
    return "Totals: " + "; ".join(parts)


def _indent(text: str, prefix: str) -> list[str]:
    """``prefix`` on the first line, continuation lines aligned under the text."""
    pad = " " * len(prefix)
    return [(prefix if i == 0 else pad) + line for i, line in enumerate(text.splitlines() or [""])]


def _tool_lines(
    t: ToolExecutionRecord, limit: int, shown_input: Any = None
) -> list[tuple[str, str | None]]:
    style = _STATUS_STYLE.get(t.status)
    head = f"    tool {t.tool_name}: {t.status}, {fmt_ms(t.duration_ms)}"
    if t.tool_use_id:
        head += f"  [{t.tool_use_id}]"
    lines: list[tuple[str, str | None]] = [(head, style)]
    if t.input is not None and t.input != shown_input:
        lines += [(x, None) for x in _indent(clip(as_text(t.input), limit), "      input: ")]
    if t.output is not None:
        head = f"      output ({len(t.output):,} chars): "
        lines += [(x, None) for x in _indent(clip(t.output, limit), head)]
    if t.error is not None:
        lines += [(x, "red") for x in _indent(clip(t.error, limit), "      error: ")]
    return lines


# Fields of a system row's payload that only identify it.
_SYSTEM_IDS = frozenset({"type", "subtype", "session_id", "uuid"})
_BOOKKEEPING_STATUS = ("requesting", None)  # the CLI calling the API: no news for a reader


def _system_fields(m: MessageRecord) -> dict[str, Any] | None:
    """The fields worth reading of an SDK system message's payload (``status: compacting``,
    ``compact_result: failed``); ``None`` for any other row."""
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    if m.role != "system" or meta.get("type") != "SystemMessage":
        return None
    data = meta.get("data")
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k not in _SYSTEM_IDS and v not in (None, "", [], {})}


def _bookkeeping(m: MessageRecord) -> bool:
    """A ``status`` row that only says the CLI is calling the API (or nothing at all)."""
    fields = _system_fields(m)
    return (
        fields is not None
        and m.content == "status"
        and set(fields) <= {"status"}
        and fields.get("status") in _BOOKKEEPING_STATUS
    )


def _step_usage(m: MessageRecord) -> str | None:
    """An assistant row without text or tool call that carries usage (an OpenCode step's
    figures): its one-line summary, else ``None``."""
    if m.role != "assistant" or m.content or m.tool_name or m.tool_input is not None:
        return None
    if m.input_tokens is None and m.output_tokens is None:
        return None
    meta = m.metadata if isinstance(m.metadata, dict) else {}
    bits = [_token_pair(m)]
    for key, label in (("cache_read_tokens", "cache read"), ("cache_write_tokens", "cache write")):
        if isinstance(meta.get(key), int) and meta[key]:
            bits.append(f"{fmt_int(meta[key])} {label}")
    text = "step usage: " + ", ".join(bits)
    if isinstance(meta.get("cost_usd"), (int, float)):
        text += f"; cost {fmt_cost(meta['cost_usd'])}"
    if meta.get("finish"):
        text += f"; finish: {as_text(meta['finish'])}"
    return text


def _token_pair(m: MessageRecord) -> str:
    """``100 in / 20 out``; an output count not final yet is not shown as a figure."""
    if m.output_tokens is None:
        return f"{fmt_int(m.input_tokens)} in / out: n/a (partial)"
    return f"{fmt_int(m.input_tokens)} in / {fmt_int(m.output_tokens)} out"


def transcript_lines(
    detail: SessionDetail, limit: int, everything: bool = False, metadata: bool = False
) -> list[tuple[str, str | None]]:
    """The readable transcript: header, each message with its tool calls, then totals.

    Rows that add nothing are folded unless ``everything``: a tool result already shown under
    its tool call, and system rows of pure bookkeeping; their number is said at the end."""
    lines = _header_lines(detail.session, metadata)
    outputs: set[str] = set()
    repeats = statuses = 0
    for m, tools in _timeline(detail):
        if m is not None and not everything:
            if m.role == "tool" and m.content and m.content in outputs:
                repeats += 1
                continue
            if _bookkeeping(m):
                statuses += 1
                continue
        lines.append(("", None))
        if m is not None:
            usage = _step_usage(m)
            fields = _system_fields(m)
            title = f"#{m.sequence} {m.role}"
            if fields is not None and m.content:  # an SDK system message: its subtype
                title += f": {m.content}"
            bits = [title, fmt_time(m.created_at)]
            if m.model:
                bits.append(m.model)
            if usage is not None:
                bits.append(usage)
            elif m.input_tokens is not None or m.output_tokens is not None:
                bits.append(_token_pair(m))
            if m.parent_tool_use_id:
                bits.append(f"inside {m.parent_tool_use_id}")
            style = "dim" if usage is not None else "bold cyan" if m.role == "user" else "bold"
            lines.append((" | ".join(bits), style))
            if m.role == "tool" and m.content and m.content in outputs:
                name = f" {m.tool_name}" if m.tool_name else ""
                lines.append((f"  (result of{name}: the tool output shown above)", "dim"))
            elif fields:
                text = ", ".join(f"{k}: {as_text(v)}" for k, v in fields.items())
                lines += [(x, None) for x in _indent(clip(text, limit), "  ")]
            elif m.content and fields is None:
                lines += [(x, None) for x in _indent(clip(m.content, limit), "  ")]
            if m.tool_name and m.tool_input is not None:
                call = f"  -> {m.tool_name} "
                lines += [(x, "magenta") for x in _indent(clip(as_text(m.tool_input), limit), call)]
        for t in tools:
            lines += _tool_lines(t, limit, m.tool_input if m is not None else None)
            outputs.update(x for x in (t.output, t.error) if x)
    lines.append(("", None))
    if repeats or statuses:
        calls = "its tool call" if repeats == 1 else "their tool calls"
        kinds = [f"{_count(repeats, 'tool result')} shown with {calls}"] if repeats else []
        if statuses:
            kinds.append(_count(statuses, "status row") + " (requesting)")
        note = f"({_count(repeats + statuses, 'row')} not shown: {', '.join(kinds)}; --all shows"
        lines.append((note + " every row)", "dim"))
    lines.append((totals_line(detail.session), "bold"))
    return lines


def _fence(text: str, info: str = "") -> str:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def transcript_markdown(detail: SessionDetail) -> str:
    """A complete export (nothing cut) that reads well on GitHub."""
    s = detail.session
    parts = [f"# Session `{s.id}`\n\n", "| | |\n|---|---|\n"]
    fields = [
        ("SDK session", s.external_id), ("agent", s.agent_type), ("model", s.model),
        ("provider", s.provider), ("status", s.status), ("error", s.error_message),
        ("started (UTC)", fmt_time(s.started_at, ms=True)),
        ("ended (UTC)", fmt_time(s.ended_at, ms=True)),
        ("wall time", fmt_ms(s.wall_duration_ms)),
        ("agent-reported time", fmt_ms(s.agent_duration_ms)),
        ("cost", fmt_cost(s.cost_usd)),
        ("tokens", f"{fmt_int(s.input_tokens)} in, {fmt_int(s.output_tokens)} out,"
                   f" {fmt_int(s.cache_read_tokens)} cache read,"
                   f" {fmt_int(s.cache_creation_tokens)} cache write"),
    ]  # fmt: skip
    for name, value in fields:
        if value:
            cell = str(value).replace("|", "\\|").replace("\n", " ")
            parts.append(f"| {name} | {cell} |\n")
    if s.metadata:
        parts.append(f"\nMetadata:\n\n{_fence(json.dumps(s.metadata, indent=2), 'json')}")
    for m, tools in _timeline(detail):
        if m is not None:
            title = f"\n## {m.sequence}. {m.role}"
            if m.tool_name:
                title += f" - `{m.tool_name}`"
            parts.append(f"{title}\n\n_{fmt_time(m.created_at, ms=True)} UTC_\n\n")
            if m.content:
                parts.append(m.content.rstrip() + "\n\n")
            if m.tool_input is not None:
                parts.append(_fence(json.dumps(m.tool_input, indent=2, ensure_ascii=False), "json"))
        for t in tools:
            parts.append(f"\n### Tool `{t.tool_name}`: {t.status}, {fmt_ms(t.duration_ms)}\n\n")
            if t.input is not None and (m is None or t.input != m.tool_input):
                parts.append("Input:\n\n")
                parts.append(_fence(json.dumps(t.input, indent=2, ensure_ascii=False), "json"))
            if t.output is not None:
                parts.append(f"\nOutput ({len(t.output):,} chars):\n\n{_fence(t.output)}")
            if t.error is not None:
                parts.append(f"\nError:\n\n{_fence(t.error)}")
    parts.append(f"\n---\n\n{totals_line(s)}\n")
    return "".join(parts)


def jsonl_records(detail: SessionDetail) -> Iterator[dict[str, Any]]:
    """One JSON object per line: the session, then messages and tool executions in order."""
    yield {"type": "session", **detail.session.to_dict()}
    for m, tools in _timeline(detail):
        if m is not None:
            yield {"type": "message", **asdict(m)}
        for t in tools:
            yield {"type": "tool_execution", **asdict(t)}
