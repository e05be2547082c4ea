"""The main job: run a real Claude agent, log it into a local Turso database, print it back.

By default the real Claude Code CLI (bundled in claude-agent-sdk) talks to a scripted model
server on 127.0.0.1, so the demo runs offline and really executes a Bash tool. With
``--real-api`` (and ANTHROPIC_API_KEY set) it uses Anthropic's API instead.

    ./dev demo                      # offline, scripted model
    ./dev demo --real-api           # the real API (needs ANTHROPIC_API_KEY)
    ./dev demo --database my.db     # another database file
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import claude_parallel_logging as cpl

PROMPT = "List the Python files in this directory with Bash, then tell me how many there are."


async def run_agent(real_api: bool, workdir: Path) -> str:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

    from claude_parallel_logging.testing.anthropic import (
        ScriptedAnthropicServer,
        Usage,
        text_turn,
        tool_turn,
    )
    from claude_parallel_logging.testing.claude import scripted_claude_options

    (workdir / "work").mkdir(parents=True, exist_ok=True)
    for name in ("app.py", "models.py", "README.md"):
        (workdir / "work" / name).write_text(f"# {name}\n")

    async with cpl.logged_session("implementation", metadata={"demo": True}) as session:
        if real_api:
            options = ClaudeAgentOptions(
                cwd=str(workdir / "work"),
                allowed_tools=["Bash"],
                max_turns=4,
                include_partial_messages=True,  # final per-message output token counts
            )
            async for msg in query(prompt=PROMPT, options=options):
                if isinstance(msg, ResultMessage):
                    print(f"agent finished: {msg.result}")
            return session.id
        script = [
            tool_turn(
                "Bash",
                {"command": "ls *.py", "description": "List Python files"},
                text="Let me look at the directory.",
                usage=Usage(1200, 40, 0, 900),
            ),
            text_turn(
                "There are 2 Python files: app.py and models.py.", usage=Usage(1350, 25, 900, 0)
            ),
        ]
        with ScriptedAnthropicServer(script) as server:
            # Partial messages carry each API message's final output token count.
            options = scripted_claude_options(server, workdir, include_partial_messages=True)
            async for msg in query(prompt=PROMPT, options=options):
                if isinstance(msg, ResultMessage):
                    print(f"agent finished: {msg.result}")
    return session.id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="demo-logs/agent-logs.db")
    parser.add_argument("--real-api", action="store_true", help="use Anthropic's API")
    args = parser.parse_args()
    if args.real_api and not os.environ.get("ANTHROPIC_API_KEY"):
        print("--real-api needs ANTHROPIC_API_KEY", file=sys.stderr)
        return 2

    cpl.configure(database_url=args.database)
    with tempfile.TemporaryDirectory(prefix="cpl-demo-") as tmp:
        session_id = asyncio.run(run_agent(args.real_api, Path(tmp)))
    if not cpl.flush(10):
        print(f"warning: not everything was written: {cpl.stats()}", file=sys.stderr)
    print(f"\nlogged session {session_id} into {Path(args.database).resolve()}\n")

    from claude_parallel_logging.cli import main as cli_main

    code = cli_main(["--database", args.database, "show", session_id])
    if code == 0:
        print_next_steps(Path(args.database), session_id)
    return code


def print_next_steps(database: Path, session_id: str) -> None:
    """The commands to browse what was logged: ``./dev cpl`` runs the ``cpl`` of ``.venv``
    (from the repository's root, which is where ``./dev`` runs, so paths are relative to it)."""
    import shlex

    repo = Path(__file__).resolve().parent.parent
    resolved = database.resolve()
    try:
        shown = str(resolved.relative_to(repo))
    except ValueError:
        shown = str(resolved)
    dev = "./dev" if Path.cwd().resolve() == repo else str(repo / "dev")
    cpl_cmd = f"{shlex.quote(dev)} cpl --database {shlex.quote(shown)}"
    steps = (
        ("sessions", "every session, newest first"),
        (f"show {session_id}", "this transcript (--format markdown exports it)"),
        ("search 'Python files'", "sessions containing a text"),
        ("stats --group-by model", "tokens, cost, success rate per model"),
    )
    print(
        "\nNext steps: browse what was logged (./dev cpl runs .venv/bin/cpl; with"
        " TURSO_DATABASE_URL set, --database can go):"
    )
    for command, what in steps:
        print(f"  {cpl_cmd} {command}\n      {what}")


if __name__ == "__main__":
    sys.exit(main())
