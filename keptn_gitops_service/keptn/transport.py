"""The interfaces between the workflow and whatever carries Keptn events (NATS, the distributor, a terminal)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from keptn_gitops_service.keptn.events import KeptnEvent

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
