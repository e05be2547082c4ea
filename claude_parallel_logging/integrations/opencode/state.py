"""What is known about each OpenCode session and each logged session it writes into."""

from __future__ import annotations

import collections
import threading
import weakref
from dataclasses import dataclass, field

from ..session import LoggedSession
from .fields import JSON


@dataclass
class SessionGroup:
    """What one logged session knows about the OpenCode sessions writing into it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    details: dict[str, JSON] = field(default_factory=dict)
    external_id: str | None = None
    model_set: bool = False


_groups: weakref.WeakKeyDictionary[LoggedSession, SessionGroup] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def group_of(session: LoggedSession) -> SessionGroup:
    with _groups_lock:
        group = _groups.get(session)
        if group is None:
            group = _groups[session] = SessionGroup()
        return group


@dataclass
class MessageUsage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: float = 0.0


@dataclass
class PendingPrompt:
    """A prompt logged from a chat call, waiting for the server's user message to adopt it."""

    text: str
    row: str
    session: LoggedSession


class SessionState:
    """Everything known about one OpenCode session, and where its rows go."""

    def __init__(self, sid: str, floor_ms: float | None) -> None:
        self.sid = sid
        self.lock = threading.RLock()
        self.session: LoggedSession | None = None  # where new rows go
        self.owned: LoggedSession | None = None  # a session we created (and end)
        self.floor_ms = floor_ms  # stored messages older than this predate us: not logged
        self.info: JSON = {}
        self.model_hint: tuple[str | None, str | None] = (None, None)
        self.messages: dict[str, JSON] = {}  # message id -> latest info
        self.user_text: dict[str, dict[str, str]] = {}  # user message -> part id -> text
        self.rows: dict[str, str] = {}  # OpenCode key -> row id (messages or tool_executions)
        self.owner: dict[str, LoggedSession] = {}  # OpenCode key -> session holding the row
        self.written: dict[str, dict[str, int]] = {}  # key -> column -> fingerprint
        self.tool_rank: dict[str, int] = {}
        self.usage: dict[str, tuple[LoggedSession, MessageUsage]] = {}
        self.prompts: collections.deque[PendingPrompt] = collections.deque(maxlen=32)
        self.orphans: dict[str, list[JSON]] = {}
        self.parts: dict[str, set[str]] = {}  # message id -> parts logged one by one
        self.omitted: dict[str, set[str]] = {}  # message id -> parts only counted
        self.orphan_count = 0
        self.event_rows = 0
        self.last_created_ms = 0.0
        self.turn_open = False
        self.dirty = False
        self.turn_error: str | None = None
        self.noted_error = False
        self.status: tuple[str, str | None] = ("running", None)
        self.turns_finished = 0
        self.watchers: set[int] = set()

    def live(self) -> LoggedSession | None:
        session = self.session
        return session if session is not None and not session.ended else None
