"""The CDEvents observer of the task lifecycle: what a finished deployment or rollback tells the emitter, read from
the decoded trigger and the typed ``Finished`` alone (the wait it followed, the ``.finished`` sent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from harness import triggered
from support import WAIT_FLUX, ConfigRule, service_config

from keptn_gitops_service.cdevents.model import Artifact, FinishedTask
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.config.model import GitOpsConfig
from keptn_gitops_service.keptn.data import Result, Status
from keptn_gitops_service.keptn.events import make_reply
from keptn_gitops_service.workflow.lifecycle import Finished, Trigger, decode, read
from keptn_gitops_service.workflow.observed import CDEventsObserver, finished_task
from keptn_gitops_service.workflow.routing import ownership
from keptn_gitops_service.workflow.waits import wait_target

REMOTE = "https://git.example.com/fleet.git"
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
ARGO_API = "argocd: {application: '{project}-{stage}-{service}', namespace: apps}"
ARGO_REST = (
    "argocd: {application: '{project}-{stage}-{service}', namespace: apps, api: rest, "
    "server: 'https://argocd.example.com/', tokenEnv: ARGOCD_TOKEN}"
)
CLUSTERS = (
    f"clusters: {{policy: all, targets: [{{name: eu, kubeconfig: /eu.kubeconfig, {WAIT_FLUX}}}, "
    f"{{name: us, kubeconfig: /us.kubeconfig, {WAIT_FLUX}}}]}}"
)


def trigger_of(config: GitOpsConfig, event: dict[str, Any]) -> Trigger:
    received = read(json.dumps(event).encode())
    owner = ownership(config, received.envelope)
    assert owner.task is not None
    decoded = decode(owner.task, owner.rule, received)
    assert decoded is not None
    return decoded


def sent(trigger: Trigger, finished: Finished) -> Finished:
    """``finished`` as the lifecycle hands it to observers: with the ``.finished`` it sent."""
    reply = make_reply(trigger.event, "finished", {}, source="keptn-gitops-service", now=NOW, event_id="f1")
    return Finished(finished.status, finished.result, finished.message, finished.commit, {}, finished.target, reply)


def passed(config: GitOpsConfig, trigger: Trigger) -> Finished:
    assert trigger.rule is not None and trigger.context is not None
    target = wait_target(trigger.rule, trigger.context)
    return sent(trigger, Finished(Status.SUCCEEDED, Result.PASS, "done", "c0ffee", target=target))


def test_a_deployment_is_told_with_its_image_repository_wait_and_reply() -> None:
    config = parse_config(service_config(REMOTE), "c.yaml")
    trigger = trigger_of(config, triggered("docker.io/keptnexamples/carts:0.13.1"))
    task = finished_task(config, trigger, passed(config, trigger))
    assert task == FinishedTask(
        kind="deployment",
        project="sockshop",
        stage="dev",
        service="carts",
        keptn_context=trigger.event.shkeptncontext,
        triggered_id=trigger.id,
        status="succeeded",
        result="pass",
        commit="c0ffee",
        repository=REMOTE,
        branch="main",
        artifact=Artifact("docker.io/keptnexamples/carts", "0.13.1", None),
        target="/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/sockshop-dev/kustomizations/carts",
        finished_at=NOW,
        finished_id="f1",
    )


def test_an_image_sent_as_values_is_the_artifact() -> None:
    config = parse_config(service_config(REMOTE), "c.yaml")
    event = triggered()
    event["data"]["configurationChange"]["values"] = {
        "image": {"repository": "docker.io/keptnexamples/carts", "tag": "0.13.2"}
    }
    trigger = trigger_of(config, event)
    task = finished_task(config, trigger, passed(config, trigger))
    assert task is not None and task.artifact == Artifact("docker.io/keptnexamples/carts", "0.13.2", None)


@pytest.mark.parametrize(
    ("wait", "uri"),
    [
        (ARGO_API, "/apis/argoproj.io/v1alpha1/namespaces/apps/applications/sockshop-dev-carts"),
        (ARGO_REST, "https://argocd.example.com/api/v1/applications/sockshop-dev-carts?appNamespace=apps"),
        ("{none: {}}", ""),
        (CLUSTERS, ""),  # several objects: none of them is the environment's one source
    ],
)
def test_the_wait_followed_is_the_environments_source(wait: str, uri: str) -> None:
    config = parse_config(service_config(REMOTE, ConfigRule(wait=wait)), "c.yaml")
    trigger = trigger_of(config, triggered())
    task = finished_task(config, trigger, passed(config, trigger))
    assert task is not None and task.target == uri


def test_a_rollback_is_told_without_an_artifact() -> None:
    config = parse_config(service_config(REMOTE), "c.yaml")
    event = triggered()
    event["type"] = "sh.keptn.event.rollback.triggered"
    event["data"] = {"project": "sockshop", "stage": "dev", "service": "carts"}
    trigger = trigger_of(config, event)
    task = finished_task(config, trigger, passed(config, trigger))
    assert task is not None and (task.kind, task.artifact, task.commit) == ("rollback", None, "c0ffee")


async def test_releases_invalid_triggers_and_unsent_replies_tell_nothing() -> None:
    config = parse_config(service_config(REMOTE), "c.yaml")
    told: list[FinishedTask] = []

    class Emitter:
        async def finished(self, task: FinishedTask) -> None:
            told.append(task)

    observer = CDEventsObserver(config, Emitter())
    release = triggered()
    release["type"] = "sh.keptn.event.release.triggered"
    release["data"] = {"project": "sockshop", "stage": "dev", "service": "carts"}
    invalid = triggered()
    invalid["data"]["configurationChange"] = "not an object"
    for event, expected in ((release, ("release", False)), (invalid, ("deployment", True))):
        trigger = trigger_of(config, event)
        assert (trigger.task, bool(trigger.problem)) == expected
        await observer(trigger, sent(trigger, Finished(Status.SUCCEEDED, Result.PASS, "done")))
    deployment = trigger_of(config, triggered())
    await observer(deployment, Finished(Status.SUCCEEDED, Result.PASS, "done"))  # no .finished sent
    assert told == []
    await observer(deployment, passed(config, deployment))
    assert [task.triggered_id for task in told] == [deployment.id]
