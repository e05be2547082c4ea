"""Query-string parameters, checked: a value that cannot be used is a ``BadRequest`` (a 400 with
one line saying which parameter and why), never a traceback."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request

from ..query import GROUP_BY_CHOICES, check_list_arguments, parse_time
from .viewer import BadRequest

STATUSES = ("running", "completed", "error")
MAX_LIMIT = 500


def text(request: Request, name: str) -> str:
    """A parameter's value, stripped ("" when absent)."""
    return (request.query_params.get(name) or "").strip()


def time_text(request: Request, name: str) -> str:
    value = text(request, name)
    if value:
        try:
            parse_time(value)
        except ValueError as exc:
            raise BadRequest(f"{name}: {exc}") from None
    return value


def integer(request: Request, name: str, default: int, lo: int = 1, hi: int = MAX_LIMIT) -> int:
    value = text(request, name)
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{name}: not a whole number: {value!r}") from None
    if not lo <= n <= hi:
        raise BadRequest(f"{name}: must be between {lo} and {hi}, got {n}")
    return n


def metadata(request: Request) -> dict[str, str]:
    """``meta=key=value`` (repeatable, or several separated by commas)."""
    out: dict[str, str] = {}
    for raw in request.query_params.getlist("meta"):
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise BadRequest(f"meta: use key=value, got {item!r}")
            out[key.strip()] = value.strip()
    return out


def min_cost(request: Request) -> float | None:
    value = text(request, "min_cost").lstrip("$")
    if not value:
        return None
    try:
        cost = float(value)
    except ValueError:
        raise BadRequest(f"min_cost: not a number of dollars: {value!r}") from None
    if not math.isfinite(cost) or cost < 0:
        raise BadRequest(f"min_cost: must be a number of 0 or more, got {value!r}")
    return cost


def session_filters(request: Request) -> dict[str, Any]:
    """The filters of ``list_sessions`` (and of search, without metadata and cost)."""
    status = text(request, "status")
    if status and status not in STATUSES:
        raise BadRequest(f"status: one of {', '.join(STATUSES)}, got {status!r}")
    return {
        "agent_type": text(request, "agent_type") or None,
        "status": status or None,
        "model": text(request, "model") or None,
        "since": time_text(request, "since") or None,
        "until": time_text(request, "until") or None,
    }


def list_arguments(request: Request) -> dict[str, Any]:
    """Every argument of ``list_sessions`` but the client, checked (cursor included)."""
    filters = session_filters(request)
    meta, cost, cursor = metadata(request), min_cost(request), text(request, "cursor")
    check_list_arguments(**filters, cursor=cursor or None, metadata=meta, min_cost=cost)
    return {
        **filters,
        "metadata": meta or None,
        "min_cost": cost,
        "cursor": cursor,
        "limit": integer(request, "limit", 50),
    }


def group_by(request: Request, default: str = "agent_type") -> str:
    value = text(request, "group_by") or default
    if value not in GROUP_BY_CHOICES:
        raise BadRequest(f"group_by: one of {', '.join(GROUP_BY_CHOICES)}, got {value!r}")
    return value
