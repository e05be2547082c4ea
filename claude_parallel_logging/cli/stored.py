"""Rendering of the full-fidelity transcripts a ``TursoSessionStore`` holds (``cpl show
--transcript``), and the one-line pointer to them under a session's transcript."""

from __future__ import annotations

from typing import Any

from ..client import TursoClient
from ..query import SessionDetail, get_stored_transcripts
from .base import EXIT_OK, CliError
from .format import as_text, count_of
from .output import Output


def entries_of(n: int) -> str:
    return f"{n:,} entr{'y' if n == 1 else 'ies'}"


def pointer_lines(detail: SessionDetail, ref: str) -> list[str]:
    """One line per stored transcript of the session, saying how to show it."""
    out = []
    for t in detail.transcripts:
        subs = f", {count_of(len(t.subpaths), 'subagent transcript')}" if t.subpaths else ""
        out.append(
            f"Stored transcript of SDK session {t.session_id}: {entries_of(t.entries)}{subs}"
            f" (cpl show {ref} --transcript)"
        )
    return out


def show_stored(
    detail: SessionDetail, client: TursoClient, as_json: bool, limit: int, out: Output
) -> int:
    """The stored transcripts, subagents nested."""
    stored = get_stored_transcripts(detail, client=client)
    if not stored:
        raise CliError(f"session {detail.session.id} has no stored transcript (TursoSessionStore)")
    if as_json:
        out.json(
            [
                {
                    "project_key": t.project_key,
                    "session_id": t.session_id,
                    "entries": parts[""],
                    "subagents": {k: v for k, v in parts.items() if k},
                }
                for t, parts in stored
            ]
        )
        return EXIT_OK
    for t, parts in stored:
        out.line(f"Stored transcript {t.session_id} (project {t.project_key})", "bold")
        for subpath, entries in parts.items():
            indent = "    " if subpath else "  "
            if subpath:
                out.line(f"  subagent {subpath}: {entries_of(len(entries))}", "bold")
            for e in entries:
                out.line(indent + entry_line(e, limit))
    return EXIT_OK


def _block_text(block: Any) -> str:
    if not isinstance(block, dict):
        return as_text(block)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"[tool_use {block.get('name')} {as_text(block.get('input'))}]"
    if kind == "tool_result":
        return f"[tool_result {as_text(block.get('content'))}]"
    return f"[{kind}]"


def entry_line(entry: Any, limit: int) -> str:
    """``type role: text`` of one transcript entry (text, tool calls and results, flattened)."""
    if not isinstance(entry, dict):
        return as_text(entry)
    message = entry.get("message")
    role, content = "", entry.get("content") or entry.get("summary") or ""
    if isinstance(message, dict):
        role, content = str(message.get("role") or ""), message.get("content")
    if isinstance(content, list):
        content = " ".join(_block_text(b) for b in content)
    text = " ".join(as_text(content).split())
    if limit and len(text) > limit:
        text = text[:limit] + f"… [{len(text):,} chars]"
    kind = entry.get("type", "?")
    head = f"{kind} {role}" if role and role != kind else str(kind)
    return f"{head}: {text}" if text else head
