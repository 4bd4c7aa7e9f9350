"""Keptn's uniform registration, like go-utils' sdk.

When ``KEPTN_API_ENDPOINT``/``KEPTN_API_TOKEN`` are set the service registers itself
(``POST <api>/controlPlane/v1/uniform/registration`` with ``x-token``; body ``models.Integration`` as in
test/fixtures/upstream/keptn/derived/10), pings every 5 s (``PUT .../{id}/ping``, whose answer carries the current
subscriptions — edited in Keptn's Bridge), follows those subscriptions (subjects and project/stage/service
filters), and reports errored tasks to ``/v1/log``. Control-plane outages never stop the service: it keeps its
last known subscriptions and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from keptn_gitops_service.errors import TransportError, describe_error

log = structlog.get_logger(__name__)

PING_INTERVAL = 5.0


@dataclass(frozen=True)
class Subscription:
    """One ``EventSubscription``: an event subject and optional project/stage/service filters (empty = all)."""

    event: str
    projects: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    id: str = ""

    def matches(self, subject: str, data: Mapping[str, Any]) -> bool:
        """Like go-utils' eventmatcher: the subject equals ``event`` and each non-empty filter lists the value."""
        if subject != self.event:
            return False
        return all(
            not allowed or data.get(key) in allowed
            for key, allowed in (("project", self.projects), ("stage", self.stages), ("service", self.services))
        )


@dataclass(frozen=True)
class Identity:
    """Who registers: the registration name is also the NATS queue group."""

    name: str
    namespace: str
    node: str
    pod: str
    version: str
    deployment: str = ""
    """The Deployment that runs us (``K8S_DEPLOYMENT_NAME``); ``name`` when unknown."""


def registration_body(identity: Identity, topics: Sequence[str]) -> dict[str, Any]:
    """``models.Integration`` for the first registration (test/fixtures/upstream/keptn/derived/10)."""
    return {
        "id": "",
        "name": identity.name,
        "metadata": {
            "hostname": identity.node,
            "integrationversion": identity.version,
            "distributorversion": "0.15.0",  # what go-utils' sdk hard-codes
            "location": "control-plane",
            "kubernetesmetadata": {
                "namespace": identity.namespace,
                "podname": identity.pod,
                "deploymentname": identity.deployment or identity.name,
            },
            "lastseen": "0001-01-01T00:00:00Z",
        },
        "subscriptions": [
            {"id": "", "event": t, "filter": {"projects": None, "stages": None, "services": None}} for t in topics
        ],
    }


def parse_subscriptions(integration: Mapping[str, Any]) -> tuple[Subscription, ...]:
    """The subscriptions of an ``Integration`` answer (ping), skipping malformed entries."""
    found = []
    for item in integration.get("subscriptions") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("event"), str) or not item["event"]:
            continue
        filters = item.get("filter") or {}
        found.append(
            Subscription(
                event=item["event"],
                projects=_names(filters.get("projects")),
                stages=_names(filters.get("stages")),
                services=_names(filters.get("services")),
                id=str(item.get("id") or ""),
            )
        )
    return tuple(found)


class UniformClient:
    """Registration, heartbeat and error logs against the Keptn control plane."""

    def __init__(
        self, endpoint: str, token: str, identity: Identity, topics: Sequence[str], *, interval: float = PING_INTERVAL
    ) -> None:
        self._base = endpoint.rstrip("/") + "/controlPlane/v1"
        self._headers = {"x-token": token, "Content-Type": "application/json"}
        self.identity = identity
        self._topics = tuple(topics)
        self._interval = interval
        self._session: aiohttp.ClientSession | None = None
        self.integration_id = ""
        self.subscriptions: tuple[Subscription, ...] | None = None

    async def register(self) -> str:
        body = registration_body(self.identity, self._topics)
        answer = await self._call("POST", "/uniform/registration", body)
        self.integration_id = str(answer.get("id") or "")
        if not self.integration_id:
            raise TransportError("the Keptn control plane answered the registration without an id")
        log.info("registered with the Keptn control plane", integration_id=self.integration_id)
        return self.integration_id

    async def ping(self) -> tuple[Subscription, ...]:
        answer = await self._call("PUT", f"/uniform/registration/{self.integration_id}/ping", None)
        return parse_subscriptions(answer)

    async def run(self, on_change: Callable[[tuple[Subscription, ...]], Awaitable[None]]) -> None:
        """Register (retrying), then ping every interval and report subscription changes; never raises."""
        while not self.integration_id:
            try:
                await self.register()
            except TransportError as exc:
                log.warning("registration failed; retrying", error=describe_error(exc))
                await asyncio.sleep(self._interval)
        while True:
            try:
                subscriptions = await self.ping()
                if subscriptions != self.subscriptions:
                    self.subscriptions = subscriptions
                    await on_change(subscriptions)
            except TransportError as exc:
                log.warning("heartbeat failed; keeping the last subscriptions", error=describe_error(exc))
            await asyncio.sleep(self._interval)

    async def log_error(self, task: str, shkeptncontext: str, triggeredid: str, message: str, now: datetime) -> None:
        """Forward an errored task's message to ``/v1/log`` like go-utils' logforwarder (best effort)."""
        entry = {
            "integrationid": self.integration_id,
            "message": message,
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "shkeptncontext": shkeptncontext,
            "task": task,
            "triggeredid": triggeredid,
        }
        with contextlib.suppress(TransportError):
            await self._call("POST", "/log", {"logs": [entry]})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.request(method, self._base + path, json=body, headers=self._headers) as response:
                if response.status >= 300:
                    raise TransportError(f"{method} {path}: the Keptn control plane answered HTTP {response.status}")
                answer = await response.json(content_type=None) if response.content_length != 0 else {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise TransportError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
        return answer if isinstance(answer, dict) else {}


def _names(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
