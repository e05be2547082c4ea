"""``cpl ui``: the logs in a browser. A local, read-only web viewer over the query layer.

``app`` (the Starlette application and its uvicorn server) · ``viewer`` (what handlers share) ·
``pages`` (HTML) · ``api`` (JSON, the shapes of ``cpl --json``) · ``params`` (checked query
parameters) · ``views`` (waterfall, transcript, swimlanes: plain data) · ``charts`` (SVG
geometry) · ``render`` (Jinja2, CSP, JSON for script blocks) · ``export`` (self-contained HTML
of one session) · ``templates/`` and ``static/`` (shipped in the package; nothing from a CDN).

Needs the ``[ui]`` extra (Starlette, uvicorn, Jinja2); ``missing_requirements`` says what is
absent without importing any of it.
"""

from __future__ import annotations

import importlib.util

REQUIREMENTS = {"starlette": "starlette", "uvicorn": "uvicorn", "jinja2": "jinja2"}
INSTALL_HINT = 'pip install "claude-parallel-logging[ui]"'


def missing_requirements(names: tuple[str, ...] = ("starlette", "uvicorn", "jinja2")) -> list[str]:
    """The packages of the ``[ui]`` extra that cannot be imported."""
    return [n for n in names if importlib.util.find_spec(REQUIREMENTS[n]) is None]
