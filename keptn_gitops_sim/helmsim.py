"""A SIMULATED Flux helm-controller for whole-loop tests, next to fluxsim.py's source and kustomize controllers.

When the parent Kustomization applies a revision, the HelmRelease's spec takes it (kustomize-controller's apply:
the generation moves). Each new generation or ``reconcile.fluxcd.io/requestedAt`` is reconciled the way
helm-controller does it (internal/controller/helmrelease_controller.go): ``Ready=Unknown Progressing`` first, then
``Ready=True UpgradeSucceeded`` with ``observedGeneration``, a ``deployed`` snapshot in ``history`` and
``lastHandledReconcileAt`` — or ``Ready=False UpgradeFailed`` when told to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

from keptn_gitops_sim.fluxsim import KUSTOMIZATION, REQUESTED_AT
from keptn_gitops_sim.kubeapi import KubeApiServer, StoreEvent

HR_GROUP, HR_VERSION, HR_PLURAL = "helm.toolkit.fluxcd.io", "v2", "helmreleases"
KS_PLURAL = KUSTOMIZATION.plural
DIGEST = "sha256:e15c415d62760896bd8bec192a44c5716dc224db9e0fc609b9ac14718f8f9e56"
"""The values digest the SIMULATED helm-controller reports (``lastAttemptedConfigDigest``, ``configDigest``)."""


def condition(kind: str, status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message or f"{reason} message",
        "observedGeneration": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def snapshot(chart: str = "1.0.0", status: str = "deployed", release: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "appVersion": chart,
        "chartName": "carts",
        "chartVersion": chart,
        "configDigest": DIGEST,
        "digest": "sha256:e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9",
        "name": "carts",
        "namespace": "sockshop-dev",
        "status": status,
        "version": release,
        "action": "upgrade" if release > 1 else "install",
    }


def hr_status(
    generation: int,
    *,
    ready: str = "True",
    reason: str = "UpgradeSucceeded",
    handled: str = "",
    chart: str = "1.0.0",
    history_status: str = "deployed",
    extra: list[dict[str, Any]] | None = None,
    observed: int | None = None,
) -> dict[str, Any]:
    """A HelmRelease status after (or during) a reconcile of ``generation``."""
    message = {
        "UpgradeSucceeded": f"Helm upgrade succeeded for release sockshop-dev/carts.v2 with chart carts@{chart}",
        "Progressing": "reconciliation in progress",
    }.get(reason, f"{reason} message")
    status: dict[str, Any] = {
        "observedGeneration": generation if observed is None else observed,
        "lastAttemptedGeneration": generation,
        "lastAttemptedConfigDigest": DIGEST,
        "lastAttemptedRevision": chart,
        "conditions": [condition("Ready", ready, reason, message, generation), *(extra or [])],
        "history": [snapshot(chart, history_status, 2), snapshot("0.9.0", "superseded", 1)],
    }
    if handled:
        status["lastHandledReconcileAt"] = handled
    return status


class SimulatedHelmController:
    """Keeps HelmRelease ``release`` (namespace, name) in step with Kustomization ``parent`` (namespace, name)."""

    def __init__(self, kube: KubeApiServer, parent: tuple[str, str], release: tuple[str, str]) -> None:
        self._kube = kube
        self._parent = parent
        self._release = release
        self._queue: asyncio.Queue[StoreEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = kube.add_listener(self._queue.put_nowait)
        self.fail_with: str | None = None
        self.reconciles = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            meta = event.object["metadata"]
            where = (meta.get("namespace"), meta.get("name"))
            if event.rtype.plural == KS_PLURAL and where == self._parent:
                self._apply(event.object)
            elif event.rtype.plural == HR_PLURAL and where == self._release and _wants_reconcile(event):
                await self._reconcile(event.object)

    def _apply(self, ks: dict[str, Any]) -> None:
        revision = (ks.get("status") or {}).get("lastAppliedRevision")
        hr = self._kube.get_object(HR_GROUP, HR_VERSION, HR_PLURAL, *self._release)
        if hr is None or not revision or hr["spec"]["values"].get("revision") == revision:
            return
        hr = copy.deepcopy(hr)
        hr["spec"]["values"]["revision"] = revision
        self._kube.put_object(hr)

    async def _reconcile(self, hr: dict[str, Any]) -> None:
        self.reconciles += 1
        generation = hr["metadata"]["generation"]
        observed = (hr.get("status") or {}).get("observedGeneration", 0)
        token = (hr["metadata"].get("annotations") or {}).get(REQUESTED_AT, "")
        handled = (hr.get("status") or {}).get("lastHandledReconcileAt", "")
        self._write(hr_status(generation, ready="Unknown", reason="Progressing", observed=observed, handled=handled))
        await asyncio.sleep(0)
        if self.fail_with:
            self._write(hr_status(generation, ready="False", reason=self.fail_with, observed=observed, handled=token))
        else:
            self._write(hr_status(generation, chart="1.1.0", handled=token))

    def _write(self, status: dict[str, Any]) -> None:
        self._kube.update_status(HR_GROUP, HR_VERSION, HR_PLURAL, *self._release, status)


def _wants_reconcile(event: StoreEvent) -> bool:
    old, new = event.old or {"metadata": {}}, event.object
    annotation = (new["metadata"].get("annotations") or {}).get(REQUESTED_AT)
    moved = old["metadata"].get("generation") != new["metadata"].get("generation")
    asked = annotation != (old["metadata"].get("annotations") or {}).get(REQUESTED_AT)
    return moved or asked
