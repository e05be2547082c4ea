"""Where results go: a rich console with tables that fit the terminal, or plain text.

Every line printed passes ``Output.scrub``, so the auth token never reaches the screen. ``rich``
is imported inside the functions that draw with it: it is optional (plain text without it) and
costs start-up time for piped output, which never uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from ..query.documents import dumps
from ..redact import REDACTED
from .base import PROG

Cell = str | tuple[str, str | None]  # text, or (text, rich style)

STATUS_STYLE = {"completed": "green", "error": "red", "running": "yellow"}


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (the auth token, from the option or the environment) hidden."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


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
        return scrub(text, self.secrets)

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
        self.write_raw(dumps(data))

    def error(self, message: str, prog: str = PROG) -> None:
        text = " ".join(self.scrub(message).split())
        self.stderr.write(f"{prog}: error: {text}\n")

    def note(self, message: str, prog: str = PROG) -> None:
        """A remark on stderr (results stay alone on stdout, ``--json`` included)."""
        text = " ".join(self.scrub(message).split())
        self.stderr.write(f"{prog}: note: {text}\n")

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
        deferred = {i: _ComputedOnce(get) for i, get in compact.items()}
        layout, fitted = fit_columns(columns, texts, width, overhead, _ComputedColumns(deferred))
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


class _ComputedOnce:
    """Compact forms are computed (a database read) only when a table needs them."""

    def __init__(self, get: Callable[[], Sequence[str]]) -> None:
        self._get = get
        self._value: Sequence[str] | None = None

    def value(self) -> Sequence[str]:
        if self._value is None:
            self._value = self._get()
        return self._value


class _ComputedColumns(Mapping[int, Sequence[str]]):
    """Each column's compact forms, computed the first time ``fit_columns`` asks for them."""

    def __init__(self, items: dict[int, _ComputedOnce]) -> None:
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
