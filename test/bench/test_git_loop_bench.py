"""The whole-loop benchmarks still run (tiny sizes): the scripts must not rot between measurements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "git_loop.py"


def bench(*args: str) -> tuple[list[list[str]], str]:
    """Run the benchmark; return the cells of every table row it printed, and all it printed."""
    env = {**os.environ, "PYTHONPATH": str(BENCH.parents[1])}
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:] if not row[0].startswith("-")], done.stdout


def test_burst_goes_through_the_whole_loop_and_checks_every_change_once() -> None:
    rows, out = bench("burst", "--services", "8")
    assert [row[0] for row in rows] == [
        "git writer alone (asyncio.gather of write)",
        "whole loop: NATS -> service -> pushed -> .finished",
    ]
    assert 1 <= int(rows[1][4]) <= 8  # pushes counted
    assert "8/8 passed; every change exactly once" in out


def test_race_with_a_bot_loses_no_update() -> None:
    rows, out = bench("race", "--deployments", "10", "--rate", "20")
    assert [row[0] for row in rows] == ["alone", "with the bot"]
    assert [row[2] for row in rows] == ["10/10", "10/10"]
    assert out.count("every change exactly once") == 2 and "LOST" not in out


def test_memory_samples_idle_in_flight_and_the_soak() -> None:
    rows, out = bench("memory", "--in-flight", "4", "--soak", "12", "--wave", "6")
    assert [row[0] for row in rows] == [
        "idle (after one deployment)",
        "4 deployments waiting on Flux (0 finished)",
        "after a soak of 12 deployments",
    ]
    assert all(row[1].endswith(" MB") for row in rows)
    assert "12/12 passed" in out and "curve: 0:" in out
    # measured as shipped: a venv with only the service's requirements (no test tools such as rich), JSON logs
    assert "service interpreter: product (" in out and "(rich absent)" in out and "LOG_FORMAT=json" in out
