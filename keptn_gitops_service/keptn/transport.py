"""The interfaces between the workflow and whatever carries Keptn events (NATS, the distributor, a terminal)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from keptn_gitops_service.keptn.events import KeptnEvent
from keptn_gitops_service.tasks import cancel_and_wait

Ack = Callable[[], Awaitable[None]]
"""Acknowledges a received message (idempotent). Called once the trigger is persisted, or known not ours."""
Handler = Callable[[bytes, Ack], Coroutine[Any, Any, None]]


class EventSink(Protocol):
    """Publishes our replies."""

    async def publish(self, event: KeptnEvent) -> None: ...


class Transport(EventSink, Protocol):
    """Where triggers come from and replies go (NATS directly, or the distributor sidecar)."""

    mode: str

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def subscribe(self, handler: Handler) -> None: ...

    async def close(self, *, grace: float = 30.0) -> None: ...

    async def wait_idle(self) -> None: ...


class HandlerTasks:
    """The handler tasks a transport started (one per event): spawn, drain with a grace period, wait until idle."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace: float) -> None:
        """Let running handlers finish for up to ``grace`` seconds, then cancel the rest and wait for them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        await cancel_and_wait(set(self._tasks))

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))
