"""Prompts as the SDKs take them: their searchable text, and :class:`PromptLog`, the pass-through
that logs a streamed prompt as the SDK reads it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .._log import log

if TYPE_CHECKING:
    from .session import LoggedSession


def prompt_text(content: Any) -> str | None:
    """The searchable text of a prompt's content: a string, or its text blocks joined."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = [
            str(b.get("text", "")) if isinstance(b, dict) else str(getattr(b, "text", ""))
            for b in content
            if (isinstance(b, dict) and b.get("type") == "text") or type(b).__name__ == "TextBlock"
        ]
        return "\n".join(texts) if texts else None
    return None


def message_prompt_text(prompt: Any) -> str | None:
    """The text of a streamed prompt message (``{"message": {"content": ...}}``)."""
    if not isinstance(prompt, dict):
        return None
    message = prompt.get("message")
    return prompt_text(message.get("content") if isinstance(message, dict) else None)


class PromptLog:
    """A streamed prompt passed through to the SDK: the same items, in the same order; each
    message is logged (as a ``user`` row) when the SDK reads it."""

    def __init__(
        self,
        source: AsyncIterable[Any],
        resolve: Callable[[], LoggedSession | None],
        *,
        from_sdk: bool = False,
    ) -> None:
        self._source = source
        self._resolve = resolve
        self._from_sdk = from_sdk
        self._iter: AsyncIterator[Any] | None = None

    def __aiter__(self) -> PromptLog:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._source.__aiter__()
        item = await self._iter.__anext__()
        try:
            session = self._resolve()
            if session is not None:
                session.log_prompt(item, from_sdk=self._from_sdk)
        except Exception:  # logging must never raise into the agent
            log.debug("cannot log a streamed prompt", exc_info=True)
        return item

    async def aclose(self) -> None:
        closer = getattr(self._iter if self._iter is not None else self._source, "aclose", None)
        if closer is not None:
            await closer()
