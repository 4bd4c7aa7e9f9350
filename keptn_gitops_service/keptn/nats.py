"""Keptn over NATS: subject = event type, a queue group per integration (go-utils' cp-connector).

[go-utils:pkg/sdk/connector/nats/nats.go] ``QueueSubscribe(subject, queueGroup)`` and ``Publish(*event.Type,
json)``. Beyond go-utils: when Keptn's NATS keeps its ``keptn`` JetStream stream (Keptn ≥ 0.14, created by the
shipyard-controller on ``sh.keptn.>``), triggers are read through durable pull
consumers of our own, acknowledged only once the handler has persisted them — so triggers published while the
service was down or restarting are still answered. Without the stream, the core queue subscription is used
(at most once, like every go-utils service). Each message is handled in its own task. nats-py's exceptions
become :class:`TransportError`.

Recovery from a killed process is bounded by ``ack_wait`` (the service passes its state lease): a process only
fetches as many triggers per subject as it records at once (:data:`UNRECORDED_PER_SUBJECT`), and a trigger it
fetched but had not recorded when it died comes back to another replica after ``ack_wait``. While a trigger is
being recorded it is kept from redelivery by in-progress acknowledgements, every third of ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from keptn_gitops_service.errors import TransportError, describe_error, stop_if_cancelled
from keptn_gitops_service.keptn.events import KeptnEvent, to_structured
from keptn_gitops_service.keptn.transport import Handler, HandlerTasks

log = structlog.get_logger(__name__)

KEPTN_STREAM = "keptn"
PUBLISH_CONFIRM_TIMEOUT = 300.0
DEDUPLICATION_HEADER = "Nats-Msg-Id"
DEFAULT_ACK_WAIT = 30.0
"""Seconds JetStream waits for the acknowledgement of a fetched trigger before it delivers it again."""
UNRECORDED_PER_SUBJECT = 2
"""How many fetched, not yet acknowledged (recorded) triggers a process holds per subject: what a kill can delay."""


class NatsTransport:
    """Receives triggers on ``subjects`` (shared by ``queue_group``) and publishes replies."""

    def __init__(
        self, url: str, subjects: Sequence[str], queue_group: str, *, name: str, ack_wait: float = DEFAULT_ACK_WAIT
    ) -> None:
        self.url = url
        self.subjects = tuple(subjects)
        self.queue_group = queue_group
        self.name = name
        self.ack_wait = ack_wait
        """The longest ``ack_wait`` of our durable consumers: an existing consumer with a longer one is updated."""
        self.mode = "disconnected"
        """``jetstream`` (at least once), ``core`` (at most once) or ``disconnected``."""
        self._nc: Client | None = None
        self._tasks = HandlerTasks()
        self._pullers: list[asyncio.Task[None]] = []
        self._subscriptions: list[Any] = []  # ours only: the client has internal ones (request inbox) too
        self._handler: Handler | None = None

    async def connect(self) -> None:
        try:
            self._nc = await nats.connect(
                self.url,
                name=self.name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=5,
                allow_reconnect=True,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to NATS at {self.url}: {exc.__class__.__name__}: {exc}") from None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def subscribe(self, handler: Handler) -> None:
        """Consume from Keptn's stream when it exists, else queue-subscribe on core NATS."""
        self._handler = handler
        await self._receive(handler, self.subjects)

    async def _receive(self, handler: Handler, subjects: Sequence[str]) -> None:
        nc = self._require()
        if await self._has_keptn_stream(nc):
            for subject in subjects:
                psub, ack_wait = await self._durable_consumer(nc, subject)
                self._subscriptions.append(psub)
                self._pullers.append(asyncio.create_task(self._pull(psub, handler, ack_wait), name=f"pull {subject}"))
            self.mode = "jetstream"
            log.info(
                "consuming Keptn's JetStream stream with durable consumers",
                stream=KEPTN_STREAM,
                subjects=list(subjects),
                consumer_prefix=self.queue_group,
            )
            return

        async def on_message(msg: Msg) -> None:
            self._tasks.spawn(handler(msg.data, _no_ack))

        for subject in subjects:
            self._subscriptions.append(await nc.subscribe(subject, queue=self.queue_group, cb=on_message))
        await nc.flush()
        self.mode = "core"
        log.warning(
            "Keptn's JetStream stream is not available: core NATS queue subscription (triggers published "
            "while this service is down are lost)",
            subjects=list(subjects),
            queue_group=self.queue_group,
        )

    async def publish(self, event: KeptnEvent) -> None:
        """Publish and return once it is confirmed: with Keptn's stream, by the stream's acknowledgement that it
        stored the reply (what the shipyard-controller reads; a server's PONG alone does not prove that: a server
        shutting down confirms messages its JetStream no longer stores); without, by a PONG on the connection
        that carried it.

        While NATS is away the reply waits here (up to :data:`PUBLISH_CONFIRM_TIMEOUT`), not in the client's
        reconnect buffer: nats-py's ``flush()`` returns at once while it reconnects, and a reply that only this
        process holds must not be recorded as sent — a restart would lose it. Without a confirmation the reply
        may or may not have arrived, so it is published again. A reply carries ``Nats-Msg-Id:
        <type>/<triggeredid>``, so Keptn's ``keptn`` stream keeps one copy of such a repeat, and of a reply
        re-sent on resume by a process killed after publishing it but before recording that (within the stream's
        duplicate window, 2 minutes by default; core-NATS subscribers see both copies, docs/reliability.md)."""
        nc = self._require()
        body = to_structured(event)
        headers = {DEDUPLICATION_HEADER: f"{event.type}/{event.triggeredid}"} if event.triggeredid else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_CONFIRM_TIMEOUT
        problem = "NATS is not connected"
        warned = False
        while True:
            if nc.is_connected:
                reconnects = nc.stats["reconnects"]
                try:
                    if self.mode == "jetstream":
                        await nc.jetstream().publish(event.type, body, timeout=5, headers=headers)
                        return
                    await nc.publish(event.type, body, headers=headers)
                    await nc.flush(timeout=5)
                except NoRespondersError:  # the server took it, but no stream stores the subject (any more)
                    return
                except (NatsError, OSError, TimeoutError) as exc:
                    problem = exc.__class__.__name__
                else:
                    if nc.is_connected and nc.stats["reconnects"] == reconnects:
                        return
                    problem = "the connection was re-established before the server confirmed"
            if nc.is_closed or loop.time() > deadline:
                raise TransportError(f"NATS did not confirm {event.type}: {problem}")
            if not warned:
                log.warning("NATS unavailable; the reply is sent once it is back", type=event.type, problem=problem)
                warned = True
            await asyncio.sleep(0.5)

    async def resubscribe(self, subjects: Sequence[str]) -> None:
        """Follow new subscriptions from the control plane: receive on ``subjects`` from now on."""
        wanted = tuple(subjects)
        if wanted == self.subjects or self._handler is None:
            self.subjects = wanted
            return
        await self._stop_receiving()
        await self._receive(self._handler, wanted)
        self.subjects = wanted  # only once the server has the new subscriptions: a trigger sent now is received

    async def close(self, *, grace: float = 30.0) -> None:
        """Stop receiving, let running handlers finish for up to ``grace`` seconds, then disconnect."""
        if self._nc is None:
            return
        await self._stop_receiving()
        await self._tasks.drain(grace)
        await self._nc.close()
        self._nc = None
        self.mode = "disconnected"

    async def _stop_receiving(self) -> None:
        for puller in self._pullers:
            puller.cancel()
        for puller in self._pullers:
            with contextlib.suppress(asyncio.CancelledError):
                await puller
        self._pullers.clear()
        for sub in self._subscriptions:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        self._subscriptions.clear()

    async def wait_idle(self) -> None:
        """Return when no handler is running (tests and the demo)."""
        await self._tasks.wait_idle()

    async def _has_keptn_stream(self, nc: Client) -> bool:
        try:
            await nc.jetstream().stream_info(KEPTN_STREAM)
            return True
        except NotFoundError:
            return False
        except (NatsError, TimeoutError):  # no JetStream on this server
            return False

    async def _durable_consumer(
        self, nc: Client, subject: str
    ) -> tuple[nats.js.JetStreamContext.PullSubscription, float]:
        """Our durable consumer for ``subject`` (one per subject works on every JetStream server version) and its
        ack wait. Created with DeliverPolicy.NEW so the stream's history is never replayed; afterwards it resumes
        where it left off, which is what delivers the triggers published while we were away. An existing one
        whose ack wait is longer than :attr:`ack_wait` (a previous version created them with 60 s) is updated;
        a shorter one, set by an operator, is kept."""
        js = nc.jetstream()
        durable = _durable_name(self.queue_group, subject)
        try:
            info = await js.consumer_info(KEPTN_STREAM, durable)
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=durable,
                filter_subject=subject,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=self.ack_wait,
                max_ack_pending=1000,
            )
            info = await js.add_consumer(KEPTN_STREAM, config)
        else:
            current = info.config.ack_wait
            if current is None or current > self.ack_wait:
                try:
                    info = await js.add_consumer(KEPTN_STREAM, replace(info.config, ack_wait=self.ack_wait))
                    log.info("shortened the ack wait of our durable consumer", consumer=durable, ack_wait=self.ack_wait)
                except (NatsError, TimeoutError) as exc:
                    log.warning(
                        "cannot shorten the ack wait of our durable consumer: a killed process's unrecorded "
                        "triggers come back only after the old ack wait",
                        consumer=durable,
                        ack_wait=current,
                        error=describe_error(exc),
                    )
        psub = await js.pull_subscribe_bind(durable, stream=KEPTN_STREAM)
        return psub, float(info.config.ack_wait or self.ack_wait)

    async def _pull(self, psub: nats.js.JetStreamContext.PullSubscription, handler: Handler, ack_wait: float) -> None:
        """Fetch one trigger at a time, at most :data:`UNRECORDED_PER_SUBJECT` unacknowledged."""
        unrecorded = asyncio.Semaphore(UNRECORDED_PER_SUBJECT)
        failures = 0
        while True:
            await unrecorded.acquire()
            fetched = False
            try:
                messages = await psub.fetch(batch=1, timeout=2)
                failures = 0
                for msg in messages:
                    self._tasks.spawn(_Delivery(msg, ack_wait / 3, unrecorded.release).handle(handler))
                    fetched = True
            except NatsTimeoutError:
                stop_if_cancelled()
                continue
            except (NatsError, OSError) as exc:
                stop_if_cancelled()
                failures += 1
                log.warning("fetching from the Keptn stream failed; retrying", error=describe_error(exc))
                await asyncio.sleep(min(10.0, 0.2 * 2**failures))
                continue
            finally:
                if not fetched:
                    unrecorded.release()

    def _require(self) -> Client:
        if self._nc is None:
            raise TransportError("not connected to NATS")
        return self._nc


def _durable_name(group: str, subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{group}-{subject}")


class _Delivery:
    """One fetched trigger until it is acknowledged: in-progress acknowledgements every ``beat`` seconds keep
    JetStream from delivering it again while it is being recorded; ``release`` frees its fetch slot once it is
    acknowledged or its handler ended (unacknowledged: JetStream delivers it again after the ack wait)."""

    def __init__(self, msg: Msg, beat: float, release: Callable[[], None]) -> None:
        self._msg = msg
        self._beat = beat
        self._release: Callable[[], None] | None = release
        self._acked = False

    async def handle(self, handler: Handler) -> None:
        heartbeat = asyncio.create_task(self._in_progress(), name="in-progress acknowledgements")
        try:
            await handler(self._msg.data, self.ack)
        finally:
            heartbeat.cancel()
            self._settle()

    async def ack(self) -> None:
        if not self._acked:
            self._acked = True
            self._settle()
            with contextlib.suppress(NatsError):
                await self._msg.ack()

    def _settle(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    async def _in_progress(self) -> None:
        while not self._acked:
            await asyncio.sleep(self._beat)
            if self._acked:
                return
            try:
                await self._msg.in_progress()
            except (NatsError, OSError) as exc:
                log.warning("could not extend the ack wait of a trigger being recorded", error=describe_error(exc))


async def _no_ack() -> None:
    """Core NATS has nothing to acknowledge."""
