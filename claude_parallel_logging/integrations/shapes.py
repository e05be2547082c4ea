"""Reading values of unknown shape from the SDKs: number coercion and a bounded description.

Both integrations read what their SDK or server reports without trusting its types: a count may
be a bool, a float, NaN or a string; content may be anything. These helpers never raise.
"""

from __future__ import annotations

import itertools
from typing import Any

PREVIEW_CHARS = 200  # characters of a string (or of a key) shown in a description
PREVIEW_ITEMS = 8  # items of a container whose types (or keys) are shown


def as_int(value: Any) -> int | None:
    """A reported count as an int: ``None`` for a bool, a non-number, NaN or an infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    """A reported number as a float: ``None`` for a bool or a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def int_at(mapping: Any, key: str) -> int | None:
    """``as_int(mapping[key])``; ``None`` when ``mapping`` is not a dict or lacks the key."""
    return as_int(mapping.get(key)) if isinstance(mapping, dict) else None


def describe(value: Any) -> dict[str, Any]:
    """A bounded description of a value of an unexpected shape: its type, size and a short
    preview. Never walks the value whole, never iterates an iterator, never raises."""
    out: dict[str, Any] = {"type": type(value).__name__}
    try:
        if isinstance(value, str):
            out["length"] = len(value)
            out["preview"] = value[:PREVIEW_CHARS]
        elif isinstance(value, (bytes, bytearray)):
            out["length"] = len(value)
            out["preview"] = bytes(value[:PREVIEW_CHARS]).decode("utf-8", "replace")
        elif isinstance(value, dict):
            out["length"] = len(value)
            out["keys"] = [
                k[:PREVIEW_CHARS] if isinstance(k, str) else f"<{type(k).__name__}>"
                for k in itertools.islice(value, PREVIEW_ITEMS)
            ]
        elif isinstance(value, (list, tuple, set, frozenset)):
            out["length"] = len(value)
            out["item_types"] = [type(v).__name__ for v in itertools.islice(value, PREVIEW_ITEMS)]
        elif value is None or isinstance(value, (bool, float)):
            out["value"] = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            out["value"] = value
    except Exception:  # a hostile __len__ or __iter__: the type name is enough
        pass
    return out
