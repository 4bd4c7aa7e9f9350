"""Smoke test: the /healthz latency bench runs end to end at a small size (a small worst file, a short edit deadline,
a burst of 20). The figures are measured by running the bench (docs/benchmarks.md), never asserted on time here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "probe_latency.py"


def test_the_bench_runs_every_phase_at_a_small_size(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    args = [
        sys.executable, str(BENCH), "--manifest-mb", "0.2", "--edit-timeout", "1", "--burst", "20", "--services", "4",
        "--idle", "0.3", "--baseline", "--json", str(results),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["phase"]: row for row in json.loads(results.read_text())}
    assert list(rows) == ["idle", "worst file", "worst file, edits on the event loop", "burst of 20"]
    assert all(row["probes"] >= 1 and row["failures"] == 0 for row in rows.values())
    for phase in ("worst file", "worst file, edits on the event loop"):
        outcome = rows[phase]["outcome"]
        assert outcome.startswith("fail: 2 | apps/dev/worst/values.yaml: editing took longer than 1 s"), outcome
        assert "apps/dev/bomb/values.yaml: YAML aliases expand to more than 100000 nodes" in outcome
    assert rows["burst of 20"]["outcome"] == "pass: 20"
    assert "| phase | probes | failed | p50 | p99 | max | p99 / idle p99 | wall | outcome |" in done.stdout
