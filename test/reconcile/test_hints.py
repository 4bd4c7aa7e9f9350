"""Hints wake waiters: ``KubeHub.nudge`` makes the shared watch GET one object at once, through the real lightkube
client against the Kubernetes-API test server with its watch stream held back. Status stays the truth: a hint
never decides a result, whatever it claims and however well it is signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from waitobjects import OLD, OURS, Linear

from keptn_gitops_service.clock import ManualClock, SystemClock
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.kube import KUSTOMIZATION, KubeHub, SharedWatch
from keptn_gitops_service.reconcile.outcome import WaitOutcome
from keptn_gitops_service.web.probes import ProbeServer
from keptn_gitops_service.web.webhooks import FLUX_PATH, Hint, webhook_routes
from keptn_gitops_sim.kubeapi import KubeApiServer

GROUP, VERSION, PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
NS, NAME = "sockshop-dev", "carts"
SECRET = b"hmac-token"


def status(ready: str, reason: str, applied: str, attempted: str | None = None) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "lastAppliedRevision": f"main@sha1:{applied}",
        "lastAttemptedRevision": f"main@sha1:{attempted or applied}",
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": f"{reason} message",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }


def kustomization(name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"interval": "5m", "path": f"./apps/dev/{name}", "sourceRef": {"kind": "GitRepository", "name": "x"}},
    }


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    server = KubeApiServer()
    await server.start()
    try:
        yield server
    finally:
        server.resume_watches()
        await server.stop()


def set_status(kube: KubeApiServer, body: dict[str, Any], name: str = NAME) -> None:
    kube.update_status(GROUP, VERSION, PLURAL, NS, name, body)


def start_wait(hub: KubeHub, clock: Any = None, timeout: float = 60, name: str = NAME) -> asyncio.Task[WaitOutcome]:
    waiter = FluxKustomizationWaiter(hub, clock or SystemClock())
    return asyncio.create_task(waiter.wait(namespace=NS, name=name, commit=OURS, ancestry=Linear(), timeout=timeout))


async def following(kube: KubeApiServer, hub: KubeHub, task: asyncio.Task[WaitOutcome], name: str = NAME) -> None:
    """Until the waiter follows ``name`` (its watch is open and it declared its interest)."""
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    watch = hub.watch(KUSTOMIZATION, NS)
    await asyncio.wait_for(watch.wait_synced(), 10)
    while name not in watch._interest:
        assert not task.done(), task.result()
        await asyncio.sleep(0)


async def gets(kube: KubeApiServer, count: int) -> None:
    while kube.request_count["get"] < count:
        await asyncio.sleep(0.005)


async def test_a_hint_wakes_the_waiter_while_the_watch_is_held_back(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    await following(kube, hub, task)
    kube.pause_watches()
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    # the paused watch holds the event back (test/sim/test_kubeapi_pause.py): only the hint can deliver it
    cached = hub.watch(KUSTOMIZATION, NS).get(NAME)
    assert cached is not None and cached["status"]["lastAppliedRevision"] == f"main@sha1:{OLD}"
    assert not task.done()
    assert hub.nudge("Kustomization", NS, NAME, group=GROUP) is True
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded and outcome.message.startswith(f"Flux applied commit {OURS[:12]}")
    assert kube.request_count["get"] == 1


async def test_a_hint_for_an_object_nobody_waits_for_costs_no_request(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    kube.put_object(kustomization("orders"))
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    assert hub.nudge("Kustomization", NS, NAME) is False  # no watch at all yet
    task = start_wait(hub)
    await following(kube, hub, task)
    assert hub.nudge("Kustomization", NS, "orders") is False  # watched namespace, nobody follows orders
    assert hub.nudge("Kustomization", "other-ns", NAME) is False
    assert hub.nudge("HelmRelease", NS, NAME) is False
    assert hub.nudge("Kustomization", NS, NAME, group="helm.toolkit.fluxcd.io") is False
    assert kube.request_count["get"] == 0
    assert hub.nudge("Kustomization", None, NAME) is True  # any namespace
    await asyncio.wait_for(gets(kube, 1), 10)
    task.cancel()


async def test_a_burst_of_hints_coalesces(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("Unknown", "Progressing", OLD, attempted=OURS))
    task = start_wait(hub)
    await following(kube, hub, task)
    kube.pause_watches()
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    for _ in range(20):  # Flux sends several events per reconcile within milliseconds
        assert hub.nudge("Kustomization", NS, NAME)
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert 1 <= kube.request_count["get"] <= 2  # one read, plus one for the hints that came while it ran


async def test_a_hinted_object_that_does_not_exist_yet_is_left_to_the_watch(kube: KubeApiServer, hub: KubeHub) -> None:
    task = start_wait(hub)
    await following(kube, hub, task)
    assert hub.nudge("Kustomization", NS, NAME)
    await asyncio.wait_for(gets(kube, 1), 10)  # 404: logged, nothing stored
    assert not task.done()
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_a_refused_read_is_left_to_the_watch(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    await following(kube, hub, task)
    kube.deny(PLURAL, verbs=["get"])
    assert hub.nudge("Kustomization", NS, NAME)
    await asyncio.wait_for(gets(kube, 1), 10)
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_older_watch_events_never_move_an_object_back_after_a_hint(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub, timeout=3600)
    await following(kube, hub, task)
    watch = hub.watch(KUSTOMIZATION, NS)
    kube.pause_watches()
    set_status(kube, status("Unknown", "Progressing", OLD, attempted=OURS))
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    newest = kube.resource_version
    assert hub.nudge("Kustomization", NS, NAME)
    assert (await asyncio.wait_for(task, 10)).succeeded
    seen: list[str] = []
    late = asyncio.create_task(watch_versions(watch, NAME, seen))
    await asyncio.sleep(0)
    kube.resume_watches()
    marker = kube.put_object({**kustomization(), "metadata": {**kustomization()["metadata"], "labels": {"m": "1"}}})
    while (watch.get(NAME) or {}).get("metadata", {}).get("resourceVersion") != marker["metadata"]["resourceVersion"]:
        await asyncio.sleep(0.005)
    late.cancel()
    assert all(int(version) >= int(newest) for version in seen), seen


async def watch_versions(watch: SharedWatch, name: str, seen: list[str]) -> None:
    while True:
        change = watch.next_change(name)
        await change.wait()
        seen.append(str((watch.get(name) or {}).get("metadata", {}).get("resourceVersion")))


def test_the_cache_keeps_the_newest_version() -> None:
    watch = SharedWatch(client=None, kind=KUSTOMIZATION, namespace=NS)  # type: ignore[arg-type]

    def obj(version: str) -> dict[str, Any]:
        return {"metadata": {"name": NAME, "resourceVersion": version}}

    watch._store(obj("5"))
    watch._store(obj("4"))
    assert watch.get(NAME) == obj("5")
    watch._store(obj("3"), deleted=True)  # an old deletion (before a re-creation we already read)
    assert watch.get(NAME) == obj("5")
    watch._store(obj("6"), deleted=True)
    assert watch.get(NAME) is None
    watch._store(obj("abc"))  # opaque versions: the newest event wins, as the watch delivers them
    watch._store(obj("7"))
    assert watch.get(NAME) == obj("7")


# ---------------------------------------------------------------------------------- the truth is the status


def signed_success_event() -> bytes:
    """A well-signed Flux event claiming our revision succeeded (the shape notification-controller ≥ v1.5 sends)."""
    return json.dumps(
        {
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Kustomization",
                "namespace": NS,
                "name": NAME,
            },
            "severity": "info",
            "timestamp": "2026-01-01T00:00:00Z",
            "message": "Reconciliation finished in 1s, next run in 5m0s",
            "reason": "ReconciliationSucceeded",
            "metadata": {"revision": f"main@sha1:{OURS}", "commit_status": "update"},
            "reportingController": "kustomize-controller",
        },
        separators=(",", ":"),
    ).encode()


@pytest.fixture
async def webhook(hub: KubeHub) -> AsyncIterator[str]:
    """The Flux endpoint wired to the hub the way service.py wires it."""

    def to_hub(hint: Hint) -> bool:
        return hub.nudge(hint.kind, hint.namespace, hint.name, group=hint.group)

    async def ready() -> dict[str, Any]:
        return {}

    server = ProbeServer(ready, host="127.0.0.1", port=0, routes=webhook_routes(to_hub, flux_secret=SECRET))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}{FLUX_PATH}"
    finally:
        await server.stop()


async def post_signed(url: str, body: bytes) -> dict[str, Any]:
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"X-Signature": signature}) as r,
    ):
        assert r.status == 202
        answer: dict[str, Any] = await r.json()
        return answer


async def test_a_signed_hint_claiming_success_never_passes_a_deployment(
    kube: KubeApiServer, hub: KubeHub, webhook: str
) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("Unknown", "Progressing", OLD, attempted=OURS))
    clock = ManualClock()
    task = start_wait(hub, clock=clock, timeout=600)
    await following(kube, hub, task)
    assert await post_signed(webhook, signed_success_event()) == {"accepted": True, "wokeWaiters": True}
    await asyncio.wait_for(gets(kube, 1), 10)
    while clock.sleepers < 1:  # the waiter judged what it read and went back to waiting
        await asyncio.sleep(0)
    assert not task.done()
    clock.advance(601)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and outcome.timed_out
    assert "Progressing" in outcome.message


async def test_a_signed_success_hint_can_only_make_a_failure_known_sooner(
    kube: KubeApiServer, hub: KubeHub, webhook: str
) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    await following(kube, hub, task)
    kube.pause_watches()
    set_status(kube, status("False", "HealthCheckFailed", OLD, attempted=OURS))
    await post_signed(webhook, signed_success_event())
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and "HealthCheckFailed" in outcome.message


def test_a_change_wakes_only_the_waiters_of_that_object() -> None:
    watch = SharedWatch(client=None, kind=KUSTOMIZATION, namespace=NS)  # type: ignore[arg-type]
    carts, orders, anything = watch.next_change("carts"), watch.next_change("orders"), watch.next_change()
    watch._store({"metadata": {"name": "orders", "resourceVersion": "1"}})
    assert orders.is_set() and anything.is_set() and not carts.is_set()
    watch._notify()  # a re-list: every waiter looks again
    assert carts.is_set()


class CountingLinear(Linear):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        self.calls.append((ancestor, descendant))
        return await super().is_ancestor(ancestor, descendant)


async def test_flux_rewriting_the_same_revisions_costs_one_ancestry_check(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_status(kube, status("True", "ReconciliationSucceeded", OLD))
    ancestry = CountingLinear()
    waiter = FluxKustomizationWaiter(hub, SystemClock())
    task = asyncio.create_task(waiter.wait(namespace=NS, name=NAME, commit=OURS, ancestry=ancestry, timeout=60))
    await following(kube, hub, task)
    for reason in ("Progressing", "DependencyNotReady", "Progressing", "ArtifactFailed"):  # reconcile after reconcile
        set_status(kube, status("Unknown" if reason == "Progressing" else "False", reason, OLD))
    set_status(kube, status("True", "ReconciliationSucceeded", OURS))
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert ancestry.calls == [(OURS, OLD)]
