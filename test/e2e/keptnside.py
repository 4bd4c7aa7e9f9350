"""The Keptn side of the end-to-end test: keptn-gitops-service as its own process (``keptn-gitops-service run``,
configured as in production, by a file and environment variables), and the events a shipyard-controller sends
and receives over NATS."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import nats
from e2e.argofleet import ArgoFleet
from e2e.fleet import STAGE, Fleet
from e2e.processes import Process
from support import WAIT_FLUX, ConfigRule, free_port, service_config

READY_TIMEOUT = 60
FLUX_WAIT = "3m"  # the service's own wait timeout; the tests wait a little longer for its answer


def start_service(
    fleet: Fleet | ArgoFleet,
    nats_url: str,
    kubeconfig: Path,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    wait: str = WAIT_FLUX,
    config_text: str | None = None,
) -> Process:
    """``python -m keptn_gitops_service run`` for ``fleet`` (its rule's ``wait``: a Flux Kustomization, or the one-line
    mapping given); returns once ``/readyz`` answers 200.

    The service pushes to the bare repository with ``file://``; Flux fetches the same repository over HTTP.
    ``config_text`` replaces the configuration file (the Flux rule above by default)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "gitops.yaml"
    rule = ConfigRule(match=f'{{project: {fleet.project}, stage: "*", service: "*"}}', timeout=FLUX_WAIT, wait=wait)
    config.write_text(config_text or service_config(fleet.bare, rule))
    port = port or free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "NATS_URL": nats_url,
        "KUBECONFIG": str(kubeconfig),
        "KEPTN_GITOPS_STATE_DIR": str(workdir / "state"),
        "HTTP_PORT": str(port),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    } | (extra_env or {})
    process = Process(
        "keptn-gitops-service",
        [sys.executable, "-m", "keptn_gitops_service", "run", "--config", str(config)],
        workdir / "logs",
        env=env,
    )
    try:
        process.wait_http_ok(f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT)
    except BaseException:
        process.stop()
        raise
    return process


def deployment_triggered(fleet: Fleet | ArgoFleet, service: str, image: str) -> dict[str, Any]:
    """``deployment.triggered`` as the shipyard-controller sends it after ``keptn trigger delivery``."""
    from harness import triggered  # the unit suite's event, so both suites send the same shape

    return triggered(image, project=fleet.project, stage=STAGE, service=service)


def rollback_triggered(deployment: dict[str, Any], result: str = "fail") -> dict[str, Any]:
    """The ``rollback.triggered`` a shipyard's rollback sequence sends after a failed delivery of the context."""
    from harness import triggered

    event = triggered()
    event["type"] = "sh.keptn.event.rollback.triggered"
    event["shkeptncontext"] = deployment["shkeptncontext"]
    data = deployment["data"]
    event["data"] = {k: data[k] for k in ("project", "stage", "service")} | {"result": result, "status": "errored"}
    return event


class KeptnBus:
    """A NATS connection that publishes triggers and records every ``.started``/``.finished`` reply."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self._nc: Any = None

    async def connect(self, nats_url: str) -> KeptnBus:
        self._nc = await nats.connect(nats_url)

        async def record(msg: Any) -> None:
            if msg.subject.endswith((".started", ".finished")):
                self.replies.append(json.loads(msg.data))

        # one subscription keeps the replies in publishing order (two would be dispatched by separate tasks)
        await self._nc.subscribe("sh.keptn.event.*.*", cb=record)
        await self._nc.flush()
        return self

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def publish(self, event: dict[str, Any]) -> None:
        await self._nc.publish(event["type"], json.dumps(event).encode())
        await self._nc.flush()

    def replies_to(self, triggered_id: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r.get("triggeredid") == triggered_id]

    async def finished(self, triggered_id: str, timeout: float) -> dict[str, Any]:
        """The ``.finished`` reply to ``triggered_id``; the timeout only bounds a hung service."""

        async def wait() -> dict[str, Any]:
            while True:
                for reply in self.replies_to(triggered_id):
                    if reply["type"].endswith(".finished"):
                        return reply
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(wait(), timeout)
