"""Per-turn figures from the cumulative ones the Claude CLI reports.

``ResultMessage.usage`` covers the main thread of one turn; ``model_usage`` and
``total_cost_usd`` are cumulative per SDK session (a ``ClaudeSDKClient`` across its turns, and a
resumed session carries its earlier figures along) and include subagents and helper calls. A
turn's figures are therefore the difference to the previous result of the same SDK session
(:func:`turn_figures`), kept in one process-wide ledger per SDK session id, so every mapper and
logged session that sees that session gets the same figures.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

from ..shapes import int_at

_TOKEN_KEYS = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens")


@dataclass(frozen=True)
class TurnFigures:
    """What one turn (one ``ResultMessage``) used, all models and subagents included."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float | None
    source: str  # where the tokens come from: model_usage_since_last_result, model_usage, usage


def _model_usage_sums(model_usage: Any) -> tuple[tuple[int, ...], float | None] | None:
    """Token sums over models (and their summed cost), or None when nothing is reported."""
    if not isinstance(model_usage, dict) or not model_usage:
        return None
    sums = [0, 0, 0, 0]
    cost: float | None = None
    for entry in model_usage.values():
        if not isinstance(entry, dict):
            return None
        for i, key in enumerate(_TOKEN_KEYS):
            sums[i] += int_at(entry, key) or 0
        c = entry.get("costUSD")
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            cost = (cost or 0.0) + float(c)
    return tuple(sums), cost


@dataclass
class _SdkSessionLedger:
    """The cumulative figures last reported for one SDK session id."""

    cost: float = 0.0
    tokens: tuple[int, ...] | None = None
    turns: collections.OrderedDict[Any, tuple[Any, TurnFigures]] = field(
        default_factory=collections.OrderedDict
    )


_LEDGERS_MAX = 1024
_TURNS_MAX = 16  # results remembered per SDK session (and parsed results awaiting mapping)
_ledger_lock = threading.Lock()
_ledgers: collections.OrderedDict[str, _SdkSessionLedger] = collections.OrderedDict()
_raw_deltas: collections.OrderedDict[int, tuple[Any, Any]] = collections.OrderedDict()


def remember_raw_result(message: Any, raw: Any) -> None:
    """Keep the CLI's own per-turn delta (``model_usage_since_last_result``, a raw field the SDK's
    parser drops) for a parsed ``ResultMessage``; instrumentation calls this from the parser."""
    if not isinstance(raw, dict):
        return
    delta = raw.get("model_usage_since_last_result")
    if not isinstance(delta, dict):
        return
    with _ledger_lock:
        _raw_deltas[id(message)] = (message, delta)  # the reference keeps the id from reuse
        while len(_raw_deltas) > _TURNS_MAX:
            _raw_deltas.popitem(last=False)


def _raw_delta(message: Any) -> Any:
    entry = _raw_deltas.get(id(message))
    return entry[1] if entry is not None and entry[0] is message else None


def turn_figures(msg: Any) -> TurnFigures:
    """One turn's usage and cost, the same for every mapper that sees this result.

    Prefers the CLI's own per-turn delta; else the difference of the cumulative ``model_usage``
    and ``total_cost_usd`` to the previous result of the same SDK session (a session first seen
    here, e.g. resumed from another process, counts from zero); else the main-thread ``usage``.
    A result seen again (the same ``uuid``: a replay, or two loggers on one stream) gets the
    figures it got the first time.
    """
    usage = getattr(msg, "usage", None)
    reported = getattr(msg, "total_cost_usd", None)
    reported_cost = (
        float(reported)
        if isinstance(reported, (int, float)) and not isinstance(reported, bool)
        else None
    )
    sums = _model_usage_sums(getattr(msg, "model_usage", None))
    sid = getattr(msg, "session_id", None)
    uuid = getattr(msg, "uuid", None)
    key: Any = uuid if isinstance(uuid, str) and uuid else ("id", id(msg))
    with _ledger_lock:
        ledger: _SdkSessionLedger | None = None
        if isinstance(sid, str) and sid:
            ledger = _ledgers.get(sid)
            if ledger is None:
                ledger = _ledgers[sid] = _SdkSessionLedger()
                while len(_ledgers) > _LEDGERS_MAX:
                    _ledgers.popitem(last=False)
            else:
                _ledgers.move_to_end(sid)
            seen = ledger.turns.get(key)
            if seen is not None and (isinstance(key, str) or seen[0] is msg):
                return seen[1]
        base_cost = ledger.cost if ledger is not None else 0.0
        base_tokens = ledger.tokens if ledger is not None and ledger.tokens else (0, 0, 0, 0)
        raw = _model_usage_sums(_raw_delta(msg))
        cost: float | None = None
        if raw is not None:
            tokens, cost = raw
            source = "model_usage_since_last_result"
        elif sums is not None:
            tokens = tuple(max(0, now - before) for now, before in zip(sums[0], base_tokens))
            source = "model_usage"
        else:
            tokens = tuple(
                int_at(usage, k) or 0
                for k in (
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                )
            )
            source = "usage"
        if cost is None and reported_cost is not None:
            # Cumulative, so never below the last report; a lower one is kept out of the sum.
            cost = max(0.0, reported_cost - base_cost)
        figures = TurnFigures(
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cache_read_tokens=tokens[2],
            cache_creation_tokens=tokens[3],
            cost_usd=cost,
            source=source,
        )
        if ledger is not None:
            if reported_cost is not None:
                ledger.cost = max(ledger.cost, reported_cost)
            if sums is not None:
                ledger.tokens = tuple(max(a, b) for a, b in zip(sums[0], base_tokens))
            ledger.turns[key] = (msg if not isinstance(key, str) else None, figures)
            while len(ledger.turns) > _TURNS_MAX:
                ledger.turns.popitem(last=False)
        return figures


def reset_ledgers() -> None:
    """Forget every SDK session's cumulative figures (tests that replay recordings)."""
    with _ledger_lock:
        _ledgers.clear()
        _raw_deltas.clear()


# ----- the mapper ------------------------------------------------------------------------------
