"""Keptn events → keptn-gitops-service → a commit → the real Flux controllers apply it on a real API server →
the service reads the status Flux wrote and answers Keptn.

Nothing here is simulated: Flux fetches the commit over HTTP, builds it with kustomize, applies it with
server-side apply, and every verdict the service sends is checked against the objects in the API server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.environment import Cluster
from e2e.fleet import Fleet, add_helm_service, add_waiting_service
from e2e.fluxcontrollers import FluxControllers
from e2e.keptnside import KeptnBus, deployment_triggered, rollback_triggered, start_service
from e2e.kubeclient import KubeError, condition
from e2e.pods import PodPlane, wait_available
from e2e.processes import Process

ANSWER_TIMEOUT = 240  # seconds; above the service's own wait timeout (keptnside.FLUX_WAIT), so it answers first


async def deliver(keptn: KeptnBus, event: dict[str, Any]) -> dict[str, Any]:
    """Publish ``event``; return the data of its ``.finished``, after checking ``.started`` came first."""
    await keptn.publish(event)
    finished = await keptn.finished(event["id"], ANSWER_TIMEOUT)
    task = event["type"].removeprefix("sh.keptn.event.").removesuffix(".triggered")
    assert [r["type"] for r in keptn.replies_to(event["id"])] == [
        f"sh.keptn.event.{task}.started",
        f"sh.keptn.event.{task}.finished",
    ]
    data: dict[str, Any] = finished["data"]
    return data


async def test_a_delivery_finishes_pass_once_flux_has_applied_the_commit(fleet: Fleet, keptn: KeptnBus) -> None:
    seed = fleet.head()
    event = deployment_triggered(fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")
    data = await deliver(keptn, event)

    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    commit = fleet.head()
    assert commit != seed and data["deployment"]["gitCommit"] == commit
    # What the service reported is what Flux did: our commit applied, the new image in the cluster.
    ks = fleet.kustomization("carts")
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"
    assert condition(ks, "Ready")["reason"] == "ReconciliationSucceeded"
    assert fleet.deployment_image("carts") == "docker.io/keptnexamples/carts:0.13.1"
    # The service answered from that status, not before it...
    assert f"lastAppliedRevision main@sha1:{commit}" in data["message"], data["message"]
    # ...and the commit was fetched at once because the service asked (the GitRepository's interval is 10m).
    repo = fleet.git_repository()
    requested = repo["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    assert repo["status"]["lastHandledReconcileAt"] == requested
    assert repo["status"]["artifact"]["revision"] == f"main@sha1:{commit}"


async def test_a_revision_flux_cannot_build_finishes_fail_with_fluxs_reason(fleet: Fleet, keptn: KeptnBus) -> None:
    seed = fleet.head()
    event = deployment_triggered(fleet, "orders", "docker.io/keptnexamples/orders:0.13.1")
    data = await deliver(keptn, event)

    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    commit = fleet.head()
    assert commit != seed
    ks = fleet.kustomization("orders")
    ready = condition(ks, "Ready")
    # Flux attempted our commit (not only the seed, which failed the same way) and rejected it.
    assert ks["status"]["lastAttemptedRevision"] == f"main@sha1:{commit}"
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    assert "service.yaml" in ready["message"]
    # The answer carries Flux's own reason and message.
    assert "Flux failed to apply the revision: BuildFailed: " in data["message"], data["message"]
    assert ready["message"].strip() in data["message"]
    assert f"lastAttemptedRevision main@sha1:{commit}" in data["message"]
    try:
        fleet.deployment_image("orders")
    except KubeError as exc:
        assert exc.status == 404
    else:
        raise AssertionError("Flux applied an overlay that does not build")


async def test_a_rollback_restores_the_version_flux_applied_before(fleet: Fleet, keptn: KeptnBus) -> None:
    deployment = deployment_triggered(fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")
    assert (await deliver(keptn, deployment))["result"] == "pass"
    deployed = fleet.head()
    assert fleet.deployment_image("carts") == "docker.io/keptnexamples/carts:0.13.1"

    rollback = rollback_triggered(deployment, result="fail")
    data = await deliver(keptn, rollback)

    assert (data["status"], data["result"]) == ("succeeded", "fail"), data["message"]  # helm-service echoes
    reverted = fleet.head()
    assert data["message"].startswith(f"Rolled back {deployed[:12]} with commit "), data["message"]
    assert f"lastAppliedRevision main@sha1:{reverted}" in data["message"], data["message"]  # it waited for Flux
    assert fleet.kustomization("carts")["status"]["lastAppliedRevision"] == f"main@sha1:{reverted}"
    assert fleet.deployment_image("carts") == "docker.io/keptnexamples/carts:0.13.0"


async def test_with_wait_true_the_delivery_passes_once_the_deployment_is_available(
    pods: PodPlane, fleet: Fleet, keptn: KeptnBus
) -> None:
    added = add_waiting_service(fleet, "web")
    event = deployment_triggered(fleet, "web", "docker.io/keptnexamples/web:0.13.1")
    data = await deliver(keptn, event)

    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    commit = fleet.head()
    assert commit != added
    ks = fleet.kustomization("web")
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"
    assert condition(ks, "Ready")["reason"] == "ReconciliationSucceeded"
    assert condition(ks, "Healthy")["status"] == "True", ks["status"]  # Flux checked the Deployment's rollout
    deployment = wait_available(fleet.kube, "web", fleet.namespace, timeout=1)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/keptnexamples/web:0.13.1"


async def test_with_wait_true_a_rollout_that_never_completes_fails_with_health_check_failed(
    pods: PodPlane, fleet: Fleet, keptn: KeptnBus
) -> None:
    add_waiting_service(fleet, "stuck", stuck=True)
    event = deployment_triggered(fleet, "stuck", "docker.io/keptnexamples/stuck:0.13.1")
    data = await deliver(keptn, event)

    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    commit = fleet.head()
    ks = fleet.kustomization("stuck")
    ready = condition(ks, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HealthCheckFailed"), ks["status"]
    assert ks["status"]["lastAttemptedRevision"] == f"main@sha1:{commit}"
    assert "Flux failed to apply the revision: HealthCheckFailed: " in data["message"], data["message"]
    assert ready["message"].strip() in data["message"]
    deployment = fleet.kube.get("apps/v1", "Deployment", "stuck", fleet.namespace)
    assert deployment["status"]["availableReplicas"] == 1  # the old pod still runs; the new one found no room


HELM_CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: file://{bare}
    branch: main
    author: {{name: keptn-gitops-service, email: gitops@keptn.invalid}}
rules:
  - match: {{project: {project}, stage: "*", service: "*"}}
    repository: fleet
    updates:
      - file: "helm/{{stage}}/{{service}}/helmrelease.yaml"
        helmRelease: {{values: {{image.tag: "{{image.tag}}"}}}}
    wait:
      flux:
        kind: HelmRelease
        name: "{{service}}"
        namespace: "{{project}}-{{stage}}"
        kustomization: {{name: "helm-{{service}}", namespace: "{{project}}-{{stage}}"}}
      timeout: 3m
"""


@pytest.fixture
def helm_service(fleet: Fleet, cluster: Cluster, nats_url: str, tmp_path: Path) -> Iterator[Process]:
    config = HELM_CONFIG.format(bare=fleet.bare, project=fleet.project)
    process = start_service(fleet, nats_url, cluster.kubeconfig, tmp_path, config_text=config)
    try:
        yield process
    finally:
        process.stop()


async def test_a_helm_release_passes_once_helm_controller_released_the_commit(
    pods: PodPlane, helm: FluxControllers, fleet: Fleet, helm_service: Process, keptn_bus: KeptnBus
) -> None:
    add_helm_service(fleet, "web")
    event = deployment_triggered(fleet, "web", "docker.io/keptnexamples/web:0.13.1")
    data = await deliver(keptn_bus, event)

    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    commit = fleet.head()
    assert fleet.kustomization("helm-web")["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"
    release = fleet.kube.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "web", fleet.namespace)
    assert condition(release, "Ready")["status"] == "True"
    assert release["status"]["history"][0]["status"] == "deployed"
    deployment = wait_available(fleet.kube, "web", fleet.namespace, timeout=1)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/keptnexamples/web:0.13.1"


async def test_a_helm_upgrade_whose_rollout_never_completes_fails_as_helm_controller_stalls(
    pods: PodPlane, helm: FluxControllers, fleet: Fleet, helm_service: Process, keptn_bus: KeptnBus
) -> None:
    add_helm_service(fleet, "stuck", stuck=True)
    event = deployment_triggered(fleet, "stuck", "docker.io/keptnexamples/stuck:0.13.1")
    data = await deliver(keptn_bus, event)

    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    release = fleet.kube.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "stuck", fleet.namespace)
    ready = condition(release, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "UpgradeFailed"), release["status"]
    # No remediation configured: helm-controller gave up after the first attempt and said so (Stalled=True
    # RetriesExceeded, which the service read; helm-controller may have reconciled again since).
    assert data["message"].startswith("Flux stalled: RetriesExceeded: Failed to upgrade after 1 attempt(s). "), data[
        "message"
    ]
    assert "Ready=False (UpgradeFailed: Helm upgrade failed for release " in data["message"], data["message"]
