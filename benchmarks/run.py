"""Run the benchmarks, print a table, write JSON.

    python benchmarks/run.py [--quick] [--json PATH] [--only NAME ...]
    ./dev bench [--quick]
    ./dev bench --scale      reads at 1k, 10k and 100k realistic sessions (bench_scale.py)

Every benchmark lives in ``benchmarks/bench_<name>.py`` with ``run(quick) -> list[Result]``.
Medians and p99 are over repeated runs; ratios are measured side by side in this same process
run (see each module's docstring for what exactly is compared). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, TINY, Result, calibrate, ensure_package_importable, machine_info

BENCHMARKS = (
    "hot_path", "stream", "writer", "memory", "e2e", "session_store", "ui",
    "startup", "cloud_read", "realistic_write", "scale",
)  # fmt: skip
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"


def _clean_environment() -> None:
    """Settings from the user's shell must not change what is measured."""
    for var in list(os.environ):
        if var.startswith(("TURSO_", "CPL_")) and var not in ("CPL_TURSODB_BIN", "CPL_BENCH_TINY"):
            del os.environ[var]


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.2f}"


def format_table(results: list[Result]) -> str:
    head = ("benchmark", "unit", "median", "p99", "runs", "target", "ratio", "result")
    rows = [head]
    for r in results:
        verdict = "-" if r.passed is None else ("PASS" if r.passed else "FAIL")
        rows.append(
            (
                r.name,
                r.unit,
                _fmt(r.median),
                _fmt(r.p99),
                str(r.runs),
                r.target or "-",
                _fmt(r.ratio, 3) + ("x" if r.ratio is not None else ""),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i in (0, 1, 5, 7) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~1-2 min)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--scale", action="store_true",
                        help="only the reads at scale, at 1k, 10k and 100k sessions (builds and"
                        " caches ~6.7 GB of databases under benchmarks/results/scale/)")  # fmt: skip
    args = parser.parse_args(argv)

    _clean_environment()
    package_root = ensure_package_importable()
    speed_before = calibrate()
    started = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc)
    selected = ["scale"] if args.scale else args.only or list(BENCHMARKS)
    results: list[Result] = []
    per_bench: dict[str, dict[str, Any]] = {}
    for name in selected:
        t0 = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench_{name}")
            rows: list[Result] = (
                module.run(args.quick, module.SCALE_SIZES) if args.scale else module.run(args.quick)
            )
            error = None
        except Exception as exc:
            traceback.print_exc()
            rows = [
                Result(name=f"{name}.error", unit="", median=math.nan, p99=math.nan, runs=0,
                       passed=False, extra={"error": f"{type(exc).__name__}: {exc}"})
            ]  # fmt: skip
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - t0
        print(f"   {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
        results.extend(rows)
        per_bench[name] = {
            "seconds": round(seconds, 2),
            "error": error,
            "results": [r.to_json() for r in rows],
        }
    wall = time.monotonic() - started
    speed_after = calibrate()

    table = format_table(results)
    print(table)
    failed = [r.name for r in results if r.passed is False]
    print(
        f"\n{len(results)} rows, {sum(r.passed is True for r in results)} passed, "
        f"{len(failed)} failed; {wall:.1f} s wall"
        + (" (quick)" if args.quick else "")
        + (" (tiny sizes: CPL_BENCH_TINY)" if TINY else "")
    )
    print(
        f"machine speed: calibration loop {speed_before:.1f} ms before, {speed_after:.1f} ms after"
        " (lower is faster; runs whose figures differ a lot are not comparable)"
    )

    payload = {
        "date": when.isoformat(timespec="seconds"),
        "mode": "tiny" if TINY else ("quick" if args.quick else "full"),
        "wall_seconds": round(wall, 2),
        "machine": {
            **machine_info(),
            "calibration_ms": {"before": round(speed_before, 2), "after": round(speed_after, 2)},
        },
        "package": str(package_root / "claude_parallel_logging"),
        "benchmarks": per_bench,
        "results": [r.to_json() for r in results],
        "failed": failed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_json_safe(payload), indent=2, ensure_ascii=False) + "\n")
    print(f"JSON: {args.json}")
    # a missed target is a finding, reported above; only a benchmark that could not run fails
    return 1 if any(b["error"] for b in per_bench.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
