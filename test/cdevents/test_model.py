"""The pure CDEvents builder: which event a finished task emits, its package URL, its schema, its CloudEvent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import ValidationError

from keptn_gitops_service.cdevents import model
from keptn_gitops_service.cdevents.model import (
    DEPLOYED,
    ROLLEDBACK,
    UPGRADED,
    Artifact,
    Decision,
    Emitted,
    FinishedTask,
    Skipped,
)
from keptn_gitops_service.errors import CDEventsError

DIGEST = "sha256:" + "0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"
Validate = Callable[[dict[str, Any]], None]


def task(**changes: Any) -> FinishedTask:
    base = FinishedTask(
        kind="deployment",
        project="sockshop",
        stage="production",
        service="carts",
        keptn_context="4c8cb7dd-3448-41de-8768-eec704e2829b",
        triggered_id="5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce",
        status="succeeded",
        result="pass",
        commit="a" * 40,
        repository="https://git.example.com/org/fleet.git",
        branch="main",
        artifact=Artifact("docker.io/keptnexamples/carts", "0.13.1", None),
        target="/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/sockshop-production/kustomizations/carts",
        finished_at=datetime(2026, 3, 20, 14, 27, 5, 315384, tzinfo=UTC),
        finished_id="f1",
    )
    return replace(base, **changes)


def decided(result: Decision | Skipped) -> Decision:
    assert isinstance(result, Decision), result
    return result


# ---- the validator itself ----


@pytest.mark.parametrize("name", ["service_deployed", "service_upgraded", "service_rolledback"])
def test_the_specs_conformance_examples_validate(upstream_fixtures: Path, validate: Validate, name: str) -> None:
    example = json.loads((upstream_fixtures / "cdevents" / "conformance" / f"{name}.json").read_text())
    validate(example)  # raises ValidationError when the example does not hold to its schema
    assert example["context"]["type"].startswith("dev.cdevents.service.")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda e: e["subject"]["content"].pop("artifactId"),
        lambda e: e["context"].update(timestamp="yesterday"),
        lambda e: e["context"].update(source="not a uri reference"),
        lambda e: e["context"].update(links=[{"linkType": "PATH"}]),
        lambda e: e["subject"]["content"]["environment"].update(name="extra"),
    ],
)
def test_the_validator_refuses_what_the_schema_forbids(validate: Validate, spoil: Callable[[Any], Any]) -> None:
    event = model.build(task(), decided(model.decide(task(), [])).emitted)
    validate(event)
    spoil(event)
    with pytest.raises(ValidationError):
        validate(event)


# ---- package URLs ----


@pytest.mark.parametrize(
    ("artifact", "purl"),
    [
        (
            Artifact("docker.io/keptnexamples/carts", "0.13.1", DIGEST),
            f"pkg:oci/carts@sha256%3A{DIGEST[7:]}?repository_url=docker.io/keptnexamples/carts&tag=0.13.1",
        ),
        (
            Artifact("docker.io/keptnexamples/carts", "0.13.1"),
            "pkg:oci/carts?repository_url=docker.io/keptnexamples/carts&tag=0.13.1",
        ),
        (
            Artifact("localhost:5000/team/app", None, DIGEST),
            f"pkg:oci/app@sha256%3A{DIGEST[7:]}?repository_url=localhost%3A5000/team/app",
        ),
        (Artifact("docker.io/library/redis", "7.2"), "pkg:oci/redis?repository_url=docker.io/library/redis&tag=7.2"),
    ],
)
def test_an_image_is_a_package_url(artifact: Artifact, purl: str) -> None:
    assert artifact.purl == purl


def test_an_artifact_needs_a_tag_or_a_digest() -> None:
    with pytest.raises(CDEventsError, match="neither a tag nor a digest"):
        Artifact("docker.io/keptnexamples/carts")
    with pytest.raises(CDEventsError, match="algorithm:hex"):
        Artifact("docker.io/keptnexamples/carts", None, "0b31")


# ---- deployed, upgraded, rolled back ----


def test_the_first_deployment_in_an_environment_is_deployed_then_upgraded(validate: Validate) -> None:
    first = decided(model.decide(task(), []))
    assert first.emitted.type == DEPLOYED
    second_task = task(triggered_id="t2", keptn_context="ctx-2", artifact=Artifact("docker.io/x/carts", "0.13.2"))
    second = decided(model.decide(second_task, first.history))
    assert second.emitted.type == UPGRADED
    assert [e.type for e in second.history] == [UPGRADED, DEPLOYED]
    for t, d in ((task(), first), (second_task, second)):
        validate(model.build(t, d.emitted))


def test_another_environment_has_its_own_history() -> None:
    """The history is per environment and service: the caller keys it so (model.history_key)."""
    assert model.history_key(task()) != model.history_key(task(stage="staging"))
    assert model.history_key(task()) != model.history_key(task(service="orders"))


def test_deciding_again_after_a_restart_gives_the_same_event() -> None:
    first = decided(model.decide(task(), []))
    again = decided(model.decide(task(), first.history, first.emitted.event_id))
    assert again.emitted == first.emitted and again.history == first.history


def test_a_rollback_emits_the_artifact_that_ran_before_its_context() -> None:
    old = task(triggered_id="t1", keptn_context="ctx-1", artifact=Artifact("docker.io/x/carts", "1.0.0"))
    new = task(triggered_id="t2", keptn_context="ctx-2", artifact=Artifact("docker.io/x/carts", "2.0.0"))
    history = decided(model.decide(old, [])).history
    upgraded = decided(model.decide(new, history))
    rollback = task(kind="rollback", triggered_id="r2", keptn_context="ctx-2", result="fail", artifact=None)
    rolled = decided(model.decide(rollback, upgraded.history, upgraded.emitted.event_id))
    assert rolled.emitted.type == ROLLEDBACK
    assert rolled.emitted.artifact_id == Artifact("docker.io/x/carts", "1.0.0").purl
    assert rolled.emitted.follows == upgraded.emitted.event_id  # a PATH link from the rolled back deployment
    # a second rollback of the same context rolls back to the same artifact
    again = decided(model.decide(replace(rollback, triggered_id="r3"), rolled.history))
    assert again.emitted.artifact_id == rolled.emitted.artifact_id


def test_a_rollback_without_a_known_earlier_artifact_emits_nothing() -> None:
    only = decided(model.decide(task(keptn_context="ctx-1"), []))
    rollback = task(kind="rollback", triggered_id="r1", keptn_context="ctx-1", artifact=None)
    assert isinstance(model.decide(rollback, only.history), Skipped)
    assert isinstance(model.decide(rollback, []), Skipped)


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "errored", "result": "fail"},
        {"status": "succeeded", "result": "warning"},
        {"kind": "rollback", "status": "errored", "result": "fail"},
        {"kind": "rollback", "status": "succeeded", "result": "fail", "commit": ""},  # nothing to roll back
    ],
)
def test_what_did_not_pass_emits_nothing(changes: dict[str, Any]) -> None:
    assert isinstance(model.decide(task(**changes), []), Skipped)


def test_a_redeploy_without_an_image_reports_what_runs_there() -> None:
    first = decided(model.decide(task(), []))
    again = decided(model.decide(task(triggered_id="t2", artifact=None), first.history))
    assert again.emitted.type == UPGRADED and again.emitted.artifact_id == first.emitted.artifact_id
    assert isinstance(model.decide(task(artifact=None), []), Skipped)


# ---- the event ----


def test_the_event_carries_chain_environment_links_and_custom_data(validate: Validate) -> None:
    emitted = decided(model.decide(task(), [], "previous-event")).emitted
    event = model.build(task(), emitted, source="/keptn/prod-eu")
    validate(event)
    context = event["context"]
    assert context["chainId"] == "4c8cb7dd-3448-41de-8768-eec704e2829b"  # the Keptn context, verbatim
    assert context["timestamp"] == "2026-03-20T14:27:05.315384Z"
    assert context["links"] == [{"linkType": "PATH", "from": {"contextId": "previous-event"}}]
    assert context["source"] == "/keptn/prod-eu"
    assert event["subject"] == {
        "id": "sockshop/carts",
        "content": {
            "environment": {"id": "production", "source": task().target},
            "artifactId": "pkg:oci/carts?repository_url=docker.io/keptnexamples/carts&tag=0.13.1",
        },
    }
    assert event["customData"] == {
        "keptn": {
            "project": "sockshop",
            "stage": "production",
            "service": "carts",
            "task": "deployment",
            "shkeptncontext": "4c8cb7dd-3448-41de-8768-eec704e2829b",
            "triggeredid": "5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce",
            "finishedid": "f1",
        },
        "git": {"commit": "a" * 40, "repository": "https://git.example.com/org/fleet.git", "branch": "main"},
    }
    assert event["customDataContentType"] == "application/json"


def test_without_a_wait_the_environment_has_no_source(validate: Validate) -> None:
    event = model.build(task(target=""), decided(model.decide(task(target=""), [])).emitted)
    validate(event)
    assert event["subject"]["content"]["environment"] == {"id": "production"}
    assert "links" not in event["context"]


def test_a_finished_task_is_validated_at_construction() -> None:
    with pytest.raises(CDEventsError, match="time zone"):
        task(finished_at=datetime(2026, 1, 1))
    with pytest.raises(CDEventsError, match="needs a stage"):
        task(stage="")
    with pytest.raises(CDEventsError, match="not a URI reference"):
        task(target="has spaces")
    with pytest.raises(CDEventsError, match="not a URI reference"):
        model.build(task(), decided(model.decide(task(), [])).emitted, source="a source")


def test_the_cloudevents_binding_binary_and_structured() -> None:
    event = model.build(task(), decided(model.decide(task(), [])).emitted)
    body = json.dumps(event).encode()
    headers, sent = model.binary(body)
    assert sent == body
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": event["context"]["id"],
        "ce-source": "/keptn-gitops-service",
        "ce-type": DEPLOYED,
        "ce-subject": "sockshop/carts",
        "ce-time": "2026-03-20T14:27:05.315384Z",
        "ce-dataschema": "https://cdevents.dev/0.5.1/schema/service-deployed-event",
        "Content-Type": "application/json; charset=utf-8",
    }
    headers, document = model.structured(body)
    assert headers == {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    parsed = json.loads(document)
    assert parsed["data"] == event and parsed["datacontenttype"] == "application/json"
    assert parsed["subject"] == "sockshop/carts" and parsed["specversion"] == "1.0"


def test_history_round_trips_and_corruption_is_named() -> None:
    history = (Emitted("id", UPGRADED, "pkg:oci/a?tag=1", "ctx", "prev"),)
    assert model.decode_history(model.encode_history(history)) == history
    assert model.decode_history(None) == ()
    with pytest.raises(CDEventsError, match="history is corrupt"):
        model.decode_history(b'[{"id": 1}]')
