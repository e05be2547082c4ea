"""Claude Agent SDK: the one place that maps SDK messages onto rows.

Works on the SDK's message objects by class name and attributes, so it does not import the SDK
and tolerates versions that add fields or types (unknown ones are kept as JSON).

Token and cost accounting (what the CLI reports, checked on CLI 2.1.330):

* ``AssistantMessage.usage`` is the ``message_start`` usage of its API message: input and cache
  figures are final, ``output_tokens`` is a provisional start value. It is stored only when
  final (``stop_reason`` set, or the ``message_delta`` stream event with partial messages on),
  or filled in from the turn's result when that is exact; otherwise NULL.
* ``ResultMessage.usage`` covers the main thread of one turn; ``model_usage`` and
  ``total_cost_usd`` are cumulative per SDK session (a ``ClaudeSDKClient`` across its turns, and
  a resumed session carries its earlier figures along) and include subagents and helper calls.
  A turn's figures are therefore the difference to the previous result of the same SDK session
  (:func:`turn_figures`), shared by every mapper and logged session that sees that session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._log import log
from ..shapes import PREVIEW_ITEMS, as_int, describe, int_at
from .blocks import (
    MAX_BLOCKS,
    block_data,
    error_detail,
    message_kind,
    tool_result_text,
)
from .usage import turn_figures

if TYPE_CHECKING:
    from ..session import LoggedSession

_INIT_METADATA = {
    "cwd": "cwd",
    "tools": "tools",
    "permissionMode": "permission_mode",
    "claude_code_version": "claude_code_version",
    "apiKeySource": "api_key_source",
    "mcp_servers": "mcp_servers",
    "agents": "agents",
}

SYNTHETIC_MODEL = "<synthetic>"  # the CLI's stand-in message for an API error: no API usage


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


@dataclass
class _ApiMessage:
    """One API message (several AssistantMessages share it): its row and token figures."""

    row: str
    parent: str | None
    input_tokens: int | None
    output_tokens: int | None  # None until known to be final


class ClaudeMapper:
    """Maps one stream source (a ``query()`` call, a ``ClaudeSDKClient``) into a session."""

    def __init__(self, session: LoggedSession, *, owned: bool = False) -> None:
        self.session = session
        self.logger = session.logger
        self.owned = owned
        self._tools: dict[str, tuple[str, str | None]] = {}
        self._api: dict[str, _ApiMessage] = {}
        self._turn_api: list[str] = []  # API message ids of the current turn, in order
        self._final_out: dict[str, int] = {}  # message_delta seen before the message's row
        self._streaming: dict[str | None, str] = {}  # parent_tool_use_id -> API message id
        self._totals = _Totals()

    @property
    def results(self) -> int:
        return self._totals.results

    # ----- entry points -----------------------------------------------------------------------

    def observe(self, msg: Any) -> None:
        if not self.session.first_sight(msg):
            return
        kind = message_kind(msg)
        try:
            if kind == "AssistantMessage":
                self._on_AssistantMessage(msg)
            elif kind == "UserMessage":
                self._on_UserMessage(msg)
            elif kind == "StreamEvent":
                self._on_StreamEvent(msg)
            elif kind == "SystemMessage":
                self._on_SystemMessage(msg)
            elif kind == "ResultMessage":
                self._on_ResultMessage(msg)
            else:
                self._on_unknown(msg)
        except Exception:
            log.debug("cannot map %s", kind, exc_info=True)
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
        if subtype == "init" and isinstance(data, dict):
            updates: dict[str, Any] = {}
            sid = data.get("session_id")
            ids = self.session.add_sdk_session(sid) if isinstance(sid, str) and sid else None
            if ids is not None and len(ids) == 1:
                updates["external_id"] = sid
            if isinstance(data.get("model"), str) and data["model"]:
                updates["model"] = data["model"]
            meta = {dst: data[src] for src, dst in _INIT_METADATA.items() if src in data}
            if ids is not None:
                meta["sdk_session_ids"] = ids
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

    def _unexpected(
        self, role: str, content: Any, meta: dict[str, Any] | None = None, **row: Any
    ) -> str:
        """Content of an unexpected shape: one row describing it, never a row per element
        (a string would be iterated by character, a dict by key, an iterator consumed). A
        string is stored as the row's text (cut to the payload limit like any text)."""
        shape = describe(content)
        text = content if isinstance(content, str) else None
        if text is not None:
            del shape["preview"]
        return self.logger.log_message(
            role, text, metadata={**(meta or {}), "unexpected_content": shape}, **row
        )

    def _omitted(self, role: str, content: Sequence[Any], **row: Any) -> None:
        """The blocks beyond ``MAX_BLOCKS``: one row saying how many, and of which types."""
        rest = content[MAX_BLOCKS:]
        self.logger.log_message(
            role,
            None,
            metadata={
                "omitted_blocks": len(rest),
                "total_blocks": len(content),
                "omitted_block_types": [type(b).__name__ for b in rest[:PREVIEW_ITEMS]],
            },
            **row,
        )

    def _on_AssistantMessage(self, msg: Any) -> None:
        api_id = getattr(msg, "message_id", None)
        if not isinstance(api_id, str):
            api_id = None
        usage = getattr(msg, "usage", None)
        model = getattr(msg, "model", None)
        parent = getattr(msg, "parent_tool_use_id", None)
        error = getattr(msg, "error", None)
        in_tok = int_at(usage, "input_tokens")
        # message_start usage: output_tokens is provisional until the message has stopped.
        out_tok = int_at(usage, "output_tokens") if getattr(msg, "stop_reason", None) else None
        if out_tok is None and api_id is not None:
            out_tok = self._final_out.pop(api_id, None)
        # The CLI sends one AssistantMessage per content block, all with the API message's id and
        # usage: store the usage once per id (on its first row), update it when it became final.
        known = self._api.get(api_id) if api_id is not None else None
        if known is not None:
            if out_tok is not None and known.output_tokens is None:
                known.output_tokens = out_tok
                self.logger.update_message(known.row, output_tokens=out_tok)
        usage_pending = known is None
        log_message = self.logger.log_message
        row: str | None = None
        content = getattr(msg, "content", None)
        if not isinstance(content, (list, tuple)):
            if content:
                row = self._unexpected(
                    "assistant", content, {"error": error} if error else None,
                    external_id=api_id, model=model, parent_tool_use_id=parent,
                    input_tokens=in_tok if usage_pending else None,
                    output_tokens=out_tok if usage_pending else None,
                )  # fmt: skip
                if usage_pending and api_id is not None and model != SYNTHETIC_MODEL:
                    self._api[api_id] = _ApiMessage(row, parent, in_tok, out_tok)
                    self._turn_api.append(api_id)
            elif error:
                log_message("assistant", None, metadata={"error": error}, model=model)
            return
        blocks = content if len(content) <= MAX_BLOCKS else content[:MAX_BLOCKS]
        for block in blocks:
            btype = type(block).__name__
            tokens_in, tokens_out = (in_tok, out_tok) if usage_pending else (None, None)
            if btype == "TextBlock" and not error:
                row = log_message(
                    "assistant", getattr(block, "text", None), external_id=api_id, model=model,
                    parent_tool_use_id=parent, input_tokens=tokens_in, output_tokens=tokens_out,
                )  # fmt: skip
            else:
                meta: dict[str, Any] = {"block": btype}
                if error:
                    meta["error"] = error
                tool_name = tool_input = None
                text: Any = None
                tool_use_id: Any = None
                if btype == "TextBlock":
                    text = getattr(block, "text", None)
                elif btype == "ThinkingBlock":
                    text = getattr(block, "thinking", None)
                    signature = getattr(block, "signature", None)
                    if signature:
                        meta["signature"] = signature
                elif btype in ("ToolUseBlock", "ServerToolUseBlock"):
                    tool_use_id = meta["tool_use_id"] = getattr(block, "id", None)
                    tool_name = getattr(block, "name", None) or "unknown"
                    tool_input = getattr(block, "input", None)
                else:
                    meta["data"] = block_data(block)
                row = log_message(
                    "assistant", text, tool_name=tool_name, tool_input=tool_input,
                    external_id=api_id, model=model, parent_tool_use_id=parent,
                    input_tokens=tokens_in, output_tokens=tokens_out, metadata=meta,
                )  # fmt: skip
                if tool_name is not None:
                    exec_id = self.logger.log_tool_execution(
                        tool_name, "running", input=tool_input, message_id=row,
                        tool_use_id=tool_use_id, parent_tool_use_id=parent,
                    )  # fmt: skip
                    if isinstance(tool_use_id, str):
                        self._tools[tool_use_id] = (exec_id, tool_name)
            if usage_pending:
                usage_pending = False
                if api_id is not None and model != SYNTHETIC_MODEL:
                    self._api[api_id] = _ApiMessage(row, parent, in_tok, out_tok)
                    self._turn_api.append(api_id)
        if len(blocks) < len(content):
            self._omitted("assistant", content, external_id=api_id, model=model)
        if error and not content:
            self.logger.log_message("assistant", None, metadata={"error": error}, model=model)

    def _on_UserMessage(self, msg: Any) -> None:
        content = getattr(msg, "content", None)
        parent = getattr(msg, "parent_tool_use_id", None)
        if isinstance(content, str):
            if parent is None and self.session.is_prompt_echo(content):
                return
            self.logger.log_message("user", content, parent_tool_use_id=parent)
            return
        if not isinstance(content, (list, tuple)):
            if content is not None:
                self._unexpected("user", content, parent_tool_use_id=parent)
            return
        structured = getattr(msg, "tool_use_result", None)
        for block in content[:MAX_BLOCKS]:
            btype = type(block).__name__
            if btype == "ToolResultBlock":
                self._tool_result(block, parent, structured)
            elif btype == "TextBlock":
                text = getattr(block, "text", None)
                if parent is None and isinstance(text, str) and self.session.is_prompt_echo(text):
                    continue
                self.logger.log_message("user", text, parent_tool_use_id=parent)
            else:
                self.logger.log_message(
                    "user",
                    None,
                    parent_tool_use_id=parent,
                    metadata={"block": btype, "data": block_data(block)},
                )
        if len(content) > MAX_BLOCKS:
            self._omitted("user", content, parent_tool_use_id=parent)

    def _tool_result(self, block: Any, parent: str | None, structured: Any) -> None:
        tool_use_id = getattr(block, "tool_use_id", None)
        is_error = bool(getattr(block, "is_error", False))
        text = tool_result_text(getattr(block, "content", None))
        exec_id, name = (
            self._tools.pop(tool_use_id, (None, None))
            if isinstance(tool_use_id, str)
            else (None, None)
        )
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

    def _fill_output_tokens(self, usage: Any) -> None:
        """The turn's main-thread output minus what is known: exact when one message is left
        and the per-message input figures add up to the turn's (so no call went unseen)."""
        main = [self._api[i] for i in self._turn_api if i in self._api]
        main = [m for m in main if m.parent is None]
        turn_in, turn_out = int_at(usage, "input_tokens"), int_at(usage, "output_tokens")
        unknown = [m for m in main if m.output_tokens is None]
        if len(unknown) != 1 or turn_in is None or turn_out is None:
            return
        if sum(m.input_tokens or 0 for m in main) != turn_in:
            return
        rest = turn_out - sum(m.output_tokens or 0 for m in main if m.output_tokens is not None)
        if rest >= 0:
            unknown[0].output_tokens = rest
            self.logger.update_message(unknown[0].row, output_tokens=rest)

    def _on_ResultMessage(self, msg: Any) -> None:
        t = self._totals
        usage = getattr(msg, "usage", None) or {}
        turn = turn_figures(msg)
        try:
            self._fill_output_tokens(usage)
        finally:
            self._turn_api.clear()
            self._api.clear()
            self._final_out.clear()
            self._streaming.clear()
        if turn.cost_usd is not None:
            t.cost_usd = (t.cost_usd or 0.0) + turn.cost_usd
        t.results += 1
        t.input_tokens += turn.input_tokens
        t.output_tokens += turn.output_tokens
        t.cache_read_tokens += turn.cache_read_tokens
        t.cache_creation_tokens += turn.cache_creation_tokens
        t.num_turns += as_int(getattr(msg, "num_turns", 0)) or 0
        t.duration_ms += as_int(getattr(msg, "duration_ms", 0)) or 0
        is_error = bool(getattr(msg, "is_error", False))
        result = getattr(msg, "result", None)
        sid = getattr(msg, "session_id", None)
        ids = self.session.add_sdk_session(sid) if isinstance(sid, str) and sid else None
        if ids is not None:  # a session id first seen in a result (no init message before)
            if len(ids) == 1:
                self.logger.update_session(external_id=sid, metadata={"sdk_session_ids": ids})
            else:
                self.logger.update_session(metadata={"sdk_session_ids": ids})
        self.logger.log_message(
            "result",
            result,
            external_id=sid,
            input_tokens=turn.input_tokens,
            output_tokens=turn.output_tokens,
            metadata={
                "subtype": getattr(msg, "subtype", None),
                "is_error": is_error,
                "stop_reason": getattr(msg, "stop_reason", None),
                "terminal_reason": getattr(msg, "terminal_reason", None),
                "api_error_status": getattr(msg, "api_error_status", None),
                "duration_ms": getattr(msg, "duration_ms", None),
                "duration_api_ms": getattr(msg, "duration_api_ms", None),
                "num_turns": getattr(msg, "num_turns", None),
                "turn_cost_usd": turn.cost_usd,
                "turn_usage": {
                    "input_tokens": turn.input_tokens,
                    "output_tokens": turn.output_tokens,
                    "cache_read_tokens": turn.cache_read_tokens,
                    "cache_creation_tokens": turn.cache_creation_tokens,
                    "source": turn.source,
                },
                "total_cost_usd": getattr(msg, "total_cost_usd", None),
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
            detail = result if isinstance(result, str) and result else None
            detail = detail or error_detail(getattr(msg, "errors", None))
            subtype = getattr(msg, "subtype", None)
            self.session.note_result_error(
                detail or (subtype if isinstance(subtype, str) and subtype else "error")
            )
        else:
            self.session.clear_result_error()

    def _on_StreamEvent(self, msg: Any) -> None:
        """Partial-message deltas: the complete AssistantMessages carry the content; only the
        final output token count (``message_delta``) is taken from here."""
        event = getattr(msg, "event", None)
        if not isinstance(event, dict):
            return
        etype = event.get("type")
        parent = getattr(msg, "parent_tool_use_id", None)
        if not isinstance(parent, str):
            parent = None
        if etype == "message_start":
            message = event.get("message")
            api_id = message.get("id") if isinstance(message, dict) else None
            if isinstance(api_id, str):
                self._streaming[parent] = api_id
        elif etype == "message_delta":
            api_id = self._streaming.get(parent)
            out = int_at(event.get("usage"), "output_tokens")
            if api_id is None or out is None:
                return
            known = self._api.get(api_id)
            if known is None:
                self._final_out[api_id] = out
            elif known.output_tokens != out:
                known.output_tokens = out
                self.logger.update_message(known.row, output_tokens=out)

    def _on_unknown(self, msg: Any) -> None:
        self.logger.log_message(
            "event", None, metadata={"type": type(msg).__name__, "data": block_data(msg)}
        )
