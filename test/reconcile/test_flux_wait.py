"""The Flux wait through the real lightkube client against the Kubernetes-API test server: objects that do not
exist yet, Ready briefly Unknown, RBAC 403, 500s, the API server dropping watches and expiring history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from waitobjects import OLD, OURS, Linear

from keptn_gitops_service.clock import ManualClock, SystemClock
from keptn_gitops_service.metrics import WATCH_RECONNECTS
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.kube import KubeHub
from keptn_gitops_service.reconcile.outcome import WaitOutcome
from keptn_gitops_sim.kubeapi import KubeApiServer

GROUP, VERSION, PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"


def status(ready: str, reason: str, applied: str, attempted: str | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "lastAppliedRevision": f"main@sha1:{applied}",
        "lastAttemptedRevision": f"main@sha1:{attempted or applied}",
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": f"{reason} message",
                "observedGeneration": generation,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }


KS = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "Kustomization",
    "metadata": {"name": "carts", "namespace": "sockshop-dev"},
    "spec": {"interval": "5m", "path": "./apps/dev/carts", "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
}


def start_wait(hub: KubeHub, timeout: float = 60, clock: Any = None) -> asyncio.Task[WaitOutcome]:
    waiter = FluxKustomizationWaiter(hub, clock or SystemClock())
    return asyncio.create_task(
        waiter.wait(namespace="sockshop-dev", name="carts", commit=OURS, ancestry=Linear(), timeout=timeout)
    )


def set_status(kube: KubeApiServer, body: dict[str, Any]) -> None:
    kube.update_status(GROUP, VERSION, PLURAL, "sockshop-dev", "carts", body)


async def test_an_object_that_does_not_exist_yet_is_waited_for(kube: KubeApiServer, hub: KubeHub) -> None:
    task = start_wait(hub)
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    assert not task.done()
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded and outcome.message.startswith(f"Flux applied commit {OURS[:12]}")


async def test_ready_briefly_unknown_at_the_start_of_a_reconcile_is_not_a_verdict(
    kube: KubeApiServer, hub: KubeHub
) -> None:
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    set_status(kube, status("Unknown", "Progressing", OLD, attempted=OURS))
    set_status(kube, status("False", "DependencyNotReady", OLD, attempted=OURS))
    await asyncio.sleep(0)
    assert not task.done()
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_the_wait_requests_a_reconcile_of_the_source(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "fleet", "namespace": "sockshop-dev"},
            "spec": {"url": "file:///x"},
        }
    )
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    repo: dict[str, Any] = {}
    while "reconcile.fluxcd.io/requestedAt" not in (repo.get("metadata", {}).get("annotations") or {}):
        await asyncio.sleep(0.01)
        repo = kube.get_object("source.toolkit.fluxcd.io", "v1", "gitrepositories", "sockshop-dev", "fleet") or {}
    assert kube.request_count["patch"] == 1
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_rbac_403_ends_the_wait_with_the_api_message(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny("kustomizations", verbs=["list", "watch"])
    outcome = await asyncio.wait_for(start_wait(hub), 10)
    assert not outcome.succeeded
    assert "refused to list kustomizations in namespace sockshop-dev: 403" in outcome.message


async def test_api_server_errors_are_retried(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    kube.fail_next(3, status=500)
    assert (await asyncio.wait_for(start_wait(hub), 20)).succeeded


@pytest.mark.parametrize("expire", [False, True])
async def test_the_api_server_restarting_mid_watch(kube: KubeApiServer, hub: KubeHub, expire: bool) -> None:
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    if expire:
        kube.expire_history()
    reconnects = WATCH_RECONNECTS._value.get()
    kube.drop_watches(abort=True)
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))  # happens while nobody watches
    assert (await asyncio.wait_for(task, 20)).succeeded
    assert WATCH_RECONNECTS._value.get() >= reconnects + 1


async def test_one_watch_serves_every_waiter(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    tasks = [start_wait(hub) for _ in range(20)]
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(o.succeeded for o in outcomes)
    assert kube.open_watches == 1 and kube.request_count["list"] == 1


async def test_timeout_with_a_controlled_clock(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(KS)
    set_status(kube, status("False", "BuildFailed", OLD))  # an older revision failed: not ours
    clock = ManualClock()
    task = start_wait(hub, timeout=90, clock=clock)
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    clock.advance(89.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.timed_out and outcome.message.startswith(
        f"timed out after 1m30s waiting for Flux to apply commit {OURS[:12]}"
    )
    assert "Ready=False (BuildFailed: BuildFailed message)" in outcome.message


NEWER = "c" * 40


class NewerUndidOurs:
    """OLD, OURS, then NEWER, which set our value back before Flux applied OURS."""

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        order = [OLD, OURS, NEWER]
        return ancestor in order and descendant in order and order.index(ancestor) <= order.index(descendant)

    async def superseded(self, commit: str, descendant: str) -> str | None:
        return f"superseded: commit {NEWER[:12]} (rollback) changed k.yaml tag back" if descendant == NEWER else None


async def test_a_descendant_that_undid_our_change_is_no_pass(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(KS)
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    waiter = FluxKustomizationWaiter(hub, SystemClock())
    task = asyncio.create_task(
        waiter.wait(namespace="sockshop-dev", name="carts", commit=OURS, ancestry=NewerUndidOurs(), timeout=60)
    )
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    set_status(kube, status("True", "ReconciliationSucceeded", NEWER))
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded
    assert outcome.message == (
        f"superseded: commit {NEWER[:12]} (rollback) changed k.yaml tag back. Kustomization sockshop-dev/carts:"
        f" Ready=True (ReconciliationSucceeded: ReconciliationSucceeded message), lastAppliedRevision"
        f" main@sha1:{NEWER}, lastAttemptedRevision main@sha1:{NEWER}"
    )
