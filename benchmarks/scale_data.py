"""Realistic databases for the scale benchmarks, built fast with direct SQL.

Sessions as the issue describes them: ~20 messages of 200-2,000 characters, ~6 tool calls with
100-3,000-character inputs and outputs, 3 agent types, 2 models, 10 % errors, spread over 90
days and written in the order they started (as a real logger writes them). The text is slices
of a fixed pseudo-English corpus of ~6,000 words, so a trigram index sees realistic variety.

Words with a known frequency for the search benchmark: ``COMMON`` is in every session,
``RARE`` in one session of 1,000, ``ABSENT`` nowhere. The files are cached (by size and
``VERSION``) under ``benchmarks/results/scale/`` and reused across runs.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

VERSION = 1
CACHE_DIR = Path(__file__).resolve().parent / "results" / "scale"
COMMON = "refactor"
RARE = "quasar-latch"
ABSENT = "zebra-violin-quokka"
RARE_EVERY = 1000
AGENT_TYPES = ("planning", "implementation", "review")
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")
TOOLS = ("Bash", "Read", "Edit", "Grep", "Write", "Glob")
# A fixed "now" so that a cached file means the same thing on every run; reads use ranges
# relative to it (``END``), never the wall clock.
END = datetime(2026, 11, 30, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _corpus(rng: random.Random, chars: int = 1 << 21) -> str:
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "de", "pa", "ge", "zu", "fo", "bi",
            "ch", "st", "tr", "an", "er", "in", "on", "qu", "ex", "sh"]  # fmt: skip
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(6000)]
    words += ["the", "a", "of", "to", "and", "in", "is", "file", "test", "error", "def", "return",
              "self", "import", "parser", "value", "None", "True", "=", "(", ")", ":", "{", "}"]  # fmt: skip
    out: list[str] = []
    n = 0
    while n < chars:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
        if rng.random() < 0.08:
            out.append("\n")
    return " ".join(out)


def _slice(rng: random.Random, corpus: str, lo: int, hi: int) -> str:
    length = rng.randint(lo, hi)
    start = rng.randrange(0, len(corpus) - length)
    return corpus[start : start + length]


def path_for(n: int) -> Path:
    return CACHE_DIR / f"scale-{n}-v{VERSION}.db"


def build(n: int, path: Path | None = None, *, progress: bool = False) -> Path:
    """The database of ``n`` sessions (built once, then reused)."""
    import turso

    from claude_parallel_logging.schema.migrations import migrate

    path = path or path_for(n)
    if path.exists() and not Path(str(path) + ".building").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, Path(str(path) + "-wal")):
        if stale.exists():
            stale.unlink()
    marker = Path(str(path) + ".building")
    marker.write_text("")
    rng = random.Random(n)
    corpus = _corpus(random.Random(1))
    conn = turso.connect(str(path))
    migrate(conn)
    start0 = END - timedelta(days=90)
    step = (90 * 86400 - 3600) / max(n, 1)
    sessions: list[tuple[object, ...]] = []
    messages: list[tuple[object, ...]] = []
    tools: list[tuple[object, ...]] = []

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO sessions (id, agent_type, model, provider, status, started_at, ended_at,"
            " error_message, metadata, input_tokens, output_tokens, cache_read_tokens,"
            " cache_creation_tokens, cost_usd, duration_ms, num_turns)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            sessions,
        )
        conn.executemany(
            "INSERT INTO messages (id, session_id, sequence, role, content, tool_name, tool_input,"
            " created_at, model, input_tokens, output_tokens, external_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            messages,
        )
        conn.executemany(
            "INSERT INTO tool_executions (id, session_id, message_id, tool_name, status, input,"
            " output, error, started_at, ended_at, duration_ms, tool_use_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            tools,
        )
        conn.execute("COMMIT")
        sessions.clear()
        messages.clear()
        tools.clear()

    t0 = time.monotonic()
    for i in range(n):
        sid = f"s{i:07d}-{rng.getrandbits(32):08x}"
        start = start0 + timedelta(seconds=i * step + rng.uniform(0, step))
        status = "error" if rng.random() < 0.10 else "completed"
        n_msgs = rng.randint(14, 26)
        tool_at = set(rng.sample(range(1, n_msgs), min(n_msgs - 1, rng.randint(4, 8))))
        t = start
        itok = otok = 0
        for k in range(n_msgs):
            t += timedelta(milliseconds=rng.randint(200, 4000))
            role = "user" if k == 0 else "assistant"
            text = _slice(rng, corpus, 200, 2000)
            if k == 1:
                text = f"{COMMON} {text}"
            if k == 3 and i % RARE_EVERY == 7:
                text += f" {RARE} "
            a, b = (rng.randint(100, 4000), rng.randint(10, 600)) if role == "assistant" else (None, None)
            itok += a or 0
            otok += b or 0
            mid = f"{sid}-m{k}"
            tool_name = rng.choice(TOOLS) if k in tool_at else None
            tool_input = json.dumps({"command": _slice(rng, corpus, 100, 1500)}) if tool_name else None
            messages.append((mid, sid, k + 1, role, text, tool_name, tool_input, iso(t),
                             MODELS[i % 2], a, b, f"msg_{i}_{k}"))  # fmt: skip
            if tool_name:
                d = int(rng.lognormvariate(6.5, 1.3))
                err = rng.random() < 0.08
                tools.append((f"{sid}-t{k}", sid, mid, tool_name, "error" if err else "completed",
                              tool_input, _slice(rng, corpus, 100, 3000),
                              _slice(rng, corpus, 20, 200) if err else None, iso(t),
                              iso(t + timedelta(milliseconds=d)), d, f"toolu_{i}_{k}"))  # fmt: skip
                t += timedelta(milliseconds=d)
        ended = t + timedelta(milliseconds=300)
        sessions.append((sid, AGENT_TYPES[rng.randrange(3)], MODELS[i % 2], "anthropic", status,
                         iso(start), iso(ended),
                         f"agent failed: {_slice(rng, corpus, 20, 120)}" if status == "error" else None,
                         json.dumps({"repo": f"r{i % 20}", "cwd": "/work/x"}), itok, otok,
                         itok * 3, otok, round(itok * 3e-6 + otok * 15e-6, 9),
                         int((ended - start).total_seconds() * 1000) - rng.randint(0, 500),
                         n_msgs // 4))  # fmt: skip
        if len(messages) >= 20_000:
            flush()
            if progress:
                rate = (i + 1) / (time.monotonic() - t0)
                print(f"\r  {path.name}: {i + 1:,}/{n:,} sessions ({rate:,.0f}/s)", end="",
                      file=sys.stderr, flush=True)  # fmt: skip
    flush()
    conn.close()
    marker.unlink()
    if progress:
        print(file=sys.stderr)
    return path


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for arg in sys.argv[1:]:
        t = time.monotonic()
        p = build(int(arg), progress=True)
        print(f"{p} {os.path.getsize(p) / 1e6:.0f} MB in {time.monotonic() - t:.0f} s")
