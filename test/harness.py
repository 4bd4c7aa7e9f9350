"""The whole loop with real parts: nats-server, a bare git remote, and the SIMULATED cluster (keptn_gitops_sim.cluster:
the Kubernetes-API test server with simulated Flux)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from support import make_remote, service_config

from keptn_gitops_service.clock import Clock, SystemClock
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.service import Service
from keptn_gitops_service.settings import Settings
from keptn_gitops_service.workflow.pullrequests import ForgeFactory
from keptn_gitops_sim import content
from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.fluxsim import SimulatedFlux
from keptn_gitops_sim.kubeapi import KubeApiServer
from keptn_gitops_sim.runner import shipyard_trigger

TOPICS = (
    "sh.keptn.event.deployment.triggered",
    "sh.keptn.event.rollback.triggered",
    "sh.keptn.event.release.triggered",
)


def triggered(image: str = "docker.io/keptnexamples/carts:0.13.1", **data: Any) -> dict[str, Any]:
    """A deployment.triggered exactly as the shipyard-controller publishes it (upstream keptn/derived/03), with
    ``data`` keys replaced by ``data``."""
    event = shipyard_trigger(image)
    event["data"].update(data)
    return event


def rollback_of(deployment: dict[str, Any], result: str = "fail") -> dict[str, Any]:
    """The rollback.triggered a shipyard's rollback sequence sends after a failed delivery of the same context."""
    event = triggered()
    event["type"] = "sh.keptn.event.rollback.triggered"
    event["shkeptncontext"] = deployment["shkeptncontext"]
    event["data"] = {"project": "sockshop", "stage": "dev", "service": "carts", "result": result, "status": "errored"}
    return event


@dataclass
class Loop:
    """A running service plus everything around it, and what it published."""

    tmp: Path
    nats_url: str
    cluster: SimulatedCluster
    service: Service
    replies: list[dict[str, Any]] = field(default_factory=list)
    _nc: Any = None

    @property
    def remote(self) -> Path:
        return self.cluster.remote

    @property
    def kube(self) -> KubeApiServer:
        return self.cluster.kube

    @property
    def flux(self) -> SimulatedFlux:
        return self.cluster.flux

    async def publish(self, event: dict[str, Any] | bytes) -> None:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        subject = "sh.keptn.event.deployment.triggered"
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            subject = event["type"]
        await self._nc.publish(subject, body)
        await self._nc.flush()

    def replies_to(self, triggered_id: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r.get("triggeredid") == triggered_id]

    async def finished(self, triggered_id: str, timeout: float = 30) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                for reply in self.replies_to(triggered_id):
                    if reply["type"].endswith(".finished"):
                        return reply
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(wait(), timeout)

    async def idle(self) -> None:
        await self.service.transport.wait_idle()


def overlay(service: str) -> str:
    """A service's kustomize overlay at tag 1.0.0, with a Flux setter comment on the tag."""
    return (
        f"# {service}: image tag set by keptn-gitops-service\n"
        "resources: [deployment.yaml]\n"
        "images:\n"
        f"  - name: docker.io/keptnexamples/{service}\n"
        '    newTag: 1.0.0 # {"$imagepolicy": "flux-system:' + service + ':tag"}\n'
    )


def fleet_remote(tmp: Path, files: dict[str, str] | None = None) -> Path:
    """The fleet remote (``tmp / "remote.git"``): the demo's repository, a Helm values file for carts, ``files``."""
    repository = dict(content.REPOSITORY_FILES)
    repository["apps/dev/carts/values.yaml"] = "image:\n  repository: docker.io/keptnexamples/carts\n  tag: 0.13.0\n"
    repository.update(files or {})
    return make_remote(tmp, repository)


async def start_cluster(
    tmp: Path,
    *,
    files: dict[str, str] | None = None,
    legacy: bool = False,
    ks_path: str | None = None,
    run_flux: bool = True,
) -> SimulatedCluster:
    """The SIMULATED cluster over :func:`fleet_remote`, its kubeconfig at ``tmp / "kubeconfig"``."""
    cluster = SimulatedCluster(fleet_remote(tmp, files), legacy_revisions=legacy, kustomization_path=ks_path)
    await cluster.start(tmp / "kubeconfig", run_flux=run_flux)
    return cluster


async def start_loop(
    tmp: Path,
    nats_url: str,
    *,
    clock: Clock | None = None,
    legacy: bool = False,
    config: str | None = None,
    ks_path: str | None = None,
    run_flux: bool = True,
    settings: dict[str, Any] | None = None,
    ping_interval: float = 5.0,
    files: dict[str, str] | None = None,
    cluster: SimulatedCluster | None = None,
    forges: ForgeFactory | None = None,
) -> Loop:
    """The service on ``nats_url`` and ``cluster`` (the ``cluster`` fixture), or on a cluster started here with
    ``files``, ``legacy``, ``ks_path`` and ``run_flux``."""
    if cluster is None:
        cluster = await start_cluster(tmp, files=files, legacy=legacy, ks_path=ks_path, run_flux=run_flux)
    remote = cluster.remote
    service_settings = Settings(
        **{
            "nats_url": nats_url,
            "topics": TOPICS,
            "state_dir": tmp / "state",
            "kubeconfig": str(tmp / "kubeconfig"),
            "log_format": "console",
            "http_port": 0,
            # a wait's only sleeper on a controlled clock is its timeout (progress lines: test/reconcile)
            "progress_interval_seconds": 86400.0,
            **(settings or {}),
        }
    )
    service = Service(
        service_settings,
        parse_config(config or service_config(remote), "test-config.yaml"),
        clock=clock or SystemClock(),
        ping_interval=ping_interval,
        forges=forges,
    )
    await service.start()
    loop = Loop(tmp, nats_url, cluster, service)
    loop._nc = await nats.connect(nats_url)

    async def record(msg: Any) -> None:
        if msg.subject.endswith((".started", ".finished")):
            loop.replies.append(json.loads(msg.data))

    # one subscription, so replies are recorded in the order they were published (two subscriptions are
    # dispatched by separate tasks and may interleave)
    await loop._nc.subscribe("sh.keptn.event.*.*", cb=record)
    await loop._nc.flush()
    return loop


async def stop_loop(loop: Loop) -> None:
    await loop._nc.close()
    await loop.service.stop()
    await loop.cluster.stop()
