"""A separate process ("machine") that runs the real CLI with a TursoSessionStore: prints JSON.

Arguments (JSON in $CPL_CHILD_ARGS): base_url, home (a fresh CLAUDE_CONFIG_DIR), cwd (the shared
project directory), prompt, and optionally resume / fork (an SDK session id)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from claude_agent_sdk import MirrorErrorMessage, ResultMessage, fork_session_via_store, query

from claude_parallel_logging import TursoSessionStore
from claude_parallel_logging.testing.claude import scripted_claude_options


async def main(args: dict[str, Any]) -> dict[str, Any]:
    store = TursoSessionStore()
    out: dict[str, Any] = {"mirror_errors": []}
    resume = args.get("resume")
    if args.get("fork"):
        forked = await fork_session_via_store(store, args["fork"], directory=args["cwd"])
        resume = out["forked"] = forked.session_id
    extra: dict[str, Any] = {"resume": resume} if resume else {}
    options = scripted_claude_options(
        args["base_url"], args["home"], cwd=args["cwd"], session_store=store, **extra
    )
    async for msg in query(prompt=args["prompt"], options=options):
        if isinstance(msg, ResultMessage):
            out["session_id"], out["result"] = msg.session_id, msg.result
        elif isinstance(msg, MirrorErrorMessage):
            out["mirror_errors"].append(str(msg))
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(os.environ["CPL_CHILD_ARGS"])))))
