"""Where CDEvents go: an HTTP sink (CloudEvents HTTP binding, binary or structured content mode) and a NATS subject
(structured mode). Each :class:`Sender` raises :class:`CDEventsError` when an event was not delivered; the outbox
worker then retries it."""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

import aiohttp
import nats
import structlog
from nats.aio.client import Client as NATS
from yarl import URL

from keptn_gitops_service.cdevents.model import binary, structured
from keptn_gitops_service.errors import CDEventsError, describe_error

log = structlog.get_logger(__name__)

Mode = Literal["binary", "structured"]
SEND_TIMEOUT = 10.0
"""Seconds one delivery may take (connecting included) before it counts as failed."""


class Sender(Protocol):
    """One destination of CDEvents."""

    name: str

    async def send(self, body: bytes) -> None:
        """Deliver one CDEvent (its JSON); raise :class:`CDEventsError` when it was not accepted."""
        ...

    async def close(self) -> None: ...


def shown(url: str) -> str:
    """``url`` for messages: without user, password, query and fragment (they may hold credentials)."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_password(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(an invalid URL)"


class HttpSender:
    """POSTs each event to ``url``; any 2xx answer is a delivery."""

    def __init__(self, url: str, *, mode: Mode = "binary", timeout: float = SEND_TIMEOUT) -> None:
        self.url = url
        self.mode: Mode = mode
        self.name = f"http {shown(url)}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, body: bytes) -> None:
        headers, payload = binary(body) if self.mode == "binary" else structured(body)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self.url, data=payload, headers=headers) as response:
                if not 200 <= response.status < 300:
                    raise CDEventsError(f"the CDEvents sink {shown(self.url)} answered HTTP {response.status}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise CDEventsError(f"cannot reach the CDEvents sink {shown(self.url)}: {describe_error(exc)}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class NatsSender:
    """Publishes each event, as a structured CloudEvent, to ``subject`` on its own NATS connection; a delivery is
    confirmed by a round trip to the server (a JetStream stream on the subject keeps the events)."""

    def __init__(self, nats_url: str, subject: str, *, timeout: float = SEND_TIMEOUT) -> None:
        self.nats_url = nats_url
        self.subject = subject
        self.name = f"nats subject {subject}"
        self._timeout = timeout
        self._nc: NATS | None = None

    async def send(self, body: bytes) -> None:
        headers, payload = structured(body)
        try:
            async with asyncio.timeout(self._timeout):
                if self._nc is None or self._nc.is_closed:
                    # no reconnecting in the background: a lost connection fails this send, and the next one
                    # (the outbox retries) connects anew
                    self._nc = await nats.connect(
                        self.nats_url,
                        name="keptn-gitops-service cdevents",
                        connect_timeout=self._timeout,
                        allow_reconnect=False,
                    )
                await self._nc.publish(self.subject, payload, headers={"content-type": headers["Content-Type"]})
                await self._nc.flush(timeout=max(1, round(self._timeout)))
        except Exception as exc:  # nats-py raises its own errors, timeouts and OSError
            raise CDEventsError(
                f"cannot publish the CDEvent to NATS subject {self.subject}: {describe_error(exc)}"
            ) from None

    async def close(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception as exc:
                log.debug("closing the CDEvents NATS connection failed", error=describe_error(exc))
            self._nc = None
