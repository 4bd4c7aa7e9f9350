"""Keptn events → keptn-gitops-service → a commit → the real Argo CD (application-controller, repo-server,
argocd-server) syncs it into the real API server → the service reads the Application and answers Keptn.

Argo CD is v2.14 built from its Go module (build.py); nothing here is simulated. Each test makes its own
repository (argofleet.py) and Application, and checks every verdict against what Argo CD wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.argofleet import STAGE, ArgoFleet
from e2e.argoplane import NAMESPACE, ArgoPlane, application, dump
from e2e.environment import Cluster
from e2e.keptnside import KeptnBus, deployment_triggered, start_service
from e2e.kubeclient import wait_until
from e2e.processes import Process

ANSWER_TIMEOUT = 300  # seconds; above every wait timeout configured below, so the service answers first
SYNC_TIMEOUT = 120  # seconds for Argo CD to sync the seed commit of a new Application

CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: file://{bare}
    branch: main
    author: {{name: keptn-gitops-service, email: gitops@keptn.invalid}}
rules:
  - match: {{project: {project}, stage: "*", service: carts}}
    repository: fleet
    updates:
      - file: "argo/{{stage}}/{{service}}/configmap.yaml"
        yamlPath: data.image
        value: "{{image}}"
    wait:
      argocd: {wait}
      timeout: {timeout}
  - match: {{project: {project}, stage: "*", service: orders}}
    repository: fleet
    updates:
      - file: "argo/{{stage}}/{{service}}/configmap.yaml"
        yamlPath: metadata.labels.image
        value: "{{image}}"
    wait:
      argocd: {wait}
      timeout: {timeout}
"""


def kubernetes_wait(*, sync: bool = False) -> str:
    sync_key = ", sync: true" if sync else ""
    return f'{{application: "{{project}}-{{service}}", namespace: {NAMESPACE}, api: kubernetes{sync_key}}}'


class ArgoService:
    """Starts keptn-gitops-service for an :class:`ArgoFleet` with a given ``wait.argocd`` and timeout."""

    def __init__(self, fleet: ArgoFleet, cluster: Cluster, nats_url: str, tmp_path: Path) -> None:
        self._fleet, self._cluster, self._nats_url, self._tmp = fleet, cluster, nats_url, tmp_path
        self._process: Process | None = None

    def start(self, wait: str, *, timeout: str = "3m", env: dict[str, str] | None = None) -> None:
        config = CONFIG.format(bare=self._fleet.bare, project=self._fleet.project, wait=wait, timeout=timeout)
        self._process = start_service(
            self._fleet, self._nats_url, self._cluster.kubeconfig, self._tmp, extra_env=env, config_text=config
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


@pytest.fixture
def argo_service(argo_fleet: ArgoFleet, cluster: Cluster, nats_url: str, tmp_path: Path) -> Iterator[ArgoService]:
    service = ArgoService(argo_fleet, cluster, nats_url, tmp_path)
    try:
        yield service
    finally:
        service.stop()


def create_application(argo: ArgoPlane, fleet: ArgoFleet, service: str, **options: Any) -> dict[str, Any]:
    """Create the Application of ``service`` and wait until Argo CD synced the seed commit into the namespace."""
    name = fleet.app_name(service)
    argo.kube.create(
        application(name, repo_url=fleet.url, path=f"argo/{STAGE}/{service}", namespace=fleet.namespace, **options)
    )
    seed = fleet.head()
    if options.get("automated"):
        done = lambda app: _synced_healthy(app, seed)  # noqa: E731
    else:  # without auto-sync the test syncs the seed itself, as an operator would once
        wait_until(lambda: bool(_status(argo.application(name)).get("reconciledAt")), what="refreshed", timeout=60)
        argo.kube.merge_patch(
            "argoproj.io/v1alpha1",
            "Application",
            name,
            NAMESPACE,
            {"operation": {"initiatedBy": {"username": "e2e"}, "sync": {"revision": seed}}},
        )
        done = lambda app: _synced_healthy(app, seed)  # noqa: E731
    return argo.kube.wait_for(
        "argoproj.io/v1alpha1", "Application", name, NAMESPACE, done, what="synced to the seed", timeout=SYNC_TIMEOUT
    )


def _status(app: dict[str, Any]) -> dict[str, Any]:
    return app.get("status") or {}


def _synced_healthy(app: dict[str, Any], revision: str) -> bool:
    status = _status(app)
    return (
        not app.get("operation")
        and (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("sync") or {}).get("revision") == revision
        and (status.get("health") or {}).get("status") == "Healthy"
        and (status.get("operationState") or {}).get("phase") == "Succeeded"
    )


async def deliver(keptn: KeptnBus, event: dict[str, Any]) -> dict[str, Any]:
    await keptn.publish(event)
    finished = await keptn.finished(event["id"], ANSWER_TIMEOUT)
    data: dict[str, Any] = finished["data"]
    return data


async def test_argo_cd_auto_sync_deploys_the_commit_and_the_delivery_passes(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "carts", automated=True)
    argo_service.start(kubernetes_wait())
    seed = argo_fleet.head()
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("carts"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    commit = argo_fleet.head()
    assert commit != seed and data["deployment"]["gitCommit"] == commit
    # What the service reported is what Argo CD did: our commit synced and applied.
    status = _status(app)
    assert status["sync"] == {**status["sync"], "status": "Synced", "revision": commit}
    assert status["operationState"]["syncResult"]["revision"] == commit
    assert status["health"]["status"] == "Healthy"
    assert argo_fleet.config_map("carts")["data"]["image"] == "docker.io/keptnexamples/carts:0.13.1"
    assert f"Argo CD deployed commit {commit[:12]}" in data["message"], data["message"]
    assert f"sync Synced to {commit[:12]}" in data["message"], data["message"]
