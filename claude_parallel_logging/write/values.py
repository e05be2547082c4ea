"""Python values to column values: timestamps, JSON, limits, redaction, per column.

Runs on the writer thread for every value it stores, so each column gets one specialised
function and the common cases (``None``, short ASCII text, ints) take the shortest path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..payload import (
    REDACT_MARGIN,
    clean_text,
    cut_json,
    cut_text,
    iso_utc,
    to_json,
    to_jsonable,
    to_text,
)
from ..redact import build_redactor, redact_values, redactor_for

_TIMESTAMP = frozenset({"started_at", "ended_at", "created_at"})
_JSON = frozenset({"metadata", "tool_input", "tool_output", "input"})
_PAYLOAD = frozenset({"content", "output", "error", "error_message"})
_INT = frozenset(
    {
        "sequence", "token_count", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "duration_ms", "num_turns",
    }
)  # fmt: skip
_REAL = frozenset({"cost_usd"})
_ID = frozenset({"id", "session_id", "message_id"})
_SHORT_LIMIT = 4096


class ValueConverter:
    """Converts Python values to column values (timestamps, JSON, limits, redaction).

    This runs for every value the writer stores, so each column gets one specialised function
    and the common cases (``None``, short ASCII text, ints) take the shortest path.
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.config.auth_token if settings.config else None
        self.redact = redactor_for(settings)
        self._custom = settings.redact is not None
        self._builtin = (
            build_redactor(None, settings.redact_defaults, [token]) if self._custom else self.redact
        )
        self.limit = settings.max_payload_chars
        self._converters: dict[str, Callable[[Any], Any]] = {}
        self._rows: dict[tuple[str, ...], _RowFunction] = {}

    def converter(self, col: str) -> Callable[[Any], Any]:
        fn = self._converters.get(col)
        if fn is None:
            fn = self._make(col)
            self._converters[col] = fn
        return fn

    def _make(self, col: str) -> Callable[[Any], Any]:
        redact = self.redact

        def text_fn(cap: int) -> Callable[[Any], Any]:
            def text(v: Any) -> str:
                if type(v) is not str:
                    v = to_text(v)
                if not v.isascii() or "\x00" in v:
                    v = clean_text(v)
                if len(v) > cap or v.endswith(" chars]"):  # too long, or cut by the caller
                    return cut_text(v, cap, redact)
                return redact(v)

            return text

        if col in _TIMESTAMP:
            return _timestamp
        if col in _JSON:
            return self._json_fn()
        if col in _PAYLOAD:
            return text_fn(self.limit)
        if col in _INT:
            return _to_int
        if col in _REAL:
            return _to_float
        if col in _ID:
            return lambda v: (
                v if type(v) is str and v.isascii() else clean_text(str(v))[:_SHORT_LIMIT]
            )
        return text_fn(_SHORT_LIMIT)

    def _json_fn(self) -> Callable[[Any], str]:
        """Valid JSON, redacted, within the limit (a longer value becomes a marker object)."""
        limit, builtin, hook = self.limit, self._builtin, self.redact if self._custom else None
        keep = limit + REDACT_MARGIN

        def json_value(v: Any) -> str:
            if hook is not None:  # the user's hook sees each string, not JSON escapes
                v = redact_values(to_jsonable(v), hook)
            text = to_json(v)
            if not text.isascii() or "\x00" in text:
                text = clean_text(text)
            text = builtin(text)  # patterns never span a quote: the JSON stays valid
            return text if len(text) <= limit else cut_json(text, limit, keep)

        return json_value

    def row(self, cols: Sequence[str], values: Sequence[Any]) -> tuple[Any, ...]:
        """The stored values of one row, in ``cols`` order."""
        return self.masked_row(cols, values)[1]

    def masked_row(
        self, cols: Sequence[str], values: Sequence[Any]
    ) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
        """``(which values are not NULL, the stored values)``: for inserts that name only those."""
        fn = self._function(cols, values)
        try:
            return fn(values)
        except Exception:
            return self._slow_row(cols, values)

    def _slow_row(
        self, cols: Sequence[str], values: Sequence[Any]
    ) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
        """One value could not be converted: store a marker for it, keep the rest of the row."""
        out: list[Any] = []
        for col, v in zip(cols, values):
            try:
                out.append(None if v is None else self.converter(col)(v))
            except Exception as exc:
                out.append(_unstorable(col, v, exc))
        row = tuple(out)
        return tuple(v is not None for v in row), row

    def _function(self, cols: Sequence[str], values: Sequence[Any]) -> _RowFunction:
        key = cols if type(cols) is tuple else tuple(cols)
        fn = self._rows.get(key)
        if fn is None:
            fn = self._rows[key] = self._row_function(key)
        if len(values) != len(key):
            raise ValueError(f"{len(values)} values for {len(key)} columns")
        return fn

    def _row_function(self, cols: tuple[str, ...]) -> _RowFunction:
        """A function made for one column tuple: no per-value loop, zip or dispatch.

        It runs for every row the writer stores; generating it (as ``namedtuple`` does) costs
        half of a generic loop over converters.
        """
        n = len(cols)
        env: dict[str, Any] = {"_to_int": _to_int}
        lines = [
            "def row(v):",
            f"    {', '.join(f'a{i}' for i in range(n))}{',' if n == 1 else ''} = v",
        ]
        for i, col in enumerate(cols):
            if col in _INT:
                lines.append(f"    b{i} = a{i} if type(a{i}) is int else _to_int(a{i})")
            else:
                env[f"f{i}"] = self.converter(col)
                lines.append(f"    b{i} = None if a{i} is None else f{i}(a{i})")
        mask = ", ".join(f"b{i} is not None" for i in range(n))
        vals = ", ".join(f"b{i}" for i in range(n))
        lines.append(f"    return ({mask},), ({vals},)")
        exec(compile("\n".join(lines) + "\n", f"<row {','.join(cols)}>", "exec"), env)
        fn: _RowFunction = env["row"]
        return fn


_RowFunction = Callable[[Sequence[Any]], tuple[tuple[bool, ...], tuple[Any, ...]]]


def _timestamp(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return iso_utc(v)
        except (OverflowError, ValueError, OSError):  # inf, nan, year 10000
            return f"invalid timestamp: {v!r}"
    return clean_text(str(v))[:64]


def _unstorable(col: str, value: Any, exc: BaseException) -> Any:
    if col in _INT or col in _REAL:
        return None
    return f"<unstorable {type(value).__name__}: {type(exc).__name__}>"


def _to_int(v: Any) -> int | None:
    if type(v) is int:
        return v
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _to_float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None
