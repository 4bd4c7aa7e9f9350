"""Routing: the one ownership rule, read from the raw scope; a trigger is stored as received, so one near the wire
limit resumes."""

from __future__ import annotations

import json

import pytest
from harness import triggered

from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.keptn.events import MAX_EVENT_BYTES, from_json, to_structured
from keptn_gitops_service.state.store import Phase, Record
from keptn_gitops_service.workflow.lifecycle import decode, read
from keptn_gitops_service.workflow.routing import ownership


def test_a_trigger_accepted_near_the_limit_is_stored_as_received_and_resumes() -> None:
    event = triggered()
    event["data"]["labels"] = {"padding": ""}
    compact = json.dumps(event, separators=(",", ":"))
    event["data"]["labels"]["padding"] = "x" * (MAX_EVENT_BYTES - len(compact) - 10)
    wire = json.dumps(event, separators=(",", ":")).encode()
    assert len(wire) <= MAX_EVENT_BYTES
    assert len(to_structured(from_json(wire))) > MAX_EVENT_BYTES  # a re-encoding would have outgrown the limit
    received = decode("deployment", None, read(wire))
    assert received is not None and received.payload == wire  # what the state store keeps: the bytes received
    record = Record(event["id"], event["shkeptncontext"], event["type"], received.payload, Phase.STARTED, "", "", 0.0)
    resumed = decode("deployment", None, read(record.payload))
    assert resumed is not None and not resumed.problem
    assert resumed.event.id == event["id"]
    assert resumed.event.data["labels"]["padding"] == event["data"]["labels"]["padding"]


RULES = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: file:///nowhere
rules:
  - match: {project: sockshop, stage: dev, service: carts}
    repository: fleet
    updates: [{file: a.yaml, yamlPath: a, value: b}]
  - match: {project: "sock*", stage: prod}
    repository: fleet
    updates: [{file: a.yaml, yamlPath: a, value: b}]
"""


def trigger(task: str = "deployment", **data: object) -> dict[str, object]:
    scope = {"project": "sockshop", "stage": "dev", "service": "carts"}
    return {"type": f"sh.keptn.event.{task}.triggered", "source": "shipyard-controller", "data": {**scope, **data}}


@pytest.mark.parametrize(
    ("envelope", "rule", "unknown"),
    [
        (trigger(), 0, ""),
        (trigger("rollback", labels={"a": 1}, time="bad"), 0, ""),  # the rest does not matter
        (trigger(project="socks", stage="prod", service=7), 1, ""),  # rule 1 owns every service of prod
        (trigger(project="socks", stage="prod", service=None), 1, ""),
        (trigger(project="other"), None, ""),
        (trigger(project="Sockshop"), None, ""),  # globs are case-sensitive, like Keptn's names
        (trigger(stage="staging"), None, ""),
        (trigger(project=None), None, "data.project is missing or not a string"),
        (trigger(project=["sockshop"]), None, "data.project is missing or not a string"),
        (trigger(service=None), None, "data.service is missing or not a string"),  # rule 0 names its service
        (trigger(project=None, stage="staging"), None, ""),  # no rule has stage staging: surely not ours
        (trigger(project=None, stage=None), None, "data.project, data.stage are missing or not a string"),
        ({**trigger(), "data": [1]}, None, "data is an array, not an object"),
        ({k: v for k, v in trigger().items() if k != "data"}, None, "data is missing"),
    ],
)
def test_ownership_reads_the_scope_loosely(envelope: dict[str, object], rule: int | None, unknown: str) -> None:
    config = parse_config(RULES, "rules.yaml")
    owner = ownership(config, envelope)
    assert owner.task == str(envelope["type"]).split(".")[3]
    assert owner.rule == (None if rule is None else config.rules[rule])
    assert owner.unknown == unknown


@pytest.mark.parametrize(
    "envelope",
    [
        {**trigger(), "source": "keptn-gitops-service"},
        {**trigger(), "type": "sh.keptn.event.deployment.started"},
        {**trigger(), "type": "sh.keptn.event.test.triggered"},
        {**trigger(), "type": 7},
        ["not", "an", "object"],
        None,
    ],
)
def test_events_we_never_answer_have_no_task(envelope: object) -> None:
    owner = ownership(parse_config(RULES, "rules.yaml"), envelope)
    assert (owner.task, owner.rule) == (None, None)


def test_finished_lines_are_logged_at_the_level_of_their_outcome() -> None:
    from structlog.testing import capture_logs

    from keptn_gitops_service.keptn.data import Result, Status
    from keptn_gitops_service.workflow.lifecycle import log_finished

    with capture_logs() as logs:
        log_finished("deployment", status=Status.SUCCEEDED, result=Result.PASS, triggeredid="a")
        log_finished("rollback", status=Status.SUCCEEDED, result=Result.FAIL, triggeredid="b")
        log_finished("deployment", status=Status.ERRORED, result=Result.FAIL, triggeredid="c")
    assert [(e["event"], e["log_level"], e["triggeredid"]) for e in logs] == [
        ("deployment finished", "info", "a"),
        ("rollback finished", "warning", "b"),
        ("deployment finished", "error", "c"),
    ]
