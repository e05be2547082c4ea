"""Where rows end up: a store per mode behind one small interface (``base.Store``).

``local`` shares one file between processes; ``cloud`` keeps a replica per process and pushes it
(``replicas``, ``remote``, ``reader``); ``transcripts`` holds the SQL of the Claude session
store's tables.

Names are imported on first use (``_lazy``): local mode never loads the cloud store (urllib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ..config import Settings, TursoConfig
    from .base import Store, is_lock_error
    from .cloud import CloudStore
    from .local import LocalStore

__all__ = ["CloudStore", "LocalStore", "Store", "is_lock_error", "open_store"]

_EXPORTS = {
    ".base": ("Store", "is_lock_error"),
    ".cloud": ("CloudStore",),
    ".local": ("LocalStore",),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def open_store(config: TursoConfig, settings: Settings) -> Store:
    """The store for ``config``'s mode (nothing is opened until it is used)."""
    if config.is_remote:
        from .cloud import CloudStore

        return CloudStore(config, settings)
    from .local import LocalStore

    return LocalStore(config, settings)
