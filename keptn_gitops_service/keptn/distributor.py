"""Keptn through the distributor sidecar, the way helm-service runs.

In: the distributor POSTs each matching event to ``http://127.0.0.1:8080/`` — structured CloudEvents JSON (with
``data.temporaryData.distributor.subscriptionID``), or binary mode (``ce-*`` headers, data as the body) from
other senders; we answer 200 at once (as helm-service's sdk-go receiver does) and handle the event in a task.
Out: replies are POSTed as structured CloudEvents to the sidecar's ``/event`` endpoint
(``http://localhost:8081/event``; it accepts only structured mode), retrying while the sidecar is not ready.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from keptn_gitops_service.errors import TransportError
from keptn_gitops_service.keptn.events import CONTENT_TYPE, MAX_EVENT_BYTES, KeptnEvent, to_structured
from keptn_gitops_service.keptn.transport import Handler, HandlerTasks

log = structlog.get_logger(__name__)

DEFAULT_EVENT_URL = "http://localhost:8081/event"


class DistributorTransport:
    """Receives events from the distributor over HTTP and posts replies back to it."""

    mode = "distributor"

    def __init__(self, event_url: str = DEFAULT_EVENT_URL, *, retry_for: float = 120.0) -> None:
        self.event_url = event_url
        self._retry_for = retry_for
        self._handler: Handler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks = HandlerTasks()

    @property
    def connected(self) -> bool:
        return self._session is not None and self._handler is not None

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def subscribe(self, handler: Handler) -> None:
        self._handler = handler
        log.info("receiving events from the distributor sidecar", replies_to=self.event_url)

    async def receive(self, request: web.Request) -> web.Response:
        """The aiohttp route for the distributor's POSTs."""
        if self._handler is None:
            return web.json_response({"error": "not ready"}, status=503)
        if (request.content_length or 0) > MAX_EVENT_BYTES:
            return web.json_response({"error": f"event larger than {MAX_EVENT_BYTES} bytes"}, status=413)
        body = await request.content.read(MAX_EVENT_BYTES + 1)
        if len(body) > MAX_EVENT_BYTES:
            return web.json_response({"error": f"event larger than {MAX_EVENT_BYTES} bytes"}, status=413)
        if "ce-id" in request.headers:
            body = binary_to_structured(request.headers, body)
        self._tasks.spawn(self._handler(body, _no_ack))
        return web.Response(status=200)

    async def publish(self, event: KeptnEvent) -> None:
        """POST a reply to the sidecar; retry (backing off) while it is not reachable or answers 5xx."""
        session = self._session
        if session is None:
            raise TransportError("the distributor transport is not connected")
        body, delay = to_structured(event), 0.2
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        while True:
            problem = await _post(session, self.event_url, body)
            if problem is None:
                return
            if loop.time() + delay > deadline:
                raise TransportError(f"the distributor did not accept {event.type}: {problem}")
            log.warning("distributor not ready; retrying", type=event.type, problem=problem, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self, *, grace: float = 30.0) -> None:
        self._handler = None
        await self._tasks.drain(grace)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self) -> None:
        await self._tasks.wait_idle()


def binary_to_structured(headers: Mapping[str, str], body: bytes) -> bytes:
    """A binary-mode CloudEvent (``ce-*`` headers + data body) as structured JSON (CloudEvents HTTP binding)."""
    event: dict[str, Any] = {
        name[3:].lower(): value for name, value in headers.items() if name.lower().startswith("ce-")
    }
    content_type = headers.get("Content-Type", "application/json")
    event["datacontenttype"] = content_type
    if body:
        try:
            event["data"] = json.loads(body) if "json" in content_type else body.decode()
        except (ValueError, UnicodeDecodeError):
            event["data"] = body.decode(errors="replace")
    return json.dumps(event).encode()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> str | None:
    """``None`` on a 2xx answer, else what went wrong."""
    try:
        async with session.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}) as response:
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f"{exc.__class__.__name__}: {exc}"


async def _no_ack() -> None:
    """HTTP delivery from the distributor has nothing to acknowledge beyond the 200."""
