"""instrument()/uninstrument() side effects on the Claude Agent SDK: every patched attribute is
restored, patching is idempotent and repeatable, and other libraries' wrapt patches survive."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wrapt
from claude_agent_sdk import ResultMessage, query

import claude_parallel_logging as cpl
from claude_parallel_logging.integrations.claude import usage as mapping
from claude_parallel_logging.integrations.instrument import is_instrumented
from claude_parallel_logging.testing.anthropic import ScriptedAnthropicServer, Usage, text_turn
from claude_parallel_logging.testing.claude import scripted_claude_options
from tests.conftest import query as db_query

# (module, owner class or None, attribute): everything instrument() patches for Claude
PATCHED = [
    ("claude_agent_sdk._internal.client", "InternalClient", "process_query"),
    ("claude_agent_sdk.client", "ClaudeSDKClient", "connect"),
    ("claude_agent_sdk.client", "ClaudeSDKClient", "query"),
    ("claude_agent_sdk.client", "ClaudeSDKClient", "receive_messages"),
    ("claude_agent_sdk.client", "ClaudeSDKClient", "disconnect"),
    ("claude_agent_sdk.client", "ClaudeSDKClient", "__aexit__"),
    ("claude_agent_sdk._internal.message_parser", None, "parse_message"),
    ("claude_agent_sdk._internal.client", None, "parse_message"),
]


def owner_of(module: str, cls: str | None) -> Any:
    mod = importlib.import_module(module)
    return getattr(mod, cls) if cls else mod


def current(module: str, cls: str | None, attr: str) -> Any:
    owner = owner_of(module, cls)
    return owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)


def snapshot() -> list[Any]:
    return [current(*p) for p in PATCHED]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    cpl.uninstrument()
    yield
    cpl.uninstrument()


RESULT_FRAME = {
    "type": "result",
    "subtype": "success",
    "duration_ms": 1,
    "duration_api_ms": 1,
    "is_error": False,
    "num_turns": 1,
    "session_id": "sdk-session-instrument-test",
    "total_cost_usd": 0.5,
    "usage": {"input_tokens": 1, "output_tokens": 1},
    "modelUsage": {"m": {"inputTokens": 9, "outputTokens": 9, "costUSD": 0.5}},
    "model_usage_since_last_result": {"m": {"inputTokens": 2, "outputTokens": 3, "costUSD": 0.25}},
}


def parse_and_measure() -> mapping.TurnFigures:
    """Parse a result frame through the SDK's parser as the SDK does, then ask for its figures:
    the CLI's own per-turn delta is only known when our parser patch is active."""
    from claude_agent_sdk._internal import message_parser

    mapping.reset_ledgers()
    message = message_parser.parse_message(dict(RESULT_FRAME))
    assert isinstance(message, ResultMessage)
    return mapping.turn_figures(message)


def test_every_patch_is_restored_and_instrument_is_repeatable() -> None:
    originals = snapshot()
    assert not any(type(o).__module__.startswith("wrapt") for o in originals)
    assert "claude_agent_sdk" in cpl.instrument()
    patched = snapshot()
    for (module, cls, attr), before, now in zip(PATCHED, originals, patched, strict=True):
        assert now is not before, f"{module}.{cls}.{attr} not patched"
        assert now.__wrapped__ is before, f"{module}.{cls}.{attr} wraps something else"
    assert parse_and_measure().source == "model_usage_since_last_result"

    assert "claude_agent_sdk" in cpl.instrument()  # idempotent: nothing stacked
    assert all(a is b for a, b in zip(snapshot(), patched, strict=True))

    cpl.uninstrument()
    restored = snapshot()
    assert all(a is b for a, b in zip(restored, originals, strict=True))
    assert not is_instrumented()
    assert parse_and_measure().source == "model_usage"  # our parser hook is gone

    cpl.instrument()  # and again: patched afresh, restored afresh
    again = snapshot()
    assert all(now.__wrapped__ is before for now, before in zip(again, originals, strict=True))
    assert parse_and_measure().source == "model_usage_since_last_result"
    cpl.uninstrument()
    assert all(a is b for a, b in zip(snapshot(), originals, strict=True))


def foreign(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    calls.append(getattr(wrapped, "__name__", "?"))
    return wrapped(*args, **kwargs)


calls: list[str] = []


def test_a_foreign_wrapt_patch_underneath_is_wrapped_and_restored() -> None:
    from claude_agent_sdk._internal import message_parser

    original = message_parser.parse_message
    wrapt.wrap_function_wrapper(message_parser, "parse_message", foreign)
    theirs = message_parser.parse_message
    try:
        calls.clear()
        cpl.instrument()
        ours = message_parser.parse_message
        assert ours is not theirs and ours.__wrapped__ is theirs  # not skipped as "already ours"
        assert parse_and_measure().source == "model_usage_since_last_result"
        assert calls == ["parse_message"]  # their patch still runs
        cpl.uninstrument()
        assert message_parser.parse_message is theirs
        assert parse_and_measure().source == "model_usage"
    finally:
        message_parser.parse_message = original


def test_a_foreign_patch_on_top_is_kept_and_ours_switched_off() -> None:
    from claude_agent_sdk._internal import message_parser

    original = message_parser.parse_message
    try:
        cpl.instrument()
        ours = message_parser.parse_message
        wrapt.wrap_function_wrapper(message_parser, "parse_message", foreign)
        theirs = message_parser.parse_message
        cpl.uninstrument()  # cannot take ours out from under theirs: switched off instead
        assert message_parser.parse_message is theirs and theirs.__wrapped__ is ours
        calls.clear()
        assert parse_and_measure().source == "model_usage"
        assert calls == ["parse_message"]
        cpl.instrument()  # switched back on, not stacked a second time
        assert message_parser.parse_message is theirs and theirs.__wrapped__ is ours
        assert parse_and_measure().source == "model_usage_since_last_result"
        cpl.uninstrument()
        assert parse_and_measure().source == "model_usage"
    finally:
        message_parser.parse_message = original


@pytest.mark.e2e
async def test_query_is_logged_after_reinstrumenting(local_db: Path, tmp_path: Path) -> None:
    script = [text_turn(f"answer {i}", Usage(5, 2)) for i in range(3)]
    with ScriptedAnthropicServer(script) as server:
        options = scripted_claude_options(server, tmp_path)

        async def run(prompt: str) -> None:
            async for _ in query(prompt=prompt, options=options):
                pass

        cpl.instrument(agent_type="first")
        await run("while instrumented")
        cpl.uninstrument()
        await run("not instrumented")
        cpl.instrument(agent_type="second")
        await run("instrumented again")
        cpl.uninstrument()
    assert cpl.flush(10)
    rows = db_query(
        local_db,
        "SELECT s.agent_type, s.status, m.content FROM sessions s JOIN messages m"
        " ON m.session_id = s.id AND m.role = 'user' ORDER BY s.started_at",
    )
    assert rows == [
        ("first", "completed", "while instrumented"),
        ("second", "completed", "instrumented again"),
    ]


def test_logged_session_turns_instrumentation_on_process_wide(local_db: Path) -> None:
    """Documented side effect: a block with the default instrument=True patches the SDK for
    the whole process, and it stays patched after the block."""
    assert not is_instrumented()
    with cpl.logged_session("any"):
        assert is_instrumented()
    assert is_instrumented()
    with cpl.logged_session("no-patching", instrument=False):
        pass
    cpl.uninstrument()
    assert not is_instrumented()
    assert cpl.flush(5)
    assert db_query(local_db, "SELECT agent_type, status FROM sessions ORDER BY agent_type") == [
        ("any", "completed"),
        ("no-patching", "completed"),
    ]
