"""Choose the watcher for a rule's ``wait`` and run it. The Kubernetes client is created on first use, so a
configuration with only ``none`` (or Argo CD REST) waits runs without any cluster access; one Argo CD API client is
kept per server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import ArgoWait, ClustersWait, FluxWait
from keptn_gitops_service.errors import WaitTargetMissingError
from keptn_gitops_service.reconcile.argocd import ArgoApi, ArgoApplicationWaiter, KubernetesArgoApi
from keptn_gitops_service.reconcile.argocd_rest import ArgoCdClient, ArgoCdServer, RestArgoApi
from keptn_gitops_service.reconcile.clusters import Fleet
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.helmrelease import FluxHelmReleaseWaiter
from keptn_gitops_service.reconcile.kube import APPLICATION, HELM_RELEASE, KUSTOMIZATION, KubeHub
from keptn_gitops_service.reconcile.outcome import Ancestry, WaitOutcome
from keptn_gitops_service.reconcile.progress import CURRENT, Progress

log = structlog.get_logger(__name__)

#: The namespace of Argo CD's Applications when a rule does not name one (the default install's).
ARGOCD_NAMESPACE = "argocd"


Target = FluxWait | ArgoWait | ClustersWait | None
"""A rule's wait with its templates rendered (``workflow.waits.wait_target``), or ``None``: do not wait. A
``ClustersWait`` goes to :class:`~keptn_gitops_service.reconcile.clusters.Fleet`: one such reconciler per cluster."""


def argocd_server(target: ArgoWait) -> ArgoCdServer | None:
    """The Argo CD API server a wait goes through (``None``: through the Kubernetes API): one client each."""
    if target.api != "rest" or not target.server:
        return None
    return ArgoCdServer(target.server, target.token_env, target.token_file, target.ca_file)


#: Seconds between the progress lines of a waiting deployment (``KEPTN_GITOPS_PROGRESS_INTERVAL``).
PROGRESS_INTERVAL = 30.0


def describe_target(target: FluxWait | ArgoWait) -> str:
    """What a wait follows, for log lines: ``Flux Kustomization sockshop-dev/carts``."""
    if isinstance(target, ArgoWait):
        server = argocd_server(target)
        namespace = target.namespace or (ARGOCD_NAMESPACE if server is None else "")
        where = f" through Argo CD's API at {server.url}" if server is not None else ""
        return f"Argo CD Application {namespace + '/' if namespace else ''}{target.application}{where}"
    what = f"Flux {target.kind} {target.namespace}/{target.name}"
    if target.kind == "HelmRelease" and target.kustomization is not None:
        what += f" (applied by Kustomization {target.kustomization.namespace}/{target.kustomization.name})"
    return what


class Reconciler:
    """Waits for a commit to be reconciled, by the strategy a rule names."""

    def __init__(
        self,
        hub_factory: Callable[[], KubeHub],
        clock: Clock,
        argocd_factory: Callable[[ArgoCdServer], ArgoCdClient] = ArgoCdClient,
        *,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self._hub_factory = hub_factory
        self._progress_interval = progress_interval
        self._hub: KubeHub | None = None
        self._clock = clock
        self._argocd_factory = argocd_factory
        self._argocd: dict[ArgoCdServer, ArgoCdClient] = {}
        self._fleet = Fleet(
            lambda hubs: Reconciler(hubs, clock, argocd_factory, progress_interval=progress_interval), describe_target
        )

    async def check(self, target: Target) -> None:
        """Read the object(s) :meth:`wait` will follow, through the same API and with the same credentials, before
        anything is committed. Returns when the wait can work; raises :class:`ReconcileError` (the object does
        not exist: :class:`WaitTargetMissingError`; the API refuses us, cannot be reached or configured: an access
        error) when it cannot. Flux objects of a target with ``may_appear`` may be missing (the commit creates
        them)."""
        if target is None:
            return
        if isinstance(target, ClustersWait):
            await self._fleet.check(target)
            return
        if isinstance(target, ArgoWait):
            await self._check_argocd(target)
            return
        objects = [(HELM_RELEASE if target.kind == "HelmRelease" else KUSTOMIZATION, target.namespace, target.name)]
        if target.kind == "HelmRelease" and target.kustomization is not None:
            objects.append((KUSTOMIZATION, target.kustomization.namespace, target.kustomization.name))
        for kind, namespace, name in objects:
            if await self.hub().get(kind, namespace, name) is None and not target.may_appear:
                raise WaitTargetMissingError(
                    f"Flux {kind.kind} {namespace}/{name} does not exist in the cluster "
                    "(if the commit creates it, set wait.flux.mayAppear: true)"
                )

    async def _check_argocd(self, target: ArgoWait) -> None:
        server = argocd_server(target)
        if server is None:
            namespace = target.namespace or ARGOCD_NAMESPACE
            if await self.hub().get(APPLICATION, namespace, target.application) is None:
                raise WaitTargetMissingError(f"Argo CD Application {namespace}/{target.application} does not exist")
            return
        client = self.argocd(server)
        found = await client.application(target.application, app_namespace=target.namespace, project=target.project)
        if found is None:
            raise WaitTargetMissingError(
                f"Argo CD at {server.url} does not show Application {target.application}: it does not exist, "
                "or the token's roles do not allow reading it"
            )

    async def wait(
        self,
        target: Target,
        *,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
        shkeptncontext: str = "",
        triggeredid: str = "",
        progress: Progress | None = None,
    ) -> WaitOutcome:
        """Wait for ``target`` to apply ``commit``; every ``progress_interval`` seconds an info line says what the
        wait follows and what it last observed (in ``progress`` when given: a multi-cluster wait reads each
        cluster's). ``shkeptncontext`` and ``triggeredid`` go into the ``info`` of an Argo CD sync we trigger."""
        if target is None:
            return WaitOutcome(True, f"commit {commit[:12]} is in the repository; not waiting for reconciliation")
        if isinstance(target, ClustersWait):
            return await self._fleet.wait(
                target,
                commit=commit,
                ancestry=ancestry,
                timeout=timeout,
                shkeptncontext=shkeptncontext,
                triggeredid=triggeredid,
            )
        progress = progress or Progress(describe_target(target), commit[:12])
        log.info("waiting for reconciliation", waiting_for=progress.waiting_for, commit=progress.commit)
        token = CURRENT.set(progress)
        reporter = asyncio.create_task(self._report(progress), name=f"progress {progress.waiting_for}")
        try:
            if isinstance(target, ArgoWait):
                return await self._wait_argocd(
                    target,
                    commit=commit,
                    ancestry=ancestry,
                    timeout=timeout,
                    shkeptncontext=shkeptncontext,
                    triggeredid=triggeredid,
                )
            return await self._wait_flux(target, commit=commit, ancestry=ancestry, timeout=timeout)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            CURRENT.reset(token)

    async def _report(self, progress: Progress) -> None:
        started = self._clock.monotonic()
        while True:
            await self._clock.sleep(self._progress_interval)
            log.info(
                "still waiting for reconciliation",
                waiting_for=progress.waiting_for,
                commit=progress.commit,
                observed=progress.status,
                waited=f"{round(self._clock.monotonic() - started)}s",
            )

    async def _wait_flux(self, target: FluxWait, *, commit: str, ancestry: Ancestry, timeout: float) -> WaitOutcome:
        if target.kind == "HelmRelease":
            return await FluxHelmReleaseWaiter(self.hub(), self._clock).wait(
                target=target, commit=commit, ancestry=ancestry, timeout=timeout
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

    async def _wait_argocd(
        self,
        target: ArgoWait,
        *,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
        shkeptncontext: str,
        triggeredid: str,
    ) -> WaitOutcome:
        api: ArgoApi
        server = argocd_server(target)
        if server is None:
            namespace = target.namespace or ARGOCD_NAMESPACE
            api = KubernetesArgoApi(self.hub(), namespace, self._clock)
        else:
            namespace = target.namespace or "(Argo CD's namespace)"
            api = RestArgoApi(self.argocd(server), target.namespace, target.project)
        return await ArgoApplicationWaiter(api, self._clock).wait(
            namespace=namespace,
            name=target.application,
            options=target,
            commit=commit,
            ancestry=ancestry,
            timeout=timeout,
            shkeptncontext=shkeptncontext,
            triggeredid=triggeredid,
        )

    async def close(self) -> None:
        await self._fleet.close()
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        for client in self._argocd.values():
            await client.close()
        self._argocd.clear()
