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
  its end, a session's error, a message rewritten) gets another document, and an outdated one
  can only propose a candidate the check then rejects. Updates are caught by re-reading the rows
  of *open* sessions (running, finished less than ``GRACE_SECONDS`` ago, or running again) at
  each refresh and comparing a digest of their texts; a session left running by a process that
  died (``derived.quiet_sessions``) is not re-read until a new row or its end wakes it;
* documents of one session share a rowid slot (``ordinal << DOC_BITS``), and ``sess.bound_*``
  holds the greatest ``(started_at, id)`` of the sessions up to each ordinal, so the matches,
  walked by descending rowid, give sessions roughly newest first with a proven bound on what is
  still to come: a search for a common word stops after its page.

Rows beyond the refresh (a budget was exhausted while catching up) are matched by the caller
with ``LIKE`` over those rowids, so a partly built index is still exact.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .derived import (
    GRACE_SECONDS,
    DerivedFile,
    chunks,
    derived_path,
    file_size,
    first_session,
    quiet_sessions,
    recent,
)

INDEX_VERSION = 1
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


def _digest(doc: str) -> bytes:
    return hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=12).digest()


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    # ordinal: the session's rowid slot; bound_*: max (started_at, id) over ordinals <= this one.
    "CREATE TABLE IF NOT EXISTS sess (ordinal INTEGER PRIMARY KEY, session_id TEXT NOT NULL,"
    " started_at TEXT, next_doc INTEGER NOT NULL DEFAULT 0, bound_start TEXT, bound_id TEXT,"
    " open INTEGER NOT NULL DEFAULT 0, finished_seen REAL)",
    "CREATE INDEX IF NOT EXISTS sess_by_id ON sess(session_id, ordinal)",
    "CREATE INDEX IF NOT EXISTS sess_open ON sess(open) WHERE open = 1",
    # digests of the indexed texts of open sessions' rows, to see which ones changed
    "CREATE TABLE IF NOT EXISTS rowsig (kind INTEGER NOT NULL, main_rowid INTEGER NOT NULL,"
    " session_id TEXT NOT NULL, sig BLOB NOT NULL, PRIMARY KEY (kind, main_rowid))",
    "CREATE INDEX IF NOT EXISTS rowsig_session ON rowsig(session_id)",
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

    def upgrade(self) -> None:
        have = {r[1] for r in self.db.execute("PRAGMA table_info(sess)")}
        for column in ("status TEXT", "active_at REAL"):  # added after version 1 first shipped
            if column.split()[0] not in have:
                self.db.execute(f"ALTER TABLE sess ADD COLUMN {column}")
        self.db.execute(  # the quiet ones, found at every refresh without reading every session
            "CREATE INDEX IF NOT EXISTS sess_running ON sess(session_id) WHERE status = 'running'"
        )

    # -- state ------------------------------------------------------------------------------

    def mark(self, kind: int) -> int:
        return int(self._meta(f"mark{kind}") or 0)

    def marks(self) -> dict[str, int]:
        """The last indexed rowid of each table."""
        return {table: self.mark(kind) for table, kind, _ in TABLES}

    def documents(self) -> int:
        return int(self._meta("documents") or 0)

    def lag(self, main: Any) -> int:
        """Rows of the database not indexed yet."""
        total = 0
        for table, kind, _ in TABLES:
            row = main.execute(  # a rowid range (pyturso counts ``rowid > ?`` by a whole scan)
                f"SELECT COUNT(*) FROM (SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid)",
                (self.mark(kind),),
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

    # -- bringing it up to date ----------------------------------------------------------------

    def _same_database(self, main: Any) -> bool:
        """Whether the rows indexed are still the database's (a file replaced by another, or a
        table emptied and refilled, makes rowids mean other rows)."""
        known = self._meta("first_session")
        current = first_session(main)
        if known is None:
            return self.mark(0) == 0 or current is None
        if current != known:
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
        """Index new rows (by rowid) until caught up or ``budget_s`` is spent, then re-check the
        open sessions. Returns whether every row of ``main`` is indexed."""
        if not self._same_database(main):
            self._reset()
        deadline = None if budget_s is None else time.monotonic() + budget_s
        caught_up = False
        self._active: set[str] = set()  # sessions that got a document in this refresh
        self._new: set[str] = set()  # ... seen for the first time (not activity: a first read)
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
        with self._transaction():
            self._recheck_open(main)
            self._set_meta("refreshed_at", time.time())
            self._set_meta("backlog", 0 if caught_up else 1)
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
            for table in ("meta", "sess", "rowsig"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO docs(docs) VALUES ('delete-all')")
            self._set_meta("version", INDEX_VERSION)

    def _step(self, main: Any) -> bool:
        """One chunk of each table's new rows; ``True`` when none was left."""
        if self._meta("first_session") is None:
            self._set_meta("first_session", first_session(main))
        left = False
        for table, kind, cols in TABLES:
            names = ", ".join(c for c, _ in cols)
            key = "id" if kind == 0 else "session_id"
            rows = main.execute(
                f"SELECT rowid, {key}, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (self.mark(kind), CHUNK),
            ).fetchall()
            if not rows:
                continue
            left = left or len(rows) == CHUNK
            slots = self._slots(main, [str(r[1]) for r in rows])
            for r in rows:
                self._add(kind, int(r[0]), str(r[1]), document(r[2:], cols), slots)
            self._set_meta(f"mark{kind}", int(rows[-1][0]))
        return not left

    def _slots(self, main: Any, session_ids: Sequence[str]) -> dict[str, tuple[int, bool]]:
        """(ordinal, open) of each session, assigning ordinals to sessions seen first, in the
        order of their ``(started_at, id)``."""
        out: dict[str, tuple[int, bool]] = {}
        unique = list(dict.fromkeys(session_ids))
        for part in chunks(unique):
            marks = ", ".join("?" for _ in part)
            for ordinal, sid, is_open in self.db.execute(
                "SELECT MAX(ordinal), session_id, MAX(open OR status = 'running') FROM sess"
                f" WHERE session_id IN ({marks}) GROUP BY session_id",
                tuple(part),
            ).fetchall():
                out[sid] = (int(ordinal), bool(is_open))
        new = [sid for sid in unique if sid not in out]
        if not new:
            return out
        found: dict[str, tuple[str, str, Any]] = {}
        for part in chunks(new):
            marks = ", ".join("?" for _ in part)
            for sid, started, status, ended in main.execute(
                f"SELECT id, started_at, status, ended_at FROM sessions WHERE id IN ({marks})",
                tuple(part),
            ).fetchall():
                found[str(sid)] = (str(started), str(status), ended)
        now = time.time()
        new.sort(key=lambda sid: (found[sid][0], sid) if sid in found else ("\U0010ffff", sid))
        for sid in new:
            info = found.get(sid)
            is_open = info is None or info[1] == "running" or recent(info[2], now)
            ordinal = self._new_ordinal(sid, info[0] if info else None, is_open, info and info[1])
            out[sid] = (ordinal, is_open)
            self._new.add(sid)
        return out

    def _new_ordinal(self, sid: str, started: str | None, is_open: bool, status: Any = None) -> int:
        last = self.db.execute(
            "SELECT ordinal, bound_start, bound_id FROM sess ORDER BY ordinal DESC LIMIT 1"
        ).fetchone()
        ordinal = 1 if last is None else int(last[0]) + 1
        bound = None if last is None or last[1] is None else (str(last[1]), str(last[2]))
        if started is not None and (bound is None or (started, sid) > bound):
            bound = (started, sid)
        self.db.execute(
            "INSERT INTO sess (ordinal, session_id, started_at, bound_start, bound_id, open,"
            " finished_seen, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ordinal, sid, started, *(bound or (None, None)), int(is_open), None, status),
        )
        return ordinal

    def _add(
        self, kind: int, rowid: int, sid: str, doc: str, slots: dict[str, tuple[int, bool]]
    ) -> None:
        ordinal, is_open = slots[sid]
        self._active.add(sid)
        if doc:
            ordinal = self._insert_doc(ordinal, sid, doc)
            slots[sid] = (ordinal, is_open)
        if is_open:
            self.db.execute(
                "INSERT OR REPLACE INTO rowsig (kind, main_rowid, session_id, sig)"
                " VALUES (?, ?, ?, ?)",
                (kind, rowid, sid, _digest(doc)),
            )

    def _insert_doc(self, ordinal: int, sid: str, doc: str) -> int:
        """Add a document in the session's slot; returns the ordinal used (a full slot moves
        the session to a new ordinal)."""
        n = self._next.get(ordinal)
        if n is None:
            row = self.db.execute("SELECT next_doc FROM sess WHERE ordinal = ?", (ordinal,))
            n = int(row.fetchone()[0])
        if n >= 1 << DOC_BITS:
            row = self.db.execute(
                "SELECT started_at, open FROM sess WHERE ordinal = ?", (ordinal,)
            ).fetchone()
            ordinal = self._new_ordinal(sid, row[0], bool(row[1]))
            n = 0
        self._docs.append(((ordinal << DOC_BITS) | n, doc))
        self._next[ordinal] = n + 1
        return ordinal

    def _recheck_open(self, main: Any) -> None:
        """Re-read the indexed rows of open sessions, of sessions that got rows or ended while
        quiet, and of sessions running again; add a document for each row whose texts changed;
        close sessions finished long enough, and running ones gone quiet."""
        now = time.time()
        opened = {
            str(sid): at
            for sid, at in self.db.execute(
                "SELECT session_id, MAX(active_at) FROM sess WHERE open = 1 GROUP BY session_id"
            )
        }
        quiet = {
            str(sid)
            for (sid,) in self.db.execute(
                "SELECT DISTINCT session_id FROM sess INDEXED BY sess_running"
                " WHERE status = 'running' AND open = 0"
            )
        }
        running = {
            str(sid) for (sid,) in main.execute("SELECT id FROM sessions WHERE status = 'running'")
        }
        if self._meta("backlog") != 0:  # rows read while catching up are no sign of activity
            self._new |= self._active
        woken = (quiet - running) | {sid for sid in self._active if sid in quiet}
        reopened = {sid for sid in running - set(opened) - quiet if self._known(sid)}
        check = sorted(set(opened) | woken | reopened)
        if not check:
            return
        slots = {sid: self._slot(sid) for sid in check}
        slots = {sid: (ordinal, True) for sid, (ordinal, _) in slots.items() if ordinal}
        info: dict[str, tuple[str, str, Any]] = {}
        for part in chunks(list(slots)):
            marks = ", ".join("?" for _ in part)
            for sid, started, status, ended in main.execute(
                f"SELECT id, started_at, status, ended_at FROM sessions WHERE id IN ({marks})",
                tuple(part),
            ).fetchall():
                info[str(sid)] = (str(started), str(status), ended)
            for table, kind, cols in TABLES:
                names = ", ".join(c for c, _ in cols)
                key = "id" if kind == 0 else "session_id"
                rows = main.execute(
                    f"SELECT rowid, {key}, {names} FROM {table}"
                    f" WHERE {key} IN ({marks}) AND rowid <= ?",
                    (*part, self.mark(kind)),
                ).fetchall()
                sigs = {
                    int(r): bytes(s)
                    for r, s in self.db.execute(
                        f"SELECT main_rowid, sig FROM rowsig WHERE kind = ? AND session_id IN ({marks})",
                        (kind, *part),
                    ).fetchall()
                }
                for r in rows:
                    doc = document(r[2:], cols)
                    if sigs.get(int(r[0])) != _digest(doc):
                        self._add(kind, int(r[0]), str(r[1]), doc, slots)
        stale = [
            sid
            for sid in slots
            if sid in info and info[sid][1] == "running"
            and (sid not in self._active or sid in self._new)
            and (opened.get(sid) is None or now - float(opened[sid]) >= GRACE_SECONDS)
        ]  # fmt: skip
        gone_quiet = quiet_sessions(main, stale, now) if stale else set()
        for sid in slots:
            self._settle(sid, info.get(sid), now, sid in gone_quiet)

    def _known(self, sid: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM sess WHERE session_id = ?", (sid,)).fetchone()
            is not None
        )

    def _slot(self, sid: str) -> tuple[int, bool]:
        row = self.db.execute(
            "SELECT MAX(ordinal) FROM sess WHERE session_id = ?", (sid,)
        ).fetchone()
        return (int(row[0]) if row and row[0] is not None else 0, True)

    def _settle(
        self, sid: str, info: tuple[str, str, Any] | None, now: float, gone_quiet: bool
    ) -> None:
        """Record what the session is now: its start (raising later bounds), and whether its
        rows still need re-checking."""
        if info is None:
            self.db.execute("UPDATE sess SET open = 1 WHERE session_id = ?", (sid,))
            return
        started, status, ended = info
        first, known = self.db.execute(
            "SELECT MIN(ordinal), MIN(started_at IS ?) FROM sess WHERE session_id = ?",
            (started, sid),
        ).fetchone()
        self.db.execute(
            "UPDATE sess SET started_at = ?, status = ? WHERE session_id = ?",
            (started, status, sid),
        )
        if not known:  # a start learnt (or changed): later ordinals' bounds may rise
            self.db.execute(
                "UPDATE sess SET bound_start = ?, bound_id = ? WHERE ordinal >= ? AND"
                " (bound_start IS NULL OR bound_start < ? OR (bound_start = ? AND bound_id < ?))",
                (started, sid, first, started, started, sid),
            )
        if status == "running":
            if gone_quiet:
                self._close(sid, keep_digests=True)
            else:  # active now (or found busy): re-checked for another GRACE_SECONDS at least
                active = now if sid in self._active and sid not in self._new else None
                self.db.execute(
                    "UPDATE sess SET open = 1, finished_seen = NULL,"
                    " active_at = COALESCE(?, active_at, ?) WHERE session_id = ?",
                    (active, now, sid),
                )
                if active is None:
                    self.db.execute(
                        "UPDATE sess SET active_at = ? WHERE session_id = ? AND active_at < ?",
                        (now, sid, now - GRACE_SECONDS),
                    )
            return
        seen = self.db.execute(
            "SELECT MIN(finished_seen) FROM sess WHERE session_id = ?", (sid,)
        ).fetchone()[0]
        if seen is None:
            self.db.execute(
                "UPDATE sess SET open = 1, finished_seen = ? WHERE session_id = ?", (now, sid)
            )
        elif now - float(seen) > GRACE_SECONDS and not recent(ended, now):
            self._close(sid)

    def _close(self, sid: str, keep_digests: bool = False) -> None:
        """Stop re-reading a session's rows (finished long enough, or running but quiet: the
        digests of a quiet one are kept, so that waking it adds only the rows that changed)."""
        self.db.execute(
            "UPDATE sess SET open = 0, finished_seen = NULL WHERE session_id = ?", (sid,)
        )
        if not keep_digests:
            self.db.execute("DELETE FROM rowsig WHERE session_id = ?", (sid,))

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


def index_path(identity: str) -> Path:
    """The search index file of a database."""
    return derived_path("search", identity)
