"""The SIMULATED cluster of the demo, the tests and the reliability rig: the Kubernetes-API test server with the
SIMULATED Flux source- and kustomize-controllers, holding the demo's GitRepository ``flux-system/fleet`` (pointing at
a local bare repository) and Kustomization ``sockshop-dev/carts``. Clearly not a real cluster."""

from __future__ import annotations

import copy
from pathlib import Path

from keptn_gitops_sim import content
from keptn_gitops_sim.fluxsim import SimulatedFlux
from keptn_gitops_sim.kubeapi import KubeApiServer

FLUX_INTERVAL = 3600.0
"""Seconds between the SIMULATED Flux's periodic passes: long, so it reconciles at once and then whenever a
reconcile is requested (an annotation, a new generation), as the tests and the rig expect."""


class SimulatedCluster:
    """``await start()`` serves the API (on ``port``, or a free one), writes a kubeconfig for it when given a path,
    creates the Flux objects, reconciles them once (so the Kustomization has applied the remote's head) and, with
    ``run_flux``, keeps the SIMULATED Flux running; ``stop()`` ends both. ``pause()`` / ``resume()`` stop and
    restart only Flux (its controllers down, the API up). A fixed ``port`` lets the API go away and come back."""

    def __init__(
        self,
        remote: Path,
        *,
        url: str | None = None,
        port: int = 0,
        legacy_revisions: bool = False,
        kustomization_path: str | None = None,
    ) -> None:
        self.remote = remote
        self.url = url or f"file://{remote}"
        self.kube = KubeApiServer(port=port)
        self.flux = SimulatedFlux(self.kube, {self.url: remote}, legacy_revisions=legacy_revisions)
        self._kustomization_path = kustomization_path

    async def start(
        self, kubeconfig: Path | None = None, *, run_flux: bool = True, interval: float = FLUX_INTERVAL
    ) -> None:
        await self.kube.start()
        if kubeconfig is not None:
            self.kube.write_kubeconfig(kubeconfig)
        repository = copy.deepcopy(content.GIT_REPOSITORY)
        repository["spec"]["url"] = self.url
        self.kube.put_object(repository)
        kustomization = copy.deepcopy(content.KUSTOMIZATION)
        if self._kustomization_path:
            kustomization["spec"]["path"] = self._kustomization_path
        self.kube.put_object(kustomization)
        await self.flux.reconcile_once()
        if run_flux:
            self.resume(interval)

    def resume(self, interval: float = FLUX_INTERVAL) -> None:
        """Run the SIMULATED Flux in the background: a pass at once, then every ``interval`` and on request."""
        self.flux.start(interval=interval)

    async def pause(self) -> None:
        """Stop the SIMULATED Flux (the API keeps serving)."""
        await self.flux.aclose()

    async def stop(self) -> None:
        await self.flux.aclose()
        await self.kube.stop()
