"""One session as a self-contained HTML file: the session page with its data, script and style
inlined, no link to load and nothing from the network, readable from ``file://`` (for an audit
record or a bug report). Its Content-Security-Policy allows only its own script and style (by
hash), so stored text can never run as script in it either."""

from __future__ import annotations

import jinja2
from markupsafe import Markup

from ..query import SessionDetail
from .render import environment, export_csp, static_text
from .views import session_context


def export_html(detail: SessionDetail, env: jinja2.Environment | None = None) -> str:
    """The whole session (every transcript entry; no paging, no live updates)."""
    env = env or environment()
    css, js = static_text("app.css"), static_text("app.js")
    for name, text, end in (("app.css", css, "</style"), ("app.js", js, "</script")):
        if end in text.lower():  # our own files: must not be able to end their element
            raise ValueError(f"{name} holds {end}: it cannot be inlined")
    # Markup: the package's own files, inlined as they are (escaping would change the code
    # and its hash); stored data never goes through here.
    export = {"css": Markup(css), "js": Markup(js), "csp": export_csp(js, css)}
    context = session_context(detail, paged=False)
    return env.get_template("session.html").render(
        export=export, database="", page="session", search_text="", **context
    )
