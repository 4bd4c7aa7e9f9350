"""With KEPTN_API_ENDPOINT/KEPTN_API_TOKEN the service registers like go-utils' sdk, follows the subscriptions the
control plane returns on every ping, and reports errored tasks to /v1/log."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from harness import Loop, start_loop, stop_loop, triggered

TOKEN = "keptn-api-token-123"


@dataclass
class ControlPlane:
    """The shipyard-controller's uniform API as the sdk reaches it through the api-gateway (/api/controlPlane)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    pings: int = 0
    logs: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def authorised(self, request: web.Request) -> None:
        if request.headers.get("x-token") != TOKEN:
            raise web.HTTPUnauthorized()

    async def register(self, request: web.Request) -> web.Response:
        self.authorised(request)
        body = await request.json()
        self.registrations.append(body)
        meta = body["metadata"]
        key = f"{body['name']}-{meta['kubernetesmetadata']['namespace']}-{meta['hostname']}"
        return web.json_response({"id": hashlib.sha1(key.encode()).hexdigest()}, status=201)

    async def ping(self, request: web.Request) -> web.Response:
        self.authorised(request)
        self.pings += 1
        registered = self.registrations[-1]
        return web.json_response({**registered, "id": request.match_info["id"], "subscriptions": self.subscriptions})

    async def log(self, request: web.Request) -> web.Response:
        self.authorised(request)
        self.logs.extend((await request.json())["logs"])
        return web.Response(status=200)


@pytest.fixture
async def control_plane() -> AsyncIterator[ControlPlane]:
    plane = ControlPlane()
    app = web.Application()
    app.router.add_post("/api/controlPlane/v1/uniform/registration", plane.register)
    app.router.add_put("/api/controlPlane/v1/uniform/registration/{id}/ping", plane.ping)
    app.router.add_post("/api/controlPlane/v1/log", plane.log)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    plane.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/api"  # type: ignore[union-attr]
    try:
        yield plane
    finally:
        await runner.cleanup()


def subscription(event: str, **filters: list[str]) -> dict[str, Any]:
    return {"id": event, "event": event, "filter": {k: filters.get(k, []) for k in ("projects", "stages", "services")}}


async def until(condition: Any) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 20)


@pytest.fixture
async def registered(tmp_path: Path, nats_url: str, control_plane: ControlPlane) -> AsyncIterator[Loop]:
    control_plane.subscriptions = [subscription("sh.keptn.event.deployment.triggered", stages=["dev"])]
    settings = {
        "keptn_api_endpoint": control_plane.url,
        "keptn_api_token": TOKEN,
        "k8s_namespace": "keptn",
        "k8s_node_name": "node-1",
        "k8s_pod_name": "keptn-gitops-service-abc",
    }
    loop = await start_loop(tmp_path, nats_url, settings=settings, ping_interval=0.05)
    try:
        await until(lambda: control_plane.pings >= 2)
        yield loop
    finally:
        await stop_loop(loop)


async def test_registers_with_name_metadata_and_topics(registered: Loop, control_plane: ControlPlane) -> None:
    body = control_plane.registrations[0]
    assert body["name"] == "keptn-gitops-service"
    assert body["metadata"]["kubernetesmetadata"] == {
        "namespace": "keptn",
        "podname": "keptn-gitops-service-abc",
        "deploymentname": "keptn-gitops-service",
    }
    assert [s["event"] for s in body["subscriptions"]] == list(registered.service.settings.topics)
    assert registered.service.uniform is not None
    assert registered.service.uniform.integration_id == hashlib.sha1(b"keptn-gitops-service-keptn-node-1").hexdigest()


async def test_follows_the_subscriptions_and_their_filters(registered: Loop, control_plane: ControlPlane) -> None:
    filtered = triggered(stage="staging")  # the Bridge subscription only covers stage dev
    release = triggered()
    release["type"] = "sh.keptn.event.release.triggered"  # not subscribed any more
    sentinel = triggered()
    for event in (filtered, release, sentinel):
        await registered.publish(event)
    assert (await registered.finished(sentinel["id"]))["data"]["result"] == "pass"
    await registered.service.wait_idle()
    assert registered.replies_to(filtered["id"]) == [] and registered.replies_to(release["id"]) == []
    assert registered.service.transport.subjects == ("sh.keptn.event.deployment.triggered",)

    control_plane.subscriptions = [subscription("sh.keptn.event.release.triggered")]
    await until(lambda: registered.service.transport.subjects == ("sh.keptn.event.release.triggered",))
    again = triggered()
    again["type"] = "sh.keptn.event.release.triggered"
    await registered.publish(again)
    assert (await registered.finished(again["id"]))["type"] == "sh.keptn.event.release.finished"


async def test_errored_tasks_are_reported_to_the_log_api(registered: Loop, control_plane: ControlPlane) -> None:
    bad = triggered("docker.io/keptnexamples/Carts:1")  # not a valid OCI reference
    await registered.publish(bad)
    finished = await registered.finished(bad["id"])
    assert finished["data"]["status"] == "errored"
    await until(lambda: control_plane.logs)
    entry = control_plane.logs[0]
    assert entry["triggeredid"] == bad["id"] and entry["shkeptncontext"] == bad["shkeptncontext"]
    assert entry["task"] == "deployment" and "not a valid OCI reference" in entry["message"]
    assert registered.service.uniform is not None
    assert entry["integrationid"] == registered.service.uniform.integration_id
    assert TOKEN not in json.dumps(finished)
