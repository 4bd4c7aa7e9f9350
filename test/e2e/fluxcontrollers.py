"""Flux's source-controller and kustomize-controller (and, for the HelmRelease tests, helm-controller) as local
processes against the end-to-end API server.

Their CRDs come from the same module versions the binaries were built from. source-controller serves the
artifacts it packs on a loopback port and advertises that address, so kustomize-controller downloads them as it
does in a cluster. Leader election is off (one replica each) and no notification-controller runs.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from e2e.build import Toolchain
from e2e.kubeclient import KubeClient, condition
from e2e.processes import Process, ProcessGroup
from support import free_port

CRD_TIMEOUT = 60
START_TIMEOUT = 120


def install_crds(kube: KubeClient, crds: tuple[Path, ...]) -> None:
    """Create each CRD and wait until the API server serves it (``Established=True``)."""
    if not crds:
        raise RuntimeError("no Flux CRDs found next to the built controllers")
    names = []
    for path in crds:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        kube.create(crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        kube.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            name,
            "",
            lambda crd: condition(crd, "Established").get("status") == "True",
            what="established",
            timeout=CRD_TIMEOUT,
        )


class FluxControllers(ProcessGroup):
    """source-controller and kustomize-controller, running until :meth:`stop`."""

    def __init__(self, tools: Toolchain, kubeconfig: Path, workdir: Path) -> None:
        self.tools = tools
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.logs = workdir / "logs"
        super().__init__()

    def start(self) -> None:
        with self._starting():
            storage = self.workdir / "source-controller-storage"
            storage.mkdir(parents=True, exist_ok=True)
            storage_addr = f"127.0.0.1:{free_port()}"
            self._run(
                "source-controller",
                self.tools.source_controller,
                [
                    f"--storage-path={storage}",
                    f"--storage-addr={storage_addr}",
                    f"--storage-adv-addr={storage_addr}",
                    "--requeue-dependency=5s",
                ],
            )
            self._run("kustomize-controller", self.tools.kustomize_controller, ["--requeue-dependency=5s"])

    def start_helm_controller(self, binary: Path) -> None:
        """helm-controller too (build.py ``helm``); it fetches charts from source-controller's artifacts."""
        with self._starting():
            self._run("helm-controller", binary, ["--requeue-dependency=5s"])

    def _run(self, name: str, binary: Path, args: list[str]) -> None:
        health = f"127.0.0.1:{free_port()}"
        tmp = self.workdir / "tmp" / name
        tmp.mkdir(parents=True, exist_ok=True)
        process = Process(
            name,
            [
                str(binary),
                "--metrics-addr=0",  # off: nobody scrapes it, and it would need another free port
                f"--health-addr={health}",
                "--log-level=info",
                "--log-encoding=json",
                *args,
            ],
            self.logs,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp),
                "TMPDIR": str(tmp),
                "KUBECONFIG": str(self.kubeconfig),
                "RUNTIME_NAMESPACE": "flux-system",
            },
        )
        self._processes.append(process)
        process.wait_http_ok(f"http://{health}/readyz", START_TIMEOUT)
