"""Keptn over core NATS, like go-utils' cp-connector: queue subscription per subject, subject = event type.

[go-utils:pkg/sdk/connector/nats/nats.go] ``QueueSubscribe(subject, queueGroup)`` and ``Publish(*event.Type,
json)``. Each message is handled in its own task (go-utils uses a goroutine per event), so a long wait never
blocks the next trigger. nats-py's exceptions become :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from keptn_gitops_service.errors import TransportError
from keptn_gitops_service.keptn.events import KeptnEvent, to_structured
from keptn_gitops_service.keptn.transport import Handler

log = structlog.get_logger(__name__)


class NatsTransport:
    """Receives triggers on ``subjects`` in ``queue_group`` and publishes replies."""

    def __init__(self, url: str, subjects: Sequence[str], queue_group: str, *, name: str) -> None:
        self.url = url
        self.subjects = tuple(subjects)
        self.queue_group = queue_group
        self.name = name
        self._nc: Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
        nc = self._require()

        async def on_message(msg: Msg) -> None:
            task = asyncio.create_task(handler(msg.data), name=f"handle {msg.subject}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        for subject in self.subjects:
            await nc.subscribe(subject, queue=self.queue_group, cb=on_message)
        await nc.flush()
        log.info("subscribed", subjects=list(self.subjects), queue_group=self.queue_group, url=self.url)

    async def publish(self, event: KeptnEvent) -> None:
        nc = self._require()
        try:
            await nc.publish(event.type, to_structured(event))
            await nc.flush(timeout=10)
        except (NatsError, OSError, TimeoutError) as exc:
            raise TransportError(f"cannot publish {event.type}: {exc.__class__.__name__}: {exc}") from None

    async def close(self, *, grace: float = 30.0) -> None:
        """Stop receiving, let running handlers finish for up to ``grace`` seconds, then disconnect."""
        if self._nc is None:
            return
        for sub in list(self._nc._subs.values()):  # nats-py has no public "unsubscribe all"
            await sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in set(self._tasks):
            task.cancel()
        await self._nc.close()
        self._nc = None

    async def wait_idle(self) -> None:
        """Return when no handler is running (tests and the demo)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _require(self) -> Client:
        if self._nc is None:
            raise TransportError("not connected to NATS")
        return self._nc
