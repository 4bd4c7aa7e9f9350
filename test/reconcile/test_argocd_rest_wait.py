"""The Argo CD wait through Argo CD's REST API: our client against the SIMULATED Argo CD API server
(keptn_gitops_sim/argocd.py), which serves the Applications of the Kubernetes-API test server the way argocd-server
does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from waitobjects import OLD, OURS, Linear, app_status, application, get_app, refresh_requested, set_app

from keptn_gitops_service.clock import ManualClock, SystemClock
from keptn_gitops_service.config.model import ArgoWait
from keptn_gitops_service.metrics import WATCH_RECONNECTS
from keptn_gitops_service.reconcile.argocd import ArgoApplicationWaiter
from keptn_gitops_service.reconcile.argocd_rest import ArgoCdClient, ArgoCdServer, RestArgoApi
from keptn_gitops_service.reconcile.outcome import WaitOutcome
from keptn_gitops_sim.argocd import ArgoCdApiServer
from keptn_gitops_sim.kubeapi import KubeApiServer

TOKEN = "argocd-api-token-5f3a2b1c"
CONTEXT, TRIGGERED = "3c4a7d8e-0d7b-4bde-9d4c-0f5c4a1e2b3c", "b8f5f8b4-4d2a-4f0e-9f53-5f3a2b1c0d9e"
KEPTN = {"shkeptncontext": CONTEXT, "triggeredid": TRIGGERED}


@pytest.fixture
async def argocd(kube: KubeApiServer) -> AsyncIterator[ArgoCdApiServer]:
    server = ArgoCdApiServer(kube, token=TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(argocd: ArgoCdApiServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ArgoCdClient]:
    monkeypatch.setenv("ARGOCD_TOKEN", TOKEN)
    client = ArgoCdClient(ArgoCdServer(argocd.url, token_env="ARGOCD_TOKEN"), max_backoff=0.5)
    try:
        yield client
    finally:
        await client.close()


def start_wait(
    client: ArgoCdClient,
    *,
    name: str = "sockshop-dev-carts",
    timeout: float = 60,
    clock: Any = None,
    project: str | None = None,
    **options: Any,
) -> asyncio.Task[WaitOutcome]:
    clock = clock or SystemClock()
    waiter = ArgoApplicationWaiter(RestArgoApi(client, None, project), clock)
    if "degraded_grace" in options:
        options["degraded_grace"] = timedelta(seconds=options["degraded_grace"])
    settings = ArgoWait(name, **options)
    return asyncio.create_task(
        waiter.wait(
            namespace="argocd", name=name, options=settings, commit=OURS, ancestry=Linear(), timeout=timeout, **KEPTN
        )
    )


def deployed_before(kube: KubeApiServer, name: str = "sockshop-dev-carts") -> None:
    kube.put_object(application(name))
    set_app(kube, app_status(OLD, finished="2026-01-01T00:00:10Z", reconciled="2026-01-01T00:00:10Z"), name)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_our_commit_synced_and_healthy_passes(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    task = start_wait(client)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, health="Progressing"), refreshed=True)
    await settle()
    assert not task.done()
    set_app(kube, app_status(OURS))
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.succeeded, outcome.message
    assert outcome.message.startswith(f"Argo CD deployed commit {OURS[:12]}: Application argocd/sockshop-dev-carts:")
    assert (argocd.request_count["stream"], argocd.request_count["refresh"], argocd.request_count["sync"]) == (1, 1, 0)


async def test_a_sync_through_the_api_carries_the_keptn_context(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    task = start_wait(client, sync=True)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, sync="OutOfSync"), refreshed=True)
    while "operation" not in get_app(kube):
        await asyncio.sleep(0.01)
    assert get_app(kube)["operation"]["info"] == [
        {"name": "shkeptncontext", "value": CONTEXT},
        {"name": "triggeredid", "value": TRIGGERED},
    ]
    assert get_app(kube)["operation"]["sync"] == {"revision": OURS}
    set_app(kube, app_status(OURS), operation_taken=True)
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert argocd.request_count["sync"] == 1


async def test_a_sync_refused_for_another_operation_is_tried_again(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    clock = ManualClock()
    task = start_wait(client, sync=True, clock=clock)
    await asyncio.wait_for(refresh_requested(kube), 10)
    argocd.fail_next(1, status=400)  # e.g. "another operation is already in progress"
    set_app(kube, app_status(OURS, sync="OutOfSync"), refreshed=True)
    while argocd.request_count["sync"] < 1:
        await asyncio.sleep(0.01)
    await settle()
    assert "operation" not in get_app(kube)
    clock.advance(5)
    while "operation" not in get_app(kube):
        await asyncio.sleep(0.01)
    set_app(kube, app_status(OURS), operation_taken=True)
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert argocd.request_count["sync"] == 2


async def test_a_wrong_token_ends_the_wait_and_never_shows_the_token(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed_before(kube)
    argocd.token = "another-token"
    with structlog.testing.capture_logs() as logs:
        outcome = await asyncio.wait_for(start_wait(client), 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert "401" in outcome.message and "invalid session" in outcome.message, outcome.message
    assert TOKEN not in outcome.message and TOKEN not in repr(logs)


async def test_a_missing_token_variable_is_named(
    kube: KubeApiServer, client: ArgoCdClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed_before(kube)
    monkeypatch.delenv("ARGOCD_TOKEN")
    outcome = await asyncio.wait_for(start_wait(client), 10)
    assert outcome.message == "the Argo CD token environment variable ARGOCD_TOKEN is not set"


async def test_the_token_is_read_from_a_file_at_every_request(
    kube: KubeApiServer, argocd: ArgoCdApiServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    client = ArgoCdClient(ArgoCdServer(argocd.url, token_file=str(token_file)))
    try:
        deployed_before(kube)
        task = start_wait(client)
        await asyncio.wait_for(refresh_requested(kube), 10)
        set_app(kube, app_status(OURS), refreshed=True)
        assert (await asyncio.wait_for(task, 10)).succeeded
        argocd.token = "rotated"
        token_file.write_text("rotated")
        assert await client.application("sockshop-dev-carts", app_namespace=None, project=None) is not None
    finally:
        await client.close()


async def test_an_application_not_visible_yet_is_waited_for(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    """Without ``project`` Argo CD answers 403 for an Application that does not exist: wait for the stream."""
    task = start_wait(client)
    await asyncio.wait_for(argocd.wait_for_streams(1), 10)
    while argocd.request_count["refresh"] < 1:
        await asyncio.sleep(0.01)
    await settle()
    assert not task.done()
    deployed_before(kube)
    await asyncio.wait_for(refresh_requested(kube), 10)  # asked again once the stream shows it
    set_app(kube, app_status(OURS), refreshed=True)
    assert (await asyncio.wait_for(task, 10)).succeeded
    assert argocd.request_count["refresh"] == 2


async def test_a_403_with_a_project_ends_the_wait(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    argocd.deny("sockshop-dev-carts")
    outcome = await asyncio.wait_for(start_wait(client, project="default"), 10)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.message == (
        f"Argo CD at {argocd.url} refused to read Application sockshop-dev-carts: 403 permission denied"
    )


async def test_errors_of_the_refresh_are_retried(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    client.stream(None)  # the shared stream is up before the failure is injected: only the refresh gets it
    await asyncio.wait_for(argocd.wait_for_streams(1), 10)
    clock = ManualClock()
    argocd.fail_next(1, status=503)
    task = start_wait(client, clock=clock)
    while argocd.request_count["refresh"] < 1:
        await asyncio.sleep(0.01)
    await settle()
    assert not task.done()
    clock.advance(5)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS), refreshed=True)
    assert (await asyncio.wait_for(task, 10)).succeeded


async def test_the_api_server_restarting_mid_stream(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    deployed_before(kube)
    task = start_wait(client)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, health="Progressing"), refreshed=True)
    await asyncio.wait_for(argocd.wait_for_streams(1), 10)
    reconnects = WATCH_RECONNECTS._value.get()
    argocd.drop_streams(abort=True)
    set_app(kube, app_status(OURS))  # happens while nobody streams: the reconnect's ADDED events bring it
    assert (await asyncio.wait_for(task, 20)).succeeded
    assert WATCH_RECONNECTS._value.get() >= reconnects + 1


async def test_one_stream_serves_every_waiter(
    kube: KubeApiServer, argocd: ArgoCdApiServer, client: ArgoCdClient
) -> None:
    names = [f"app-{i}" for i in range(20)]
    for name in names:
        deployed_before(kube, name)
    tasks = [start_wait(client, name=name) for name in names]
    for name in names:
        await asyncio.wait_for(refresh_requested(kube, name), 10)
    for name in names:
        set_app(kube, app_status(OURS), name, refreshed=True)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert all(o.succeeded for o in outcomes)
    assert argocd.request_count["stream"] == 1 and argocd.open_streams == 1
    assert argocd.request_count["refresh"] == 20  # one refresh per deployment, nothing else
    assert argocd.request_count["total"] == 21


async def test_timeout_with_a_controlled_clock(kube: KubeApiServer, client: ArgoCdClient) -> None:
    deployed_before(kube)
    clock = ManualClock()
    task = start_wait(client, timeout=90, clock=clock)
    await asyncio.wait_for(refresh_requested(kube), 10)
    set_app(kube, app_status(OURS, sync="OutOfSync", phase=None), refreshed=True)
    while not clock.sleepers:
        await asyncio.sleep(0.01)
    await settle()
    clock.advance(90)
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.timed_out
    assert outcome.message.startswith(
        f"timed out after 1m30s waiting for Argo CD to deploy commit {OURS[:12]}: Application "
        f"argocd/sockshop-dev-carts: sync OutOfSync to {OURS[:12]}"
    )
