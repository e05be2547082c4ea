"""The JSON documents of the read API, as ``cpl ... --json`` prints them and the viewer's
``/api`` serves them: one builder per document, so the two never drift apart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only annotations: ``cpl --version`` imports this module (for ``dumps``)
    from .records import SearchHit, SessionDetail, SessionPage, UsageRow


def sessions_document(page: SessionPage) -> dict[str, Any]:
    """``cpl sessions --json``: a page of sessions and the cursor of the next one."""
    return {"sessions": [s.to_dict() for s in page], "next_cursor": page.next_cursor}


def session_document(detail: SessionDetail) -> dict[str, Any]:
    """``cpl show ID --json``: the session, its messages, tool executions and transcripts."""
    return detail.to_dict()


def search_document(query: str, hits: Sequence[SearchHit]) -> dict[str, Any]:
    """``cpl search TEXT --json``."""
    return {"query": query, "hits": [h.to_dict() for h in hits]}


def stats_document(group_by: str, rows: Sequence[UsageRow]) -> dict[str, Any]:
    """``cpl stats --json``."""
    return {"group_by": group_by, "rows": [r.to_dict() for r in rows]}


def dumps(document: Any) -> str:
    """A document as text (ends with a newline): non-ASCII kept, anything else as ``str``."""
    return json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n"
