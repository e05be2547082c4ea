"""A TCP fault injector between a client and the real ``tursodb --sync-server`` (127.0.0.1 only).

It forwards each HTTP request unchanged, and lets a test decide, per request, to let it through,
to cut it before the server sees it, to cut the answer after the server applied it, or to run a
hook (e.g. SIGKILL the server) at that exact moment. pyturso sends one request per connection,
so a request is a connection. Nothing is mocked: the database is the real server's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Literal

Action = Literal["pass", "cut_before", "cut_after"]


def _read_request(conn: socket.socket) -> bytes | None:
    """One whole HTTP request (headers and ``Content-Length`` body), or None if the peer left."""
    data = b""
    for _ in range(100_000):
        if b"\r\n\r\n" in data:
            break
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    for _ in range(100_000):
        if len(body) >= length:
            break
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset, as a killed server's kernel would."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    conn.close()


class FaultProxy:
    """Listens on a free port of 127.0.0.1 and forwards to ``upstream_port``.

    ``decide(request_bytes)`` picks what happens to each request (default: pass). The counters say
    what was done, so a test can check that its faults really happened.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.decide: Callable[[bytes], Action] = lambda request: "pass"
        self.counts: dict[str, int] = {"pass": 0, "cut_before": 0, "cut_after": 0, "failed": 0}
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _accept(self) -> None:
        for _ in range(10_000_000):  # 0.1 s per idle round: bounded
            if self._stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        try:
            request = _read_request(client)
            if request is None:
                client.close()
                return
            action = self.decide(request)
            if action == "cut_before":
                self._count(action)
                _reset(client)
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:
            self._count("failed")
            _reset(client)
            return
        try:
            upstream.sendall(request)
            for _ in range(10_000_000):
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                if action == "pass":
                    client.sendall(chunk)
            # "cut_after": the server answered (so it applied the request); the client never
            # learns it.
            self._count(action)
            if action == "pass":
                client.close()
            else:
                _reset(client)
        except OSError:
            self._count("failed")
            _reset(client)
        finally:
            upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
