"""The columns each operation names, and the columns an update may change, per table."""

from __future__ import annotations

SESSION_COLS = (
    "id", "agent_type", "model", "provider", "started_at", "status", "metadata", "external_id",
)  # fmt: skip
MESSAGE_COLS = (
    "id", "session_id", "sequence", "role", "content", "tool_name", "tool_input", "tool_output",
    "created_at", "token_count", "external_id", "model", "input_tokens", "output_tokens",
    "parent_tool_use_id", "metadata",
)  # fmt: skip
TOOL_COLS = (
    "id", "session_id", "message_id", "tool_name", "status", "input", "output", "error",
    "started_at", "ended_at", "duration_ms", "tool_use_id", "parent_tool_use_id",
)  # fmt: skip

SESSION_UPDATABLE = frozenset(
    {
        "agent_type", "model", "provider", "ended_at", "status", "error_message", "metadata",
        "external_id", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_creation_tokens", "cost_usd", "duration_ms", "num_turns",
    }
)  # fmt: skip
MESSAGE_UPDATABLE = frozenset(
    {
        "content", "tool_name", "tool_input", "tool_output", "token_count", "external_id",
        "model", "input_tokens", "output_tokens", "metadata", "role",
    }
)  # fmt: skip
TOOL_UPDATABLE = frozenset(
    {"status", "output", "error", "ended_at", "duration_ms", "message_id", "input"}
)

# ``row_changes.tbl`` (migration 7) of each table whose updated rows the writer journals
JOURNAL = {"sessions": 0, "messages": 1, "tool_executions": 2}
