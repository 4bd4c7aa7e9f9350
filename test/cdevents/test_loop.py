"""CDEvents from the running service: real NATS, git, the Kubernetes-API test server, simulated Flux, and an HTTP
sink (or a NATS subject) that receives the events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
from cdevents_sink import Sink, drained
from harness import Loop, rollback_of, start_loop, stop_loop, triggered
from support import until

from keptn_gitops_service.cdevents.model import DEPLOYED, ROLLEDBACK, UPGRADED
from keptn_gitops_service.clock import SystemClock
from keptn_gitops_service.service import Service

Validate = Callable[[dict[str, Any]], None]
KUSTOMIZATION = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/sockshop-dev/kustomizations/carts"


def purl(tag: str) -> str:
    return f"pkg:oci/carts?repository_url=docker.io/keptnexamples/carts&tag={tag}"


async def deploy(loop: Loop, image: str, **data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    event = triggered(image, **data)
    await loop.publish(event)
    return event, await loop.finished(event["id"])


async def test_deployed_then_upgraded_then_rolled_back(
    tmp_path: Path, nats_url: str, sink: Sink, validate: Validate
) -> None:
    loop = await start_loop(tmp_path, nats_url, settings={"cdevents_sink": sink.url})
    try:
        # a failed deployment emits nothing: the first event is the next deployment's
        failing, failed = await deploy(loop, "docker.io/keptnexamples/carts:0.13.9", service="no-such-service")
        assert failed["data"]["result"] == "fail"
        first, finished = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
        assert finished["data"]["result"] == "pass"
        await sink.wait_for(1)
        deployed = sink.events()[0]
        validate(deployed)
        assert deployed["context"]["type"] == DEPLOYED
        assert deployed["context"]["chainId"] == first["shkeptncontext"]
        assert deployed["subject"] == {
            "id": "sockshop/carts",
            "content": {"environment": {"id": "dev", "source": KUSTOMIZATION}, "artifactId": purl("0.13.1")},
        }
        assert deployed["customData"]["git"]["commit"] == finished["data"]["deployment"]["gitCommit"]
        assert deployed["customData"]["git"]["repository"] == f"file://{loop.remote}"
        assert deployed["customData"]["keptn"]["triggeredid"] == first["id"]
        assert deployed["customData"]["keptn"]["finishedid"] == finished["id"]

        second, finished = await deploy(loop, "docker.io/keptnexamples/carts:0.13.2")
        assert finished["data"]["result"] == "pass"
        await sink.wait_for(2)
        upgraded = sink.events()[1]
        validate(upgraded)
        assert upgraded["context"]["type"] == UPGRADED
        assert upgraded["subject"]["content"]["artifactId"] == purl("0.13.2")

        rollback = rollback_of(second)
        await loop.publish(rollback)
        rolled = await loop.finished(rollback["id"])
        assert (rolled["data"]["status"], rolled["data"]["result"]) == ("succeeded", "fail")
        await sink.wait_for(3)
        rolledback = sink.events()[2]
        validate(rolledback)
        assert rolledback["context"]["type"] == ROLLEDBACK
        assert rolledback["subject"]["content"]["artifactId"] == purl("0.13.1")  # what ran before the context
        assert rolledback["context"]["chainId"] == second["shkeptncontext"]
        assert rolledback["context"]["links"] == [
            {"linkType": "PATH", "from": {"contextId": upgraded["context"]["id"]}}
        ]
        assert rolledback["customData"]["keptn"]["task"] == "rollback"
        assert failing["id"] not in json.dumps(sink.events())
        assert len(sink.received) == 3
    finally:
        await stop_loop(loop)


async def test_the_keptn_reply_never_waits_for_the_sink(tmp_path: Path, nats_url: str) -> None:
    sink = Sink(hold=asyncio.Event())  # accepts connections, never answers until released
    await sink.start()
    loop = await start_loop(tmp_path, nats_url, settings={"cdevents_sink": sink.url})
    try:
        for tag in ("0.13.1", "0.13.2"):
            _, finished = await deploy(loop, f"docker.io/keptnexamples/carts:{tag}")
            assert finished["data"]["result"] == "pass"
        assert sink.received == []
        assert sink.hold is not None
        sink.hold.set()
        await sink.wait_for(2)
        # a request held past the sender's timeout is sent again (at least once): compare distinct events
        await until(lambda: len({e["context"]["id"] for e in sink.events()}) == 2)
        types = {e["context"]["id"]: e["context"]["type"] for e in sink.events()}
        assert sorted(types.values()) == [DEPLOYED, UPGRADED]
    finally:
        await stop_loop(loop)
        await sink.stop()


async def test_unsent_events_are_sent_after_a_restart_and_the_history_survives_it(
    tmp_path: Path, nats_url: str, validate: Validate
) -> None:
    sink = Sink()  # down while the first process runs
    loop = await start_loop(tmp_path, nats_url, settings={"cdevents_sink": sink.url})
    restarted: Service | None = None
    try:
        _, finished = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
        assert finished["data"]["result"] == "pass"
        store = loop.service.store
        pending: list[tuple[str, bytes]] = []

        async def has_pending() -> None:
            while not pending:
                pending.extend(await store.outbox_pending())

        await asyncio.wait_for(has_pending(), 20)
        await loop.service.stop()
        await sink.start()
        restarted = Service(loop.service.settings, loop.service.config, clock=SystemClock())
        loop.service = restarted
        await restarted.start()
        await sink.wait_for(1)
        assert sink.events()[0]["context"]["id"] == pending[0][0]
        assert sink.events()[0]["context"]["type"] == DEPLOYED
        _, finished = await deploy(loop, "docker.io/keptnexamples/carts:0.13.2")
        assert finished["data"]["result"] == "pass"
        await sink.wait_for(2)
        assert sink.events()[1]["context"]["type"] == UPGRADED  # the history outlived the process
        for event in sink.events():
            validate(event)
        await drained(restarted.store)
        assert len(sink.received) == 2
    finally:
        await stop_loop(loop)
        await sink.stop()


async def test_the_nats_subject_receives_the_events(tmp_path: Path, nats_url: str, validate: Validate) -> None:
    received: list[Any] = []

    async def collect(msg: Any) -> None:
        received.append(msg)

    nc = await nats.connect(nats_url)
    await nc.subscribe("cdevents.sockshop", cb=collect)
    await nc.flush()
    loop = await start_loop(tmp_path, nats_url, settings={"cdevents_subject": "cdevents.sockshop"})
    try:
        _, finished = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
        assert finished["data"]["result"] == "pass"
        await until(lambda: len(received) == 1)
        document = json.loads(received[0].data)
        validate(document["data"])
        assert document["type"] == DEPLOYED and document["source"] == "/keptn-gitops-service"
        assert received[0].headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    finally:
        await stop_loop(loop)
        await nc.close()
