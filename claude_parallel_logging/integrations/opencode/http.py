"""The router's reads from the OpenCode server (stored messages, status) and its counters.

The first layer of :class:`~.router.OpencodeRouter` (http -> bindings -> rows -> turns ->
router, one module each). ``httpx`` comes with the optional ``opencode-ai`` extra: imported
when the first request is made.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..._log import log
from .fields import JSON

if TYPE_CHECKING:
    import httpx

HTTP_TIMEOUT = 10.0


class ServerHttp:
    """GETs against one OpenCode server (none without ``base_url``), and the router's stats."""

    def __init__(
        self, base_url: str | None, headers: Mapping[str, str] | None, timeout: float
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._lock = threading.RLock()
        self._http: httpx.Client | None = None
        self._stats: collections.Counter[str] = collections.Counter()

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    def _client(self) -> httpx.Client | None:
        if self.base_url is None:
            return None
        with self._lock:
            if self._http is None:
                import httpx

                self._http = httpx.Client(
                    base_url=self.base_url,
                    headers=self.headers,
                    timeout=httpx.Timeout(self.timeout, connect=min(5.0, self.timeout)),
                )
            return self._http

    def _get(self, path: str) -> Any:
        client = self._client()
        if client is None:
            return None
        try:
            resp = client.get(path)
            resp.raise_for_status()
            return resp.json()
        except Exception as exc:
            self._count("http_errors")
            log.debug("GET %s failed: %s", path, exc)
            return None

    def fetch_messages(self, session_id: str) -> list[JSON] | None:
        """The server's stored messages, ``[{info, parts}]`` in order (``None`` on failure)."""
        data = self._get(f"/session/{session_id}/message")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else None

    def _server_status(self) -> dict[str, Any] | None:
        data = self._get("/session/status")
        return data if isinstance(data, dict) else None
