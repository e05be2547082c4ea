"""The cursors of ``list_sessions``: where the next page starts, and the filters of the query
it belongs to (so a cursor given alone continues the same query)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidCursor
from .sql import Filter, filter_values
from .times import TimeLike, age_seconds, format_age, parse_time

_CURSOR_VERSION = 2
_LIST_FILTERS = ("agent_type", "status", "model")
_TIME_FILTERS = ("since", "until")
_EXTRA_FILTERS = ("metadata", "min_cost")


@dataclass(frozen=True)
class PageQuery:
    """What a page of ``list_sessions`` selects, resolved: list filters sorted and deduplicated,
    ``since``/``until`` as stored time text. An age such as ``"7d"`` is resolved once, when the
    query is made, and remembered (``*_age``, seconds) so the same age given again matches."""

    agent_type: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    since_age: float | None = None
    until_age: float | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    min_cost: float | None = None

    @classmethod
    def build(
        cls,
        agent_type: Filter = None,
        status: Filter = None,
        model: Filter = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        metadata: Mapping[str, str] | None = None,
        min_cost: float | None = None,
    ) -> PageQuery:
        return cls(
            agent_type=tuple(sorted(set(filter_values(agent_type)))),
            status=tuple(sorted(set(filter_values(status)))),
            model=tuple(sorted(set(filter_values(model)))),
            since=None if since is None else parse_time(since),
            until=None if until is None else parse_time(until),
            since_age=age_seconds(since),
            until_age=age_seconds(until),
            metadata=metadata_filter(metadata),
            min_cost=cost_filter(min_cost),
        )

    @property
    def empty(self) -> bool:
        return not (self.agent_type or self.status or self.model or self.metadata) and (
            self.since is None and self.until is None and self.min_cost is None
        )

    def same_as(self, other: PageQuery) -> bool:
        """Whether these filters (given with a cursor) select what ``other`` (the cursor's)
        does: equal lists, and each time bound the same age or the same instant."""
        for name in (*_LIST_FILTERS, *_EXTRA_FILTERS):
            if getattr(self, name) != getattr(other, name):
                return False
        for name in _TIME_FILTERS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                return False
            age = getattr(self, f"{name}_age")
            if age is not None:
                if age != getattr(other, f"{name}_age"):
                    return False
            elif mine != theirs:
                return False
        return True

    def describe(self) -> str:
        parts = [f"{n}={','.join(getattr(self, n))}" for n in _LIST_FILTERS if getattr(self, n)]
        for name in _TIME_FILTERS:
            value = getattr(self, name)
            if value is not None:
                age = getattr(self, f"{name}_age")
                parts.append(
                    f"{name}={value}" + (f" (age {format_age(age)})" if age is not None else "")
                )
        parts += [f"metadata.{k}={v}" for k, v in self.metadata]
        if self.min_cost is not None:
            parts.append(f"min_cost={self.min_cost:g}")
        return " ".join(parts) or "no filters"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: list(getattr(self, n)) for n in _LIST_FILTERS if getattr(self, n)}
        for name in _TIME_FILTERS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
            if getattr(self, f"{name}_age") is not None:
                out[f"{name}_age"] = getattr(self, f"{name}_age")
        if self.metadata:
            out["metadata"] = [list(pair) for pair in self.metadata]
        if self.min_cost is not None:
            out["min_cost"] = self.min_cost
        return out

    @classmethod
    def from_json(cls, data: Any) -> PageQuery:
        """The cursor's filters; ``ValueError`` on anything ``to_json`` does not make."""
        allowed = {
            *_LIST_FILTERS,
            *_TIME_FILTERS,
            *_EXTRA_FILTERS,
            *(f"{n}_age" for n in _TIME_FILTERS),
        }
        if not isinstance(data, dict) or not set(data) <= allowed:
            raise ValueError("unknown filters")
        lists: dict[str, tuple[str, ...]] = {}
        for name in _LIST_FILTERS:
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(name)
            lists[name] = tuple(sorted(set(value)))
        times: dict[str, Any] = {}
        for name in _TIME_FILTERS:
            value, age = data.get(name), data.get(f"{name}_age")
            if value is not None and (not isinstance(value, str) or parse_time(value) != value):
                raise ValueError(name)
            if age is not None and (
                value is None
                or isinstance(age, bool)
                or not isinstance(age, (int, float))
                or not math.isfinite(age)
                or age < 0
            ):
                raise ValueError(f"{name}_age")
            times[name] = value
            times[f"{name}_age"] = None if age is None else float(age)
        pairs = data.get("metadata", [])
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs
        ):
            raise ValueError("metadata")
        min_cost = data.get("min_cost")
        return cls(
            metadata=metadata_filter(dict(pairs)),
            min_cost=cost_filter(min_cost),
            agent_type=lists["agent_type"],
            status=lists["status"],
            model=lists["model"],
            since=times["since"],
            until=times["until"],
            since_age=times["since_age"],
            until_age=times["until_age"],
        )


def metadata_filter(metadata: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``{key: value}`` as sorted pairs of text; ``ValueError`` for an empty key."""
    if not metadata:
        return ()
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata filter must be a mapping of key to value, got {metadata!r}")
    pairs = []
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata filter keys must be non-empty text, got {key!r}")
        pairs.append((key, value if isinstance(value, str) else json.dumps(value)))
    return tuple(sorted(pairs))


def cost_filter(min_cost: Any) -> float | None:
    """A minimum cost in dollars: a finite number of 0 or more (``None``: no minimum)."""
    if min_cost is None:
        return None
    if isinstance(min_cost, bool) or not isinstance(min_cost, (int, float)):
        raise ValueError(f"min_cost must be a number of dollars, got {min_cost!r}")
    if not math.isfinite(min_cost) or min_cost < 0:
        raise ValueError(f"min_cost must be a finite number of 0 or more, got {min_cost!r}")
    return float(min_cost)


def encode_cursor(started_at: str, session_id: str, query: PageQuery) -> str:
    body: dict[str, Any] = {"v": _CURSOR_VERSION, "at": started_at, "id": session_id}
    filters = query.to_json()
    if filters:
        body["q"] = filters
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, PageQuery | None]:
    """``(started_at, id, filters)`` of a cursor ``list_sessions`` returned; the filters are
    ``None`` for a cursor of an older version (``[started_at, id]``: it did not keep them).
    Raises :class:`InvalidCursor` for anything else."""
    bad = InvalidCursor(
        f"invalid cursor: {str(cursor)[:60]!r} (give a cursor exactly as a page of sessions"
        " returned it)"
    )
    if not isinstance(cursor, str):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor.strip() + "=" * (-len(cursor.strip()) % 4))
        data = json.loads(raw)
        if isinstance(data, list):  # before version 2: no filters
            started_at, session_id = data
            query = None
        elif isinstance(data, dict) and data.get("v") == _CURSOR_VERSION:
            if not set(data) <= {"v", "at", "id", "q"}:
                raise ValueError("unknown keys")
            started_at, session_id = data["at"], data["id"]
            query = PageQuery.from_json(data.get("q", {}))
        else:
            raise ValueError("unknown format")
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise bad from None
    if not isinstance(started_at, str) or not isinstance(session_id, str):
        raise bad
    return started_at, session_id, query


def page_query(
    agent_type: Filter,
    status: Filter,
    model: Filter,
    since: TimeLike | None,
    until: TimeLike | None,
    cursor: str | None,
    metadata: Mapping[str, str] | None = None,
    min_cost: float | None = None,
) -> tuple[PageQuery, tuple[str, str] | None]:
    """The filters a ``list_sessions`` call applies and where its page starts (``None``: at
    the newest session). See ``list_sessions`` for the rule on filters given with a cursor."""
    given = PageQuery.build(agent_type, status, model, since, until, metadata, min_cost)
    if not cursor:
        return given, None
    started_at, last_id, kept = decode_cursor(cursor)
    if kept is None or given.empty or given.same_as(kept):
        return (given if kept is None else kept), (started_at, last_id)
    raise InvalidCursor(
        "the cursor belongs to a query with other filters (the cursor's: "
        f"{kept.describe()}; given: {given.describe()}): pass the cursor alone, or with"
        " exactly the filters of the page that returned it"
    )


def check_list_arguments(
    agent_type: Filter = None,
    status: Filter = None,
    model: Filter = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    cursor: str | None = None,
    metadata: Mapping[str, str] | None = None,
    min_cost: float | None = None,
) -> None:
    """Raise the ``ValueError`` (:class:`InvalidCursor` for the cursor) ``list_sessions`` would
    raise for these arguments, without reading anything."""
    page_query(agent_type, status, model, since, until, cursor, metadata, min_cost)
