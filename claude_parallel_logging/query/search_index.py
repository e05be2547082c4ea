"""The derived search index: an SQLite FTS5 ``trigram`` table beside the database, in the user's
cache directory, that narrows ``search_sessions`` to the sessions that can match.

It is derived and disposable: rebuilt from the tables by ``cpl reindex`` (or when it no longer
matches its database), never written by the logger, and brought up to date by the reader before
each search (new rows by rowid). Every candidate it gives is checked against the database by the
same code as the plain scan, so the index only has to hold a superset of the truth:

* each row becomes a document of its searchable texts, lower-cased by Python exactly as the
  matcher lower-cases them (JSON columns as the values inside them), indexed by a
  case-sensitive trigram tokenizer, so a phrase query of the lower-cased needle finds every
  row whose text contains it (needles of 1-2 characters have no trigram: the caller scans);
* rows are never deleted from the contentless FTS table: a row updated later (a tool's output at
  its end, a session's error, a message rewritten) is read again when the ``row_changes``
  journal names it (``derived.py``) and gets another document; an outdated one can only
  propose a candidate the check then rejects;
* documents of one session share a rowid slot (``ordinal << DOC_BITS``), and ``sess.bound_*``
  holds the greatest ``(started_at, id)`` of the sessions up to each ordinal, so the matches,
  walked by descending rowid, give sessions roughly newest first with a proven bound on what is
  still to come: a search for a common word stops after its page.

Rows beyond the refresh (a budget was exhausted while catching up: new rows beyond the marks,
or rows named by journal entries not read yet) are matched by the caller with ``LIKE``, so a
partly built index is still exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .derived import (
    DerivedFile,
    changed_rows,
    chunks,
    derived_path,
    file_size,
    first_session,
    journal_top,
)

INDEX_VERSION = 2  # 2: updates from the row_changes journal (1 re-read open sessions)
DOC_BITS = 20  # documents per ordinal; a session with more takes another ordinal
CHUNK = 1000  # rows of each table per step (a step is one transaction of the index)
MIN_NEEDLE = 3  # trigram: shorter needles cannot use the index

# (table, kind, columns: (name, is_json)) of every searchable text, as ``search.py`` matches it.
MESSAGE_TEXTS = (("content", False), ("tool_input", True), ("tool_output", True))
TOOL_TEXTS = (("input", True), ("output", False), ("error", False))
SESSION_TEXTS = (("error_message", False),)
TABLES = (
    ("sessions", 0, SESSION_TEXTS),
    ("messages", 1, MESSAGE_TEXTS),
    ("tool_executions", 2, TOOL_TEXTS),
)


def json_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, text) of every string and number inside a JSON value; keys are not content."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield path, json.dumps(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from json_values(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_values(v, f"{path}[{i}]")


def searchable_texts(stored: Any, is_json: bool) -> list[str]:
    """The texts the matcher looks into for one stored value."""
    if not isinstance(stored, str):
        return []
    if is_json:
        try:
            value = json.loads(stored)
        except ValueError:
            return [stored]
        return [text for _, text in json_values(value)]
    return [stored]


def document(values: Sequence[Any], cols: Sequence[tuple[str, bool]]) -> str:
    parts: list[str] = []
    for value, (_, is_json) in zip(values, cols):
        parts.extend(t.lower() for t in searchable_texts(value, is_json))
    return "\n".join(parts)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    # ordinal: the session's rowid slot; bound_*: max (started_at, id) over ordinals <= this one.
    "CREATE TABLE IF NOT EXISTS sess (ordinal INTEGER PRIMARY KEY, session_id TEXT NOT NULL,"
    " started_at TEXT, next_doc INTEGER NOT NULL DEFAULT 0, bound_start TEXT, bound_id TEXT)",
    "CREATE INDEX IF NOT EXISTS sess_by_id ON sess(session_id, ordinal)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(body, content='',"
    " tokenize='trigram case_sensitive 1', columnsize=0)",
)


@dataclass(frozen=True)
class IndexState:
    """What ``cpl doctor`` reports."""

    path: str
    exists: bool
    documents: int = 0
    sessions: int = 0
    lag_rows: int = 0
    size_bytes: int = 0
    refreshed_at: float | None = None
    error: str | None = None

    def describe(self) -> str:
        """One line for ``cpl doctor``."""
        if self.error is not None and not self.exists:
            return f"not used: {self.error}"
        if self.error is not None:
            return f"{self.path} unusable ({self.error}): search scans; `cpl reindex` rebuilds it"
        if not self.exists:
            return f"not built yet ({self.path}): the first search builds it, or `cpl reindex`"
        return (
            f"{self.documents:,} documents over {self.sessions:,} sessions, {self.lag_rows:,}"
            f" rows not indexed yet, {self.size_bytes / 1e6:,.1f} MB ({self.path})"
        )


class SearchIndex(DerivedFile):
    """One open index file (an ``sqlite3`` connection) for one database."""

    SCHEMA = _SCHEMA
    VERSION = INDEX_VERSION

    # -- state ------------------------------------------------------------------------------

    def mark(self, kind: int) -> int:
        return int(self._meta(f"mark{kind}") or 0)

    def marks(self) -> dict[str, int]:
        """The last indexed rowid of each table."""
        return {table: self.mark(kind) for table, kind, _ in TABLES}

    def documents(self) -> int:
        return int(self._meta("documents") or 0)

    def lag(self, main: Any) -> int:
        """Rows of the database not indexed yet, and journal entries not read yet."""
        total = 0
        ranges = [(table, self.mark(kind)) for table, kind, _ in TABLES]
        if self._meta("journal") is not None:
            ranges.append(("row_changes", int(self._meta("journal"))))
        for table, mark in ranges:
            row = main.execute(  # a rowid range (pyturso counts ``rowid > ?`` by a whole scan)
                f"SELECT COUNT(*) FROM (SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid)",
                (mark,),
            )
            total += int(row.fetchone()[0])
        return total

    def state(self, main: Any | None) -> IndexState:
        sessions = int(self.db.execute("SELECT COUNT(*) FROM sess").fetchone()[0])
        refreshed = self._meta("refreshed_at")
        return IndexState(
            str(self.path),
            True,
            self.documents(),
            sessions,
            self.lag(main) if main is not None else 0,
            file_size(self.path),
            float(refreshed) if refreshed is not None else None,
        )

    def unread_changes(self, main: Any) -> dict[int, list[str]]:
        """Ids of the rows (per kind) that journal entries not read yet name."""
        out: dict[int, dict[str, None]] = {}
        if self._meta("journal") is None:  # nothing indexed: every row is beyond the marks
            return {}
        after = int(self._meta("journal"))
        for _ in range(100_000_000):
            entries = changed_rows(main, after, 50_000)
            for _, kind, rid in entries:
                out.setdefault(kind, {})[rid] = None
            if len(entries) < 50_000:
                break
            after = entries[-1][0]
        return {kind: list(ids) for kind, ids in out.items()}

    # -- bringing it up to date ----------------------------------------------------------------

    def _same_database(self, main: Any, journal: int) -> bool:
        """Whether the rows indexed are still the database's (a file replaced by another, or a
        table emptied and refilled, makes rowids mean other rows)."""
        known = self._meta("first_session")
        current = first_session(main)
        if known is None:
            return self.mark(0) == 0 or current is None
        if current != known or journal < int(self._meta("journal") or 0):
            return False
        for table, kind, _ in TABLES:
            top = main.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0]
            if int(top or 0) < self.mark(kind):
                return False
        return True

    def refresh(
        self,
        main: Any,
        budget_s: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> bool:
        """Read the rows changed since they were indexed and the new rows (by rowid) until
        caught up or ``budget_s`` is spent. Returns whether every row of ``main`` is indexed as
        it is now. ``Unjournaled``: the database cannot say which rows changed."""
        if not self._same_database(main, journal_top(main)):
            self._reset()
        deadline = None if budget_s is None else time.monotonic() + budget_s
        caught_up = False
        for _ in range(100_000_000):
            with self._transaction():
                done = self._step(main)
            if progress is not None:
                progress(self.documents())
            if done:
                caught_up = True
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._set_meta("refreshed_at", time.time())
        return caught_up

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; documents are buffered and written at its end."""
        self.db.execute("BEGIN IMMEDIATE")
        self._docs: list[tuple[int, str]] = []
        self._next: dict[int, int] = {}
        try:
            yield
            self.db.executemany("INSERT INTO docs (rowid, body) VALUES (?, ?)", self._docs)
            self.db.executemany(
                "UPDATE sess SET next_doc = ? WHERE ordinal = ?",
                [(n, o) for o, n in self._next.items()],
            )
            self._set_meta("documents", self.documents() + len(self._docs))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _reset(self) -> None:
        with self._transaction():
            for table in ("meta", "sess"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO docs(docs) VALUES ('delete-all')")
            self._set_meta("version", INDEX_VERSION)

    def _step(self, main: Any) -> bool:
        """One chunk of the journal, then of each table's new rows; ``True`` when none was
        left. The journal first: a row changed before this step and beyond the marks is read
        later, as it is then; one within the marks is read again now."""
        if self._meta("first_session") is None:
            self._set_meta("first_session", first_session(main))
        if self._meta("journal") is None:  # rows are read after this: earlier changes are in
            self._set_meta("journal", journal_top(main))
        left = not self._changes(main)
        for table, kind, cols in TABLES:
            rows = main.execute(
                f"SELECT {_select(kind, cols)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (self.mark(kind), CHUNK),
            ).fetchall()
            if not rows:
                continue
            left = left or len(rows) == CHUNK
            self._index_rows(main, kind, cols, rows)
            self._set_meta(f"mark{kind}", int(rows[-1][0]))
        return not left

    def _changes(self, main: Any) -> bool:
        """Index again the rows that one chunk of journal entries names (those indexed already);
        ``True`` when no entry was left."""
        entries = changed_rows(main, int(self._meta("journal")), CHUNK)
        if not entries:
            return True
        named: dict[int, dict[str, None]] = {}
        for _, kind, rid in entries:
            named.setdefault(kind, {})[rid] = None
        for table, kind, cols in TABLES:
            rows: list[Any] = []
            for part in chunks(list(named.get(kind, ()))):
                rows += main.execute(
                    f"SELECT {_select(kind, cols)} FROM {table}"
                    f" WHERE id IN ({', '.join('?' for _ in part)}) AND rowid <= ?",
                    (*part, self.mark(kind)),
                ).fetchall()
            self._index_rows(main, kind, cols, rows)
        self._set_meta("journal", entries[-1][0])
        return len(entries) < CHUNK

    def _index_rows(
        self, main: Any, kind: int, cols: Sequence[tuple[str, bool]], rows: Sequence[Any]
    ) -> None:
        """A document for each row (``_select``'s columns) with text."""
        if not rows:
            return
        slots = self._slots(main, [str(r[1]) for r in rows])
        for r in rows:
            sid = str(r[1])
            if kind == 0:
                self._learn_start(sid, r[2])
            doc = document(r[3:], cols)
            if doc:
                slots[sid] = self._insert_doc(slots[sid], sid, doc)

    def _slots(self, main: Any, session_ids: Sequence[str]) -> dict[str, int]:
        """The ordinal of each session, assigning ordinals to sessions seen first, in the order
        of their ``(started_at, id)``."""
        out: dict[str, int] = {}
        unique = list(dict.fromkeys(session_ids))
        for part in chunks(unique):
            marks = ", ".join("?" for _ in part)
            for ordinal, sid in self.db.execute(
                f"SELECT MAX(ordinal), session_id FROM sess WHERE session_id IN ({marks})"
                " GROUP BY session_id",
                tuple(part),
            ).fetchall():
                out[sid] = int(ordinal)
        new = [sid for sid in unique if sid not in out]
        if not new:
            return out
        found: dict[str, str] = {}
        for part in chunks(new):
            marks = ", ".join("?" for _ in part)
            for sid, started in main.execute(
                f"SELECT id, started_at FROM sessions WHERE id IN ({marks})", tuple(part)
            ).fetchall():
                found[str(sid)] = str(started)
        new.sort(key=lambda sid: (found[sid], sid) if sid in found else ("\U0010ffff", sid))
        for sid in new:
            out[sid] = self._new_ordinal(sid, found.get(sid))
        return out

    def _new_ordinal(self, sid: str, started: str | None) -> int:
        last = self.db.execute(
            "SELECT ordinal, bound_start, bound_id FROM sess ORDER BY ordinal DESC LIMIT 1"
        ).fetchone()
        ordinal = 1 if last is None else int(last[0]) + 1
        bound = None if last is None or last[1] is None else (str(last[1]), str(last[2]))
        if started is not None and (bound is None or (started, sid) > bound):
            bound = (started, sid)
        self.db.execute(
            "INSERT INTO sess (ordinal, session_id, started_at, bound_start, bound_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (ordinal, sid, started, *(bound or (None, None))),
        )
        return ordinal

    def _insert_doc(self, ordinal: int, sid: str, doc: str) -> int:
        """Add a document in the session's slot; returns the ordinal used (a full slot moves
        the session to a new ordinal)."""
        n = self._next.get(ordinal)
        if n is None:
            row = self.db.execute("SELECT next_doc FROM sess WHERE ordinal = ?", (ordinal,))
            n = int(row.fetchone()[0])
        if n >= 1 << DOC_BITS:
            row = self.db.execute("SELECT started_at FROM sess WHERE ordinal = ?", (ordinal,))
            ordinal = self._new_ordinal(sid, row.fetchone()[0])
            n = 0
        self._docs.append(((ordinal << DOC_BITS) | n, doc))
        self._next[ordinal] = n + 1
        return ordinal

    def _learn_start(self, sid: str, started: Any) -> None:
        """Record a session's start read from its row (its rows may have come first, or it
        changed), raising the bounds of later ordinals."""
        started = str(started)
        first, known = self.db.execute(
            "SELECT MIN(ordinal), MIN(started_at IS ?) FROM sess WHERE session_id = ?",
            (started, sid),
        ).fetchone()
        if first is None or known:
            return
        self.db.execute("UPDATE sess SET started_at = ? WHERE session_id = ?", (started, sid))
        self.db.execute(
            "UPDATE sess SET bound_start = ?, bound_id = ? WHERE ordinal >= ? AND"
            " (bound_start IS NULL OR bound_start < ? OR (bound_start = ? AND bound_id < ?))",
            (started, sid, first, started, started, sid),
        )

    # -- searching ----------------------------------------------------------------------------

    def walk(self, needle: str) -> Iterator[tuple[list[str], tuple[str, str] | None]]:
        """Batches of candidate session ids, roughly newest first, each with the greatest
        ``(started_at, id)`` any session not yet yielded can have (``None``: no more)."""
        phrase = '"' + needle.lower().replace('"', '""') + '"'
        cur = self.db.execute(
            "SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY rowid DESC", (phrase,)
        )
        seen: set[int] = set()
        size = 64
        for _ in range(100_000_000):
            rowids = cur.fetchmany(size)
            size = min(size * 2, 8192)
            if not rowids:
                yield [], None
                return
            ordinals = [r[0] >> DOC_BITS for r in rowids]
            fresh = [o for o in dict.fromkeys(ordinals) if o not in seen]
            seen.update(fresh)
            ids: list[str] = []
            for part in chunks([str(o) for o in fresh]):
                marks = ", ".join("?" for _ in part)
                ids.extend(
                    str(sid)
                    for (sid,) in self.db.execute(
                        f"SELECT session_id FROM sess WHERE ordinal IN ({marks})", tuple(part)
                    )
                )
            lowest = min(ordinals)
            row = self.db.execute(
                "SELECT bound_start, bound_id FROM sess WHERE ordinal < ?"
                " ORDER BY ordinal DESC LIMIT 1",
                (lowest,),
            ).fetchone()
            if row is None:
                yield ids, None
                return
            # no start known up to there: those sessions have no row to list (yet)
            yield ids, ("", "") if row[0] is None else (str(row[0]), str(row[1]))


def _select(kind: int, cols: Sequence[tuple[str, bool]]) -> str:
    """What is read of a row: rowid, session id, start (sessions only), searchable texts."""
    key, start = ("id", "started_at") if kind == 0 else ("session_id", "NULL")
    return f"rowid, {key}, {start}, {', '.join(c for c, _ in cols)}"


def index_path(identity: str) -> Path:
    """The search index file of a database."""
    return derived_path("search", identity)
