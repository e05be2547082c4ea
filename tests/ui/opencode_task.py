"""An OpenCode session whose ``task`` tool runs a subagent in a child session, as the real
integration logs it: the ``opencode serve`` events (shaped as in ``tests/data/opencode``, whose
recordings hold no child session) fed through the real ``OpencodeRouter``.

What opencode 1.18.33 sends for a subagent (its TaskTool): the parent's ``task`` tool part,
``running`` with ``metadata {parentSessionId, sessionId, model}`` while the child works and
``completed`` with the same metadata; the child session is created with ``parentID`` = the
parent, and its messages and parts are events of the child session id. The router joins the
child to the parent's logged session and tags the child's rows ``opencode_session_id``.
"""

from __future__ import annotations

from typing import Any

from claude_parallel_logging.integrations.opencode.router import OpencodeRouter

JSON = dict[str, Any]
MODEL = {"modelID": "scripted-main", "providerID": "scripted"}


def _ev(etype: str, sid: str, **props: Any) -> JSON:
    return {"type": etype, "properties": {"sessionID": sid, **props}}


def _session(sid: str, at: int, parent: str | None = None) -> JSON:
    info: JSON = {"id": sid, "title": f"session {sid}", "time": {"created": at, "updated": at}}
    if parent:
        info["parentID"] = parent
    return _ev("session.created", sid, info=info)


def _user(sid: str, mid: str, at: int, text: str) -> list[JSON]:
    info = {"id": mid, "sessionID": sid, "role": "user", "time": {"created": at}, "model": MODEL}
    part = {"id": f"prt_{mid}", "messageID": mid, "sessionID": sid, "type": "text", "text": text}
    return [_ev("message.updated", sid, info=info), _ev("message.part.updated", sid, part=part)]


def _assistant(
    sid: str, mid: str, parent: str, created: int, done: int | None, tokens: tuple[int, int]
) -> JSON:
    times: JSON = {"created": created}
    info: JSON = {"id": mid, "sessionID": sid, "role": "assistant", "parentID": parent, **MODEL}
    if done is not None:
        times["completed"] = done
        info["finish"] = "stop"
        info["cost"] = round((tokens[0] * 3 + tokens[1] * 15) / 1e6, 9)
        info["tokens"] = {
            "input": tokens[0], "output": tokens[1], "reasoning": 0, "total": sum(tokens),
            "cache": {"read": 0, "write": 0},
        }  # fmt: skip
    info["time"] = times
    return _ev("message.updated", sid, info=info)


def _text(sid: str, mid: str, pid: str, start: int, end: int, text: str) -> JSON:
    part = {
        "id": pid, "messageID": mid, "sessionID": sid, "type": "text", "text": text,
        "time": {"start": start, "end": end},
    }  # fmt: skip
    return _ev("message.part.updated", sid, part=part, time=end)


def _tool(sid: str, mid: str, call: str, tool: str, state: JSON, at: int) -> JSON:
    part = {
        "id": f"prt_{call}", "messageID": mid, "sessionID": sid, "type": "tool",
        "tool": tool, "callID": call, "state": state,
    }  # fmt: skip
    return _ev("message.part.updated", sid, part=part, time=at)


def task_events(parent: str, child: str, t0: int, finished: bool = True) -> list[JSON]:
    """The parent asks, its ``task`` call runs a subagent (a child session running ``bash``),
    then (when ``finished``) the task completes and the parent answers."""
    task_input = {
        "description": "Find the line splitter",
        "prompt": "Find where the parser splits lines",
        "subagent_type": "explore",
    }
    task_meta = {"parentSessionId": parent, "sessionId": child, "model": MODEL}
    bash_input = {"command": "grep -n splitlines parse.py", "description": "Search"}
    events = [
        _session(parent, t0),
        *_user(parent, f"msg_{parent}_1", t0 + 10, "Review the parser with a subagent"),
        _ev("session.status", parent, status={"type": "busy"}),
        _assistant(parent, f"msg_{parent}_2", f"msg_{parent}_1", t0 + 300, None, (0, 0)),
        _tool(parent, f"msg_{parent}_2", f"call_{parent}_task", "task",
              {"status": "pending", "input": {}, "raw": ""}, t0 + 850),
        _tool(parent, f"msg_{parent}_2", f"call_{parent}_task", "task",
              {"status": "running", "input": task_input, "title": task_input["description"],
               "metadata": task_meta, "time": {"start": t0 + 900}}, t0 + 900),
        _session(child, t0 + 950, parent=parent),
        *_user(child, f"msg_{child}_1", t0 + 1000, task_input["prompt"]),
        _ev("session.status", child, status={"type": "busy"}),
        _assistant(child, f"msg_{child}_2", f"msg_{child}_1", t0 + 1100, None, (0, 0)),
        _tool(child, f"msg_{child}_2", f"call_{child}_bash", "bash",
              {"status": "running", "input": bash_input, "time": {"start": t0 + 1500}}, t0 + 1500),
        _tool(child, f"msg_{child}_2", f"call_{child}_bash", "bash",
              {"status": "completed", "input": bash_input, "output": "12: text.splitlines()\n",
               "metadata": {"exit": 0}, "title": bash_input["command"],
               "time": {"start": t0 + 1500, "end": t0 + 2700}}, t0 + 2700),
        _assistant(child, f"msg_{child}_2", f"msg_{child}_1", t0 + 1100, t0 + 2750, (900, 40)),
        _assistant(child, f"msg_{child}_3", f"msg_{child}_1", t0 + 2800, None, (0, 0)),
        _text(child, f"msg_{child}_3", f"prt_{child}_3", t0 + 3200, t0 + 3300,
              "The parser splits lines in parse.py line 12."),
        _assistant(child, f"msg_{child}_3", f"msg_{child}_1", t0 + 2800, t0 + 3350, (1000, 15)),
        _ev("session.idle", child),
    ]  # fmt: skip
    if finished:
        events += [
            _tool(parent, f"msg_{parent}_2", f"call_{parent}_task", "task",
                  {"status": "completed", "input": task_input, "title": task_input["description"],
                   "metadata": task_meta,
                   "output": f"task_id: {child}\n\n<task_result>\nparse.py line 12\n</task_result>",
                   "time": {"start": t0 + 900, "end": t0 + 3400}}, t0 + 3400),
            _assistant(parent, f"msg_{parent}_2", f"msg_{parent}_1", t0 + 300, t0 + 3450,
                       (1200, 30)),
            _assistant(parent, f"msg_{parent}_3", f"msg_{parent}_1", t0 + 3500, None, (0, 0)),
            _text(parent, f"msg_{parent}_3", f"prt_{parent}_3", t0 + 3700, t0 + 3900,
                  "The subagent found it: parse.py line 12."),
            _assistant(parent, f"msg_{parent}_3", f"msg_{parent}_1", t0 + 3500, t0 + 4000,
                       (1300, 12)),
            _ev("session.idle", parent),
        ]  # fmt: skip
    return events


def log_task_session(parent: str, child: str, t0: int, finished: bool = True) -> str:
    """Feed the events through the real router (logging configured); the logged session's id.
    Unfinished, the router is left open as a monitor still watching: the session and its task
    call stay ``running``."""
    router = OpencodeRouter(agent_type="opencode-task")
    for event in task_events(parent, child, t0, finished):
        router.handle(event)
    logged = router.session_for(parent)
    assert logged is not None and router.session_for(child) is logged
    if finished:
        router.close()
    return logged.id
