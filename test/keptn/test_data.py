"""Golden tests of keptn_gitops_service.keptn.data: go-utils field names, helm-service reply contents."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.data import (
    DeploymentTrigger,
    EventScope,
    Result,
    Status,
    Strategy,
    deployment_block,
    echoed_result,
    finished_data,
    parse_deployment_triggered,
    parse_strategy,
    scope_from_data,
    started_data,
)
from keptn_gitops_service.keptn.events import from_json

CLI_BODY = "01-cli-POST-api-v1-event.body.json"
TRIGGERED = "03-NATS-sh.keptn.event.deployment.triggered.from-shipyard-controller.json"
FROM_DISTRIBUTOR = "04-HTTP-POST-to-service.deployment.triggered.from-distributor.json"
HELM_STARTED = "05-HTTP-POST-localhost8081-event.deployment.started.from-helm-service.json"
HELM_FINISHED = "06-HTTP-POST-localhost8081-event.deployment.finished.from-helm-service.json"
HELM_ERRORED = "07-HTTP-POST-localhost8081-event.deployment.finished.ERROR.from-helm-service.json"

SCOPE_DATA: dict[str, Any] = {"project": "sockshop", "stage": "dev", "service": "carts"}
BAD_CHARS = "is not a valid Keptn name: only lowercase letters, digits and '-' are allowed"
BAD_START = "is not a valid Keptn name: it must start with a lowercase letter"


@pytest.fixture(scope="module")
def derived(upstream_fixtures: Path) -> Callable[[str], dict[str, Any]]:
    """The raw JSON of a derived/ wire sample."""
    return lambda name: dict(json.loads((upstream_fixtures / "keptn" / "derived" / name).read_bytes()))


@pytest.fixture(scope="module")
def spec(upstream_fixtures: Path) -> Callable[[str], dict[str, Any]]:
    """The raw JSON of a keptn/spec cloudevents.md example."""
    return lambda name: dict(json.loads((upstream_fixtures / "keptn" / "spec-cloudevents-md" / name).read_bytes()))


# ------------------------------------------------------------------------------------------------------------
# EventScope
# ------------------------------------------------------------------------------------------------------------


def test_scope_from_shipyard_event(derived: Callable[[str], dict[str, Any]]) -> None:
    scope = scope_from_data(derived(TRIGGERED)["data"])
    assert scope == EventScope(project="sockshop", stage="dev", service="carts", labels={})


def test_scope_with_labels_from_spec_example(spec: Callable[[str], dict[str, Any]]) -> None:
    scope = scope_from_data(spec("deployment-triggered.json")["data"])
    assert dict(scope.labels) == {"label-key": "label-value"}
    with pytest.raises(TypeError):
        scope.labels["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "data.project is missing"),
        ({"stage": "dev"}, "data.project is missing"),
        ({**SCOPE_DATA, "project": None}, "data.project is missing"),
        ({**SCOPE_DATA, "project": ""}, "data.project is empty"),
        ({**SCOPE_DATA, "stage": 3}, "data.stage must be a string, got a number"),
        ({"project": "sockshop", "service": "carts"}, "data.stage is missing"),
        ({"project": "sockshop", "stage": "dev"}, "data.service is missing"),
        ({**SCOPE_DATA, "service": ["carts"]}, "data.service must be a string, got an array"),
        (
            {**SCOPE_DATA, "service": "Carts"},
            f"data.service 'Carts' {BAD_CHARS}",
        ),
        (
            {**SCOPE_DATA, "stage": "dev_1"},
            f"data.stage 'dev_1' {BAD_CHARS}",
        ),
        (
            {**SCOPE_DATA, "project": "../etc"},
            f"data.project '../etc' {BAD_CHARS}",
        ),
        (
            {**SCOPE_DATA, "project": "1sockshop"},
            f"data.project '1sockshop' {BAD_START}",
        ),
        (
            {**SCOPE_DATA, "service": "-carts"},
            f"data.service '-carts' {BAD_START}",
        ),
        (
            {**SCOPE_DATA, "project": "a" * 64},
            f"data.project {'a' * 64!r} is 64 characters long, at most 63 are allowed",
        ),
        (
            {**SCOPE_DATA, "project": "UPPER", "stage": None},
            "data.project 'UPPER' is not a valid Keptn name: only lowercase letters, digits and '-' are allowed",
        ),
        ({**SCOPE_DATA, "labels": ["a=b"]}, "data.labels must be an object, got an array"),
        (
            {**SCOPE_DATA, "labels": {"owner": "me", "build": 17}},
            "data.labels.build must be a string, got a number",
        ),
    ],
)
def test_scope_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as raised:
        scope_from_data(data)
    assert str(raised.value) == message


def test_scope_accepts_keptn_names_up_to_63() -> None:
    scope = scope_from_data({"project": "a" * 63, "stage": "prod-2", "service": "c9", "labels": None})
    assert (scope.project, scope.stage, scope.service, dict(scope.labels)) == ("a" * 63, "prod-2", "c9", {})


def test_scope_validates_on_construction() -> None:
    with pytest.raises(EventError, match=r"^stage 'Dev' is not a valid Keptn name"):
        EventScope(project="p", stage="Dev", service="s", labels={})


# ------------------------------------------------------------------------------------------------------------
# deployment.triggered
# ------------------------------------------------------------------------------------------------------------


def test_parse_shipyard_trigger(derived: Callable[[str], dict[str, Any]]) -> None:
    trigger = parse_deployment_triggered(derived(TRIGGERED)["data"])
    assert trigger == DeploymentTrigger(
        scope=EventScope(project="sockshop", stage="dev", service="carts", labels={}),
        values={"image": "docker.io/keptnexamples/carts:0.13.3"},
        strategy=Strategy.DIRECT,
        uris_local=(),
        uris_public=(),
        properties={"deploymentURIsLocal": None, "deploymentstrategy": "direct"},
    )


def test_parse_distributor_trigger_ignores_temporary_data(derived: Callable[[str], dict[str, Any]]) -> None:
    raw = derived(FROM_DISTRIBUTOR)
    assert "temporaryData" in raw["data"]
    via_event = parse_deployment_triggered(from_json(json.dumps(raw)).data)
    assert via_event == parse_deployment_triggered(derived(TRIGGERED)["data"])
    assert parse_deployment_triggered(raw["data"]) == via_event  # raw data: temporaryData is no field of ours


def test_parse_cli_payload_with_empty_strategy(derived: Callable[[str], dict[str, Any]]) -> None:
    raw = derived(CLI_BODY)
    assert raw["data"]["deployment"]["deploymentstrategy"] == ""
    trigger = parse_deployment_triggered(raw["data"])
    assert trigger.strategy is Strategy.DIRECT
    assert dict(trigger.values) == {"image": "docker.io/keptnexamples/carts:0.13.3"}


def test_parse_spec_example_with_uris_and_labels(spec: Callable[[str], dict[str, Any]]) -> None:
    trigger = parse_deployment_triggered(spec("deployment-triggered.json")["data"])
    assert trigger.uris_local == ("http://carts.sockshop-staging.svc.cluster.local",)
    assert trigger.uris_public == ("http://carts.sockshot.local:80",)
    assert dict(trigger.values) == {"key": "value"}
    assert dict(trigger.scope.labels) == {"label-key": "label-value"}
    assert trigger.properties["deploymentstrategy"] == "direct"


def test_shipyard_task_properties_land_in_properties() -> None:
    data = {
        **SCOPE_DATA,
        "deployment": {"deploymentstrategy": "user_managed", "timeout": "15m", "x": {"y": 1}},
    }
    trigger = parse_deployment_triggered(data)
    assert trigger.strategy is Strategy.USER_MANAGED
    assert dict(trigger.properties) == data["deployment"]


def test_missing_optional_blocks_are_empty() -> None:
    trigger = parse_deployment_triggered({**SCOPE_DATA, "configurationChange": None})
    assert (dict(trigger.values), trigger.strategy, trigger.uris_local, trigger.uris_public) == (
        {},
        "direct",
        (),
        (),
    )
    assert dict(trigger.properties) == {}
    assert dict(parse_deployment_triggered({**SCOPE_DATA, "configurationChange": {}}).values) == {}


def test_trigger_is_an_immutable_private_copy() -> None:
    data: dict[str, Any] = {**SCOPE_DATA, "configurationChange": {"values": {"image": {"tag": "1"}}}}
    trigger = parse_deployment_triggered(data)
    data["configurationChange"]["values"]["image"]["tag"] = "2"
    assert trigger.values == {"image": {"tag": "1"}}
    with pytest.raises(TypeError):
        trigger.values["image"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        trigger.strategy = Strategy.DUPLICATE  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("direct", Strategy.DIRECT),
        ("duplicate", Strategy.DUPLICATE),
        ("blue_green_service", Strategy.DUPLICATE),
        ("user_managed", Strategy.USER_MANAGED),
        ("", Strategy.DIRECT),
        (None, Strategy.DIRECT),
    ],
)
def test_strategy(value: str | None, expected: Strategy) -> None:
    assert parse_strategy(value) is expected
    data = {**SCOPE_DATA, "deployment": {"deploymentstrategy": value}}
    assert parse_deployment_triggered(data).strategy is expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("canary", "The deployment strategy canary is invalid"),
        ("Direct", "The deployment strategy Direct is invalid"),
        (" direct", "The deployment strategy  direct is invalid"),
        (1, "data.deployment.deploymentstrategy must be a string, got a number"),
    ],
)
def test_strategy_errors(value: object, message: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_deployment_triggered({**SCOPE_DATA, "deployment": {"deploymentstrategy": value}})
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"configurationChange": "image=x"}, "data.configurationChange must be an object, got a string"),
        (
            {"configurationChange": {"values": "image=x"}},
            "data.configurationChange.values must be an object, got a string",
        ),
        (
            {"configurationChange": {"values": ["x"]}},
            "data.configurationChange.values must be an object, got an array",
        ),
        ({"deployment": []}, "data.deployment must be an object, got an array"),
        (
            {"deployment": {"deploymentURIsLocal": "http://x"}},
            "data.deployment.deploymentURIsLocal must be an array of strings, got a string",
        ),
        (
            {"deployment": {"deploymentURIsLocal": ["http://x", 80]}},
            "data.deployment.deploymentURIsLocal[1] must be a string, got a number",
        ),
        (
            {"deployment": {"deploymentURIsPublic": {"a": "b"}}},
            "data.deployment.deploymentURIsPublic must be an array of strings, got an object",
        ),
        ({"project": None, "deployment": []}, "data.project is missing"),
    ],
)
def test_deployment_trigger_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_deployment_triggered({**SCOPE_DATA, **changes})
    assert str(raised.value) == message


# ------------------------------------------------------------------------------------------------------------
# Reply data vs helm-service (derived/05-07) and go-utils' omitempty rules
# ------------------------------------------------------------------------------------------------------------


def test_started_data_matches_helm_service(derived: Callable[[str], dict[str, Any]]) -> None:
    scope = scope_from_data(derived(TRIGGERED)["data"])
    assert started_data(scope) == derived(HELM_STARTED)["data"]
    assert json.dumps(started_data(scope)) == json.dumps(derived(HELM_STARTED)["data"])  # plain str, not enums


def test_started_data_carries_labels_only_when_present() -> None:
    plain = started_data(EventScope(project="p", stage="s", service="c", labels={}))
    assert "labels" not in plain and "result" not in plain and "message" not in plain
    labelled = started_data(EventScope(project="p", stage="s", service="c", labels={"team": "a"}))
    assert labelled == {
        "project": "p",
        "stage": "s",
        "service": "c",
        "labels": {"team": "a"},
        "status": "succeeded",
    }


def test_finished_data_matches_helm_service(derived: Callable[[str], dict[str, Any]]) -> None:
    helm = derived(HELM_FINISHED)["data"]
    uris = helm["deployment"]
    scope = scope_from_data(derived(TRIGGERED)["data"])
    block = deployment_block("direct", uris["deploymentURIsLocal"], uris["deploymentURIsPublic"], "abc123")
    ours = finished_data(
        scope, status="succeeded", result="pass", message="Successfully deployed", extra={"deployment": block}
    )
    assert ours["deployment"].pop("gitCommit") == "abc123"
    assert ours == helm


def test_errored_finished_data_matches_helm_service(derived: Callable[[str], dict[str, Any]]) -> None:
    helm = derived(HELM_ERRORED)["data"]
    scope = scope_from_data(derived(TRIGGERED)["data"])
    ours = finished_data(scope, status=Status.ERRORED, result=Result.FAIL, message=helm["message"])
    assert ours == {k: v for k, v in helm.items() if k != "deployment"}
    assert json.dumps(ours["status"]) == '"errored"'


def test_finished_data_omits_empty_message_and_keeps_labels() -> None:
    scope = EventScope(project="p", stage="s", service="c", labels={"k": "v"})
    data = finished_data(scope, status="succeeded", result="warning", message="")
    assert data == {
        "project": "p",
        "stage": "s",
        "service": "c",
        "labels": {"k": "v"},
        "status": "succeeded",
        "result": "warning",
    }


def test_finished_data_copies_extra() -> None:
    extra: dict[str, Any] = {"deployment": {"deploymentNames": ["direct"]}}
    data = finished_data(EventScope("p", "s", "c", {}), status="succeeded", result="pass", message="m", extra=extra)
    extra["deployment"]["deploymentNames"].append("x")
    assert data["deployment"] == {"deploymentNames": ["direct"]}


def test_finished_data_accepts_read_only_values_in_extra() -> None:
    trigger = parse_deployment_triggered({**SCOPE_DATA, "configurationChange": {"values": {"image": "x:1"}}})
    extra = {"configurationChange": {"values": trigger.values}, "uris": trigger.uris_local}
    data = finished_data(trigger.scope, status="succeeded", result="pass", message="", extra=extra)
    assert data["configurationChange"] == {"values": {"image": "x:1"}} and data["uris"] == []
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    ("status", "result", "extra", "message"),
    [
        ("", "pass", None, "status must be one of succeeded, errored, got ''"),
        ("unknown", "pass", None, "status must be one of succeeded, errored, got 'unknown'"),
        ("succeeded", "", None, "result must be one of pass, warning, fail, got ''"),
        ("errored", "failed", None, "result must be one of pass, warning, fail, got 'failed'"),
        (
            "succeeded",
            "pass",
            {"result": "fail", "status": "x"},
            "extra must not set the EventData keys result, status",
        ),
    ],
)
def test_finished_data_errors(status: str, result: str, extra: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        finished_data(EventScope("p", "s", "c", {}), status=status, result=result, message="m", extra=extra)
    assert str(raised.value) == message


def test_deployment_block_full() -> None:
    block = deployment_block(Strategy.DUPLICATE, ("http://l",), ["http://p"], "sha")
    assert block == {
        "deploymentstrategy": "duplicate",
        "deploymentURIsLocal": ["http://l"],
        "deploymentURIsPublic": ["http://p"],
        "deploymentNames": ["direct"],
        "gitCommit": "sha",
    }
    assert json.dumps(block["deploymentstrategy"]) == '"duplicate"'


def test_deployment_block_omitempty() -> None:
    """go-utils' omitempty: deploymentURIsLocal and deploymentNames always; deploymentURIsPublic when non-empty."""
    block = deployment_block("user_managed", [], [], "")
    assert block == {
        "deploymentstrategy": "user_managed",
        "deploymentURIsLocal": [],
        "deploymentNames": ["direct"],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("blue_green_service", [], [], ""),
            "strategy must be one of direct, duplicate, user_managed, got 'blue_green_service'",
        ),
        (("", [], [], ""), "strategy must be one of direct, duplicate, user_managed, got ''"),
        (("direct", "http://l", [], ""), "uris_local must be a sequence of strings, got 'http://l'"),
        (("direct", [], [None], ""), "uris_public must be a sequence of strings, got [None]"),
    ],
)
def test_deployment_block_errors(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        deployment_block(*args)
    assert str(raised.value) == message


# ------------------------------------------------------------------------------------------------------------
# release / rollback
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"result": "pass"}, Result.PASS),
        ({"result": "warning"}, Result.WARNING),
        ({"result": "fail"}, Result.FAIL),
        ({"result": ""}, Result.PASS),
        ({}, Result.PASS),
        ({"result": None}, Result.PASS),
        ({"result": "failed"}, Result.PASS),
        ({"result": "FAIL"}, Result.PASS),
        ({"result": ["fail"]}, Result.PASS),
    ],
)
def test_echoed_result(data: dict[str, Any], expected: Result) -> None:
    assert echoed_result(data) is expected


@pytest.mark.parametrize(("task", "message"), [("release", "Finished release"), ("rollback", "Finished rollback")])
def test_release_and_rollback_finished_like_spec(
    task: str, message: str, spec: Callable[[str], dict[str, Any]]
) -> None:
    trigger = spec(f"{task}-triggered.json")["data"]
    expected = spec(f"{task}-finished.json")["data"]
    ours = finished_data(scope_from_data(trigger), status="succeeded", result=echoed_result(trigger), message=message)
    # The spec's release.finished still has the release.gitCommit that go-utils v0.15 removed.
    assert ours == {**{k: v for k, v in expected.items() if k != "release"}, "message": message}


def test_release_trigger_strategy_from_spec(spec: Callable[[str], dict[str, Any]]) -> None:
    data = spec("release-triggered.json")["data"]
    assert parse_strategy(data["deployment"]["deploymentstrategy"]) is Strategy.DUPLICATE
    assert echoed_result(data) is Result.PASS
