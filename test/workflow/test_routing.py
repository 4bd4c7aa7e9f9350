"""Routing helpers: a stored trigger decodes for resume even when its re-encoding outgrew the wire limit."""

from __future__ import annotations

import json

import pytest
from harness import triggered

from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.events import MAX_EVENT_BYTES, from_json, to_structured
from keptn_gitops_service.state.store import Phase, Record
from keptn_gitops_service.workflow.routing import stored_trigger


def test_a_trigger_accepted_near_the_limit_can_be_resumed() -> None:
    event = triggered()
    event["data"]["labels"] = {"padding": ""}
    compact = json.dumps(event, separators=(",", ":"))
    event["data"]["labels"]["padding"] = "x" * (MAX_EVENT_BYTES - len(compact) - 10)
    wire = json.dumps(event, separators=(",", ":")).encode()
    assert len(wire) <= MAX_EVENT_BYTES
    payload = to_structured(from_json(wire))  # what the state store keeps
    assert len(payload) > MAX_EVENT_BYTES  # the re-encoding is larger than what arrived
    with pytest.raises(EventError):
        from_json(payload)  # the wire limit alone would make it impossible to resume
    record = Record(event["id"], event["shkeptncontext"], event["type"], payload, Phase.STARTED, "", "", 0.0)
    resumed = stored_trigger(record)
    assert resumed.id == event["id"] and resumed.data["labels"]["padding"] == event["data"]["labels"]["padding"]


def test_finished_lines_are_logged_at_the_level_of_their_outcome() -> None:
    from structlog.testing import capture_logs

    from keptn_gitops_service.workflow.routing import log_finished

    with capture_logs() as logs:
        log_finished("deployment", status="succeeded", result="pass", triggeredid="a")
        log_finished("rollback", status="succeeded", result="fail", triggeredid="b")
        log_finished("deployment", status="errored", result="fail", triggeredid="c")
    assert [(e["event"], e["log_level"], e["triggeredid"]) for e in logs] == [
        ("deployment finished", "info", "a"),
        ("rollback finished", "warning", "b"),
        ("deployment finished", "error", "c"),
    ]
