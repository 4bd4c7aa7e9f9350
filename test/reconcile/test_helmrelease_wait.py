"""The HelmRelease wait through the real lightkube client against the Kubernetes-API test server: the parent
Kustomization ties the release to our commit, then helm-controller's status decides (helm-controller's spec docs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from waitobjects import (
    HR_PLURAL,
    NEWER,
    OLD,
    OURS,
    REQUESTED_AT,
    Linear,
    condition,
    helmrelease,
    hr_status,
    ks_status,
    kustomization,
    reconcile_request,
    set_hr,
    set_ks,
)

from keptn_gitops_service.clock import ManualClock, SystemClock
from keptn_gitops_service.config.model import FluxWait, KustomizationRef
from keptn_gitops_service.reconcile.helmrelease import FluxHelmReleaseWaiter
from keptn_gitops_service.reconcile.kube import KubeHub
from keptn_gitops_service.reconcile.outcome import WaitOutcome
from keptn_gitops_sim.kubeapi import KubeApiServer


def start_wait(
    hub: KubeHub, *, timeout: float = 60, clock: Any = None, chart_version: str | None = None
) -> asyncio.Task[WaitOutcome]:
    waiter = FluxHelmReleaseWaiter(hub, clock or SystemClock())
    return asyncio.create_task(
        waiter.wait(
            target=FluxWait(
                kind="HelmRelease",
                name="carts",
                namespace="sockshop-dev",
                kustomization=KustomizationRef(name="apps", namespace="flux-system"),
                chart_version=chart_version,
            ),
            commit=OURS,
            ancestry=Linear(),
            timeout=timeout,
        )
    )


def before_our_commit(kube: KubeApiServer) -> None:
    """The cluster before the push: the Kustomization applied OLD, the release of generation 1 is deployed."""
    kube.put_object(kustomization())
    set_ks(kube, ks_status("True", "ReconciliationSucceeded", OLD))
    kube.put_object(helmrelease("0.13.0"))
    set_hr(kube, hr_status(1, chart="1.0.0"))


def flux_applies(kube: KubeApiServer, revision: str = OURS, tag: str = "0.13.1") -> None:
    """kustomize-controller applies the commit: the HelmRelease's spec changes (generation 2), then the status."""
    kube.put_object(helmrelease(tag))
    set_ks(kube, ks_status("True", "ReconciliationSucceeded", revision))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_the_release_of_our_commit_passes(kube: KubeApiServer, hub: KubeHub) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, chart="1.0.0", handled=token))
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded, outcome.message
    assert outcome.message.startswith(f"Flux released commit {OURS[:12]}: HelmRelease sockshop-dev/carts: Ready=True")


async def test_the_old_release_is_not_taken_for_ours(kube: KubeApiServer, hub: KubeHub) -> None:
    """Right after the Kustomization applied our commit, the HelmRelease still shows generation 1 deployed."""
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    await asyncio.wait_for(reconcile_request(kube), 10)
    await settle()
    assert not task.done()


async def test_a_status_from_before_our_reconcile_request_is_not_trusted(kube: KubeApiServer, hub: KubeHub) -> None:
    """Values from a ConfigMap of fixed name: the commit does not move the generation, the old status looks fine."""
    before_our_commit(kube)
    task = start_wait(hub)
    set_ks(kube, ks_status("True", "ReconciliationSucceeded", OURS))  # the HelmRelease spec did not change
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    await settle()
    assert not task.done()
    set_hr(kube, hr_status(1, chart="1.0.0", handled=token))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_ready_briefly_unknown_at_the_start_of_a_reconcile_is_not_a_verdict(
    kube: KubeApiServer, hub: KubeHub
) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, ready="Unknown", reason="Progressing", handled=token, observed=1))
    set_hr(kube, hr_status(2, ready="False", reason="DependencyNotReady", handled=token, observed=1))
    await settle()
    assert not task.done()
    set_hr(kube, hr_status(2, handled=token))
    assert (await asyncio.wait_for(task, 10)).succeeded


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"ready": "False", "reason": "InstallFailed"}, "Flux failed to release the HelmRelease: InstallFailed"),
        ({"ready": "False", "reason": "UpgradeFailed", "observed": 1}, "UpgradeFailed: UpgradeFailed message"),
        (
            {"ready": "False", "reason": "TestFailed", "extra": [condition("TestSuccess", "False", "TestFailed")]},
            "Flux failed to release the HelmRelease: TestFailed",
        ),
        (
            {
                "ready": "False",
                "reason": "RollbackSucceeded",
                "history_status": "superseded",
                "extra": [condition("Released", "False", "UpgradeFailed", generation=2)],
            },
            "RollbackSucceeded: RollbackSucceeded message; Released=False UpgradeFailed",
        ),
        ({"ready": "False", "reason": "RollbackFailed"}, "Flux failed to release the HelmRelease: RollbackFailed"),
        (
            {
                "ready": "False",
                "reason": "UpgradeFailed",
                "extra": [condition("Stalled", "True", "RetriesExceeded", "Failed to upgrade after 1 attempt(s)")],
            },
            "Flux stalled: RetriesExceeded: Failed to upgrade after 1 attempt(s)",
        ),
    ],
    ids=["install-failed", "upgrade-failed", "test-failed", "rolled-back", "rollback-failed", "stalled"],
)
async def test_each_failure_fails_fast(
    kube: KubeApiServer, hub: KubeHub, status: dict[str, Any], expected: str
) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, handled=token, **status))
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert expected in outcome.message, outcome.message


async def test_a_failing_kustomization_fails_before_the_release(kube: KubeApiServer, hub: KubeHub) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    set_ks(kube, ks_status("False", "BuildFailed", OLD, attempted=OURS))
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded
    assert outcome.message.startswith("Flux failed to apply the revision: BuildFailed: BuildFailed message.")


async def test_a_newer_commit_from_someone_else_applied_first_counts(kube: KubeApiServer, hub: KubeHub) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube, revision=NEWER)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, handled=token))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_a_helmrelease_that_does_not_exist_yet_is_waited_for(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.put_object(kustomization())
    set_ks(kube, ks_status("True", "ReconciliationSucceeded", OLD))
    task = start_wait(hub)
    set_ks(kube, ks_status("True", "ReconciliationSucceeded", OURS))
    await asyncio.wait_for(kube.wait_for_watches(2), 10)  # the Kustomization's and the HelmReleases'
    await settle()
    assert not task.done() and kube.request_count["patch"] == 1  # the GitRepository's reconcile request only
    kube.put_object(helmrelease("0.13.1"))  # the first release: install
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(1, reason="InstallSucceeded", handled=token))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_the_expected_chart_version_is_required(kube: KubeApiServer, hub: KubeHub) -> None:
    before_our_commit(kube)
    task = start_wait(hub, chart_version="1.1.0")
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, chart="1.0.0", handled=token))
    await settle()
    assert not task.done()
    set_hr(kube, hr_status(2, chart="1.1.0+0cc9a8446c95", handled=token))  # OCI charts get +<digest prefix>
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_without_rbac_patch_the_generation_alone_ties(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny(HR_PLURAL, verbs=["patch"])
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    while kube.request_count["get"] == 0:
        await asyncio.sleep(0.01)
    assert REQUESTED_AT not in (
        kube.get_object("helm.toolkit.fluxcd.io", "v2", HR_PLURAL, "sockshop-dev", "carts") or {}
    )["metadata"].get("annotations", {})
    set_hr(kube, hr_status(2))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_rbac_403_on_helmreleases_ends_the_wait_with_the_api_message(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny(HR_PLURAL, verbs=["list", "watch"])
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith(
        "the Kubernetes API refused to list helmreleases in namespace sockshop-dev: 403 Forbidden: "
        'helmreleases.helm.toolkit.fluxcd.io is forbidden: User "system:serviceaccount:keptn:keptn-gitops-service"'
    )


@pytest.mark.parametrize("expire", [False, True])
async def test_the_api_server_restarting_mid_watch(kube: KubeApiServer, hub: KubeHub, expire: bool) -> None:
    before_our_commit(kube)
    task = start_wait(hub)
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    await asyncio.wait_for(kube.wait_for_watches(2), 10)
    if expire:
        kube.expire_history()
    kube.drop_watches(abort=True)
    set_hr(kube, hr_status(2, handled=token))  # happens while nobody watches
    assert (await asyncio.wait_for(task, 20)).succeeded


async def test_timeout_with_a_controlled_clock(kube: KubeApiServer, hub: KubeHub) -> None:
    before_our_commit(kube)
    clock = ManualClock()
    task = start_wait(hub, timeout=90, clock=clock)
    flux_applies(kube)
    token = await asyncio.wait_for(reconcile_request(kube), 10)
    set_hr(kube, hr_status(2, ready="Unknown", reason="Progressing", handled=token, observed=1))
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    await settle()
    clock.advance(89.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.timed_out
    assert outcome.message.startswith(
        f"timed out after 1m30s waiting for Flux to release commit {OURS[:12]}: HelmRelease sockshop-dev/carts: "
        "Ready=Unknown (Progressing: reconciliation in progress)"
    ), outcome.message
