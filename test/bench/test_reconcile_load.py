"""Smoke test: the load/latency bench runs end to end with two deployments and a short poll interval.

The figures themselves are measured by running the bench (docs/benchmarks.md), never asserted on time here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reconcile_load.py"


def test_the_bench_runs_with_small_n(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    args = [sys.executable, str(BENCH), "--sizes", "2", "--poll-interval", "0.2", "--json", str(results)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rounds = {r["waiter"]: r for r in json.loads(results.read_text())}
    assert set(rounds) == {"watch", "polling"}
    assert all(r["passed"] == r["deployments"] == 2 and len(r["latencies_ms"]) == 2 for r in rounds.values())
    ours, polling = rounds["watch"]["requests"], rounds["polling"]["requests"]
    # one GET per deployment: the check of the wait target before the commit (the poller makes it too)
    assert ours["get"] == 2 and ours["list"] == 1 and ours["watch"] == 1 and ours["patch"] == 2
    assert polling.get("list", 0) == 0 and polling["get"] >= 4 and polling["patch"] == 2
    assert "ratios (polling / ours):" in done.stdout
