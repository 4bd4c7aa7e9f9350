"""At-least-once receipt through Keptn's JetStream stream: triggers published while the service is down are
answered when it comes back, exactly once; without the stream the service falls back to core NATS."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest
from harness import start_loop, stop_loop, triggered
from nats.js.api import StreamConfig
from support import git

from keptn_gitops_service.service import Service

pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream


async def create_keptn_stream(url: str) -> None:
    """What Keptn's shipyard-controller does on start-up (it creates its durable consumer on ``sh.keptn.>``)."""
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name="keptn", subjects=["sh.keptn.>"]))
    finally:
        await nc.close()


async def test_triggers_published_while_the_service_is_down_are_answered(tmp_path: Path, nats_url: str) -> None:
    await create_keptn_stream(nats_url)
    loop = await start_loop(tmp_path, nats_url)
    try:
        assert loop.service.transport.mode == "jetstream"
        first = triggered("docker.io/keptnexamples/carts:0.30.0")
        await loop.publish(first)
        assert (await loop.finished(first["id"]))["data"]["result"] == "pass"

        await loop.service.stop()
        missed = [triggered(f"docker.io/keptnexamples/carts:0.3{i}.0") for i in range(1, 4)]
        for event in missed:
            await loop.publish(event)

        loop.service = Service(loop.service.settings, loop.service.config)
        await loop.service.start()
        # handled together, so Flux applies only the newest commit; the others were overtaken before it applied them
        results = [(await loop.finished(event["id"]))["data"] for event in missed]
        assert all(d["result"] == "pass" or d["message"].startswith("superseded: commit ") for d in results), results
        assert "pass" in {d["result"] for d in results}
        await loop.service.wait_idle()
        for event in [first, *missed]:
            kinds = [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])]
            assert kinds == ["started", "finished"], (event["id"], kinds)
        assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "5"
    finally:
        await stop_loop(loop)


async def test_a_new_consumer_does_not_replay_the_stream_history(tmp_path: Path, nats_url: str) -> None:
    """Triggers from before the service ever ran (days-old stream content) must not be deployed again."""
    await create_keptn_stream(nats_url)
    nc = await nats.connect(nats_url)
    old = triggered("docker.io/keptnexamples/carts:0.1.0")
    await nc.publish(old["type"], json.dumps(old).encode())
    await nc.flush()
    await nc.close()
    loop = await start_loop(tmp_path, nats_url)
    try:
        fresh = triggered("docker.io/keptnexamples/carts:0.40.0")
        await loop.publish(fresh)
        await loop.finished(fresh["id"])
        await loop.service.wait_idle()
        assert loop.replies_to(old["id"]) == []
    finally:
        await stop_loop(loop)


async def test_without_the_stream_core_nats_is_used(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url)
    try:
        assert loop.service.transport.mode == "core"
        event = triggered()
        await loop.publish(event)
        assert (await loop.finished(event["id"]))["data"]["result"] == "pass"
    finally:
        await stop_loop(loop)
