"""The git writer benchmarks still run (tiny sizes): the scripts must not rot between measurements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "git_writer.py"


def bench(*args: str) -> list[list[str]]:
    """Run the benchmark; return the cells of every table row it printed."""
    env = {**os.environ, "PYTHONPATH": str(BENCH.parents[1])}
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:] if not row[0].startswith("-")]


def test_latency_measures_the_floor_ours_clone_per_event_and_the_whole_loop() -> None:
    rows = bench("latency", "--count", "2")
    assert [row[0].split(":")[0] for row in rows] == [
        "floor",
        "GitWriter.write (ours), warm clone",
        "clone per event",
        "whole loop",
    ]
    assert rows[0][3] == "1.00" and all(row[1].endswith(" ms") for row in rows)


def test_burst_counts_the_commits_and_pushes_of_both_modes() -> None:
    sequential, concurrent = (row for row in bench("burst", "--services", "6") if row[0] != "mode")
    assert (sequential[3], sequential[4]) == ("6", "6")  # one commit and one push per deployment
    assert 1 <= int(concurrent[3]) <= 6 and 1 <= int(concurrent[4]) <= 6


def test_bigrepo_builds_and_caches_the_repository_and_measures_every_clone_kind(tmp_path: Path) -> None:
    args = ("bigrepo", "--files", "40", "--commits", "15", "--count", "2", "--depth", "3", "--cache-dir", str(tmp_path))
    rows = bench(*args)
    assert [row[0] for row in rows] == [
        "full clone",
        "shallow (depth 3)",
        "partial (blob:none)",
        "shallow + partial (depth 3, blob:none)",
    ]
    assert (tmp_path / "bigrepo-f40-c15.git").is_dir()
    assert len(bench(*args)) == 4  # and again from the cache


def test_sizes_compare_the_floor_ours_and_clone_per_event_on_each_repository(tmp_path: Path) -> None:
    rows = bench("sizes", "--count", "2", "--sizes", "40x15", "--per-event", "1,1", "--cache-dir", str(tmp_path))
    assert [row[0] for row in rows] == ["50 services (50 files, 1 commit)", "40 files, 15 commits"]
    assert rows[0][7] == "1.00" and all(row[1].endswith(" ms") for row in rows)
