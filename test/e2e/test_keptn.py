"""A real Keptn 1.4.5 control plane drives the service: ``keptn trigger delivery`` → shipyard-controller →
``deployment.triggered`` on NATS → this service commits → the real Flux controllers apply it → ``.finished`` →
shipyard-controller moves the sequence on (``release``, then the next stage).

Keptn's side is Keptn's own 1.4.5 programs, provided in ``KEPTN_GITOPS_KEPTN_BIN`` (``keptnbin.py``; without it
this module is not collected): the CLI, api-service, shipyard-controller (on FerretDB), resource-service and the
distributor. The verdicts checked here are shipyard-controller's own
sequence state and task results, read through its API; Flux's side is read from the API server.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from e2e.environment import Cluster
from e2e.fleet import Fleet, create_fleet
from e2e.keptnplane import KeptnPlane
from e2e.keptnside import start_service
from e2e.kubeclient import KubeError, condition, wait_until
from e2e.processes import Process
from support import free_port, git

STAGES = ("dev", "prod")
CONSUMER_TIMEOUT = 60
_projects = itertools.count(1)
SEQUENCE_TIMEOUT = 300  # seconds for a whole two-stage delivery; every step is bounded by the service's own wait

SHIPYARD = """\
apiVersion: spec.keptn.sh/0.2.2
kind: Shipyard
metadata:
  name: shipyard-gitops-e2e
spec:
  stages:
    - name: dev
      sequences:
        - name: delivery
          tasks:
            - name: deployment
              properties: {deploymentstrategy: direct}
            - name: release
        - name: rollback
          triggeredOn:
            - event: dev.delivery.finished
              selector: {match: {result: fail}}
          tasks:
            - name: rollback
    - name: prod
      sequences:
        - name: delivery
          triggeredOn:
            - event: dev.delivery.finished
              selector: {match: {result: pass}}
          tasks:
            - name: deployment
              properties: {deploymentstrategy: direct}
            - name: release
"""


def create_project(plane: KeptnPlane, fleet: Fleet, tmp_path: Path, services: tuple[str, ...]) -> None:
    """``keptn create project`` (with its git upstream) and ``keptn create service``, as a user does."""
    shipyard = tmp_path / "shipyard.yaml"
    shipyard.write_text(SHIPYARD)
    upstream = plane.create_upstream(fleet.project)
    plane.auth()
    plane.cli(
        "create", "project", fleet.project, f"--shipyard={shipyard}", f"--git-remote-url={upstream}",
        "--git-user=keptn", "--git-token=e2e-upstream-token",
    )  # fmt: skip
    for service in services:
        plane.cli("create", "service", service, f"--project={fleet.project}")


@pytest.fixture
def keptn_fleet(cluster: Cluster, keptn_plane: KeptnPlane, tmp_path: Path) -> Fleet:
    """A GitOps repository with ``dev`` and ``prod`` followed by Flux, and the Keptn project of the same name
    (created with the CLI) with the services ``carts`` and ``orders``."""
    cluster.flux.check_running()
    fleet = create_fleet(cluster.kube, cluster.git_http, f"keptn{next(_projects)}", STAGES)
    create_project(keptn_plane, fleet, tmp_path, ("carts", "orders"))
    return fleet


@pytest.fixture
def keptn_service(
    keptn_fleet: Fleet, cluster: Cluster, keptn_plane: KeptnPlane, keptn_nats: str, tmp_path: Path
) -> Iterator[Process]:
    """The service on Keptn's NATS, registered with the control plane through the API gateway; returns once its
    JetStream consumers exist (they start at "new": a trigger stored before them would never be delivered)."""
    env = {"KEPTN_API_ENDPOINT": keptn_plane.api_url, "KEPTN_API_TOKEN": keptn_plane.token}
    process = start_service(keptn_fleet, keptn_nats, cluster.kubeconfig, tmp_path / "service", env)
    try:
        asyncio.run(wait_for_consumers(keptn_nats, process))
        yield process
    finally:
        process.stop()


async def wait_for_consumers(nats_url: str, process: Process, wanted: set[str] | None = None) -> None:
    """Until the ``keptn`` stream has consumers for ``wanted`` (default: the three tasks the service answers)."""
    wanted = wanted or {f"sh.keptn.event.{task}.triggered" for task in ("deployment", "release", "rollback")}
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for _ in range(int(CONSUMER_TIMEOUT / 0.2)):
            process.check_running()
            subjects = {c.config.filter_subject for c in await js.consumers_info("keptn")}
            if wanted <= subjects:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"the service has no JetStream consumers for {sorted(wanted - subjects)}")
    finally:
        await nc.close()


def trigger_delivery(plane: KeptnPlane, fleet: Fleet, service: str, image: str) -> str:
    """``keptn trigger delivery``; returns the Keptn context it printed.

    The image is named without ``docker.io/``: for Docker Hub names the CLI first asks hub.docker.com whether
    the tag exists, and the build machine has no internet access; the service treats both names as the same
    repository."""
    output = plane.cli("trigger", "delivery", f"--project={fleet.project}", f"--service={service}", f"--image={image}")
    for word in output.replace("'", " ").replace('"', " ").split():
        if len(word) == 36 and word.count("-") == 4:
            return word
    raise AssertionError(f"keptn trigger delivery printed no Keptn context:\n{output}")


def executions(plane: KeptnPlane, project: str, context: str) -> list[dict[str, Any]]:
    found = plane.api("GET", f"/controlPlane/v1/sequence-execution?project={project}&keptnContext={context}")
    return list(found.get("sequenceExecutions") or [])


def sequence_states(plane: KeptnPlane, project: str, context: str) -> list[dict[str, Any]]:
    found = plane.api("GET", f"/controlPlane/v1/sequence/{project}?keptnContext={context}")
    return list(found.get("states") or [])


def finished_stages(plane: KeptnPlane, project: str, context: str, stages: tuple[str, ...]) -> dict[str, Any]:
    """The sequence executions of ``context`` once every one of ``stages`` has finished (else empty)."""
    done = {e["scope"]["stage"]: e for e in executions(plane, project, context) if e["status"]["state"] == "finished"}
    return done if all(stage in done for stage in stages) else {}


def test_keptn_trigger_delivery_runs_both_stages_through_the_service_and_flux(
    keptn_plane: KeptnPlane, keptn_fleet: Fleet, keptn_service: Any, tmp_path: Path
) -> None:
    plane, fleet = keptn_plane, keptn_fleet
    seed = fleet.head()
    context = trigger_delivery(plane, fleet, "carts", "keptnexamples/carts:0.13.1")

    done = plane.wait_for(
        "dev and prod delivery finished",
        lambda: finished_stages(plane, fleet.project, context, ("dev", "prod")),
        SEQUENCE_TIMEOUT,
    )
    for stage in ("dev", "prod"):
        tasks = {t["name"]: t for t in done[stage]["status"]["previousTasks"]}
        assert [t["name"] for t in done[stage]["status"]["previousTasks"]] == ["deployment", "release"], done[stage]
        assert {name: (t["result"], t["status"]) for name, t in tasks.items()} == {
            "deployment": ("pass", "succeeded"),
            "release": ("pass", "succeeded"),
        }, done[stage]
    # shipyard-controller's own view of the sequence: finished in both stages, nothing failed.
    (state,) = sequence_states(plane, fleet.project, context)
    assert state["state"] == "finished", state
    stages = {s["name"]: s for s in state["stages"]}
    assert set(stages) == {"dev", "prod"}, state
    assert all(s["state"] == "succeeded" and not s.get("latestFailedEvent") for s in stages.values()), state

    # One commit per stage, each applied by Flux in its namespace with the new image.
    log = fleet_log(fleet, seed)
    assert len(log) == 2, log
    # kustomize-controller may run once more at the same revision after the service saw its commit applied (a
    # run seen here ~1 s later), so a Kustomization can be Progressing when the sequence has finished: each is
    # awaited at its stage's commit (rev-list lists the prod commit, the newer, first).
    for stage, commit in zip(("prod", "dev"), log, strict=True):
        ks = fleet.wait_kustomization("carts", ready="True", revision=commit, stage=stage)
        assert condition(ks, "Ready")["reason"] == "ReconciliationSucceeded", ks["status"]
        assert fleet.deployment_image("carts", stage) == "docker.io/keptnexamples/carts:0.13.1"


def fleet_log(fleet: Fleet, since: str) -> list[str]:
    return git("rev-list", f"{since}..main", cwd=fleet.bare).split()


BROKEN_POLICY = "e2e-refuse-broken-images"


def refuse_broken_images(cluster: Cluster) -> None:
    """A ValidatingAdmissionPolicy that refuses Deployments whose image tag ends in ``-broken``: Flux's
    server-side apply of such a revision fails in the API server, as a real admission policy would make it."""
    prefix = "/apis/admissionregistration.k8s.io/v1"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": BROKEN_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith('-broken'))",
                    "message": "images tagged *-broken are refused",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": BROKEN_POLICY},
        "spec": {"policyName": BROKEN_POLICY, "validationActions": ["Deny"]},
    }
    for path, obj in ((f"{prefix}/validatingadmissionpolicies", policy),
                      (f"{prefix}/validatingadmissionpolicybindings", binding)):  # fmt: skip
        try:
            cluster.kube.request("POST", path, obj)
        except KubeError as exc:
            if exc.status != 409:  # already there from an earlier test
                raise

    # The API server loads a new policy asynchronously: wait until a dry-run create of a refused Deployment fails.
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "e2e-policy-probe", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "probe", "image": "probe:0-broken"}]},
            },
        },
    }

    def refused() -> bool:
        try:
            cluster.kube.request("POST", "/apis/apps/v1/namespaces/default/deployments?dryRun=All", probe)
        except KubeError as exc:
            if "images tagged *-broken are refused" in str(exc):
                return True
            raise
        return False

    wait_until(refused, what=f"enforcing {BROKEN_POLICY}", timeout=60)


def by_sequence(plane: KeptnPlane, project: str, context: str) -> dict[tuple[str, str], Any]:
    """The finished sequence executions of ``context`` by (stage, sequence name)."""
    return {
        (e["scope"]["stage"], e["sequence"]["name"]): e
        for e in executions(plane, project, context)
        if e["status"]["state"] == "finished"
    }


def test_a_deployment_flux_refuses_fails_the_stage_and_the_rollback_sequence_restores_the_version(
    keptn_plane: KeptnPlane, keptn_fleet: Fleet, keptn_service: Any, cluster: Cluster
) -> None:
    plane, fleet = keptn_plane, keptn_fleet
    refuse_broken_images(cluster)
    seed = fleet.head()
    context = trigger_delivery(plane, fleet, "carts", "keptnexamples/carts:0.13.2-broken")

    done = plane.wait_for(
        "dev delivery and dev rollback finished",
        lambda: (lambda d: d if {("dev", "delivery"), ("dev", "rollback")} <= set(d) else {})(
            by_sequence(plane, fleet.project, context)
        ),
        SEQUENCE_TIMEOUT,
    )
    delivery = done[("dev", "delivery")]["status"]["previousTasks"]
    assert [(t["name"], t["result"], t["status"]) for t in delivery] == [("deployment", "fail", "errored")], delivery
    rollback = done[("dev", "rollback")]["status"]["previousTasks"]
    assert [(t["name"], t["status"]) for t in rollback] == [("rollback", "succeeded")], rollback
    assert ("prod", "delivery") not in done, done  # a failed delivery is not promoted

    # Flux refused the service's commit, and applied the revert the rollback made.
    broken, reverted = reversed(fleet_log(fleet, seed))
    assert git("show", f"{broken}:apps/dev/carts/kustomization.yaml", cwd=fleet.bare).count("0.13.2-broken") == 1
    ks = fleet.kustomization("carts", "dev")
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{reverted}" == f"main@sha1:{fleet.head()}"
    assert condition(ks, "Ready")["status"] == "True"
    assert fleet.deployment_image("carts", "dev") == "docker.io/keptnexamples/carts:0.13.0"


def test_a_delivery_triggered_while_the_service_is_down_is_answered_once_it_is_back(
    keptn_plane: KeptnPlane,
    keptn_fleet: Fleet,
    keptn_service: Process,
    keptn_nats: str,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    plane, fleet = keptn_plane, keptn_fleet
    keptn_service.stop()
    context = trigger_delivery(plane, fleet, "carts", "keptnexamples/carts:0.13.3")

    def deployment_pending() -> dict[str, Any]:
        for e in executions(plane, fleet.project, context):
            if e["scope"]["stage"] == "dev" and e["status"]["currentTask"].get("name") == "deployment":
                return dict(e)
        return {}

    # shipyard-controller has sent deployment.triggered (into the JetStream stream); nobody has started it.
    pending = plane.wait_for("the dev deployment triggered", deployment_pending, SEQUENCE_TIMEOUT)
    assert not pending["status"]["currentTask"].get("events"), pending

    env = {"KEPTN_API_ENDPOINT": plane.api_url, "KEPTN_API_TOKEN": plane.token}
    restarted = start_service(fleet, keptn_nats, cluster.kubeconfig, tmp_path / "service", env)
    try:
        done = plane.wait_for(
            "dev and prod delivery finished",
            lambda: finished_stages(plane, fleet.project, context, STAGES),
            SEQUENCE_TIMEOUT,
        )
    finally:
        restarted.stop()
    for stage in STAGES:
        tasks = done[stage]["status"]["previousTasks"]
        assert [(t["name"], t["result"]) for t in tasks] == [("deployment", "pass"), ("release", "pass")], tasks
        assert fleet.deployment_image("carts", stage) == "docker.io/keptnexamples/carts:0.13.3"


def test_the_service_registers_with_the_control_plane_and_follows_a_subscription_added_through_its_api(
    keptn_plane: KeptnPlane, keptn_fleet: Fleet, keptn_service: Process, keptn_nats: str
) -> None:
    plane, fleet = keptn_plane, keptn_fleet

    def registration() -> dict[str, Any]:
        for integration in plane.api("GET", "/controlPlane/v1/uniform/registration"):
            if integration["name"] == "keptn-gitops-service" and integration.get("subscriptions"):
                return dict(integration)
        return {}

    integration = plane.wait_for("the service in the uniform registration list", registration, CONSUMER_TIMEOUT)
    events = sorted(s["event"] for s in integration["subscriptions"])
    assert events == [f"sh.keptn.event.{t}.triggered" for t in ("deployment", "release", "rollback")], integration

    # A subscription added through the control plane's API (as Keptn's Bridge does): the service's next
    # heartbeat returns it and the service starts consuming that subject from the keptn stream.
    subject = "sh.keptn.event.action.triggered"
    plane.api(
        "POST",
        f"/controlPlane/v1/uniform/registration/{integration['id']}/subscription",
        {"event": subject, "filter": {"projects": [fleet.project]}},
    )
    asyncio.run(wait_for_consumers(keptn_nats, keptn_service, {subject}))
    followed = registration()
    assert subject in {s["event"] for s in followed["subscriptions"]}, followed


def test_behind_the_distributor_the_service_is_registered_by_the_distributor(
    keptn_plane: KeptnPlane, keptn_fleet: Fleet, keptn_bin: Any, keptn_nats: str, cluster: Cluster, tmp_path: Path
) -> None:
    """The chart's sidecar configuration: Keptn's distributor with the API endpoint registers the integration
    (named after the deployment) and forwards events to the service over HTTP."""
    plane, fleet = keptn_plane, keptn_fleet
    service_port, proxy_port = free_port(), free_port()
    topics = "sh.keptn.event.deployment.triggered,sh.keptn.event.rollback.triggered,sh.keptn.event.release.triggered"
    name = f"keptn-gitops-service-{fleet.project}"
    distributor = Process(
        "distributor",
        [str(keptn_bin["distributor"])],
        tmp_path / "logs",
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PUBSUB_URL": keptn_nats,
            "PUBSUB_TOPIC": topics,
            "PUBSUB_RECIPIENT": "127.0.0.1",
            "PUBSUB_RECIPIENT_PORT": str(service_port),
            "API_PROXY_PORT": str(proxy_port),
            "KEPTN_API_ENDPOINT": plane.api_url,
            "KEPTN_API_TOKEN": plane.token,
            "K8S_DEPLOYMENT_NAME": name,
            "K8S_NAMESPACE": "keptn",
            "K8S_POD_NAME": f"{name}-0",
            "K8S_NODE_NAME": "e2e",
            "VERSION": "e2e",
            "HTTP_POLLING_INTERVAL": "1",
            "LOG_LEVEL": "debug",
        },
    )
    service = None
    try:
        env = {"KEPTN_TRANSPORT": "distributor", "DISTRIBUTOR_EVENT_URL": f"http://127.0.0.1:{proxy_port}/event"}
        service = start_service(fleet, keptn_nats, cluster.kubeconfig, tmp_path / "service", env, service_port)

        def registration() -> dict[str, Any]:
            distributor.check_running()
            for integration in plane.api("GET", "/controlPlane/v1/uniform/registration"):
                if integration["name"] == name and integration.get("subscriptions"):
                    return dict(integration)
            return {}

        integration = plane.wait_for("the distributor's registration", registration, CONSUMER_TIMEOUT)
        assert sorted(s["event"] for s in integration["subscriptions"]) == sorted(topics.split(",")), integration
        assert integration["metadata"]["kubernetesmetadata"]["deploymentname"] == name, integration
    finally:
        if service is not None:
            service.stop()
        distributor.stop()
