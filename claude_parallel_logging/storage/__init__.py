"""Where rows end up: a store per mode behind one small interface (``base.Store``).

``local`` shares one file between processes; ``cloud`` keeps a replica per process and pushes it
(``replicas``, ``remote``); ``transcripts`` holds the SQL of the Claude session store's tables.
"""

from __future__ import annotations

from ..config import Settings, TursoConfig
from .base import Store, is_lock_error
from .cloud import CloudStore
from .local import LocalStore

__all__ = ["CloudStore", "LocalStore", "Store", "is_lock_error", "open_store"]


def open_store(config: TursoConfig, settings: Settings) -> Store:
    """The store for ``config``'s mode (nothing is opened until it is used)."""
    if config.is_remote:
        return CloudStore(config, settings)
    return LocalStore(config, settings)
