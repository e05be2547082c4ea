"""Package attributes imported on first use, for start-up time.

``cpl --version`` must not pay for asyncio, the database engine, the SDK integrations or urllib:
a package ``__init__`` that re-exports names from its submodules declares them in a table (name
-> the submodule defining it) and resolves each on first access (PEP 562). The same names are
imported under ``TYPE_CHECKING`` in that ``__init__`` for the type checker, and ``__all__``,
``dir()`` and ``from package import name`` behave as with eager imports. Only a package's own
submodules are loaded this way, so the layering contracts see every real dependency.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def lazy_exports(
    package: str, table: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``table`` maps each submodule (relative,
    like ``".client"``) to the names it provides."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
