"""Times as the read API takes them (``since``/``until``) and as the database stores them.

Stored times are UTC text with milliseconds (``2026-01-31T12:00:05.123Z``); a bound given as a
datetime, a date, epoch seconds, ISO-8601 text or a relative age (``"7d"``) becomes that text.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

TimeLike = str | float | int | datetime | date

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_time(value: TimeLike) -> str:
    """A bound for ``since``/``until`` as stored text (UTC, milliseconds).

    Accepts datetimes (naive ones are UTC), dates, epoch seconds, ISO-8601 strings and relative
    ages such as ``"90m"``, ``"24h"``, ``"7d"``, ``"2w"`` (that long before now). Anything else,
    or a time out of range, raises ``ValueError`` ("not a time: ...").
    """
    try:
        return _parse_time(value)
    except ValueError as exc:
        if str(exc).startswith("not a time"):
            raise
        raise ValueError(f"not a time: {value!r} (out of range)") from None
    except (OverflowError, OSError):
        raise ValueError(f"not a time: {value!r} (out of range)") from None


def _now() -> datetime:
    """What a relative age (``"7d"``) counts back from."""
    return datetime.now(timezone.utc)


def _utc_text(dt: datetime) -> str:
    """Stored time text (``iso_utc``'s format, the year always four digits): milliseconds,
    truncated."""
    ms = (dt - _EPOCH) // timedelta(milliseconds=1)
    utc = _EPOCH + timedelta(milliseconds=ms)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}"
        f":{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def _parse_time(value: TimeLike) -> str:
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return _utc_text(_EPOCH + timedelta(milliseconds=int(float(value) * 1000)))
    if isinstance(value, datetime):
        return _utc_text(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00.000Z"
    text = str(value).strip()
    age = age_seconds(text)
    if age is not None:
        return _utc_text(_now() - timedelta(seconds=age))
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    iso = re.sub(r"(\.\d{1,6})\d*", lambda m: m.group(1).ljust(7, "0"), iso, count=1)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso):
            return f"{date.fromisoformat(iso).isoformat()}T00:00:00.000Z"
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"not a time: {value!r} (use ISO-8601 such as 2026-01-31 or 2026-01-31T12:00:00Z, "
            "or an age such as 24h or 7d)"
        ) from None
    return _parse_time(parsed)


def age_seconds(value: Any) -> float | None:
    """How long ago a relative age such as ``"7d"`` means, in seconds; ``None`` for anything
    else (absolute times, datetimes, numbers)."""
    if not isinstance(value, str):
        return None
    rel = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value.strip(), re.IGNORECASE)
    if rel is None:
        return None
    return float(rel.group(1)) * _AGE_UNITS[rel.group(2).lower()]


def format_age(seconds: float) -> str:
    """An age in its largest whole unit: ``604800`` -> ``1w``, ``90`` -> ``90s``."""
    for unit in ("w", "d", "h", "m"):
        size = _AGE_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def duration_ms(start: str | None, end: str | None) -> int | None:
    """Milliseconds from one stored time to another; ``None`` when either is missing or bad."""
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    # stored times without an offset (SQLite's ``datetime('now')`` default) are UTC
    a, b = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (a, b))
    return max(0, round((b - a).total_seconds() * 1000))
