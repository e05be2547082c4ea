"""Sessions of realistic size, as issue 15 measured them, logged through the public logger API.

A session: ~20 messages of 200-2,000 characters (user, assistant) and ~6 tool calls whose
inputs and outputs are 100-3,000 characters; 3 agent types, 2 models, 10 % errors, spread over
90 days. Deterministic for a given session number, so two runs write the same bytes.
"""

from __future__ import annotations

import random
from typing import Any

AGENT_TYPES = ("planning", "implementation", "review")
MODELS = ("claude-sonnet-4-5", "claude-opus-4-1")
SPAN_SECONDS = 90 * 86_400
BASE_TIME = 1_790_000_000.0
_WORDS = (
    "the writer batches every event into one transaction and retries a rejected row alone "
    "request response session module function repository test failed passed import config "
    "replica push pull schema migration index query cursor page token cost duration tool "
    "Bash Read Edit Grep output input error status running completed assistant user"
).split()


def _text(rng: random.Random, low: int, high: int) -> str:
    """Prose-like text of ``low``..``high`` characters (words, punctuation, line breaks)."""
    n = rng.randint(low, high)
    parts: list[str] = []
    size = 0
    while size < n:
        w = rng.choice(_WORDS)
        parts.append(w)
        size += len(w) + 1
        if rng.random() < 0.06:
            parts.append(".\n" if rng.random() < 0.3 else ".")
    return " ".join(parts)[:n]


def session_payload(i: int) -> dict[str, Any]:
    """Session ``i``'s content: plain data, so it can be written by the logger or by raw SQL."""
    rng = random.Random(i)
    start = BASE_TIME + (i * 7919 % SPAN_SECONDS)
    messages = [
        ("user" if k % 4 == 0 else "assistant", _text(rng, 200, 2000))
        for k in range(rng.randint(18, 22))
    ]
    tools = [
        (
            ("Bash", "Read", "Edit", "Grep")[rng.randrange(4)],
            {"command": _text(rng, 60, 1500), "description": _text(rng, 40, 1500)},
            _text(rng, 100, 3000),
            rng.random() < 0.05,
        )
        for _ in range(rng.randint(5, 7))
    ]
    return {
        "id": f"real-{i:07d}",
        "agent_type": AGENT_TYPES[i % 3],
        "model": MODELS[i % 2],
        "start": start,
        "error": i % 10 == 9,
        "messages": messages,
        "tools": tools,
    }


def payload_chars(p: dict[str, Any]) -> int:
    """Characters of content a session carries (messages, tool inputs and outputs)."""
    total = sum(len(text) for _, text in p["messages"])
    for _, inp, out, _ in p["tools"]:
        total += sum(len(v) for v in inp.values()) + len(out)
    return total


def log_session(client: Any, p: dict[str, Any]) -> int:
    """Log one session through ``ConversationLogger``; returns the number of events."""
    from claude_parallel_logging import ConversationLogger, SessionInfo

    lg = ConversationLogger(client)
    lg.start_session(SessionInfo(id=p["id"], agent_type=p["agent_type"], model=p["model"],
                                 started_at=p["start"]))  # fmt: skip
    events = 1
    tools = iter(p["tools"])
    t = p["start"]
    for k, (role, text) in enumerate(p["messages"]):
        t += 1.5
        lg.log_message(role, text, created_at=t, model=p["model"] if role == "assistant" else None,
                       input_tokens=1000 + k, output_tokens=50 + k)  # fmt: skip
        events += 1
        if k % 3 == 2:
            tool = next(tools, None)
            if tool is not None:
                name, inp, out, failed = tool
                tid = lg.log_tool_execution(name, "running", input=inp, started_at=t)
                lg.finish_tool_execution(
                    tid, "error" if failed else "completed", output=out,
                    error="exit status 1" if failed else None, ended_at=t + 0.8,
                )  # fmt: skip
                events += 2
    lg.end_session("error" if p["error"] else "completed",
                   error_message="the model refused" if p["error"] else None, ended_at=t + 2)  # fmt: skip
    return events + 1
