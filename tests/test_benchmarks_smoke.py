"""The benchmark harness runs end to end (tiny sizes) and writes every benchmark into its JSON.

Speed targets live in the benchmarks themselves (``./dev bench``), not here: this only checks
that each benchmark ran and produced numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "hot_path", "stream", "writer", "memory", "e2e", "session_store", "ui",
    "startup", "cloud_read", "realistic_write", "scale",
)  # fmt: skip

pytestmark = pytest.mark.e2e  # runs the real CLI and tursodb


def test_benchmarks_quick_run_writes_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURSO_", "CPL_"))}
    if os.environ.get("CPL_TURSODB_BIN"):
        env["CPL_TURSODB_BIN"] = os.environ["CPL_TURSODB_BIN"]
    env["CPL_BENCH_TINY"] = "1"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "benchmark" in proc.stdout and "median" in proc.stdout  # the table

    data = json.loads(out.read_text())
    assert data["mode"] == "tiny"
    assert set(data["benchmarks"]) == set(BENCHMARKS)
    for name in BENCHMARKS:
        bench = data["benchmarks"][name]
        assert bench["error"] is None, (name, bench["error"])
        assert bench["results"], name
        for row in bench["results"]:
            assert row["name"].startswith(name + "."), row["name"]
            for key in ("median", "p99"):
                value = row[key]
                assert isinstance(value, (int, float)) and math.isfinite(value), (row["name"], key)
            assert row["runs"] >= 1
            assert row["passed"] in (True, False, None)
            if row["ratio"] is not None:
                assert math.isfinite(row["ratio"]) and row["ratio"] > 0
    names = {r["name"] for r in data["results"]}
    for expected in (
        "hot_path.message.ours",
        "hot_path.tool.ours",
        "stream.track_overhead",
        "writer.local",
        "writer.cloud",
        "memory.peak_growth",
        "e2e.query_logged",
        "scale.search_rare.200",
        "scale.usage_day.200",
    ):
        assert expected in names
