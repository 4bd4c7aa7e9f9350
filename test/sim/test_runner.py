"""The demo as a user runs it: the installed ``keptn-gitops-demo`` console script, a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(sys.executable).parent / "keptn-gitops-demo"


def test_demo_runs_the_whole_loop_and_exits_zero(tmp_path: Path) -> None:
    result = subprocess.run([str(DEMO)], cwd=tmp_path, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "SIMULATED" in out
    assert out.index("deployment.triggered") < out.index("deployment.started") < out.index("deployment.finished")
    assert "[result]                 succeeded/pass: Flux applied commit" in out
    assert '+    newTag: 0.13.1 # {"$imagepolicy": "flux-system:carts:tag"}' in out


def test_the_service_command_line_has_no_demo(tmp_path: Path) -> None:
    """The product does not carry the simulated world: ``keptn-gitops-service demo`` is not a command."""
    result = subprocess.run(
        [sys.executable, "-m", "keptn_gitops_service", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "invalid choice: 'demo'" in result.stderr
