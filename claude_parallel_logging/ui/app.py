"""The viewer's web application (Starlette) and its server (uvicorn).

Read-only: every request reads through the query layer (in cloud mode a read replica it
refreshes per read). Every response carries a Content-Security-Policy that allows only the
package's own script and style, and no text it sends holds the auth token.
"""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import DatabaseUnavailable, InvalidCursor, LoggingNotConfigured, SchemaVersionError
from ..query.access import TursoClient, database_label, one_line
from . import api, pages
from .render import PACKAGE_DIR, SERVED_CSP
from .viewer import BadRequest, NotFound, Viewer, secrets_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]  # fmt: skip

SECURITY_HEADERS = [
    (b"content-security-policy", SERVED_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def _security_headers(app: ASGIApp) -> ASGIApp:
    async def wrapped(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def _error(viewer: Viewer, request: Request, status: int, message: str) -> Response:
    line = " ".join(viewer.scrub(message).split())[:400]
    if request.url.path.startswith("/api/"):
        return viewer.json({"error": line}, status)
    reasons = {400: "Bad request", 404: "Not found", 503: "Database unavailable"}
    return viewer.page(
        "error.html", status, status=status, reason=reasons.get(status, "Error"), message=line
    )


def create_app(client: TursoClient, *, secrets: tuple[str, ...] | None = None) -> Any:
    """The ASGI application serving the logs ``client`` reads (wrapped with the security
    headers)."""
    viewer = Viewer(client, secrets=secrets_of(client) if secrets is None else secrets)

    def handler(fn: Callable[[Viewer, Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return fn(viewer, request)
            except (BadRequest, InvalidCursor, ValueError) as exc:
                return _error(viewer, request, 400, str(exc) or "bad request")
            except NotFound as exc:
                return _error(viewer, request, 404, str(exc))
            except (DatabaseUnavailable, LoggingNotConfigured, SchemaVersionError) as exc:
                return _error(viewer, request, 503, str(exc))
            except Exception as exc:
                print(f"cpl ui: {request.url.path}: {type(exc).__name__}: {one_line(exc)}",
                      file=sys.stderr)  # fmt: skip
                return _error(viewer, request, 500, f"internal error: {type(exc).__name__}")

        return endpoint

    routes: list[BaseRoute] = [
        Route(path, handler(fn)) for path, fn in (*pages.ROUTES, *api.ROUTES)
    ]
    routes.append(Mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static"))))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = (
            "no such page" if status == 404 else "method not allowed" if status == 405 else "error"
        )
        return _error(viewer, request, status, f"{message}: {request.url.path}")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return _security_headers(app)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or ``OSError`` saying why not (the address is in use, ...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(
    client: TursoClient,
    host: str,
    port: int,
    *,
    open_browser: bool,
    announce: Callable[[str], None],
) -> None:
    """Serve until Ctrl-C (or SIGTERM): uvicorn stops accepting, finishes what is in flight,
    and returns."""
    import uvicorn

    sock = listen(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/"
    config = uvicorn.Config(create_app(client), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    announce(f"cpl ui: serving {database_label(client.config)} at {url} (Ctrl-C stops)")
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
