"""Choose the watcher for a rule's ``wait`` and run it. The Kubernetes client is created on first use, so a
configuration with only ``none`` (or Argo CD REST) waits runs without any cluster access; one Argo CD API client is
kept per server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.reconcile.argocd import ArgoApi, ArgoApplicationWaiter, ArgoWaitOptions, KubernetesArgoApi
from keptn_gitops_service.reconcile.argocd_rest import ArgoCdClient, ArgoCdServer, RestArgoApi
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.helmrelease import FluxHelmReleaseWaiter, ObjectRef
from keptn_gitops_service.reconcile.kube import KubeHub
from keptn_gitops_service.reconcile.outcome import Ancestry, WaitOutcome

#: The namespace of Argo CD's Applications when a rule does not name one (the default install's).
ARGOCD_NAMESPACE = "argocd"


@dataclass(frozen=True)
class FluxTarget:
    """A rendered ``wait.flux``: a Kustomization, or a HelmRelease with the Kustomization that applies it."""

    kind: str
    namespace: str
    name: str
    kustomization: ObjectRef | None = None
    chart_version: str | None = None


@dataclass(frozen=True)
class ArgoTarget:
    """A rendered ``wait.argocd``; ``server`` set: through Argo CD's REST API, else through the Kubernetes API."""

    application: str
    namespace: str | None = None
    server: ArgoCdServer | None = None
    project: str | None = None
    options: ArgoWaitOptions = field(default_factory=ArgoWaitOptions)


Target = FluxTarget | ArgoTarget | None


class Reconciler:
    """Waits for a commit to be reconciled, by the strategy a rule names."""

    def __init__(
        self,
        hub_factory: Callable[[], KubeHub],
        clock: Clock,
        argocd_factory: Callable[[ArgoCdServer], ArgoCdClient] = ArgoCdClient,
    ) -> None:
        self._hub_factory = hub_factory
        self._hub: KubeHub | None = None
        self._clock = clock
        self._argocd_factory = argocd_factory
        self._argocd: dict[ArgoCdServer, ArgoCdClient] = {}

    async def wait(self, target: Target, *, commit: str, ancestry: Ancestry, timeout: float) -> WaitOutcome:
        if target is None:
            return WaitOutcome(True, f"commit {commit[:12]} is in the repository; not waiting for reconciliation")
        if isinstance(target, ArgoTarget):
            return await self._wait_argocd(target, commit=commit, ancestry=ancestry, timeout=timeout)
        if target.kind == "HelmRelease":
            if target.kustomization is None:
                return WaitOutcome(
                    False, f"the HelmRelease wait for {target.namespace}/{target.name} names no Kustomization"
                )
            return await FluxHelmReleaseWaiter(self.hub(), self._clock).wait(
                release=ObjectRef(target.namespace, target.name),
                kustomization=target.kustomization,
                chart_version=target.chart_version,
                commit=commit,
                ancestry=ancestry,
                timeout=timeout,
            )
        return await FluxKustomizationWaiter(self.hub(), self._clock).wait(
            namespace=target.namespace, name=target.name, commit=commit, ancestry=ancestry, timeout=timeout
        )

    def hub(self) -> KubeHub:
        """The Kubernetes edge, created on first use."""
        if self._hub is None:
            self._hub = self._hub_factory()
        return self._hub

    def argocd(self, server: ArgoCdServer) -> ArgoCdClient:
        """The API client of one Argo CD server, created on first use."""
        if server not in self._argocd:
            self._argocd[server] = self._argocd_factory(server)
        return self._argocd[server]

    async def _wait_argocd(self, target: ArgoTarget, *, commit: str, ancestry: Ancestry, timeout: float) -> WaitOutcome:
        api: ArgoApi
        if target.server is None:
            namespace = target.namespace or ARGOCD_NAMESPACE
            api = KubernetesArgoApi(self.hub(), namespace, self._clock)
        else:
            namespace = target.namespace or "(Argo CD's namespace)"
            api = RestArgoApi(self.argocd(target.server), target.namespace, target.project)
        return await ArgoApplicationWaiter(api, self._clock).wait(
            namespace=namespace,
            name=target.application,
            options=target.options,
            commit=commit,
            ancestry=ancestry,
            timeout=timeout,
        )

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        for client in self._argocd.values():
            await client.close()
        self._argocd.clear()
