"""The operations the logger hands the writer: the protocol between the two threads.

An operation is a plain tuple ``(kind, ...)`` so that enqueueing one costs almost nothing; the
writer compiles a batch of them to SQL (``write/batch.py``).
"""

from __future__ import annotations

from typing import Any

SESSION_INSERT = 0  # (kind, SESSION_COLS values)
SESSION_UPDATE = 1  # (kind, session_id, column names, values)
MESSAGE_UPSERT = 2  # (kind, MESSAGE_COLS values)
TOOL_UPSERT = 3  # (kind, TOOL_COLS values)
TOOL_UPDATE = 4  # (kind, tool_execution_id, column names, values)
MESSAGE_UPDATE = 5  # (kind, message_id, column names, values)
MESSAGE_INSERT = 6  # (kind, MESSAGE_COLS values): a fresh id, so a plain (faster) INSERT
TOOL_INSERT = 7  # (kind, TOOL_COLS values): a fresh id

Op = tuple[Any, ...]
