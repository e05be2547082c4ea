"""Reading the Claude Agent SDK's objects: message kinds, content blocks, tool results, errors.

By class name and attributes, so the SDK is never imported and a version that adds fields or
types still maps (unknown blocks are kept as data).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..shapes import PREVIEW_CHARS, PREVIEW_ITEMS

_KINDS = ("SystemMessage", "AssistantMessage", "UserMessage", "ResultMessage", "StreamEvent")
_kind_cache: dict[type, str] = {}


def message_kind(obj: Any) -> str:
    """The SDK class name, walking bases so subclasses (TaskStartedMessage) map like parents."""
    cls = type(obj)
    kind = _kind_cache.get(cls)
    if kind is None:
        kind = next((c.__name__ for c in cls.__mro__ if c.__name__ in _KINDS), cls.__name__)
        _kind_cache[cls] = kind
    return kind


# Content blocks mapped one by one per message; the rest are summarised in one row, so a
# message of any size costs the consumer's task a bounded number of rows (and of steps).
MAX_BLOCKS = 100


def tool_result_text(content: Any) -> str | None:
    """ToolResultBlock content is a string or a list of content blocks (text, image, ...);
    at most ``MAX_BLOCKS`` of them are read."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts: list[str] = []
        for item in content[:MAX_BLOCKS]:
            if isinstance(item, dict):
                if item.get("type") == "text":
                    text = item.get("text", "")
                    parts.append(text if isinstance(text, str) else placeholder(text))
                else:
                    parts.append(placeholder(item.get("type", "block")))
            elif isinstance(item, str):
                parts.append(item)
            else:
                text = getattr(item, "text", None)
                parts.append(text if isinstance(text, str) else f"[{type(item).__name__}]")
        if len(content) > MAX_BLOCKS:
            parts.append(f"[{len(content) - MAX_BLOCKS} more blocks]")
        return "\n".join(parts)
    if isinstance(content, (int, float)):
        return str(content)
    return placeholder(content)


def placeholder(value: Any) -> str:
    """``[name]`` for a short string (a block type), ``[TypeName]`` for anything else."""
    if isinstance(value, str) and len(value) <= PREVIEW_CHARS:
        return f"[{value}]"
    return f"[{type(value).__name__}]"


def error_detail(errors: Any) -> str | None:
    if not errors:
        return None
    if isinstance(errors, (list, tuple)):
        shown = [e if isinstance(e, str) else placeholder(e) for e in errors[:PREVIEW_ITEMS]]
        more = len(errors) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")
    return errors if isinstance(errors, str) else placeholder(errors)


def block_data(block: Any) -> Any:
    """An unknown block as data the writer can store as JSON (dataclasses and dicts already
    are; a plain object's attributes are copied so its type name and fields survive)."""
    if isinstance(block, dict) or dataclasses.is_dataclass(block):
        return block
    attrs = getattr(block, "__dict__", None)
    if isinstance(attrs, dict):
        return {"__type__": type(block).__name__, **attrs}
    return block
