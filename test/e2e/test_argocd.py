"""Keptn events → keptn-gitops-service → a commit → the real Argo CD (application-controller, repo-server,
argocd-server) syncs it into the real API server → the service reads the Application and answers Keptn.

Argo CD is v2.14 built from its Go module (build.py); nothing here is simulated. Each test makes its own
repository (argofleet.py) and Application, and checks every verdict against what Argo CD wrote.
"""

from __future__ import annotations

import itertools
import re
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.argofleet import STAGE, ArgoFleet
from e2e.argoplane import NAMESPACE, ArgoPlane, application, dump
from e2e.environment import Cluster
from e2e.keptnside import KeptnBus, deployment_triggered, start_service
from e2e.kubeclient import Recorder, wait_until
from e2e.pods import PodPlane, wait_available
from e2e.processes import Process
from support import free_port

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
  - match: {{project: {project}, stage: "*", service: "*"}}
    repository: fleet
    updates:
      - file: "argo/{{stage}}/{{service}}/deployment.yaml"
        containerImage: {{image: "{{image}}"}}
    wait:
      argocd: {wait}
      timeout: {timeout}
"""


def kubernetes_wait(*, sync: bool = False, degraded_grace: str = "") -> str:
    sync_key = ", sync: true" if sync else ""
    grace_key = f", degradedGrace: {degraded_grace}" if degraded_grace else ""
    return f'{{application: "{{project}}-{{service}}", namespace: {NAMESPACE}, api: kubernetes{sync_key}{grace_key}}}'


class ArgoService:
    """Starts keptn-gitops-service for an :class:`ArgoFleet` with a given ``wait.argocd`` and timeout."""

    def __init__(self, fleet: ArgoFleet, cluster: Cluster, nats_url: str, tmp_path: Path) -> None:
        self._fleet, self._cluster, self._nats_url, self._tmp = fleet, cluster, nats_url, tmp_path
        self._process: Process | None = None

    def start(
        self, wait: str, *, timeout: str = "3m", env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        config = CONFIG.format(bare=self._fleet.bare, project=self._fleet.project, wait=wait, timeout=timeout)
        self._process = start_service(
            self._fleet,
            self._nats_url,
            self._cluster.kubeconfig,
            self._tmp,
            extra_env=env,
            port=port,
            config_text=config,
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


def writes(versions: list[dict[str, Any]]) -> str:
    """One line per version of an Application: what the simulator's write order is checked against."""
    lines = []
    for app in versions:
        status = _status(app)
        ops, sync = status.get("operationState") or {}, status.get("sync") or {}
        annotations = sorted((app["metadata"].get("annotations") or {}).keys())
        lines.append(
            f"gen={app['metadata'].get('generation')} op={'yes' if app.get('operation') else 'no'} "
            f"phase={ops.get('phase')} retry={ops.get('retryCount')} result={'yes' if 'syncResult' in ops else 'no'} "
            f"finished={ops.get('finishedAt')} sync={sync.get('status')}@{str(sync.get('revision'))[:7]} "
            f"health={(status.get('health') or {}).get('status')} reconciled={status.get('reconciledAt')} "
            f"conditions={[c.get('type') for c in status.get('conditions') or []]} annotations={annotations}"
        )
    return "\n".join(lines)


def app_recorder(argo: ArgoPlane, name: str) -> Recorder:
    return Recorder(argo.kube, "argoproj.io/v1alpha1", "Application", name, NAMESPACE)


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

    recorder = app_recorder(argo, argo_fleet.app_name("carts"))
    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("carts"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    commit = argo_fleet.head()
    versions = recorder.stop()
    trace = writes(versions)
    assert commit != seed and data["deployment"]["gitCommit"] == commit
    # What the service reported is what Argo CD did: our commit synced and applied.
    status = _status(app)
    assert status["sync"] == {**status["sync"], "status": "Synced", "revision": commit}
    assert status["operationState"]["syncResult"]["revision"] == commit
    assert status["health"]["status"] == "Healthy"
    assert argo_fleet.config_map("carts")["data"]["image"] == "docker.io/keptnexamples/carts:0.13.1"
    assert f"Argo CD deployed commit {commit[:12]}" in data["message"], data["message"]
    assert f"sync Synced to {commit[:12]}" in data["message"], data["message"]
    # The order of writes the simulator (keptn_gitops_sim/argocd.py) follows:
    # auto-sync sets the operation alone first, the status still on the seed, operationState cleared...
    first = next(v for v in versions if v.get("operation"))
    assert _status(first)["sync"]["revision"] == seed, trace
    assert "operationState" not in _status(first), trace
    assert first["operation"]["sync"]["revision"] == commit and first["operation"]["retry"] == {"limit": 5}, trace
    # ...the first Running writes have no syncResult yet, the revision is in the operation...
    running = next(v for v in versions if (_status(v).get("operationState") or {}).get("phase") == "Running")
    assert "syncResult" not in _status(running)["operationState"], trace
    assert _status(running)["operationState"]["operation"]["sync"]["revision"] == commit, trace
    # ...v2.14 removes the refresh annotation but leaves its timestamp...
    annotations = app["metadata"].get("annotations") or {}
    assert "argocd.argoproj.io/refresh" not in annotations and "argocd.argoproj.io/refresh-timestamp" in annotations
    # ...and with no status subresource every status write moves metadata.generation.
    for before, after in itertools.pairwise(versions):
        if _status(before) != _status(after):
            assert after["metadata"]["generation"] > before["metadata"]["generation"], trace


async def test_without_auto_sync_the_service_syncs_with_the_keptn_context(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "carts", automated=False)
    argo_service.start(kubernetes_wait(sync=True))
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("carts"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    commit = argo_fleet.head()
    ops = _status(app)["operationState"]
    # The sync Argo CD ran is the one the service asked for, linked back to the Keptn event.
    assert ops["operation"]["initiatedBy"] == {"username": "keptn-gitops-service"}
    assert ops["operation"]["info"] == [
        {"name": "shkeptncontext", "value": event["shkeptncontext"]},
        {"name": "triggeredid", "value": event["id"]},
    ]
    assert ops["operation"]["sync"]["revision"] == commit and ops["syncResult"]["revision"] == commit
    assert not ops["operation"].get("retry")  # the Application has no syncPolicy.retry: one attempt (retry: {})
    assert argo_fleet.config_map("carts")["data"]["image"] == "docker.io/keptnexamples/carts:0.13.1"


async def test_a_manifest_the_api_server_rejects_fails_fast_with_argos_message(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "orders", automated=False)
    argo_service.start(kubernetes_wait(sync=True), timeout="4m")
    event = deployment_triggered(argo_fleet, "orders", "docker.io/keptnexamples/orders:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("orders"))
    assert (data["status"], data["result"]) == ("errored", "fail"), f"{data['message']}\n{dump(app)}"
    ops = _status(app)["operationState"]
    assert ops["phase"] == "Failed" and ops["syncResult"]["revision"] == argo_fleet.head()
    assert "is invalid" in ops["message"] and "metadata.labels" in ops["message"], ops["message"]
    # Argo CD's own words, not a timeout: the operation for our commit failed and was not retried.
    assert data["message"].startswith(f"Argo CD sync failed (Failed): {' '.join(ops['message'].split())}. ")
    assert "timed out" not in data["message"]
    assert argo_fleet.config_map("orders")["metadata"]["labels"]["image"] == "seed"  # nothing was applied


async def test_auto_sync_retrying_a_rejected_manifest_is_reported_when_the_wait_times_out(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    """Auto-sync retries 5 times over about 2.5 minutes; a shorter wait.timeout ends with the retrying operation,
    its attempts and Argo CD's error."""
    create_application(argo, argo_fleet, "orders", automated=True)
    argo_service.start(kubernetes_wait(), timeout="25s")
    event = deployment_triggered(argo_fleet, "orders", "docker.io/keptnexamples/orders:0.13.1")

    data = await deliver(keptn_bus, event)

    message = data["message"]
    assert (data["status"], data["result"]) == ("errored", "fail"), message
    commit = argo_fleet.head()
    assert message.startswith(f"timed out after 25s waiting for Argo CD to deploy commit {commit[:12]}: "), message
    assert "; the sync operation is Running, " in message and " failed attempt(s): " in message, message
    assert "is invalid" in message and "Retrying attempt #" in message, message
    assert "requested but has not started" not in message
    ops = _status(argo.application(argo_fleet.app_name("orders")))["operationState"]
    assert ops["phase"] == "Running" and ops["retryCount"] >= 1, ops


async def test_auto_sync_with_a_retry_limit_fails_with_argos_message_within_the_wait(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    """``syncPolicy.retry.limit`` bounds the retries: the operation ends Failed inside wait.timeout."""
    retry = {"limit": 1, "backoff": {"duration": "2s", "factor": 2, "maxDuration": "10s"}}
    create_application(argo, argo_fleet, "orders", automated=True, retry=retry)
    argo_service.start(kubernetes_wait(), timeout="2m")
    event = deployment_triggered(argo_fleet, "orders", "docker.io/keptnexamples/orders:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("orders"))
    assert (data["status"], data["result"]) == ("errored", "fail"), f"{data['message']}\n{dump(app)}"
    ops = _status(app)["operationState"]
    assert ops["phase"] == "Failed" and ops["retryCount"] == 1 and ops["message"].endswith("(retried 1 times).")
    assert data["message"].startswith(f"Argo CD sync failed (Failed): {' '.join(ops['message'].split())}. ")


async def test_a_newer_commit_of_someone_else_during_the_wait_passes_on_the_descendant(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "carts", automated=True)
    argo_service.start(kubernetes_wait())
    argo_fleet.foreign_commit_after_next_push()
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("carts"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    foreign = argo_fleet.head()
    ours = data["deployment"]["gitCommit"]
    assert argo_fleet.parent(foreign) == ours  # the other bot's commit landed on top of ours
    assert _status(app)["sync"]["revision"] == foreign  # Argo CD deployed the descendant, which holds our change
    assert data["message"].startswith(f"Argo CD deployed commit {ours[:12]}: "), data["message"]
    assert f"sync Synced to {foreign[:12]}" in data["message"], data["message"]
    assert argo_fleet.config_map("carts")["data"]["image"] == "docker.io/keptnexamples/carts:0.13.1"


def rest_wait(server: str) -> str:
    return (
        f'{{application: "{{project}}-{{service}}", api: rest, server: "{server}", tokenEnv: ARGOCD_TOKEN, '
        "project: default, sync: true}"
    )


async def test_rest_mode_with_a_token_of_argocd_server_passes(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "carts", automated=False)
    argo_service.start(rest_wait(argo.server_url), env={"ARGOCD_TOKEN": argo.token()})
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("carts"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    commit = argo_fleet.head()
    assert data["message"].startswith(f"Argo CD deployed commit {commit[:12]}: "), data["message"]
    operation = _status(app)["operationState"]["operation"]
    assert operation["initiatedBy"]["username"] == "keptn"  # argocd-server's account of the token
    assert {"name": "triggeredid", "value": event["id"]} in operation["info"]


async def test_rest_mode_with_a_wrong_token_fails_before_anything_is_committed(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "carts", automated=True)
    argo_service.start(rest_wait(argo.server_url), env={"ARGOCD_TOKEN": "not-a-token-of-this-argocd"})
    seed = argo_fleet.head()
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    assert argo_fleet.head() == seed and "gitCommit" not in (data.get("deployment") or {})
    assert (
        f"Argo CD at {argo.server_url} refused to read Application {argo_fleet.app_name('carts')}: 401"
        in (data["message"])
    ), data["message"]
    assert data["message"].endswith("; nothing was committed (rules[0].wait is checked before the commit)")
    assert "not-a-token-of-this-argocd" not in data["message"]


async def test_argo_cd_passes_once_the_deployment_is_available(
    argo: ArgoPlane, pods: PodPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "web", automated=True)
    argo_service.start(kubernetes_wait(degraded_grace="10s"))
    event = deployment_triggered(argo_fleet, "web", "docker.io/keptnexamples/web:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("web"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), f"{data['message']}\n{dump(app)}"
    assert _status(app)["sync"]["revision"] == argo_fleet.head() and _status(app)["health"]["status"] == "Healthy"
    deployment = wait_available(argo.kube, "web", argo_fleet.namespace, timeout=1)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/keptnexamples/web:0.13.1"
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["availableReplicas"] == 1


async def test_a_rollout_that_never_completes_fails_after_the_degraded_grace_with_argos_message(
    argo: ArgoPlane, pods: PodPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    create_application(argo, argo_fleet, "stuck", automated=True)
    argo_service.start(kubernetes_wait(degraded_grace="10s"))
    event = deployment_triggered(argo_fleet, "stuck", "docker.io/keptnexamples/stuck:0.13.1")

    data = await deliver(keptn_bus, event)

    app = argo.application(argo_fleet.app_name("stuck"))
    message = data["message"]
    assert (data["status"], data["result"]) == ("errored", "fail"), f"{message}\n{dump(app)}"
    assert _status(app)["health"]["status"] == "Degraded", _status(app)
    # v2.14 leaves the Application's health message empty: Argo CD's words are on the Deployment's health.
    resource = next(r for r in _status(app)["resources"] if r["kind"] == "Deployment")
    assert resource["health"]["message"] == 'Deployment "stuck" exceeded its progress deadline', resource
    assert message.startswith("Argo CD reports the Application Degraded for "), message
    assert f"health Degraded (Deployment stuck: {resource['health']['message']})" in message, message
    assert f"sync Synced to {argo_fleet.head()[:12]}" in message, message
    # The old version still runs: the new pod found no room next to it.
    deployment = argo.kube.get("apps/v1", "Deployment", "stuck", argo_fleet.namespace)
    assert deployment["status"]["availableReplicas"] == 1 and deployment["status"]["updatedReplicas"] == 1


def webhooks_accepted(port: int) -> int:
    """``keptn_gitops_webhook_requests_total{endpoint="argocd", code="202"}`` of the service on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(
        r'^keptn_gitops_webhook_requests_total\{(?=[^}]*code="202")(?=[^}]*endpoint="argocd")[^}]*\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return int(float(found.group(1))) if found else 0


async def test_argo_cd_notifications_reach_the_services_webhook(
    argo: ArgoPlane, argo_fleet: ArgoFleet, argo_service: ArgoService, keptn_bus: KeptnBus
) -> None:
    """The notifications controller, configured as docs/webhooks.md shows, posts to ``/webhooks/argocd``."""
    port, secret = free_port(), secrets.token_urlsafe(16)
    subscribe = argo.notify(f"http://127.0.0.1:{port}", secret)
    create_application(argo, argo_fleet, "carts", automated=True, annotations={subscribe: ""})
    argo_service.start(kubernetes_wait(), env={"ARGOCD_WEBHOOK_SECRET": secret}, port=port)
    event = deployment_triggered(argo_fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")

    data = await deliver(keptn_bus, event)

    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    # The sync of our commit ends Succeeded: the trigger fires and the service accepts the hint (202).
    wait_until(lambda: webhooks_accepted(port) >= 1, what="sent a webhook the service accepted", timeout=60)
