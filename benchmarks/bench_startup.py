"""CLI start-up (issue 15): ``cpl --version`` and ``cpl sessions`` (a local file of realistic
sessions) as processes, median of N runs, beside ``python -c pass`` of the same interpreter; a
command's own cost is its time minus the interpreter's. Bytecode caches are written and warm
(the first run of each is not counted), as after any pip install.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    Result,
    ensure_package_importable,
    local_client,
    median,
    size,
    subprocess_env,
    summarize,
)
from realistic import log_session, session_payload

TARGET_MS = 100.0


def _time(cmd: list[str], env: dict[str, str], runs: int, cwd: str) -> list[float]:
    """Wall milliseconds of ``runs`` runs (``cwd`` outside the repository: ``-m`` would import
    the package from the working directory instead of the one ``env`` names)."""
    subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(quick: bool) -> list[Result]:
    runs = size(21, 11, 2, is_quick=quick)
    env = subprocess_env(ensure_package_importable())
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cli = [sys.executable, "-m", "claude_parallel_logging"]
    with tempfile.TemporaryDirectory(prefix="cpl-bench-startup-") as tmp:
        db = Path(tmp) / "logs.db"
        client = local_client(db)
        for i in range(size(300, 300, 5, is_quick=quick)):
            log_session(client, session_payload(i))
        client.shutdown(120)
        bare, version, sessions = [], [], []
        for _ in range(runs):  # interleaved, so drift hits all three alike
            bare += _time([sys.executable, "-c", "pass"], env, 1, tmp)
            version += _time([*cli, "--version"], env, 1, tmp)
            sessions += _time([*cli, "--database", str(db), "sessions"], env, 1, tmp)
    base = median(bare)
    rows = [summarize("startup.python", "ms", bare, target="information (the interpreter)")]
    for name, values in (("version", version), ("sessions", sessions)):
        own = median(values) - base
        rows.append(
            summarize(
                f"startup.cpl_{name}",
                "ms",
                values,
                target=f"own < {TARGET_MS:.0f} ms",
                passed=own < TARGET_MS,
                extra={"own_ms": round(own, 1)},
            )
        )
    return rows
