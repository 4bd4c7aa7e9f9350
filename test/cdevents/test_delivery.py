"""At-least-once delivery through the outbox: real SQLite and JetStream stores, a real HTTP sink on a loopback port,
a real nats-server, time on the controlled clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from cdevents_sink import Sink, drained
from support import until

from keptn_gitops_service.cdevents.model import DEPLOYED, UPGRADED, Artifact, FinishedTask
from keptn_gitops_service.cdevents.outbox import CDEventsEmitter, Outbox, OutboxWorker
from keptn_gitops_service.cdevents.senders import HttpSender, NatsSender, Sender
from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.state.jetstream import JetStreamStateStore
from keptn_gitops_service.state.store import SqliteStateStore
from keptn_gitops_sim.natsd import NatsServer, free_port

Validate = Callable[[dict[str, Any]], None]
TASK = FinishedTask(
    kind="deployment",
    project="sockshop",
    stage="dev",
    service="carts",
    keptn_context="ctx-0",
    triggered_id="t0",
    status="succeeded",
    result="pass",
    commit="c" * 40,
    repository="file:///fleet.git",
    branch="main",
    artifact=Artifact("docker.io/keptnexamples/carts", "1.0.0"),
    target="",
    finished_at=datetime(2026, 1, 1, tzinfo=UTC),
)


async def emit(store: Outbox, count: int, worker: OutboxWorker | None = None) -> None:
    emitter = CDEventsEmitter(store, worker)
    for i in range(count):
        await emitter.finished(
            replace(
                TASK,
                triggered_id=f"t{i}",
                keptn_context=f"ctx-{i}",
                artifact=Artifact(TASK.artifact.repository, f"1.0.{i}"),
            )  # type: ignore[union-attr]
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    opened = SqliteStateStore(tmp_path / "state.sqlite3")
    try:
        yield opened
    finally:
        await opened.close()


async def started(store: Outbox, senders: list[Sender], clock: ManualClock | None = None) -> OutboxWorker:
    worker = OutboxWorker(store, senders, clock or ManualClock())
    worker.start()
    return worker


async def test_binary_mode_sends_the_cdevent_as_the_body(
    store: SqliteStateStore, sink: Sink, validate: Validate
) -> None:
    worker = await started(store, [HttpSender(sink.url)])
    await emit(store, 2, worker)
    await sink.wait_for(2)
    await drained(worker.store)
    assert await store.outbox_pending() == []
    await worker.stop()
    events = sink.events()
    assert [e["context"]["type"] for e in events] == [DEPLOYED, UPGRADED]
    for (headers, _), event in zip(sink.received, events, strict=True):
        validate(event)
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert headers["ce-specversion"] == "1.0" and headers["ce-type"] == event["context"]["type"]
        assert headers["ce-id"] == event["context"]["id"] and headers["ce-subject"] == "sockshop/carts"
        assert (
            headers["ce-source"] == event["context"]["source"] and headers["ce-time"] == event["context"]["timestamp"]
        )


async def test_structured_mode_sends_one_cloudevents_document(
    store: SqliteStateStore, sink: Sink, validate: Validate
) -> None:
    worker = await started(store, [HttpSender(sink.url, mode="structured")])
    await emit(store, 1, worker)
    await sink.wait_for(1)
    await worker.stop()
    headers, body = sink.received[0]
    assert headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert not any(h.lower().startswith("ce-") for h in headers)
    document = json.loads(body)
    validate(document["data"])
    assert document["specversion"] == "1.0" and document["type"] == DEPLOYED
    assert document["id"] == document["data"]["context"]["id"] and document["subject"] == "sockshop/carts"
    assert document["dataschema"] == "https://cdevents.dev/0.5.1/schema/service-deployed-event"


async def test_a_sink_that_is_down_gets_each_event_exactly_once_when_it_is_back(
    store: SqliteStateStore, validate: Validate
) -> None:
    sink, clock = Sink(), ManualClock()  # nothing listens on the sink's port yet
    worker = await started(store, [HttpSender(sink.url)], clock)
    await emit(store, 3, worker)
    await until(lambda: worker.failures == 1 and clock.sleepers == 1)
    clock.advance(1.0)  # first retry after 1 s: still down, so the next one waits 2 s
    await until(lambda: worker.failures == 2 and clock.sleepers == 1)
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert worker.failures == 2 and clock.sleepers == 1  # not yet
    await sink.start()
    try:
        clock.advance(0.1)
        await sink.wait_for(3)
        await until(lambda: worker.failures == 0)
        assert await store.outbox_pending() == []
        asleep = clock.sleepers
        clock.advance(3600)  # nothing is left to retry: the worker wakes, finds nothing and sleeps again
        await until(lambda: clock.sleepers == asleep)
        events = sink.events()
        assert len(events) == 3 and len({e["context"]["id"] for e in events}) == 3
        assert [e["subject"]["content"]["artifactId"].rsplit("=", 1)[1] for e in events] == ["1.0.0", "1.0.1", "1.0.2"]
        for event in events:
            validate(event)
    finally:
        await worker.stop()
        await sink.stop()


async def test_an_error_answer_is_retried(store: SqliteStateStore) -> None:
    class FlakySink(Sink):
        refusals: int = 1

        async def _receive(self, request: Any) -> Any:
            from aiohttp import web

            if self.refusals:
                self.refusals -= 1
                return web.Response(status=503)
            return await super()._receive(request)

    sink, clock = FlakySink(), ManualClock()
    await sink.start()
    try:
        worker = await started(store, [HttpSender(sink.url)], clock)
        await emit(store, 1, worker)
        await until(lambda: worker.failures == 1 and clock.sleepers == 1)
        assert sink.received == []
        clock.advance(1.0)
        await sink.wait_for(1)
        await worker.stop()
    finally:
        await sink.stop()


async def test_events_a_stopped_process_left_are_sent_after_a_restart(tmp_path: Path, sink: Sink) -> None:
    path = tmp_path / "state.sqlite3"
    first = SqliteStateStore(path)
    await emit(first, 2)  # the process stops before any delivery
    await first.close()
    second = SqliteStateStore(path)
    try:
        assert len(await second.outbox_pending()) == 2
        worker = await started(second, [HttpSender(sink.url)])
        await sink.wait_for(2)
        await drained(worker.store)
        await worker.stop()
        assert await second.outbox_pending() == []
        assert [e["context"]["type"] for e in sink.events()] == [DEPLOYED, UPGRADED]
    finally:
        await second.close()
    third = SqliteStateStore(path)  # and what was delivered is not sent again
    try:
        assert await third.outbox_pending() == []
        assert len(sink.received) == 2
    finally:
        await third.close()


async def test_the_nats_subject_gets_structured_cloudevents(
    store: SqliteStateStore, nats_url: str, validate: Validate
) -> None:
    nc = await nats.connect(nats_url)
    received: list[Any] = []
    await nc.subscribe("cdevents.keptn", cb=_collector(received))
    await nc.flush()
    worker = await started(store, [NatsSender(nats_url, "cdevents.keptn")])
    try:
        await emit(store, 2, worker)
        await until(lambda: len(received) == 2)
    finally:
        await worker.stop()
        await nc.close()
    for msg in received:
        assert msg.headers == {"content-type": "application/cloudevents+json; charset=utf-8"}
        document = json.loads(msg.data)
        validate(document["data"])
        assert document["type"] == document["data"]["context"]["type"]
    assert [json.loads(m.data)["type"] for m in received] == [DEPLOYED, UPGRADED]


def _collector(received: list[Any]) -> Callable[[Any], Any]:
    async def collect(msg: Any) -> None:
        received.append(msg)

    return collect


async def test_a_sender_that_took_an_event_does_not_get_it_again_while_another_is_retried(
    store: SqliteStateStore, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    received: list[Any] = []
    await nc.subscribe("cdevents.keptn", cb=_collector(received))
    await nc.flush()
    sink, clock = Sink(), ManualClock()
    worker = await started(store, [HttpSender(sink.url), NatsSender(nats_url, "cdevents.keptn")], clock)
    try:
        await emit(store, 1, worker)
        await until(lambda: len(received) == 1 and worker.failures == 1 and clock.sleepers == 1)
        await sink.start()
        clock.advance(1.0)
        await sink.wait_for(1)
        await until(lambda: worker.failures == 0)
        await nc.flush()
        assert len(received) == 1 and len(sink.received) == 1
    finally:
        await worker.stop()
        await sink.stop()
        await nc.close()


async def test_an_unreachable_nats_server_fails_the_send_and_keeps_the_event(store: SqliteStateStore) -> None:
    port = free_port()
    sender = NatsSender(f"nats://127.0.0.1:{port}", "cdevents.keptn", timeout=5.0)
    clock = ManualClock()
    worker = await started(store, [sender], clock)
    try:
        await emit(store, 1, worker)
        await until(lambda: worker.failures == 1 and clock.sleepers == 1)
        assert len(await store.outbox_pending()) == 1
    finally:
        await worker.stop()


# ---- the JetStream store's outbox ----


@pytest.fixture
def js_url(tmp_path: Path) -> Iterator[str]:
    with NatsServer(jetstream=True, store_dir=tmp_path / "js") as url:
        yield url


async def test_the_jetstream_outbox_keeps_events_and_histories_for_replicas(js_url: str, sink: Sink) -> None:
    clock = ManualClock()
    connections = [await nats.connect(js_url) for _ in range(2)]
    a, b = [
        await JetStreamStateStore.bind(nc.jetstream(), owner=f"replica-{i}", clock=clock, lease=30.0)
        for i, nc in enumerate(connections)
    ]
    try:
        await emit(a, 2)
        pending = await a.outbox_pending()
        assert len(pending) == 2
        await a.outbox_add(pending[0][0], b"another body")  # adding an id again changes nothing
        assert await a.outbox_pending() == pending
        assert await b.outbox_pending() == []  # replica-0 is alive: it sends its own events
        assert await b.memo_get("history/sockshop/dev/carts") == await a.memo_get("history/sockshop/dev/carts")
        clock.advance(31)  # replica-0 did not deliver them within a lease: another replica does
        assert [event_id for event_id, _ in await b.outbox_pending()] == [event_id for event_id, _ in pending]
        worker = await started(b, [HttpSender(sink.url)], clock)
        await sink.wait_for(2)
        await drained(worker.store)
        await worker.stop()
        assert await a.outbox_pending() == [] and await b.outbox_pending() == []
        assert [e["context"]["type"] for e in sink.events()] == [DEPLOYED, UPGRADED]
        assert await a.memo_get("no such key") is None
    finally:
        for store in (a, b):
            await store.close()
        for nc in connections:
            await nc.close()
