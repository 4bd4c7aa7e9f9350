"""KEPTN_TRANSPORT=distributor: events arrive as HTTP POSTs from a distributor sidecar (structured like
upstream keptn/derived/04, or binary mode), replies go to the sidecar's /event, retried while it is not ready."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from harness import Loop, start_loop, stop_loop


@dataclass
class FakeDistributor:
    """The sidecar's side of the protocol: its /event endpoint (structured CloudEvents only, 200 on success)."""

    unavailable: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    url: str = ""

    async def event(self, request: web.Request) -> web.Response:
        if self.unavailable > 0:
            self.unavailable -= 1
            self.refused += 1
            return web.Response(status=503)
        body = json.loads(await request.read())
        assert body["specversion"] == "1.0", "the distributor only accepts structured CloudEvents"
        self.received.append(body)
        return web.Response(status=200)

    def replies_to(self, triggered_id: str) -> list[str]:
        return [r["type"] for r in self.received if r.get("triggeredid") == triggered_id]


@pytest.fixture
async def distributor() -> AsyncIterator[FakeDistributor]:
    fake = FakeDistributor()
    app = web.Application()
    app.router.add_post("/event", fake.event)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/event"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def loop(tmp_path: Path, nats_url: str, distributor: FakeDistributor) -> AsyncIterator[Loop]:
    running = await start_loop(
        tmp_path, nats_url, settings={"transport": "distributor", "distributor_event_url": distributor.url}
    )
    try:
        yield running
    finally:
        await stop_loop(running)


async def post(loop: Loop, body: bytes, headers: dict[str, str]) -> int:
    assert loop.service.probes is not None
    url = f"http://127.0.0.1:{loop.service.probes.port}/"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


async def finished(distributor: FakeDistributor, triggered_id: str) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while True:
            for reply in distributor.received:
                if reply.get("triggeredid") == triggered_id and reply["type"].endswith(".finished"):
                    return reply
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(wait(), 30)


async def test_a_structured_post_from_the_distributor_is_answered_through_its_event_endpoint(
    loop: Loop, distributor: FakeDistributor, upstream_fixtures: Path
) -> None:
    event = json.loads(
        (
            upstream_fixtures / "keptn/derived/04-HTTP-POST-to-service.deployment.triggered.from-distributor.json"
        ).read_text()
    )
    event["id"] = str(uuid.uuid4())
    distributor.unavailable = 2  # the sidecar is still starting: the first replies are retried
    status = await post(loop, json.dumps(event).encode(), {"Content-Type": "application/cloudevents+json"})
    assert status == 200
    reply = await finished(distributor, event["id"])
    assert reply["data"]["result"] == "pass", reply["data"]["message"]
    assert reply["source"] == "keptn-gitops-service" and reply["shkeptncontext"] == event["shkeptncontext"]
    assert distributor.refused == 2
    assert distributor.replies_to(event["id"]) == [
        "sh.keptn.event.deployment.started",
        "sh.keptn.event.deployment.finished",
    ]
    assert loop.replies == []  # nothing went over NATS directly
    assert loop.service.transport.mode == "distributor"


async def test_a_binary_mode_post_is_understood(loop: Loop, distributor: FakeDistributor) -> None:
    triggered_id, context = str(uuid.uuid4()), str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": triggered_id,
        "ce-type": "sh.keptn.event.release.triggered",
        "ce-source": "shipyard-controller",
        "ce-shkeptncontext": context,
        "ce-shkeptnspecversion": "0.2.4",
    }
    data = {"project": "sockshop", "stage": "dev", "service": "carts", "result": "pass", "status": "succeeded"}
    assert await post(loop, json.dumps(data).encode(), headers) == 200
    reply = await finished(distributor, triggered_id)
    assert reply["type"] == "sh.keptn.event.release.finished" and reply["shkeptncontext"] == context


async def test_an_oversized_post_is_refused(loop: Loop) -> None:
    assert await post(loop, b"x" * (1_048_576 + 1), {"Content-Type": "application/cloudevents+json"}) == 413
