"""Shared by every benchmark: the Result row, timing and statistics helpers, sizes, isolation.

Every loop in the benchmarks is bounded twice: by a count and by a time budget (``Budget``).
Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent

# CPL_BENCH_TINY=1 shrinks every size to a few iterations: the smoke test uses it to check
# the harness end to end in seconds. The figures it produces mean nothing.
TINY = os.environ.get("CPL_BENCH_TINY", "") not in ("", "0")


def ensure_package_importable() -> Path:
    """Make ``import claude_parallel_logging`` find a real package and return its root.

    ``python benchmarks/run.py`` puts ``benchmarks/`` (not the repository) first on
    ``sys.path``; a stale editable install can then resolve the package as an empty namespace.
    A package given through ``PYTHONPATH`` (e.g. a scratch copy being profiled) wins.
    """
    spec = importlib.util.find_spec("claude_parallel_logging")
    if spec is None or spec.origin is None:
        sys.path.insert(0, str(REPO))
        for name in [m for m in sys.modules if m.split(".")[0] == "claude_parallel_logging"]:
            del sys.modules[name]
        spec = importlib.util.find_spec("claude_parallel_logging")
    if spec is None or spec.origin is None:
        raise RuntimeError("cannot import claude_parallel_logging")
    return Path(spec.origin).resolve().parent.parent


def size(full: int, quick: int, tiny: int, *, is_quick: bool) -> int:
    """Pick a size for the mode: full run, ``--quick``, or the smoke test's tiny run."""
    if TINY:
        return tiny
    return quick if is_quick else full


@dataclass
class Result:
    """One row of the table.

    ``median``/``p99`` summarise repeated runs in ``unit``; ``p99`` is the tail in the bad
    direction (99th percentile for times, 1st percentile for rates). ``ratio`` is measured
    side by side in the same process run (what is compared to what is in ``extra``).
    ``passed`` is None for rows that only inform.
    """

    name: str
    unit: str
    median: float
    p99: float
    runs: int
    target: str = ""
    ratio: float | None = None
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    k = (len(data) - 1) * pct / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (k - lo))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def summarize(
    name: str,
    unit: str,
    values: Sequence[float],
    *,
    higher_is_better: bool = False,
    target: str = "",
    ratio: float | None = None,
    passed: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> Result:
    tail = percentile(values, 1.0 if higher_is_better else 99.0)
    return Result(
        name=name,
        unit=unit,
        median=median(values),
        p99=tail,
        runs=len(values),
        target=target,
        ratio=ratio,
        passed=passed,
        extra={"values": [round(v, 4) for v in values], **(extra or {})},
    )


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median of per-repetition ratios: each pair ran back to back, so drift cancels."""
    ratios = [a / b for a, b in zip(ours, theirs) if b > 0]
    return median(ratios)


class Budget:
    """A wall-clock allowance: ``left()`` seconds remain, ``over()`` once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def over(self) -> bool:
        return self.left() <= 0


def interleaved(
    reps: int, a: Callable[[], float], b: Callable[[], float], budget: Budget
) -> tuple[list[float], list[float]]:
    """Run ``a`` and ``b`` alternately (order swapped every repetition) ``reps`` times or
    until the budget is spent (at least one pair always runs)."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(reps):
        if i and budget.over():
            break
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


# ----- process isolation ------------------------------------------------------------------------


def subprocess_env(package_root: Path) -> dict[str, str]:
    """Environment for a child process: the same package, no logging configured by accident."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("TURSO_", "CPL_")) and k not in ("CPL_TURSODB_BIN", "CPL_BENCH_TINY"))
    }
    paths = [str(package_root), str(BENCH_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_isolated(
    module: str, func: str, kwargs: dict[str, Any], package_root: Path, timeout: float
) -> Any:
    """Call ``module.func(**kwargs)`` in a fresh interpreter; it returns JSON-able data."""
    code = (
        "import json, sys\n"
        f"from {module} import {func}\n"
        f"out = {func}(**json.loads(sys.argv[1]))\n"
        "sys.stdout.write('\\n@@RESULT@@' + json.dumps(out) + '\\n')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        env=subprocess_env(package_root),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{func} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        raise RuntimeError(f"{module}.{func} printed no result: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout[marker + len("@@RESULT@@") :].strip())


# ----- the real Turso sync server ---------------------------------------------------------------

BENCH_TOKEN = "bench-token-0123456789abcdef"


def find_tursodb() -> str | None:
    from claude_parallel_logging.testing.tursodb import find_tursodb as find

    return find(REPO)


def sync_server(binary: str, workdir: Path) -> Any:
    """``tursodb --sync-server`` on a free 127.0.0.1 port (a context manager), for cloud runs."""
    from claude_parallel_logging.testing.tursodb import TursoSyncServer

    return TursoSyncServer(
        binary, workdir / "server.db", workdir / "tursodb.log", auth_token=BENCH_TOKEN
    )


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def calibrate(repeats: int = 7) -> float:
    """Milliseconds for a fixed pure-Python workload (median of ``repeats``).

    Shared machines change speed from minute to minute; printed at the start and the end of a
    run, this tells whether absolute figures of two runs can be compared at all.
    """
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        d: dict[int, str] = {}
        for i in range(100_000):
            d[i & 1023] = f"{i}:{i * 7}"
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def machine_info() -> dict[str, Any]:
    import platform

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ----- the logged work, shared by the hot-path, writer and memory benchmarks ---------------------

MODEL = "claude-sonnet-4-5"
_SENTENCES = (
    "I'll start by looking at the repository layout to find where the writer lives.",
    "The failing test expects the queue to drop events once it is full, and count them.",
    "Running the command printed hello-from-tool, so the Bash tool works in this sandbox.",
    "Here is a summary of the change: the batch is compiled once and written in a single "
    "transaction, and a rejected row is retried on its own so that nothing else is lost.",
    "Done. Two files changed: writer.py and store.py; the test suite passes.",
)
# Assistant texts of realistic sizes (80 to ~1,500 characters).
TEXTS: tuple[str, ...] = tuple(
    " ".join(_SENTENCES[(i + j) % len(_SENTENCES)] for j in range(1 + i % 8)) for i in range(32)
)
TOOL_CALLS: tuple[tuple[str, dict[str, Any], str], ...] = tuple(
    (
        ("Bash", "Read", "Edit", "Grep")[i % 4],
        {"command": f"ls -la src/module_{i}", "description": f"List module {i}"}
        if i % 4 == 0
        else {"file_path": f"/work/project/src/module_{i}.py", "limit": 200},
        "\n".join(f"line {k}: def function_{k}(x): return x * {k}" for k in range(2 + i % 12)),
    )
    for i in range(16)
)
TOOL_INPUT_JSON: tuple[str, ...] = tuple(json.dumps(inp) for _, inp, _ in TOOL_CALLS)


def emit_mixed(logger: Any, i: int, content: str | None = None) -> int:
    """The mix the benchmarks log: two messages for every tool call (start + end).

    Returns the number of events (queued operations) it produced.
    """
    if i % 3 == 2:
        name, inp, out = TOOL_CALLS[i % len(TOOL_CALLS)]
        tid = logger.log_tool_execution(name, "running", input=inp, tool_use_id=f"toolu_{i}")
        logger.finish_tool_execution(tid, "completed", output=out)
        return 2
    logger.log_message(
        "assistant" if i % 3 else "user",
        TEXTS[i % len(TEXTS)] if content is None else content,
        external_id=f"msg_{i // 3}",
        model=MODEL,
        input_tokens=1200 + i % 500,
        output_tokens=40 + i % 300,
    )
    return 1


def local_client(path: Path, **settings: Any) -> Any:
    """A client on a local file with default settings (whatever the environment says)."""
    from claude_parallel_logging import Settings, TursoClient, TursoConfig

    cfg = TursoConfig(str(path))
    return TursoClient(cfg, Settings(config=cfg, **settings))


def cloud_client(url: str, replica_dir: Path, **settings: Any) -> Any:
    from claude_parallel_logging import Settings, TursoClient, TursoConfig

    cfg = TursoConfig(url, auth_token=BENCH_TOKEN)
    return TursoClient(cfg, Settings(config=cfg, replica_dir=str(replica_dir), **settings))
