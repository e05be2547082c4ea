"""``cpl`` / ``claude-parallel-logging``: the command line over the read API.

``main`` (entry point) · ``parser`` · ``commands/`` (one module per command) · ``output``
(tables, scrubbing) · ``format`` (figures) · ``transcript`` (``show``'s views and exports) ·
``database`` (the database chosen by the options; what ``sync``/``doctor`` inspect).
"""

from .main import main

__all__ = ["main"]
