"""``monitor_opencode``: one server's ``/event`` stream read in a background thread and routed.

The stream can drop events, so an idle session, a reconnect and the monitor's exit reconcile
from the server's stored messages (see :mod:`.turns`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ..._log import log
from ...client import get_turso_client
from ..session import LoggedSession, current_session
from .events import sse_data
from .router import client_target, router_for

if TYPE_CHECKING:
    import httpx


_monitor_ids = iter(range(1, 1 << 62))


class OpencodeMonitor:
    """Consumes one server's ``/event`` stream in a background thread while the block runs.

    A thread for both clients: it never blocks an event loop and needs no async SDK support.
    Reconnects with bounded backoff; after a gap it reconciles what changed meanwhile.
    """

    def __init__(
        self,
        client: Any,
        agent_type: str | None = None,
        *,
        session: LoggedSession | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_failures: int = 8,
        max_reconnects: int = 10_000,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        base_url, headers = client_target(client)
        self.base_url = base_url
        self.router = router_for(base_url, headers)
        self.agent_type = agent_type
        self.session = session  # where new OpenCode sessions go (default: the current one)
        self.joined: LoggedSession | None = None  # the logged session joined while running
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout  # OpenCode sends a heartbeat every 10 s
        self.max_failures = max_failures
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._id = next(_monitor_ids)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._resp: httpx.Response | None = None
        self._resp_lock = threading.Lock()
        self._last_event_ms: float | None = None
        self.connections = 0
        self.last_error: str | None = None

    # ----- lifecycle --------------------------------------------------------------------------

    def start(self) -> OpencodeMonitor:
        """Start reading; returns once connected (or after ``connect_timeout``).

        The logged session current now (``logged_session``/``@logged``), unless ``session`` was
        given, is where OpenCode sessions that start sending content from now on are logged."""
        if self._thread is not None:
            return self
        if get_turso_client() is None:
            return self  # logging is off: nothing to do
        import httpx

        # ``async with`` runs this in a worker thread: ``asyncio.to_thread`` copies the task's
        # context, so the current session is the one the ``async with`` was entered in.
        self.joined = self.session if self.session is not None else current_session()
        self.router.watch(self._id, self.agent_type, self.joined)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.router.headers,
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
        )
        self._thread = threading.Thread(target=self._run, name="cpl-opencode-monitor", daemon=True)
        self._thread.start()
        if not self._connected.wait(self.connect_timeout):
            log.warning(
                "OpenCode event stream at %s not connected yet (%s); retrying in the background",
                self.base_url,
                self.last_error,
            )
        return self

    def stop(self) -> None:
        """Stop reading, then reconcile and finish the sessions this monitor watched."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        try:
            self._abort()
            thread.join(timeout=5.0)
            if self._http is not None:
                self._http.close()
            self.router.release(self._id)
        except Exception:  # the block's own outcome must not be masked by logging
            log.debug("stopping the OpenCode monitor failed", exc_info=True)

    def __enter__(self) -> OpencodeMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpencodeMonitor:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # ----- public helpers ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._resp is not None

    @property
    def stats(self) -> dict[str, int]:
        return {**self.router.stats, "connections": self.connections}

    def attach(self, session_id: str, session: LoggedSession | None = None) -> LoggedSession | None:
        """Log this OpenCode session into ``session`` (default: the current logged session)."""
        return self.router.attach(session_id, session, watcher=self._id)

    def session_for(self, session_id: str) -> LoggedSession | None:
        return self.router.session_for(session_id)

    def wait_idle(self, session_id: str, timeout: float = 60.0, *, turns: int = 1) -> bool:
        """Block until ``turns`` turns of the session finished and were reconciled."""
        return self.router.wait_idle(session_id, timeout, turns=turns)

    # ----- the reader thread ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        for _attempt in range(self.max_reconnects + 1):
            if self._stop.is_set():
                return
            gap_since = self._last_event_ms
            got_events = self._read_once(gap_since)
            if self._stop.is_set():
                return
            failures = 0 if got_events else failures + 1
            if failures > self.max_failures:
                log.warning(
                    "giving up on the OpenCode event stream at %s (%s)",
                    self.base_url,
                    self.last_error,
                )
                return
            delay = min(self.max_backoff, self.backoff * (2 ** max(0, failures - 1)))
            self._stop.wait(delay)
        log.warning("OpenCode event stream reconnected too often")

    def _read_once(self, gap_since: float | None) -> bool:
        """One connection: returns whether any event arrived (a healthy stream)."""
        http = self._http
        if http is None:
            return False
        got = False
        try:
            with http.stream("GET", "/event", headers={"Accept": "text/event-stream"}) as resp:
                with self._resp_lock:
                    self._resp = resp
                if self._stop.is_set():
                    return False
                resp.raise_for_status()
                for data in sse_data(resp.iter_lines()):
                    if self._stop.is_set():
                        break
                    if not got:
                        got = True
                        self.connections += 1
                        if gap_since is not None:  # a reconnect: fill the gap first
                            self.router.catch_up(gap_since, watcher=self._id)
                        self._connected.set()
                    self._last_event_ms = time.time() * 1000
                    self.router.handle(data, watcher=self._id)
        except Exception as exc:
            if not self._stop.is_set():
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.debug("OpenCode event stream: %s", self.last_error)
        finally:
            with self._resp_lock:
                self._resp = None
        return got

    def _abort(self) -> None:
        """Unblock the reader: shutting the socket down wakes a blocked read at once."""
        with self._resp_lock:
            resp = self._resp
        if resp is None:
            return
        stream = resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def monitor_opencode(
    client: Any, agent_type: str | None = None, *, session: LoggedSession | None = None
) -> OpencodeMonitor:
    """``with``/``async with monitor_opencode(client):`` log every OpenCode session of the server.

    ``client`` is an ``Opencode``/``AsyncOpencode`` (its base URL and headers are used) or a
    base URL. Entered inside ``logged_session(...)``/``@logged`` (or given ``session``), the
    OpenCode sessions that start sending content while it runs join that logged session;
    otherwise each becomes its own logged session (with ``agent_type``). A chat call or
    :meth:`OpencodeMonitor.attach` inside a ``logged_session`` binds a session explicitly.
    With monitors inside different logged sessions running on one server at the same time, a
    new OpenCode session cannot be told apart and gets its own session: bind it explicitly.
    """
    return OpencodeMonitor(client, agent_type, session=session)
