"""An HTTP CloudEvents sink for the CDEvents tests (test/cdevents)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from keptn_gitops_sim.natsd import free_port


@dataclass
class Sink:
    """An HTTP CloudEvents sink on a loopback port: records every request (headers, body) and answers 202."""

    port: int = field(default_factory=free_port)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    """When set to an unset event, requests wait for it before they are answered (a sink that hangs)."""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        self.received.append((dict(request.headers), body))
        self._arrived.set()
        return web.Response(status=202)

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        async def wait() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(wait(), timeout)

    def events(self) -> list[dict[str, Any]]:
        """The CDEvents received in binary mode (the bodies)."""
        return [json.loads(body) for _, body in self.received]


class _Outbox(Protocol):
    async def outbox_pending(self) -> list[tuple[str, bytes]]: ...


async def drained(store: _Outbox, timeout: float = 30.0) -> None:
    """Wait until the store's outbox is empty (every event was delivered to every sender and removed)."""

    async def wait() -> None:
        while await store.outbox_pending():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)
