"""The Argo CD wait through the Kubernetes API (Application objects watched with the real lightkube client against the
Kubernetes-API test server), with statuses shaped like the upstream fixture (Argo CD's application status)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from waitobjects import (
    APP_PLURAL,
    NEWER,
    OLD,
    OURS,
    REFRESH,
    Linear,
    app_status,
    application,
    get_app,
    refresh_requested,
    set_app,
)

from keptn_gitops_service.clock import ManualClock, SystemClock
from keptn_gitops_service.config.model import ArgoWait
from keptn_gitops_service.reconcile.argocd import ArgoApplicationWaiter, KubernetesArgoApi
from keptn_gitops_service.reconcile.kube import KubeHub
from keptn_gitops_service.reconcile.outcome import WaitOutcome
from keptn_gitops_sim.kubeapi import KubeApiServer

CONTEXT, TRIGGERED = "3c4a7d8e-0d7b-4bde-9d4c-0f5c4a1e2b3c", "b8f5f8b4-4d2a-4f0e-9f53-5f3a2b1c0d9e"
KEPTN = {"shkeptncontext": CONTEXT, "triggeredid": TRIGGERED}


def start_wait(
    hub: KubeHub,
    *,
    name: str = "sockshop-dev-carts",
    timeout: float = 60,
    clock: Any = None,
    ancestry: Any = None,
    **options: Any,
) -> asyncio.Task[WaitOutcome]:
    clock = clock or SystemClock()
    ancestry = ancestry or Linear()
    waiter = ArgoApplicationWaiter(KubernetesArgoApi(hub, "argocd", clock), clock)
    if "degraded_grace" in options:
        options["degraded_grace"] = timedelta(seconds=options["degraded_grace"])
    settings = ArgoWait(name, **options)
    return asyncio.create_task(
        waiter.wait(
            namespace="argocd", name=name, options=settings, commit=OURS, ancestry=ancestry, timeout=timeout, **KEPTN
        )
    )


def deployed_before(kube: KubeApiServer, **spec: Any) -> None:
    """The Application before the push: OLD synced and Healthy."""
    kube.put_object(application(**spec))
    set_app(kube, app_status(OLD, finished="2026-01-01T00:00:10Z", reconciled="2026-01-01T00:00:10Z"))


async def operation_set(kube: KubeApiServer) -> dict[str, Any]:
    while "operation" not in (app := get_app(kube)):
        await asyncio.sleep(0.01)
    return app


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_our_commit_synced_and_healthy_passes(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, sync="OutOfSync", phase=None), refreshed=True)
    set_app(kube, app_status(OURS, phase="Running", finished=None))
    set_app(kube, app_status(OURS, health="Progressing"))
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS))
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded, outcome.message
    assert outcome.message == (
        f"Argo CD deployed commit {OURS[:12]}: Application argocd/sockshop-dev-carts: sync Synced to {OURS[:12]}, "
        f"health Healthy, last operation Succeeded for {OURS[:12]} (finished 2026-01-01T00:01:00Z), "
        "reconciledAt 2026-01-01T00:01:00Z"
    )


async def test_stale_health_right_after_a_sync_is_not_trusted(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    # The sync finished at 00:01:00, but health was last assessed at 00:00:59: Healthy is the old revision's.
    set_app(kube, app_status(OURS, reconciled="2026-01-01T00:00:59Z"), refreshed=True)
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS, health="Progressing", reconciled="2026-01-01T00:01:00Z"))
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS, reconciled="2026-01-01T00:01:05Z"))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_a_newer_commit_from_someone_else_synced_before_ours_was_seen_passes(
    kube: KubeApiServer, hub: KubeHub
) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(NEWER), refreshed=True)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded and f"sync Synced to {NEWER[:12]}" in outcome.message


async def test_a_failed_sync_of_our_commit_fails(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    failed = app_status(
        OURS, sync="OutOfSync", phase="Failed", message="one or more objects failed to apply, reason: admission denied"
    )
    set_app(kube, failed, refreshed=True)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith(
        "Argo CD sync failed (Failed): one or more objects failed to apply, reason: admission denied. "
    )


async def test_an_old_error_condition_is_not_trusted_before_the_refresh(kube: KubeApiServer, hub: KubeHub) -> None:
    """The revision before ours was broken (a SyncError stands); our commit fixes it forward."""
    sync_error = {"type": "SyncError", "message": f"Failed last sync attempt to [{OLD}]: one or more objects failed"}
    kube.put_object(application())
    set_app(kube, app_status(OLD, sync="OutOfSync", phase="Failed", conditions=[sync_error]))
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS), refreshed=True)
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_an_error_condition_after_the_refresh_fails(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    error = {"type": "ComparisonError", "message": "rpc error: code = Unknown desc = kustomize build failed"}
    set_app(kube, app_status(OURS, sync="Unknown", phase=None, conditions=[error]), refreshed=True)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded
    assert outcome.message.startswith(
        "Argo CD reports ComparisonError: rpc error: code = Unknown desc = kustomize build"
    )


async def test_degraded_fails_only_after_the_grace_period(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    clock = ManualClock(wall=datetime(2026, 1, 1, 0, 2, tzinfo=UTC))  # after the sync finished (00:01:00)
    task = start_wait(hub, clock=clock, timeout=600, degraded_grace=60)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, health="Degraded"), refreshed=True)
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    await settle()
    clock.advance(59)  # the recheck (every 15 s) runs: still within the grace period
    await settle()
    assert not task.done()
    clock.advance(16)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith("Argo CD reports the Application Degraded for 1m15s. ")


async def test_an_application_that_does_not_exist_yet_is_waited_for(kube: KubeApiServer, hub: KubeHub) -> None:
    task = start_wait(hub)
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    await settle()
    assert not task.done()
    deployed_before(kube)
    await asyncio.wait_for(refresh_requested(kube), 10)  # asked again once the Application is there
    set_app(kube, app_status(OURS), refreshed=True)
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_a_sync_carries_the_keptn_context_and_triggered_id(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub, sync=True)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, sync="OutOfSync"), refreshed=True)
    app = await asyncio.wait_for(operation_set(kube), 10)
    assert app["operation"] == {
        "initiatedBy": {"username": "keptn-gitops-service"},
        "info": [{"name": "shkeptncontext", "value": CONTEXT}, {"name": "triggeredid", "value": TRIGGERED}],
        "sync": {"revision": OURS},
    }
    assert "operationState" not in app["status"]  # cleared like SetAppOperation does
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS), operation_taken=True)
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert kube.request_count["patch"] == 2  # the refresh and the sync, nothing else


async def test_no_sync_when_our_commit_or_a_newer_one_is_already_synced(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub, sync=True)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(NEWER, health="Progressing"), refreshed=True)
    await settle()
    assert "operation" not in get_app(kube)
    set_app(kube, app_status(NEWER))
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_a_sync_never_takes_a_newer_commit_back(kube: KubeApiServer, hub: KubeHub) -> None:
    """Argo CD's target already is someone else's newer commit, not synced yet: sync that, not ours."""
    deployed_before(kube)
    task = start_wait(hub, sync=True)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(NEWER, sync="OutOfSync"), refreshed=True)
    app = await asyncio.wait_for(operation_set(kube), 10)
    assert app["operation"]["sync"] == {"revision": NEWER}
    set_app(kube, app_status(NEWER), operation_taken=True)
    assert (await asyncio.wait_for(task, 10)).succeeded


class NewerUndidOurs(Linear):
    """NEWER, a descendant of OURS, set our value back (a rollback committed while we waited)."""

    async def superseded(self, commit: str, descendant: str) -> str | None:
        return f"superseded: commit {NEWER[:12]} (rollback) changed v.yaml tag back" if descendant == NEWER else None


async def test_a_newer_commit_that_undid_ours_fails_and_is_never_synced_over(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    task = start_wait(hub, sync=True, ancestry=NewerUndidOurs())
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(NEWER, sync="OutOfSync", phase=None), refreshed=True)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.succeeded
    assert outcome.message.startswith(
        f"superseded: commit {NEWER[:12]} (rollback) changed v.yaml tag back. Application argocd/sockshop-dev-carts:"
    ), outcome.message
    assert "operation" not in get_app(kube), "syncing our commit would take the rollback back"


async def test_rbac_403_on_the_watch_ends_the_wait(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny(APP_PLURAL, verbs=["list", "watch"])
    deployed_before(kube)
    outcome = await asyncio.wait_for(start_wait(hub), 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith("the Kubernetes API refused to list applications in namespace argocd: 403")


async def test_rbac_403_on_the_watch_alone_ends_the_wait_too(kube: KubeApiServer, hub: KubeHub) -> None:
    """LIST allowed, WATCH forbidden: not retried with backoff forever, but refused once with the API's message."""
    kube.deny(APP_PLURAL, verbs=["watch"])
    deployed_before(kube)
    outcome = await asyncio.wait_for(start_wait(hub), 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith("the Kubernetes API refused to watch applications in namespace argocd: 403")
    assert kube.request_count["watch"] == 1


async def test_rbac_403_on_the_refresh_ends_the_wait(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny(APP_PLURAL, verbs=["patch"])
    deployed_before(kube)
    outcome = await asyncio.wait_for(start_wait(hub), 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message.startswith("cannot patch Application argocd/sockshop-dev-carts: 403 Forbidden: ")
    assert kube.request_count["patch"] == 1  # refused once: not retried


async def test_rbac_403_is_not_remembered_once_fixed(kube: KubeApiServer, hub: KubeHub) -> None:
    kube.deny(APP_PLURAL, verbs=["list", "watch"])
    deployed_before(kube)
    assert not (await asyncio.wait_for(start_wait(hub), 10)).succeeded
    kube.clear_denials()
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS), refreshed=True)
    assert (await asyncio.wait_for(task, 10)).succeeded


@pytest.mark.parametrize("expire", [False, True])
async def test_the_api_server_restarting_mid_watch(kube: KubeApiServer, hub: KubeHub, expire: bool) -> None:
    deployed_before(kube)
    task = start_wait(hub)
    await asyncio.wait_for(refresh_requested(kube), 10)
    await asyncio.wait_for(kube.wait_for_watches(1), 10)
    if expire:
        kube.expire_history()
    kube.drop_watches(abort=True)
    set_app(kube, app_status(OURS), refreshed=True)  # happens while nobody watches
    assert (await asyncio.wait_for(task, 20)).succeeded


async def test_one_watch_serves_every_waiter(kube: KubeApiServer, hub: KubeHub) -> None:
    names = [f"app-{i}" for i in range(20)]
    for name in names:
        kube.put_object(application(name))
        set_app(kube, app_status(OLD), name)
    tasks = [start_wait(hub, name=name) for name in names]
    for name in names:
        await asyncio.wait_for(refresh_requested(kube, name), 10)
    for name in names:
        set_app(kube, app_status(OURS), name, refreshed=True)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(o.succeeded for o in outcomes)
    assert kube.open_watches == 1 and kube.request_count["list"] == 1
    assert kube.request_count["patch"] == 20  # one refresh per deployment


async def test_timeout_with_a_controlled_clock(kube: KubeApiServer, hub: KubeHub) -> None:
    deployed_before(kube)
    clock = ManualClock()
    task = start_wait(hub, timeout=90, clock=clock)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, sync="OutOfSync", phase=None), refreshed=True)  # auto-sync is off
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    await settle()
    clock.advance(89.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.timed_out
    assert outcome.message == (
        f"timed out after 1m30s waiting for Argo CD to deploy commit {OURS[:12]}: Application "
        f"argocd/sockshop-dev-carts: sync OutOfSync to {OURS[:12]}, health Healthy, no operation yet, "
        "reconciledAt 2026-01-01T00:01:00Z; waiting for sync status Synced"
    )
    assert REFRESH not in (get_app(kube)["metadata"].get("annotations") or {})


async def test_a_timeout_during_auto_sync_retries_reports_the_retrying_operation(
    kube: KubeApiServer, hub: KubeHub
) -> None:
    """Auto-sync retries a failing sync 5 times (about 2.5 minutes of backoff) and keeps ``operation`` set
    meanwhile: a wait that times out first says so, with Argo CD's error, not "requested but has not started"."""
    deployed_before(kube)
    clock = ManualClock()
    task = start_wait(hub, timeout=60, clock=clock)
    await asyncio.wait_for(refresh_requested(kube), 10)
    operation = {"sync": {"revision": OURS}, "initiatedBy": {"automated": True}, "retry": {"limit": 5}}
    app = get_app(kube)
    app["operation"] = operation
    app["status"].pop("operationState")
    kube.put_object(app)
    set_app(kube, {**app_status(OURS, sync="OutOfSync", phase=None), "health": {"status": "Healthy"}}, refreshed=True)
    error = 'one or more objects failed to apply, reason: ConfigMap "carts" is invalid'
    retrying = app_status(OURS, sync="OutOfSync", phase="Running", finished="2026-01-01T00:02:00Z")
    retrying["operationState"].update(
        operation=operation,
        retryCount=2,
        message=f"{error} due to application controller sync timeout. Retrying attempt #2 at 12:02AM.",
    )
    del retrying["operationState"]["syncResult"]
    set_app(kube, retrying)
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    await settle()
    clock.advance(60)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.timed_out
    assert outcome.message.endswith(
        f"last operation Running for {OURS[:12]} (attempt 2 failed 2026-01-01T00:02:00Z), reconciledAt "
        "2026-01-01T00:01:00Z; the sync operation is Running, waiting to retry after 2 failed attempt(s): "
        f"{error} due to application controller sync timeout. Retrying attempt #2 at 12:02AM."
    ), outcome.message
