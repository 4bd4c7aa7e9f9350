"""Choose the watcher for a rule's ``wait`` and run it. The Kubernetes client is created on first use, so a
configuration with only ``none`` waits runs without any cluster access."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.kube import KubeHub
from keptn_gitops_service.reconcile.outcome import Ancestry, WaitOutcome


@dataclass(frozen=True)
class FluxTarget:
    """A rendered ``wait.flux``."""

    kind: str
    namespace: str
    name: str


Target = FluxTarget | None


class Reconciler:
    """Waits for a commit to be reconciled, by the strategy a rule names."""

    def __init__(self, hub_factory: Callable[[], KubeHub], clock: Clock) -> None:
        self._hub_factory = hub_factory
        self._hub: KubeHub | None = None
        self._clock = clock

    async def wait(self, target: Target, *, commit: str, ancestry: Ancestry, timeout: float) -> WaitOutcome:
        if target is None:
            return WaitOutcome(True, f"commit {commit[:12]} is in the repository; not waiting for reconciliation")
        if self._hub is None:
            self._hub = self._hub_factory()
        waiter = FluxKustomizationWaiter(self._hub, self._clock)
        return await waiter.wait(
            namespace=target.namespace, name=target.name, commit=commit, ancestry=ancestry, timeout=timeout
        )

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
