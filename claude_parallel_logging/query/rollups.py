"""The derived usage rollups: per-day figures beside the database (an ``sqlite3`` file in the
user's cache directory) from which ``usage_summary`` and ``tool_usage`` answer without reading
every session and tool execution of the period.

Derived and disposable like the search index (``derived.py``): the reader brings it up to date
before each use, ``cpl reindex`` rebuilds it, and whatever it cannot do is answered from the
tables. It holds:

* ``sm``/``tm``: each session's and each tool execution's figures as last read (tokens, cost in
  whole nano-dollars computed by the engine exactly as the table query does, status, wall and
  reported durations, tool durations), read again for every session that got new rows or whose
  rows the ``row_changes`` journal names (``derived.py``);
* ``c``/``tc``: sums and counts per (day, agent type, model) and per (day, tool name), kept equal
  to the sum of ``sm``/``tm`` (a row's old contribution is subtracted when it is re-read);
* ``h``: counts per log-spaced bucket (ratio ``GAMMA``) of tool, wall and reported durations, per
  the same cells. A percentile finds the bucket that holds its rank from the merged counts, then
  reads that bucket's exact values: the result is the exact percentile, not an estimate.

A period is answered from the cells of its whole days plus, from ``sm``/``tm``, the sessions of
its partial first and last day and any session whose ``started_at`` is not canonical stored text.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .._log import RateLimitedWarning
from .derived import (
    JOURNAL_TABLES,
    DerivedFile,
    Unjournaled,
    changed_rows,
    chunks,
    derived_path,
    file_size,
    first_session,
    journal_top,
    remove_index,
)
from .sql import NANO
from .times import duration_ms

FIGURES_VERSION = 5  # 5: updates from the row_changes journal (4 re-read open sessions)
LEVELS = 7  # blocks of 1, 2, 4, ... 64 days
GAMMA = 1.05
_LOG_GAMMA = math.log(GAMMA)
_BUCKET_OFFSET = 3000  # buckets of values down to GAMMA ** -3000 stay positive
BUILD_CHUNK = 500  # sessions re-read per step
SLICE_S = 0.5  # ``rebuild_figures``: how long the database is held at a time
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
MIDNIGHT = "T00:00:00.000Z"
TOOL_HIST, WALL_HIST, AGENT_HIST, TOOL_NAME_HIST = 0, 1, 2, 3
_warn = RateLimitedWarning()

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS sm (id TEXT PRIMARY KEY, started_at TEXT, day TEXT,"
    " canon INTEGER NOT NULL, agent_type TEXT, model TEXT, status TEXT, itok INTEGER,"
    " otok INTEGER, cread INTEGER, ccreate INTEGER, cost_nano INTEGER, wall REAL,"
    " wall_b INTEGER, agent REAL, agent_b INTEGER)",
    "CREATE INDEX IF NOT EXISTS sm_started ON sm(started_at)",
    "CREATE INDEX IF NOT EXISTS sm_loose ON sm(canon, started_at)",
    # a percentile reads one bucket of one group: (group column, bucket) finds it, and the
    # index alone holds what is filtered and read
    *(
        f"CREATE INDEX IF NOT EXISTS sm_{col}_{b} ON sm({col}, {b}, started_at, canon,"
        f" agent_type, model, {b.split('_')[0]})"
        for col in ("day", "agent_type", "model")
        for b in ("wall_b", "agent_b")
    ),
    # tool executions with their session's period and groups (rewritten when it is re-read)
    "CREATE TABLE IF NOT EXISTS tm (session_id TEXT NOT NULL, started_at TEXT, day TEXT,"
    " canon INTEGER NOT NULL, agent_type TEXT, model TEXT, tool_name TEXT, status TEXT,"
    " duration REAL, bucket INTEGER)",
    "CREATE INDEX IF NOT EXISTS tm_session ON tm(session_id)",
    "CREATE INDEX IF NOT EXISTS tm_started ON tm(started_at)",
    "CREATE INDEX IF NOT EXISTS tm_loose ON tm(canon, started_at)",
    *(
        f"CREATE INDEX IF NOT EXISTS tm_{col} ON tm({col}, bucket, started_at, canon, agent_type,"
        " model, duration)"
        for col in ("day", "agent_type", "model", "tool_name")
    ),
    "CREATE TABLE IF NOT EXISTS c (day TEXT, agent_type TEXT, model TEXT,"
    " sessions INTEGER DEFAULT 0, completed INTEGER DEFAULT 0, errors INTEGER DEFAULT 0,"
    " running INTEGER DEFAULT 0, itok INTEGER DEFAULT 0, otok INTEGER DEFAULT 0,"
    " cread INTEGER DEFAULT 0, ccreate INTEGER DEFAULT 0, cost_nano INTEGER DEFAULT 0,"
    " tools INTEGER DEFAULT 0, tools_running INTEGER DEFAULT 0, tool_errors INTEGER DEFAULT 0,"
    " PRIMARY KEY (day, agent_type, model))",
    "CREATE TABLE IF NOT EXISTS tc (day TEXT, tool_name TEXT, calls INTEGER DEFAULT 0,"
    " errors INTEGER DEFAULT 0, running INTEGER DEFAULT 0, PRIMARY KEY (day, tool_name))",
    # counts per bucket over aligned blocks of 2**level days (block = day ordinal >> level), so
    # a period of whole days reads a dozen blocks, not a row per day
    "CREATE TABLE IF NOT EXISTS h (kind INTEGER, level INTEGER, blk INTEGER, g1 TEXT, g2 TEXT,"
    " bucket INTEGER, n INTEGER, PRIMARY KEY (kind, level, blk, g1, g2, bucket))",
    # percentiles of one whole day's sessions (per filter), dropped when the day changes
    "CREATE TABLE IF NOT EXISTS pc (day TEXT, filters TEXT, p50_tool REAL, p95_tool REAL,"
    " p50_wall REAL, p50_agent REAL, PRIMARY KEY (day, filters))",
)
C_COLS = ("sessions", "completed", "errors", "running", "itok", "otok", "cread", "ccreate",
           "cost_nano", "tools", "tools_running", "tool_errors")  # fmt: skip
_SM_COLS = ("id", "started_at", "day", "canon", "agent_type", "model", "status", "itok", "otok",
            "cread", "ccreate", "cost_nano", "wall", "wall_b", "agent", "agent_b")  # fmt: skip


class FiguresUnavailable(Exception):
    """The figures cannot answer this (not built yet, or inconsistent): read the tables."""


def bucket(value: float) -> int:
    """A log-spaced bucket, ordered as the values are (0 holds 0; negatives below it)."""
    if value == 0:
        return 0
    if math.isinf(value):
        return 10**9 if value > 0 else -(10**9)
    b = math.ceil(math.log(abs(value)) / _LOG_GAMMA) + _BUCKET_OFFSET + 1
    return b if value > 0 else -b


def _canonical(text: str) -> bool:
    """Stored time text of the logger's own form, on a real day (only those go into cells)."""
    if not _CANONICAL.match(text):
        return False
    try:
        date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def blocks(first: str, last: str) -> list[tuple[int, int]]:
    """The fewest aligned (level, block) covering the days ``first``..``last``."""
    a = date.fromisoformat(first).toordinal()
    end = date.fromisoformat(last).toordinal() + 1
    out: list[tuple[int, int]] = []
    while a < end:
        level = LEVELS - 1
        while level and (a % (1 << level) or a + (1 << level) > end):
            level -= 1
        out.append((level, a >> level))
        a += 1 << level
    return out


def rollups_path(identity: str) -> Path:
    return derived_path("rollups", identity)


@dataclass(frozen=True)
class FiguresState:
    path: str
    exists: bool
    sessions: int = 0
    tools: int = 0
    built: bool = False
    size_bytes: int = 0
    error: str | None = None

    def describe(self) -> str:
        """One line for ``cpl doctor``."""
        if self.error is not None and not self.exists:
            return f"not used: {self.error}"
        if self.error is not None:
            return f"{self.path} unusable ({self.error}): figures are read from the tables"
        if not self.exists:
            return f"not built yet ({self.path}): the first `cpl stats` builds it"
        built = "" if self.built else " (still being built)"
        return (
            f"{self.sessions:,} sessions, {self.tools:,} tool executions{built},"
            f" {self.size_bytes / 1e6:,.1f} MB ({self.path})"
        )


def day_after(day: str, days: int = 1) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def full_days(since: str | None, until: str | None) -> tuple[str | None, str | None] | None:
    """The first and last whole UTC day inside ``[since, until)`` (``None``: unbounded), or
    ``None`` when there is none (or a bound is not canonical text)."""
    try:
        if since is not None:
            if not _CANONICAL.match(since):
                return None
            d1: str | None = since[:10] if since[10:] == MIDNIGHT else day_after(since[:10])
        else:
            d1 = None
        if until is not None:
            if not _CANONICAL.match(until):
                return None
            d2: str | None = day_after(until[:10], -1)
        else:
            d2 = None
    except (ValueError, OverflowError):
        return None
    if d1 is not None and d2 is not None and d1 > d2:
        return None
    return d1, d2


class Figures(DerivedFile):
    """One open figures file for one database."""

    SCHEMA = _SCHEMA
    VERSION = FIGURES_VERSION

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def state(self) -> FiguresState:
        return FiguresState(
            str(self.path),
            True,
            int(self.db.execute("SELECT COUNT(*) FROM sm").fetchone()[0]),
            int(self.db.execute("SELECT COUNT(*) FROM tm").fetchone()[0]),
            bool(self._meta("built")),
            file_size(self.path),
        )

    # -- bringing it up to date ----------------------------------------------------------------

    def refresh(
        self,
        main: Any,
        budget_s: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> bool:
        """Build (within ``budget_s``), then re-read the sessions that got new rows or whose
        rows changed (the journal). Returns whether the figures are complete. ``Unjournaled``:
        the database cannot say which rows changed."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        journal = journal_top(main)
        if not self._same_database(main, journal):
            with self.transaction():
                for table in ("meta", "sm", "tm", "c", "tc", "h"):
                    self.db.execute(f"DELETE FROM {table}")
                self._set_meta("version", FIGURES_VERSION)
        if not self._meta("built"):
            if self._meta("mark_sessions") is None:
                with self.transaction():  # sessions are read after this: earlier changes are in
                    self._set_meta("first_session", first_session(main))
                    for table in JOURNAL_TABLES:
                        top = main.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0]
                        self._set_meta(f"mark_{table}", int(top or 0))
                    self._set_meta("mark_journal", journal)
                    self._set_meta("cursor", 0)
            for _ in range(100_000_000):
                cursor = int(self._meta("cursor"))
                rows = main.execute(
                    "SELECT rowid, id FROM sessions WHERE rowid > ? AND rowid <= ?"
                    " ORDER BY rowid LIMIT ?",
                    (cursor, int(self._meta("mark_sessions")), BUILD_CHUNK),
                ).fetchall()
                with self.transaction():
                    if rows:
                        self._resync(main, [str(r[1]) for r in rows])
                        self._set_meta("cursor", int(rows[-1][0]))
                    else:
                        self._set_meta("built", 1)
                if progress is not None:
                    progress(int(self.db.execute("SELECT COUNT(*) FROM sm").fetchone()[0]))
                if not rows:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        with self.transaction():
            touched: dict[str, None] = {}
            for table, key in zip(JOURNAL_TABLES, ("id", "session_id", "session_id")):
                mark = int(self._meta(f"mark_{table}"))
                top = mark
                for rowid, sid in main.execute(  # ORDER BY: else pyturso scans an index
                    f"SELECT rowid, {key} FROM {table} WHERE rowid > ? ORDER BY rowid", (mark,)
                ).fetchall():
                    touched[str(sid)] = None
                    top = max(top, int(rowid))
                self._set_meta(f"mark_{table}", top)
            entries = changed_rows(main, int(self._meta("mark_journal")), 1 << 62)
            named: dict[int, dict[str, None]] = {}
            for _, tbl, rid in entries:
                named.setdefault(tbl, {})[rid] = None
            touched.update(named.get(0, {}))
            for tbl in (1, 2):
                for part in chunks(list(named.get(tbl, ()))):
                    for (sid,) in main.execute(
                        f"SELECT session_id FROM {JOURNAL_TABLES[tbl]}"
                        f" WHERE id IN ({', '.join('?' for _ in part)})",
                        tuple(part),
                    ).fetchall():
                        touched[str(sid)] = None
            if entries:
                self._set_meta("mark_journal", entries[-1][0])
            for part in chunks(list(touched), BUILD_CHUNK):
                self._resync(main, part)
        return True

    def _same_database(self, main: Any, journal: int) -> bool:
        known = self._meta("first_session")
        if self._meta("mark_sessions") is None:
            return True
        if known != first_session(main) or journal < int(self._meta("mark_journal")):
            return False
        for table in JOURNAL_TABLES:
            top = main.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0]
            if int(top or 0) < int(self._meta(f"mark_{table}")):
                return False
        return True

    def _resync(self, main: Any, ids: Sequence[str]) -> None:
        """Read these sessions' figures again and move their contributions to what they are."""
        marks = ", ".join("?" for _ in ids)
        sessions = {
            str(r[0]): r
            for r in main.execute(
                "SELECT id, started_at, agent_type, model, status, ended_at, input_tokens,"
                " output_tokens, cache_read_tokens, cache_creation_tokens,"
                f" CAST(ROUND(cost_usd * {NANO}) AS INTEGER), duration_ms"
                f" FROM sessions WHERE id IN ({marks})",
                tuple(ids),
            ).fetchall()
        }
        tools: dict[str, list[tuple[Any, ...]]] = {}
        for sid, name, status, ms in main.execute(
            "SELECT session_id, tool_name, status, duration_ms FROM tool_executions"
            f" WHERE session_id IN ({marks})",
            tuple(ids),
        ).fetchall():
            dur = None if ms is None else float(ms)
            tools.setdefault(str(sid), []).append(
                (name, status, dur, None if dur is None else bucket(dur))
            )
        need_fill = [sid for sid, r in sessions.items() if r[6] is None or r[7] is None]
        fills: dict[str, tuple[Any, Any]] = {}
        if need_fill:
            for sid, itok, otok in main.execute(
                "SELECT session_id, SUM(input_tokens), SUM(output_tokens) FROM messages"
                f" WHERE session_id IN ({', '.join('?' for _ in need_fill)})"
                " AND role <> 'result' GROUP BY session_id",
                tuple(need_fill),
            ).fetchall():
                fills[str(sid)] = (itok, otok)
        olds: dict[str, Any] = {}
        old_tools: dict[str, list[tuple[Any, ...]]] = {}
        for sid in ids:
            old = self.db.execute(
                f"SELECT {', '.join(_SM_COLS)} FROM sm WHERE id = ?", (sid,)
            ).fetchone()
            if old is not None:
                olds[sid] = old
                old_tools[sid] = self.db.execute(
                    "SELECT tool_name, status, duration, bucket FROM tm WHERE session_id = ?",
                    (sid,),
                ).fetchall()
        for sid in ids:
            old = olds.get(sid)
            r = sessions.get(sid)
            if r is None:  # no session row (yet): its rows count nowhere, as in the tables
                if old is not None:
                    self._contribute(-1, old, old_tools[sid])
                    self.db.execute("DELETE FROM sm WHERE id = ?", (sid,))
                    self.db.execute("DELETE FROM tm WHERE session_id = ?", (sid,))
                continue
            figures = self._figures(r, fills.get(sid, (None, None)))
            new_tools = sorted(tools.get(sid, []), key=repr)
            changed = (
                old is None
                or tuple(old) != figures
                or sorted(map(tuple, old_tools[sid]), key=repr) != new_tools
            )
            if not changed:
                continue
            if old is not None:
                self._contribute(-1, old, old_tools[sid])
                self.db.execute("DELETE FROM sm WHERE id = ?", (sid,))
                self.db.execute("DELETE FROM tm WHERE session_id = ?", (sid,))
            self.db.execute(
                f"INSERT INTO sm ({', '.join(_SM_COLS)})"
                f" VALUES ({', '.join('?' for _ in _SM_COLS)})",
                figures,
            )
            self.db.executemany(
                "INSERT INTO tm (session_id, started_at, day, canon, agent_type, model, tool_name,"
                " status, duration, bucket) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*figures[:6], *t) for t in new_tools],
            )
            self._contribute(1, figures, new_tools)

    @staticmethod
    def _figures(r: Sequence[Any], fill: tuple[Any, Any]) -> tuple[Any, ...]:
        """A session row's figures (``sm``'s columns up to ``agent_b``)."""
        sid, started, agent_type, model, status, ended = r[:6]
        started_text = started if isinstance(started, str) else str(started)
        itok = r[6] if r[6] is not None else fill[0]
        otok = r[7] if r[7] is not None else fill[1]
        wall = agent = None
        if ended is not None:
            w = duration_ms(started, ended)
            wall = None if w is None else float(w)
            agent = None if r[11] is None else float(r[11])
        return (
            str(sid), started_text, started_text[:10], int(_canonical(started_text)),
            agent_type, model, status, itok, otok, r[8], r[9], r[10],
            wall, None if wall is None else bucket(wall),
            agent, None if agent is None else bucket(agent),
        )  # fmt: skip

    def _contribute(self, sign: int, s: Sequence[Any], tools: Sequence[Sequence[Any]]) -> None:
        """Add (``sign`` 1) or take away (-1) a session's share of the cells; sessions whose
        ``started_at`` is not canonical text have none (they are read one by one)."""
        if not s[3]:
            return
        day, agent_type, model, status = s[2], s[4], s[5], s[6]
        values = [1, status == "completed", status == "error", status == "running",
                  s[7] or 0, s[8] or 0, s[9] or 0, s[10] or 0, s[11] or 0, len(tools),
                  sum(t[1] == "running" for t in tools), sum(t[1] == "error" for t in tools)]  # fmt: skip
        sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in C_COLS)
        self.db.execute(
            f"INSERT INTO c (day, agent_type, model, {', '.join(C_COLS)})"
            f" VALUES (?, ?, ?, {', '.join('?' for _ in C_COLS)})"
            f" ON CONFLICT (day, agent_type, model) DO UPDATE SET {sets}",
            (day, agent_type, model, *(sign * int(v) for v in values)),
        )
        hist: dict[tuple[int, str, str, int], int] = {}
        per_tool: dict[str, list[int]] = {}
        for t in tools:
            name = str(t[0])
            c = per_tool.setdefault(name, [0, 0, 0])
            c[0] += 1
            c[1] += t[1] == "error"
            c[2] += t[1] == "running"
            if t[3] is not None:
                for key in ((TOOL_HIST, agent_type, model, t[3]), (TOOL_NAME_HIST, name, "", t[3])):
                    hist[key] = hist.get(key, 0) + 1
        for kind, col in ((WALL_HIST, 13), (AGENT_HIST, 15)):
            if s[col] is not None:
                key = (kind, agent_type, model, s[col])
                hist[key] = hist.get(key, 0) + 1
        self.db.executemany(
            "INSERT INTO tc (day, tool_name, calls, errors, running) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (day, tool_name) DO UPDATE SET calls = calls + excluded.calls,"
            " errors = errors + excluded.errors, running = running + excluded.running",
            [(day, name, *(sign * v for v in c)) for name, c in per_tool.items()],
        )
        ordinal = date.fromisoformat(day).toordinal()
        self.db.executemany(
            "INSERT INTO h (kind, level, blk, g1, g2, bucket, n) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, level, blk, g1, g2, bucket) DO UPDATE SET n = n + excluded.n",
            [(k, level, ordinal >> level, g1, g2, b, sign * n)
             for (k, g1, g2, b), n in hist.items() for level in range(LEVELS)],
        )  # fmt: skip
        self.db.execute("DELETE FROM pc WHERE day = ?", (day,))


def with_figures(
    conn: Any, identity: str, budget_s: float, answer: Callable[[Figures], Any]
) -> Any | None:
    """``answer(figures)`` on figures brought up to date, or ``None`` when they cannot answer
    (still being built, unusable file): the caller reads the tables."""
    if getattr(conn, "answers_remotely", False):
        return None  # built from every row: not through the remote (``access.answered_remotely``)
    path = rollups_path(identity)
    try:
        figures = Figures(path)
    except (sqlite3.Error, OSError) as exc:
        _failed(path, exc)
        return None
    try:
        if not figures.refresh(conn, budget_s):
            return None
        return answer(figures)
    except (FiguresUnavailable, Unjournaled):
        return None
    except (sqlite3.Error, OSError) as exc:
        _failed(path, exc)
        return None
    finally:
        figures.close()


def figures_state(identity: str) -> FiguresState:
    path = rollups_path(identity)
    if not path.exists():
        return FiguresState(str(path), False)
    try:
        figures = Figures(path)
    except (sqlite3.Error, OSError) as exc:
        return FiguresState(str(path), True, error=str(exc))
    try:
        return figures.state()
    except (sqlite3.Error, OSError) as exc:
        return FiguresState(str(path), True, error=str(exc))
    finally:
        figures.close()


def rebuild_figures(
    open_main: Callable[[], AbstractContextManager[Any]],
    identity: str,
    progress: Callable[[int], None] | None = None,
) -> FiguresState:
    """Build the rollups again, opening the database (``open_main``) for one slice of the work
    (``SLICE_S``) at a time, so that loggers of a local file get its lock in between."""
    path = rollups_path(identity)
    remove_index(path)
    figures = Figures(path)
    try:
        for _ in range(100_000_000):
            with open_main() as conn:
                if conn is None or figures.refresh(conn, SLICE_S, progress):
                    return figures.state()
        raise RuntimeError("usage rollups: too many slices")  # unreachable in practice
    except Unjournaled as exc:
        figures.close()
        remove_index(path)
        return FiguresState(str(path), False, error=str(exc))
    finally:
        figures.close()


def _failed(path: Path, exc: BaseException) -> None:
    """A damaged file is removed (rebuilt next time); either way the tables answer."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        remove_index(path)
    _warn("figures", "usage rollups %s unusable, reading the tables: %s", path, exc)
