"""Finding the npm-installed binaries the test doubles run (``opencode``, ``tursodb``) where
users have them: a pip install has no ``./dev setup`` and no ``.tools`` folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

_REPO_TOOLS = Path(__file__).resolve().parents[2] / ".tools"


def _node_modules_dirs(start: Path) -> list[Path]:
    """``node_modules`` of ``start`` and each of its parents (what ``npm install`` made)."""
    return [d / "node_modules" for d in (start, *start.parents)]


def find_npm_binary(
    name: str,
    env: str,
    node_paths: Sequence[str],
    extra_roots: Sequence[Path] = (),
    *,
    skip_missing_env: bool = False,
) -> Path | None:
    """``$env`` (even if missing, unless ``skip_missing_env``: a wrong setting is reported);
    else ``name`` on ``PATH``; else ``node_modules/<node_path>`` (glob patterns) in the working
    directory and its parents; else under ``extra_roots``' and this repository's
    ``.tools/node_modules`` (a ``./dev setup`` checkout). ``None`` when none exists."""
    value = os.environ.get(env)
    if value and (os.path.exists(value) or not skip_missing_env):
        return Path(value)
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    roots = _node_modules_dirs(Path.cwd())
    roots += [Path(r) / ".tools" / "node_modules" for r in extra_roots]
    roots.append(_REPO_TOOLS / "node_modules")
    for root in roots:
        for pattern in node_paths:
            for candidate in sorted(root.glob(pattern)) if root.is_dir() else ():
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return candidate
    return None


def missing_binary_message(name: str, env: str, package: str, looked_at: Path | None) -> str:
    """One line: where we looked and how to install the binary."""
    if looked_at is not None:
        return f"{name} binary not found at {looked_at} (from ${env})"
    return (
        f"{name} binary not found (looked in ${env}, PATH, and node_modules of the working"
        f" directory and its parents): install it with `npm install {package}` in your project"
        f" (or set {env})"
    )
