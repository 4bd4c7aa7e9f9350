"""Helm for the chart tests: built once from its Go module into a cache outside the repository, then reused.

The binary lives at ``${KEPTN_GITOPS_CACHE:-~/.cache/keptn-gitops-service}/helm/<version>/helm``. Nothing of Helm
(source or binary) ever lands in the work tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
# Helm built with `go install` (no release ldflags) assumes Kubernetes v1.20: pass a current one explicitly.
KUBE_VERSION = "1.37.0"
ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    configured = os.environ.get("KEPTN_GITOPS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "keptn-gitops-service"


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not found:
        raise RuntimeError("Go is needed to build Helm for the chart tests (looked on PATH and /usr/local/go/bin)")
    return found


def _build_helm(target: Path) -> None:
    """``go install`` Helm into a staging directory next to ``target``, then move it into place atomically."""
    if ROOT in target.resolve().parents:
        raise RuntimeError(f"the Helm cache must be outside the repository, not {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as staging:
        env = {
            **os.environ,
            "GOBIN": staging,
            "CGO_ENABLED": "0",  # a static binary; no C compiler needed
            "GOTOOLCHAIN": "local",  # never download another Go toolchain
        }
        ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
        proc = subprocess.run(
            [_go(), "install", "-trimpath", f"-ldflags={ldflags}", f"{HELM_MODULE}@{HELM_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building Helm {HELM_VERSION} failed:\n{proc.stdout}\n{proc.stderr}")
        os.replace(Path(staging) / "helm", target)


def _report(config: pytest.Config, line: str) -> None:
    """Show ``line`` on the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(line, file=sys.stderr)
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


class Helm:
    """Runs the cached Helm binary with its own (empty) config, cache and data directories."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "no-kubeconfig"),
        }
        self.version = HELM_VERSION
        self.kube_version = KUBE_VERSION

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )


def _reports_version(tool: Helm) -> bool:
    version = tool.run("version", "--template", "{{ .Version }}")
    return version.returncode == 0 and version.stdout.strip() == HELM_VERSION


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Helm ``HELM_VERSION``, built from its Go module on first use and reused from the cache afterwards."""
    binary = cache_root() / "helm" / HELM_VERSION / "helm"
    tool = Helm(binary, tmp_path_factory.mktemp("helm-home"))
    if binary.is_file() and os.access(binary, os.X_OK) and _reports_version(tool):
        _report(pytestconfig, f"helm {HELM_VERSION}: reusing {binary} (no build this run)")
        return tool
    started = time.monotonic()
    _build_helm(binary)
    _report(
        pytestconfig, f"helm {HELM_VERSION}: built {binary} from {HELM_MODULE} in {time.monotonic() - started:.1f}s"
    )
    if not _reports_version(tool):
        raise RuntimeError(f"{binary} does not report Helm {HELM_VERSION} after building it")
    return tool
