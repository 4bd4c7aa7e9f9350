"""A SIMULATED Flux helm-controller for whole-loop tests, next to demo/fluxsim.py's source and kustomize controllers.

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

from waitobjects import HR_GROUP, HR_PLURAL, HR_VERSION, KS_PLURAL, REQUESTED_AT, hr_status

from keptn_gitops_sim.kubeapi import KubeApiServer, StoreEvent


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
