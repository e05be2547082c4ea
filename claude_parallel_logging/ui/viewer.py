"""What every request handler shares: the ``Viewer`` (client, templates, secrets) and the two
errors a handler raises for a 400 or a 404 page."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

from ..query.access import TursoClient, database_label
from ..query.documents import dumps
from ..redact import REDACTED
from .render import environment


class BadRequest(Exception):
    """A parameter that cannot be used: a 400 page (or JSON error) with this one line."""


class NotFound(Exception):
    """An unknown session or page: a 404 with this one line."""


@dataclass
class Viewer:
    """What every request needs: the client it reads with, the templates, the secrets no
    response may hold, and the database's name as pages show it (never with its token)."""

    client: TursoClient
    env: jinja2.Environment = field(default_factory=environment)
    secrets: tuple[str, ...] = ()

    @property
    def database(self) -> str:
        return database_label(self.client.config)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def page(self, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("export", None)
        context.setdefault("page", "")
        context.setdefault("search_text", "")
        html = self.env.get_template(template).render(database=self.database, **context)
        return HTMLResponse(self.scrub(html), status_code=http_status)

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        context.setdefault("export", None)
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(self.scrub(html))

    def json(self, document: Any, status: int = 200) -> Response:
        return Response(
            self.scrub(dumps(document)), status_code=status, media_type="application/json"
        )


def secrets_of(client: TursoClient) -> tuple[str, ...]:
    """The auth token (configured, and the environment's), longest first."""
    found = {client.config.auth_token or "", os.environ.get("TURSO_AUTH_TOKEN", "")}
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))
