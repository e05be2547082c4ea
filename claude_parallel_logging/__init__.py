"""claude-parallel-logging: record every Claude Agent SDK and OpenCode conversation in Turso.

Writes are fire-and-forget: the agent's code only enqueues; a background writer batches into
the database. See README.md for the set-up and the guarantees.

Names are imported on first use (``_lazy``), so ``import claude_parallel_logging`` and ``cpl
--version`` stay quick; ``from claude_parallel_logging import X`` works as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .client import (
        TursoClient,
        aflush,
        flush,
        get_turso_client,
        initialize_schema,
        shutdown,
        stats,
    )
    from .config import Settings, TursoConfig, configure, get_turso_config, reset_configuration
    from .errors import DatabaseUnavailable, InvalidCursor, LoggingNotConfigured, SchemaVersionError
    from .integrations.claude.session_store import TursoSessionStore as TursoSessionStore
    from .integrations.decorators import logged, logged_session
    from .integrations.instrument import instrument, uninstrument
    from .integrations.opencode.monitor import OpencodeMonitor, monitor_opencode
    from .integrations.session import LoggedSession, current_session
    from .logger import ConversationLogger, SessionInfo
    from .query import (
        MIN_PREFIX_LENGTH,
        MessageRecord,
        SearchHit,
        SessionDetail,
        SessionPage,
        SessionSummary,
        ToolExecutionRecord,
        UsageRow,
        aget_session,
        aiter_sessions,
        alist_sessions,
        asearch_sessions,
        ausage_summary,
        get_session,
        iter_sessions,
        list_sessions,
        search_sessions,
        usage_summary,
    )
    from .schema.migrations import SCHEMA_VERSION

__all__ = [
    "MIN_PREFIX_LENGTH",
    "SCHEMA_VERSION",
    "ConversationLogger",
    "DatabaseUnavailable",
    "InvalidCursor",
    "LoggedSession",
    "LoggingNotConfigured",
    "MessageRecord",
    "OpencodeMonitor",
    "SchemaVersionError",
    "SearchHit",
    "SessionDetail",
    "SessionInfo",
    "SessionPage",
    "SessionSummary",
    "Settings",
    "ToolExecutionRecord",
    "TursoClient",
    "TursoConfig",
    "UsageRow",
    "aflush",
    "aget_session",
    "aiter_sessions",
    "alist_sessions",
    "asearch_sessions",
    "ausage_summary",
    "configure",
    "current_session",
    "flush",
    "get_session",
    "get_turso_client",
    "get_turso_config",
    "initialize_schema",
    "instrument",
    "iter_sessions",
    "list_sessions",
    "logged",
    "logged_session",
    "monitor_opencode",
    "reset_configuration",
    "search_sessions",
    "shutdown",
    "stats",
    "uninstrument",
    "usage_summary",
]

__version__ = "0.1.0"

_EXPORTS = {
    ".client": (
        "TursoClient", "aflush", "flush", "get_turso_client", "initialize_schema", "shutdown",
        "stats",
    ),
    ".config": ("Settings", "TursoConfig", "configure", "get_turso_config", "reset_configuration"),
    ".errors": ("DatabaseUnavailable", "InvalidCursor", "LoggingNotConfigured", "SchemaVersionError"),
    ".integrations.decorators": ("logged", "logged_session"),
    ".integrations.instrument": ("instrument", "uninstrument"),
    ".integrations.opencode.monitor": ("OpencodeMonitor", "monitor_opencode"),
    ".integrations.session": ("LoggedSession", "current_session"),
    ".logger": ("ConversationLogger", "SessionInfo"),
    ".query": (
        "MIN_PREFIX_LENGTH", "MessageRecord", "SearchHit", "SessionDetail", "SessionPage",
        "SessionSummary", "ToolExecutionRecord", "UsageRow", "aget_session", "aiter_sessions",
        "alist_sessions", "asearch_sessions", "ausage_summary", "get_session", "iter_sessions",
        "list_sessions", "search_sessions", "usage_summary",
    ),
    ".schema.migrations": ("SCHEMA_VERSION",),
    # Not in __all__: it needs claude-agent-sdk (the optional [claude] extra).
    ".integrations.claude.session_store": ("TursoSessionStore",),
}  # fmt: skip

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
