"""The NATS transport's durable consumers: the ack wait is bounded by the setting (an older, longer one is shortened),
a process holds few unrecorded triggers, and a trigger still being recorded is kept from redelivery by in-progress
acknowledgements. Against a real JetStream nats-server; time passes as in-progress acknowledgements seen on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from harness import triggered
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from keptn_gitops_service.keptn.nats import UNRECORDED_PER_SUBJECT, NatsTransport
from keptn_gitops_service.keptn.transport import Ack

SUBJECT = "sh.keptn.event.deployment.triggered"
CONSUMER = "group-sh_keptn_event_deployment_triggered"


pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    await client.jetstream().add_stream(StreamConfig(name="keptn", subjects=["sh.keptn.>"]))
    try:
        yield client
    finally:
        await client.close()


async def existing_consumer(nc: Client, ack_wait: float) -> None:
    await nc.jetstream().add_consumer(
        "keptn",
        ConsumerConfig(
            durable_name=CONSUMER,
            filter_subject=SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=ack_wait,
            max_ack_pending=1000,
        ),
    )


class Held:
    """A handler that records nothing until released: every message it gets stays unacknowledged meanwhile."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def __call__(self, body: bytes, ack: Ack) -> None:
        self.received.append(json.loads(body)["id"])
        self.changed.set()
        await self.release.wait()
        await ack()


class Progress:
    """The in-progress acknowledgements (``+WPI``) the transport sends, as seen on the wire."""

    def __init__(self, changed: asyncio.Event) -> None:
        self.count = 0
        self.changed = changed

    async def record(self, msg: Any) -> None:
        if msg.data == b"+WPI":
            self.count += 1
            self.changed.set()


async def until(event: asyncio.Event, condition: Any) -> None:
    async def wait() -> None:
        while not condition():
            event.clear()
            await event.wait()

    await asyncio.wait_for(wait(), 30)


@pytest.mark.parametrize(("existing", "expected"), [(None, 2.0), (60.0, 2.0), (1.0, 1.0)])
async def test_the_ack_wait_is_at_most_the_setting(
    nc: Client, nats_url: str, existing: float | None, expected: float
) -> None:
    """New: the setting. Left by an earlier version with 60 s: shortened. Shorter (an operator's choice): kept."""
    if existing is not None:
        await existing_consumer(nc, existing)
    transport = NatsTransport(nats_url, [SUBJECT], "group", name="test", ack_wait=2.0)
    await transport.connect()
    try:
        await transport.subscribe(Held())
        info = await nc.jetstream().consumer_info("keptn", CONSUMER)
        assert (transport.mode, info.config.ack_wait) == ("jetstream", expected)
    finally:
        await transport.close(grace=0)


async def test_a_slow_record_is_not_delivered_again_and_few_are_fetched_at_once(nc: Client, nats_url: str) -> None:
    ack_wait = 1.0
    held = Held()
    progress = Progress(held.changed)
    await nc.subscribe("$JS.ACK.keptn.>", cb=progress.record)
    transport = NatsTransport(nats_url, [SUBJECT], "group", name="test", ack_wait=ack_wait)
    await transport.connect()
    try:
        await transport.subscribe(held)
        events = [triggered() for _ in range(UNRECORDED_PER_SUBJECT + 3)]
        for event in events:
            await nc.jetstream().publish(SUBJECT, json.dumps(event).encode())
        await until(held.changed, lambda: len(held.received) == UNRECORDED_PER_SUBJECT)
        # three ack waits pass, as in-progress acknowledgements (one every third of the ack wait per message) —
        # unless a held message is delivered again (or a third one fetched) before
        beats = 3 * 3 * UNRECORDED_PER_SUBJECT
        await until(held.changed, lambda: progress.count >= beats or len(held.received) > UNRECORDED_PER_SUBJECT)
        info = await nc.jetstream().consumer_info("keptn", CONSUMER)
        assert held.received == [e["id"] for e in events[:UNRECORDED_PER_SUBJECT]]  # no other, no second delivery
        assert info.delivered.consumer_seq == UNRECORDED_PER_SUBJECT, info.delivered
        assert (info.num_ack_pending, info.num_pending) == (UNRECORDED_PER_SUBJECT, 3)

        held.release.set()  # recorded: acknowledged, and the rest is fetched
        await until(held.changed, lambda: len(held.received) == len(events))
        await transport.wait_idle()
        for _ in range(200):  # an acknowledgement is a message of its own: the server counts it a moment later
            info = await nc.jetstream().consumer_info("keptn", CONSUMER)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        assert sorted(held.received) == sorted(e["id"] for e in events)
        assert (info.delivered.consumer_seq, info.num_ack_pending, info.num_pending) == (len(events), 0, 0)
    finally:
        await transport.close(grace=0)
