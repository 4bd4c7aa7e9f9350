"""The whole end-to-end environment: control plane, Flux CRDs and controllers, and the Git HTTP server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from e2e.build import Toolchain
from e2e.controlplane import ControlPlane
from e2e.fluxcontrollers import FluxControllers, install_crds
from e2e.kubeclient import KubeClient
from support import GitHttpServer


@dataclass(frozen=True)
class Cluster:
    kube: KubeClient
    kubeconfig: Path
    git_http: GitHttpServer
    flux: FluxControllers
    logs: Path
    started_in: float


@contextmanager
def running_cluster(tools: Toolchain, workdir: Path) -> Iterator[Cluster]:
    """Start everything under ``workdir`` (logs in ``workdir/logs``); stop it all on exit, in reverse order."""
    started = time.monotonic()
    plane = ControlPlane(tools, workdir)
    kube = plane.start()
    try:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
        install_crds(kube, tools.crds)
        flux = FluxControllers(tools, plane.kubeconfig, workdir)
        flux.start()
        try:
            repos = workdir / "repos"
            repos.mkdir()
            with GitHttpServer(repos) as git_http:
                yield Cluster(kube, plane.kubeconfig, git_http, flux, plane.logs, time.monotonic() - started)
        finally:
            flux.stop()
    finally:
        plane.stop()
