"""Claude Agent SDK: the one place that maps SDK messages onto rows.

Works on the SDK's message objects by class name and attributes, so it does not import the SDK
and tolerates versions that add fields or types (unknown ones are kept as JSON).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import LoggedSession

log = logging.getLogger("claude_parallel_logging")

_INIT_METADATA = {
    "cwd": "cwd",
    "tools": "tools",
    "permissionMode": "permission_mode",
    "claude_code_version": "claude_code_version",
    "apiKeySource": "api_key_source",
    "mcp_servers": "mcp_servers",
    "agents": "agents",
}


_KINDS = ("SystemMessage", "AssistantMessage", "UserMessage", "ResultMessage", "StreamEvent")
_kind_cache: dict[type, str] = {}


def _kind(obj: Any) -> str:
    """The SDK class name, walking bases so subclasses (TaskStartedMessage) map like parents."""
    cls = type(obj)
    kind = _kind_cache.get(cls)
    if kind is None:
        kind = next((c.__name__ for c in cls.__mro__ if c.__name__ in _KINDS), cls.__name__)
        _kind_cache[cls] = kind
    return kind


def tool_result_text(content: Any) -> str | None:
    """ToolResultBlock content is a string or a list of content blocks (text, image, ...)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for item in content:
            if isinstance(item, dict):
                if item.get("type") == "text":
                    parts.append(str(item.get("text", "")))
                else:
                    parts.append(f"[{item.get('type', 'block')}]")
            else:
                parts.append(str(item))
        return "\n".join(parts)
    return str(content)


def _int(usage: dict[str, Any] | None, key: str) -> int | None:
    if not usage:
        return None
    v = usage.get(key)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class _Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    num_turns: int = 0
    duration_ms: int = 0
    cost_usd: float | None = None
    results: int = 0
    last_cumulative_cost: float = 0.0
    sdk_session_ids: list[str] = field(default_factory=list)


class ClaudeMapper:
    """Maps one stream source (a ``query()`` call or one ``ClaudeSDKClient``) into a session.

    ``cumulative_cost``: ``ClaudeSDKClient`` reports ``total_cost_usd`` summed over the turns of
    its CLI process while ``usage`` is per turn, so a turn's cost is the difference.
    """

    def __init__(
        self, session: LoggedSession, *, owned: bool = False, cumulative_cost: bool = False
    ) -> None:
        self.session = session
        self.logger = session.logger
        self.owned = owned
        self.cumulative_cost = cumulative_cost
        self._tools: dict[str, tuple[str, str | None]] = {}
        self._usage_rows: dict[str, tuple[str, int | None, int | None]] = {}
        self._totals = _Totals()

    # ----- entry points -----------------------------------------------------------------------

    def observe(self, msg: Any) -> None:
        if not self.session.first_sight(msg):
            return
        kind = _kind(msg)
        try:
            if kind == "AssistantMessage":
                self._on_AssistantMessage(msg)
            elif kind == "UserMessage":
                self._on_UserMessage(msg)
            elif kind == "StreamEvent":
                return
            elif kind == "SystemMessage":
                self._on_SystemMessage(msg)
            elif kind == "ResultMessage":
                self._on_ResultMessage(msg)
            else:
                self._on_unknown(msg)
        except Exception:
            log.debug("claude-parallel-logging: cannot map %s", kind, exc_info=True)
            self._on_unknown(msg)

    def finish(self, outcome: BaseException | str | None) -> None:
        """The stream ended. A session this stream created ends with it."""
        if self.owned:
            if outcome == "closed" and self._totals.results:
                outcome = None  # stopped after the result: nothing was cut short
            elif outcome == "closed":
                outcome = "stream closed by the consumer before the result"
            self.session.end(outcome)

    # ----- message kinds ----------------------------------------------------------------------

    def _on_SystemMessage(self, msg: Any) -> None:
        subtype = getattr(msg, "subtype", None)
        data = getattr(msg, "data", None) or {}
        if subtype == "init":
            updates: dict[str, Any] = {}
            sid = data.get("session_id")
            if sid:
                if sid not in self._totals.sdk_session_ids:
                    self._totals.sdk_session_ids.append(sid)
                if len(self._totals.sdk_session_ids) == 1:
                    updates["external_id"] = sid
            if data.get("model"):
                updates["model"] = data["model"]
            meta = {dst: data[src] for src, dst in _INIT_METADATA.items() if src in data}
            if self._totals.sdk_session_ids:
                meta["sdk_session_ids"] = list(self._totals.sdk_session_ids)
            if meta:
                updates["metadata"] = meta
            if updates:
                self.logger.update_session(**updates)
            return
        self.logger.log_message(
            "system",
            subtype,
            metadata={"type": type(msg).__name__, "subtype": subtype, "data": data},
        )

    def _on_AssistantMessage(self, msg: Any) -> None:
        api_id = getattr(msg, "message_id", None)
        usage = getattr(msg, "usage", None)
        model = getattr(msg, "model", None)
        parent = getattr(msg, "parent_tool_use_id", None)
        error = getattr(msg, "error", None)
        in_tok, out_tok = _int(usage, "input_tokens"), _int(usage, "output_tokens")
        # The CLI sends one AssistantMessage per content block, all with the API message's id and
        # usage: count the usage once per id (on its first row), update it if it grew.
        usage_pending = True
        if api_id is not None and api_id in self._usage_rows:
            row, old_in, old_out = self._usage_rows[api_id]
            usage_pending = False
            if (in_tok, out_tok) != (old_in, old_out) and usage:
                self.logger.update_message(row, input_tokens=in_tok, output_tokens=out_tok)
                self._usage_rows[api_id] = (row, in_tok, out_tok)
        log_message = self.logger.log_message
        for block in getattr(msg, "content", None) or []:
            btype = type(block).__name__
            tokens_in, tokens_out = (in_tok, out_tok) if usage_pending else (None, None)
            if btype == "TextBlock" and not error:
                row = log_message(
                    "assistant", block.text, external_id=api_id, model=model,
                    parent_tool_use_id=parent, input_tokens=tokens_in, output_tokens=tokens_out,
                )  # fmt: skip
            else:
                meta: dict[str, Any] = {"block": btype}
                if error:
                    meta["error"] = error
                content: Any = None
                tool_name = tool_input = None
                if btype == "TextBlock":
                    content = block.text
                elif btype == "ThinkingBlock":
                    content = block.thinking
                elif btype in ("ToolUseBlock", "ServerToolUseBlock"):
                    meta["tool_use_id"] = block.id
                    tool_name, tool_input = block.name, block.input
                else:
                    meta["data"] = block
                row = log_message(
                    "assistant", content, tool_name=tool_name, tool_input=tool_input,
                    external_id=api_id, model=model, parent_tool_use_id=parent,
                    input_tokens=tokens_in, output_tokens=tokens_out, metadata=meta,
                )  # fmt: skip
                if tool_name is not None:
                    exec_id = self.logger.log_tool_execution(
                        tool_name, "running", input=tool_input, message_id=row,
                        tool_use_id=block.id, parent_tool_use_id=parent,
                    )  # fmt: skip
                    self._tools[block.id] = (exec_id, tool_name)
            if usage_pending:
                usage_pending = False
                if api_id is not None:
                    self._usage_rows[api_id] = (row, in_tok, out_tok)
        if error and not getattr(msg, "content", None):
            self.logger.log_message("assistant", None, metadata={"error": error}, model=model)

    def _on_UserMessage(self, msg: Any) -> None:
        content = getattr(msg, "content", None)
        parent = getattr(msg, "parent_tool_use_id", None)
        if isinstance(content, str):
            if parent is None and self.session.is_prompt_echo(content):
                return
            self.logger.log_message("user", content, parent_tool_use_id=parent)
            return
        structured = getattr(msg, "tool_use_result", None)
        for block in content or []:
            btype = type(block).__name__
            if btype == "ToolResultBlock":
                self._tool_result(block, parent, structured)
            elif btype == "TextBlock":
                if parent is None and self.session.is_prompt_echo(block.text):
                    continue
                self.logger.log_message("user", block.text, parent_tool_use_id=parent)
            else:
                self.logger.log_message(
                    "user",
                    None,
                    parent_tool_use_id=parent,
                    metadata={"block": btype, "data": block},
                )

    def _tool_result(self, block: Any, parent: str | None, structured: Any) -> None:
        tool_use_id = getattr(block, "tool_use_id", None)
        is_error = bool(getattr(block, "is_error", False))
        text = tool_result_text(getattr(block, "content", None))
        exec_id, name = self._tools.pop(tool_use_id, (None, None)) if tool_use_id else (None, None)
        meta: dict[str, Any] = {"tool_use_id": tool_use_id, "is_error": is_error}
        if structured is not None:
            meta["tool_use_result"] = structured
        self.logger.log_message(
            "tool",
            text,
            tool_name=name,
            tool_output=getattr(block, "content", None),
            parent_tool_use_id=parent,
            metadata=meta,
        )
        if exec_id is not None:
            self.logger.finish_tool_execution(
                exec_id,
                "error" if is_error else "completed",
                output=None if is_error else text,
                error=text if is_error else None,
            )

    def _on_ResultMessage(self, msg: Any) -> None:
        t = self._totals
        usage = getattr(msg, "usage", None) or {}
        turn_in = _int(usage, "input_tokens") or 0
        turn_out = _int(usage, "output_tokens") or 0
        turn_cache_read = _int(usage, "cache_read_input_tokens") or 0
        turn_cache_create = _int(usage, "cache_creation_input_tokens") or 0
        reported = getattr(msg, "total_cost_usd", None)
        turn_cost: float | None = None
        if isinstance(reported, (int, float)):
            if self.cumulative_cost:
                turn_cost = max(0.0, float(reported) - t.last_cumulative_cost)
                t.last_cumulative_cost = max(t.last_cumulative_cost, float(reported))
            else:
                turn_cost = float(reported)
            t.cost_usd = (t.cost_usd or 0.0) + turn_cost
        t.results += 1
        t.input_tokens += turn_in
        t.output_tokens += turn_out
        t.cache_read_tokens += turn_cache_read
        t.cache_creation_tokens += turn_cache_create
        t.num_turns += int(getattr(msg, "num_turns", 0) or 0)
        t.duration_ms += int(getattr(msg, "duration_ms", 0) or 0)
        is_error = bool(getattr(msg, "is_error", False))
        result = getattr(msg, "result", None)
        sid = getattr(msg, "session_id", None)
        if sid and sid not in t.sdk_session_ids:
            t.sdk_session_ids.append(sid)
            if len(t.sdk_session_ids) == 1:
                self.logger.update_session(external_id=sid)
        self.logger.log_message(
            "result",
            result,
            external_id=sid,
            input_tokens=turn_in,
            output_tokens=turn_out,
            metadata={
                "subtype": getattr(msg, "subtype", None),
                "is_error": is_error,
                "stop_reason": getattr(msg, "stop_reason", None),
                "duration_ms": getattr(msg, "duration_ms", None),
                "duration_api_ms": getattr(msg, "duration_api_ms", None),
                "num_turns": getattr(msg, "num_turns", None),
                "turn_cost_usd": turn_cost,
                "total_cost_usd": reported,
                "usage": usage,
                "model_usage": getattr(msg, "model_usage", None),
                "errors": getattr(msg, "errors", None),
            },
        )
        self.session.set_source_totals(
            self,
            {
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cache_creation_tokens": t.cache_creation_tokens,
                "cost_usd": t.cost_usd,
                "num_turns": t.num_turns,
                "duration_ms": t.duration_ms,
            },
        )
        if is_error:
            errors = getattr(msg, "errors", None)
            detail = result or (", ".join(map(str, errors)) if errors else None)
            self.session.note_result_error(detail or str(getattr(msg, "subtype", "error")))
        else:
            self.session.clear_result_error()

    def _on_StreamEvent(self, msg: Any) -> None:
        """Partial-message deltas: the complete AssistantMessage follows, so nothing to store."""

    def _on_unknown(self, msg: Any) -> None:
        self.logger.log_message("event", None, metadata={"type": type(msg).__name__, "data": msg})
