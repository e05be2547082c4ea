"""Reading the logs back: sessions, transcripts, search and usage figures.

Every function takes an optional ``client`` (default: the shared one) and only reads. In local mode
each call opens the file briefly (other processes wait for its lock); in cloud mode it reads a
replica pulled from the remote first, so it sees what every process has pushed, not only ours.
Rows this process logged but has not yet flushed (or pushed) are not visible: ``flush()`` first.

``records`` (what is returned) · ``access`` (opening the database for reading) · ``times`` ·
``cursor`` (pages) · ``sessions`` · ``search`` (with ``search_index``, its derived index) · ``usage`` (with ``rollups`` and ``rollup_answers``) · ``aio`` (the asyncio forms) ·
``documents`` (the JSON documents ``cpl --json`` prints and the viewer's ``/api`` serves).

Names are imported on first use (``_lazy``): ``cpl sessions`` does not load search, usage
or the asyncio forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ..errors import DatabaseUnavailable, InvalidCursor, LoggingNotConfigured

if TYPE_CHECKING:
    from .access import check_readable, missing_file_message, needs_snapshot, snapshot
    from .aio import aget_session, aiter_sessions, alist_sessions, asearch_sessions, ausage_summary
    from .cursor import check_list_arguments, decode_cursor
    from .documents import search_document, session_document, sessions_document, stats_document
    from .records import (
        WHERE_MESSAGE,
        WHERE_MESSAGE_TOOL_INPUT,
        WHERE_MESSAGE_TOOL_OUTPUT,
        WHERE_SESSION_ERROR,
        WHERE_TOOL_ERROR,
        WHERE_TOOL_INPUT,
        WHERE_TOOL_OUTPUT,
        MessageRecord,
        SearchHit,
        SessionDetail,
        SessionPage,
        SessionSummary,
        ToolExecutionRecord,
        ToolUsageRow,
        UsageRow,
    )
    from .search import SNIPPET_CONTEXT, rebuild_search_index, search_index_state, search_sessions
    from .sessions import (
        MIN_PREFIX_LENGTH,
        costliest_sessions,
        get_session,
        get_stored_transcripts,
        iter_sessions,
        list_sessions,
        sdk_session_ids,
        short_ids,
    )
    from .times import TimeLike, parse_time
    from .usage import (
        GROUP_BY_CHOICES,
        GroupBy,
        rebuild_usage_rollups,
        tool_usage,
        usage_rollups_state,
        usage_summary,
    )

__all__ = [
    "GROUP_BY_CHOICES",
    "MIN_PREFIX_LENGTH",
    "SNIPPET_CONTEXT",
    "WHERE_MESSAGE",
    "WHERE_MESSAGE_TOOL_INPUT",
    "WHERE_MESSAGE_TOOL_OUTPUT",
    "WHERE_SESSION_ERROR",
    "WHERE_TOOL_ERROR",
    "WHERE_TOOL_INPUT",
    "WHERE_TOOL_OUTPUT",
    "DatabaseUnavailable",
    "GroupBy",
    "InvalidCursor",
    "LoggingNotConfigured",
    "MessageRecord",
    "SearchHit",
    "SessionDetail",
    "SessionPage",
    "SessionSummary",
    "TimeLike",
    "ToolExecutionRecord",
    "ToolUsageRow",
    "UsageRow",
    "aget_session",
    "aiter_sessions",
    "alist_sessions",
    "asearch_sessions",
    "ausage_summary",
    "check_list_arguments",
    "check_readable",
    "costliest_sessions",
    "decode_cursor",
    "get_session",
    "get_stored_transcripts",
    "iter_sessions",
    "list_sessions",
    "missing_file_message",
    "needs_snapshot",
    "parse_time",
    "rebuild_search_index",
    "rebuild_usage_rollups",
    "sdk_session_ids",
    "search_document",
    "search_index_state",
    "search_sessions",
    "session_document",
    "sessions_document",
    "short_ids",
    "snapshot",
    "stats_document",
    "tool_usage",
    "usage_rollups_state",
    "usage_summary",
]

_EXPORTS = {
    ".access": ("check_readable", "missing_file_message", "needs_snapshot", "snapshot"),
    ".aio": (
        "aget_session",
        "aiter_sessions",
        "alist_sessions",
        "asearch_sessions",
        "ausage_summary",
    ),
    ".cursor": ("check_list_arguments", "decode_cursor"),
    ".documents": ("search_document", "session_document", "sessions_document", "stats_document"),
    ".records": (
        "WHERE_MESSAGE",
        "WHERE_MESSAGE_TOOL_INPUT",
        "WHERE_MESSAGE_TOOL_OUTPUT",
        "WHERE_SESSION_ERROR",
        "WHERE_TOOL_ERROR",
        "WHERE_TOOL_INPUT",
        "WHERE_TOOL_OUTPUT",
        "MessageRecord",
        "SearchHit",
        "SessionDetail",
        "SessionPage",
        "SessionSummary",
        "ToolExecutionRecord",
        "ToolUsageRow",
        "UsageRow",
    ),
    ".search": ("SNIPPET_CONTEXT", "rebuild_search_index", "search_index_state", "search_sessions"),
    ".sessions": (
        "MIN_PREFIX_LENGTH",
        "costliest_sessions",
        "get_session",
        "get_stored_transcripts",
        "iter_sessions",
        "list_sessions",
        "sdk_session_ids",
        "short_ids",
    ),
    ".times": ("TimeLike", "parse_time"),
    ".usage": (
        "GROUP_BY_CHOICES",
        "GroupBy",
        "rebuild_usage_rollups",
        "tool_usage",
        "usage_rollups_state",
        "usage_summary",
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
