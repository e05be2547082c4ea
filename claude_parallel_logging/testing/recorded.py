"""Record and replay the raw JSON frames the Claude Code CLI emits.

Unit tests rebuild real SDK message objects offline from ``tests/data/claude/*.jsonl``
through the SDK's own ``parse_message``, so they see exactly what a live run yields.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_agent_sdk import Message

__all__ = ["load_raw", "load_recorded", "record_raw_messages", "write_jsonl"]


def load_raw(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Raw frames of a recording, one JSON object per non-blank line."""
    frames: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                frame = json.loads(line)
                if not isinstance(frame, dict):
                    raise ValueError(f"{path}: expected JSON objects, got {type(frame).__name__}")
                frames.append(frame)
    return frames


def load_recorded(path: str | os.PathLike[str]) -> list[Message]:
    """Parse a recording back into SDK messages, dropping frames the SDK skips."""
    from claude_agent_sdk._internal.message_parser import parse_message

    messages: list[Message] = []
    for frame in load_raw(path):
        message = parse_message(frame)
        if message is not None:
            messages.append(message)
    return messages


def write_jsonl(path: str | os.PathLike[str], frames: list[dict[str, Any]]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as fh:
        for frame in frames:
            fh.write(json.dumps(frame, ensure_ascii=False, sort_keys=False) + "\n")


@contextlib.contextmanager
def record_raw_messages() -> Iterator[list[dict[str, Any]]]:
    """Capture every frame the SDK hands to ``parse_message`` while the block runs.

    Both import sites are patched: ``query()`` uses the name bound in
    ``_internal.client``; ``ClaudeSDKClient`` looks it up in ``message_parser`` per call.
    Not safe across concurrent unrelated runs in one process (frames would mix).
    """
    from claude_agent_sdk._internal import client as internal_client
    from claude_agent_sdk._internal import message_parser

    original = message_parser.parse_message
    original_client = internal_client.parse_message  # type: ignore[attr-defined]
    frames: list[dict[str, Any]] = []

    def recording_parse(data: dict[str, Any]) -> Message | None:
        frames.append(copy.deepcopy(data))
        return original(data)

    message_parser.parse_message = recording_parse
    internal_client.parse_message = recording_parse  # type: ignore[attr-defined]
    try:
        yield frames
    finally:  # each site back to what it was (instrumentation may have patched them)
        message_parser.parse_message = original
        internal_client.parse_message = original_client  # type: ignore[attr-defined]


# -- re-recording ------------------------------------------------------------------
# ``python -m claude_parallel_logging.testing.recorded tests/data/claude`` refreshes the
# fixtures after a CLI upgrade; it runs the real bundled CLI against the local server.

_SCENARIO_TIMEOUT_S = 90.0


def _scenarios() -> dict[str, tuple[list[Any], list[str], dict[str, Any]]]:
    """name -> (turns, prompts, option overrides); several prompts use ClaudeSDKClient."""
    from claude_parallel_logging.testing.anthropic import (
        ToolCall,
        Turn,
        Usage,
        error_turn,
        text_turn,
        thinking_turn,
        tool_turn,
    )

    bash_echo = {"command": "echo hello-from-tool", "description": "Print a greeting"}
    return {
        "text_only": (
            [text_turn("Hello from the scripted model.", Usage(12, 7, 3, 5))],
            ["Say hello"],
            {},
        ),
        "tool_bash": (
            [
                tool_turn("Bash", bash_echo, text="I'll run it.", usage=Usage(100, 20, 30, 40)),
                text_turn("The command printed hello-from-tool.", Usage(200, 50, 60, 70)),
            ],
            ["Run echo hello-from-tool"],
            {},
        ),
        "tool_bash_partial": (
            [
                tool_turn("Bash", bash_echo, text="I'll run it.", usage=Usage(100, 20, 30, 40)),
                text_turn("The command printed hello-from-tool.", Usage(200, 50, 60, 70)),
            ],
            ["Run echo hello-from-tool"],
            {"include_partial_messages": True},
        ),
        "tool_error": (
            [
                tool_turn("Bash", {"command": "ls /definitely/not/here"}, usage=Usage(40, 8)),
                text_turn("That path does not exist.", Usage(60, 9)),
            ],
            ["List a missing directory"],
            {},
        ),
        "tool_parallel": (
            [
                Turn(
                    text="Running two commands.",
                    tool_calls=(
                        ToolCall("Bash", {"command": "echo one", "description": "one"}),
                        ToolCall("Bash", {"command": "echo two", "description": "two"}),
                    ),
                    usage=Usage(80, 30, 10, 20),
                ),
                text_turn("Both commands ran.", Usage(120, 10, 90, 0)),
            ],
            ["Run two echos"],
            {},
        ),
        "thinking": (
            [thinking_turn("The user wants a short answer.", "42", Usage(30, 15, 0, 0))],
            ["What is six times seven?"],
            {},
        ),
        "subagent": (
            [
                tool_turn(
                    "Agent",
                    {
                        "description": "Echo via subagent",
                        "prompt": "Run echo from-subagent and report the output.",
                        "subagent_type": "general-purpose",
                        "run_in_background": False,
                    },
                    usage=Usage(50, 10),
                ),
                tool_turn(
                    "Bash",
                    {"command": "echo from-subagent", "description": "Echo"},
                    usage=Usage(20, 5),
                ),
                text_turn("The subagent saw from-subagent.", Usage(25, 6)),
                text_turn("Done: the subagent reported from-subagent.", Usage(70, 12)),
            ],
            ["Use a subagent to echo"],
            {"allowed_tools": ["Bash", "Agent", "Task"]},
        ),
        "api_error": (
            [error_turn(500, "api_error", "scripted internal error")],
            ["This will fail"],
            {},
        ),
        "client_two_turns": (
            [
                text_turn("First answer.", Usage(10, 4, 0, 100)),
                tool_turn("Bash", bash_echo, usage=Usage(20, 6, 100, 0)),
                text_turn("Second answer after the tool.", Usage(30, 8, 100, 10)),
            ],
            ["First question", "Second question, use a tool"],
            {},
        ),
    }


async def _run_scenario(
    name: str, turns: list[Any], prompts: list[str], overrides: dict[str, Any], tmp: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    import asyncio

    from claude_agent_sdk import ClaudeSDKClient, ResultError, query

    from claude_parallel_logging.testing.anthropic import ScriptedAnthropicServer
    from claude_parallel_logging.testing.claude import scripted_claude_options

    with ScriptedAnthropicServer(turns) as server, record_raw_messages() as frames:
        options = scripted_claude_options(server, tmp / name, **overrides)

        async def drive() -> None:
            if len(prompts) == 1:
                try:
                    async for _ in query(prompt=prompts[0], options=options):
                        pass
                except ResultError:
                    pass
                return
            async with ClaudeSDKClient(options) as client:
                for prompt in prompts:
                    await client.query(prompt)
                    async for _ in client.receive_response():
                        pass

        await asyncio.wait_for(drive(), _SCENARIO_TIMEOUT_S)
        return list(frames), server.paths


def main(argv: list[str] | None = None) -> int:
    import asyncio
    import sys
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0] if args else "tests/data/claude")
    only = set(args[1:])
    with tempfile.TemporaryDirectory(prefix="cpl-record-") as tmp:
        for name, (turns, prompts, overrides) in _scenarios().items():
            if only and name not in only:
                continue
            frames, paths = asyncio.run(_run_scenario(name, turns, prompts, overrides, Path(tmp)))
            write_jsonl(out_dir / f"{name}.jsonl", frames)
            kinds = [f"{f.get('type')}/{f.get('subtype', '')}".rstrip("/") for f in frames]
            print(f"{name}: {len(frames)} frames {kinds} requests={paths}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
