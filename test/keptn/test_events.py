"""Golden tests of keptn_gitops_service.keptn.events against the real wire samples in test/fixtures/upstream/keptn.

derived/*.json are wire examples per hop; spec-cloudevents-md/*.json are
the keptn/spec examples. Parametrized over the directories, so a new sample is covered automatically.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.data import (
    Status,
    deployment_block,
    finished_data,
    parse_deployment_triggered,
    scope_from_data,
    started_data,
)
from keptn_gitops_service.keptn.events import (
    CONTENT_TYPE,
    MAX_EVENT_BYTES,
    KeptnEvent,
    from_json,
    make_reply,
    reply_type,
    to_structured,
)

# Same directory as the ``upstream_fixtures`` fixture (test/conftest.py); needed at collection time for
# parametrizing. test_sample_lists_match_fixture_dir checks that both agree.
_KEPTN = Path(__file__).resolve().parents[1] / "fixtures" / "upstream" / "keptn"
DERIVED_FILES = sorted(p.name for p in (_KEPTN / "derived").glob("*.json"))
SPEC_FILES = sorted(p.name for p in (_KEPTN / "spec-cloudevents-md").glob("*.json"))
SPEC_DELIVERY_FILES = [n for n in SPEC_FILES if n.startswith(("deployment-", "release-", "rollback-"))]

TRIGGERED = "03-NATS-sh.keptn.event.deployment.triggered.from-shipyard-controller.json"
FROM_DISTRIBUTOR = "04-HTTP-POST-to-service.deployment.triggered.from-distributor.json"
HELM_STARTED = "05-HTTP-POST-localhost8081-event.deployment.started.from-helm-service.json"
HELM_FINISHED = "06-HTTP-POST-localhost8081-event.deployment.finished.from-helm-service.json"
HELM_ERRORED = "07-HTTP-POST-localhost8081-event.deployment.finished.ERROR.from-helm-service.json"
SDK_STARTED = "08-NATS-sh.keptn.event.deployment.started.from-go-utils-sdk.json"
SDK_FINISHED = "09-NATS-sh.keptn.event.deployment.finished.from-go-utils-sdk.json"

OUR_SOURCE = "keptn-gitops-service"
NOW = datetime(2024, 1, 17, 11, 41, 9, 141872, tzinfo=UTC)
GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")


def is_event_sample(name: str) -> bool:
    """derived/10-12 are uniform-registration bodies, not events."""
    return "uniform-registration" not in name


@pytest.fixture(scope="module")
def derived(upstream_fixtures: Path) -> Callable[[str], bytes]:
    return lambda name: (upstream_fixtures / "keptn" / "derived" / name).read_bytes()


@pytest.fixture(scope="module")
def spec(upstream_fixtures: Path) -> Callable[[str], bytes]:
    return lambda name: (upstream_fixtures / "keptn" / "spec-cloudevents-md" / name).read_bytes()


def test_sample_lists_match_fixture_dir(upstream_fixtures: Path) -> None:
    assert upstream_fixtures / "keptn" == _KEPTN
    assert sorted(p.name for p in (upstream_fixtures / "keptn" / "derived").glob("*.json")) == DERIVED_FILES
    assert len([n for n in DERIVED_FILES if is_event_sample(n)]) >= 9
    assert len(SPEC_DELIVERY_FILES) >= 11


# ------------------------------------------------------------------------------------------------------------
# Decoding every sample
# ------------------------------------------------------------------------------------------------------------


def expected_time(raw: dict[str, Any]) -> datetime | None:
    text = raw.get("time")
    if text is None or text == "0001-01-01T00:00:00Z":
        return None
    # Python keeps microseconds: truncate Go's nanoseconds.
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    assert match, text
    base = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
    return base.replace(microsecond=int((match.group(2) or "0")[:6].ljust(6, "0")))


@pytest.mark.parametrize("name", DERIVED_FILES)
def test_derived_sample_decodes(name: str, derived: Callable[[str], bytes]) -> None:
    body = derived(name)
    raw = json.loads(body)
    if not is_event_sample(name):
        with pytest.raises(EventError, match=r"^(id is empty|type is missing)$"):
            from_json(body)
        return
    if "shkeptncontext" not in raw:  # the CLI's body to the API: api-service adds the context before publishing
        with pytest.raises(EventError, match=r"^shkeptncontext is missing$"):
            from_json(body)
        return
    event = from_json(body)
    assert (event.id, event.type, event.source) == (raw["id"], raw["type"], raw["source"])
    assert event.shkeptncontext == raw["shkeptncontext"]
    assert event.triggeredid == raw.get("triggeredid", "")
    assert event.gitcommitid == raw.get("gitcommitid", "")
    assert event.shkeptnspecversion == raw.get("shkeptnspecversion", "")
    assert event.datacontenttype == raw.get("datacontenttype", raw.get("contenttype", "application/json"))
    assert event.time == expected_time(raw)
    assert dict(event.data) == {k: v for k, v in raw["data"].items() if k != "temporaryData"}
    assert dict(event.extensions) == {}
    assert event.specversion == "1.0"


@pytest.mark.parametrize("name", [n for n in DERIVED_FILES if is_event_sample(n)])
def test_derived_sample_round_trips(name: str, derived: Callable[[str], bytes]) -> None:
    event = from_json(with_context(derived(name)))
    assert from_json(to_structured(event)) == event


def test_distributor_hop_is_the_shipyard_event_without_temporary_data(
    derived: Callable[[str], bytes],
) -> None:
    raw = json.loads(derived(FROM_DISTRIBUTOR))
    assert raw["triggeredid"] == "" and "temporaryData" in raw["data"]  # the sample still shows both quirks
    event = from_json(derived(FROM_DISTRIBUTOR))
    assert "temporaryData" not in event.data
    assert event.triggeredid == ""
    assert event.gitcommitid == "3f1c9b0e2d4a5b6c7d8e9f00112233445566778a"
    assert event == from_json(derived(TRIGGERED))


def with_context(body: bytes) -> bytes:
    """The event as api-service publishes it: with a Keptn context (the CLI's body has none)."""
    raw = json.loads(body)
    return body if "shkeptncontext" in raw else json.dumps({**raw, "shkeptncontext": "ctx-1"}).encode()


def test_cli_body_has_zero_time_no_context_and_no_content_type(derived: Callable[[str], bytes]) -> None:
    body = derived("01-cli-POST-api-v1-event.body.json")
    with pytest.raises(EventError, match=r"^shkeptncontext is missing$"):
        from_json(body)
    event = from_json(with_context(body))
    assert event.time is None
    assert event.datacontenttype == "application/json"
    assert (event.task, event.kind) == (None, "triggered")


def test_api_service_shape_uses_contenttype(derived: Callable[[str], bytes]) -> None:
    event = from_json(derived("02-NATS-sh.keptn.event.dev.delivery.triggered.from-api-service.json"))
    assert event.time == datetime(2024, 1, 17, 11, 41, 7, 549312, tzinfo=UTC)
    assert event.shkeptncontext == "62cca6f3-dc54-4df6-a04c-6ffc894a4b5e"
    assert (event.task, event.kind) == (None, "triggered")


@pytest.mark.parametrize(
    ("name", "task", "kind"),
    [
        (TRIGGERED, "deployment", "triggered"),
        (HELM_STARTED, "deployment", "started"),
        (HELM_FINISHED, "deployment", "finished"),
        (SDK_STARTED, "deployment", "started"),
        (SDK_FINISHED, "deployment", "finished"),
    ],
)
def test_sample_classification(name: str, task: str, kind: str, derived: Callable[[str], bytes]) -> None:
    event = from_json(derived(name))
    assert (event.task, event.kind) == (task, kind)


@pytest.mark.parametrize(
    ("event_type", "task", "kind"),
    [
        ("sh.keptn.event.deployment.triggered", "deployment", "triggered"),
        ("sh.keptn.event.rollback.started", "rollback", "started"),
        ("sh.keptn.event.release.finished", "release", "finished"),
        ("sh.keptn.event.evaluation.invalidated", "evaluation", "invalidated"),
        ("sh.keptn.event.my-custom-task.triggered", "my-custom-task", "triggered"),
        ("sh.keptn.event.deployment.status.changed", "deployment", "status.changed"),
        ("sh.keptn.event.dev.delivery.triggered", None, "triggered"),
        ("sh.keptn.event.staging.delivery.finished", None, "finished"),
        ("sh.keptn.event.project.create.finished", None, "finished"),
        ("sh.keptn.event.service.create.status.changed", None, "status.changed"),
        ("sh.keptn.event.monitoring.configure", None, None),
        ("sh.keptn.event.deployment.done", None, None),
        ("sh.keptn.event.triggered", None, None),
        ("sh.keptn.event..triggered", None, None),
        ("sh.keptn.log.error", None, None),
        ("sh.keptn.events.problem", None, None),
    ],
)
def test_type_classification(event_type: str, task: str | None, kind: str | None) -> None:
    event = KeptnEvent(id="1", type=event_type, source="s", shkeptncontext="c", data={}, time=None)
    assert (event.task, event.kind) == (task, kind)


# ------------------------------------------------------------------------------------------------------------
# Our replies vs helm-service's (derived/05-07) and the go-utils sdk's (derived/08-09)
# ------------------------------------------------------------------------------------------------------------


def our_started(trigger: KeptnEvent) -> KeptnEvent:
    scope = scope_from_data(trigger.data)
    return make_reply(trigger, "started", started_data(scope), source=OUR_SOURCE, now=NOW, event_id="our-1")


def our_finished(trigger: KeptnEvent, local: list[str], public: list[str]) -> KeptnEvent:
    spec = parse_deployment_triggered(trigger.data)
    data = finished_data(
        spec.scope,
        status="succeeded",
        result="pass",
        message="Successfully deployed",
        extra={"deployment": deployment_block(spec.strategy, local, public, GIT_COMMIT)},
    )
    return make_reply(trigger, "finished", data, source=OUR_SOURCE, now=NOW, event_id="our-2")


def assert_same_as_helm_service(ours: dict[str, Any], helm: dict[str, Any]) -> None:
    assert ours.keys() == helm.keys()
    for key in ours.keys() - {"id", "time", "source", "data"}:
        assert ours[key] == helm[key], key
    assert helm["source"] == "helm-service"
    assert ours["source"] == OUR_SOURCE
    assert RFC3339_UTC.fullmatch(ours["time"])
    assert ours["id"] != helm["id"]


def test_started_matches_helm_service(derived: Callable[[str], bytes]) -> None:
    ours = json.loads(to_structured(our_started(from_json(derived(TRIGGERED)))))
    helm = json.loads(derived(HELM_STARTED))
    assert_same_as_helm_service(ours, helm)
    assert ours["data"] == helm["data"]


def test_finished_matches_helm_service_plus_git_commit(derived: Callable[[str], bytes]) -> None:
    helm = json.loads(derived(HELM_FINISHED))
    uris = helm["data"]["deployment"]
    trigger = from_json(derived(TRIGGERED))
    ours = json.loads(to_structured(our_finished(trigger, uris["deploymentURIsLocal"], uris["deploymentURIsPublic"])))
    assert_same_as_helm_service(ours, helm)
    assert ours["data"]["deployment"].pop("gitCommit") == GIT_COMMIT
    assert ours["data"] == helm["data"]


def test_errored_finished_event_data_matches_helm_service(derived: Callable[[str], bytes]) -> None:
    helm = json.loads(derived(HELM_ERRORED))
    trigger = from_json(derived(TRIGGERED))
    message = helm["data"]["message"]
    data = finished_data(scope_from_data(trigger.data), status=Status.ERRORED, result="fail", message=message)
    ours = json.loads(to_structured(make_reply(trigger, "finished", data, source=OUR_SOURCE, now=NOW, event_id="e")))
    assert_same_as_helm_service(ours, helm)
    # helm-service adds a zero deployment block (strategy "", null lists); the EventData part is identical.
    assert ours["data"] == {k: v for k, v in helm["data"].items() if k != "deployment"}


def test_replies_carry_what_the_sdk_sends(derived: Callable[[str], bytes]) -> None:
    """The go-utils sdk (derived/08-09, contenttype shape) and we agree on every Keptn attribute."""
    trigger = from_json(derived(TRIGGERED))
    sdk_started, sdk_finished = from_json(derived(SDK_STARTED)), from_json(derived(SDK_FINISHED))
    uris = sdk_finished.data["deployment"]
    started = our_started(trigger)
    finished = our_finished(trigger, uris["deploymentURIsLocal"], uris["deploymentURIsPublic"])
    for ours, sdk in ((started, sdk_started), (finished, sdk_finished)):
        same = (
            "type",
            "shkeptncontext",
            "triggeredid",
            "gitcommitid",
            "shkeptnspecversion",
            "datacontenttype",
        )
        assert {f: getattr(ours, f) for f in same} == {f: getattr(sdk, f) for f in same}
    # The sdk's started data is the parent's EventData; helm-service (and we) add status: succeeded.
    assert dict(started.data) == {**sdk_started.data, "status": "succeeded"}
    finished_data_ = json.loads(json.dumps(dict(finished.data)))
    finished_data_["deployment"].pop("gitCommit")
    assert finished_data_ == dict(sdk_finished.data)


def test_reply_never_copies_gitcommitid(derived: Callable[[str], bytes]) -> None:
    trigger = from_json(derived(TRIGGERED))
    assert trigger.gitcommitid
    reply = our_started(trigger)
    assert reply.gitcommitid == ""
    assert "gitcommitid" not in json.loads(to_structured(reply))


def test_make_reply_attributes(derived: Callable[[str], bytes]) -> None:
    trigger = from_json(derived(TRIGGERED))
    reply = our_started(trigger)
    assert reply.type == "sh.keptn.event.deployment.started"
    assert reply.triggeredid == trigger.id
    assert reply.shkeptncontext == trigger.shkeptncontext
    assert reply.shkeptnspecversion == "0.2.4"
    assert (reply.id, reply.source, reply.time) == ("our-1", OUR_SOURCE, NOW)


@pytest.mark.parametrize("name", [HELM_STARTED, "01-cli-POST-api-v1-event.body.json"])
def test_make_reply_refuses_non_task_triggered(name: str, derived: Callable[[str], bytes]) -> None:
    event = from_json(with_context(derived(name)))
    with pytest.raises(EventError, match=r"is not a task \.triggered event type$"):
        make_reply(event, "started", {}, source=OUR_SOURCE, now=NOW, event_id="x")


def test_make_reply_requires_an_aware_time(derived: Callable[[str], bytes]) -> None:
    with pytest.raises(EventError, match=r"^time must be timezone-aware$"):
        make_reply(from_json(derived(TRIGGERED)), "started", {}, source="s", now=datetime(2024, 1, 1), event_id="x")


@pytest.mark.parametrize(
    ("triggered", "kind", "expected"),
    [
        ("sh.keptn.event.deployment.triggered", "started", "sh.keptn.event.deployment.started"),
        ("sh.keptn.event.deployment.triggered", "finished", "sh.keptn.event.deployment.finished"),
        ("sh.keptn.event.rollback.triggered", "finished", "sh.keptn.event.rollback.finished"),
        ("sh.keptn.event.release.triggered", "started", "sh.keptn.event.release.started"),
        ("sh.keptn.event.deployment.triggered", "status.changed", "sh.keptn.event.deployment.status.changed"),
    ],
)
def test_reply_type(triggered: str, kind: str, expected: str) -> None:
    assert reply_type(triggered, kind) == expected


@pytest.mark.parametrize(
    ("triggered", "kind", "message"),
    [
        (
            "sh.keptn.event.deployment.finished",
            "finished",
            "type 'sh.keptn.event.deployment.finished' is not a task .triggered event type",
        ),
        (
            "sh.keptn.event.dev.delivery.triggered",
            "started",
            "type 'sh.keptn.event.dev.delivery.triggered' is not a task .triggered event type",
        ),
        (
            "sh.keptn.event.deployment.triggered",
            "triggered",
            "a reply kind must be 'started', 'status.changed' or 'finished', got 'triggered'",
        ),
    ],
)
def test_reply_type_errors(triggered: str, kind: str, message: str) -> None:
    with pytest.raises(EventError) as raised:
        reply_type(triggered, kind)
    assert str(raised.value) == message


# ------------------------------------------------------------------------------------------------------------
# Encoding: go-utils' field names, omitempty, time
# ------------------------------------------------------------------------------------------------------------


def test_structured_output_keys_and_omitempty(derived: Callable[[str], bytes]) -> None:
    trigger = from_json(derived(TRIGGERED))
    out = json.loads(to_structured(our_started(trigger)))
    assert set(out) == {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "time",
        "data",
        "shkeptncontext",
        "shkeptnspecversion",
        "triggeredid",
    }
    assert out["specversion"] == "1.0"
    assert out["datacontenttype"] == "application/json"
    assert "contenttype" not in out
    assert CONTENT_TYPE == "application/cloudevents+json"


def test_empty_keptn_extensions_are_omitted() -> None:
    event = KeptnEvent(id="1", type="sh.keptn.event.x.triggered", source="s", shkeptncontext="", data={}, time=NOW)
    out = json.loads(to_structured(event))
    for key in ("shkeptncontext", "triggeredid", "gitcommitid", "shkeptnspecversion"):
        assert key not in out


def test_time_is_utc_with_z() -> None:
    plus_two = datetime(2024, 1, 17, 13, 41, 9, 134279, tzinfo=timezone(timedelta(hours=2)))
    event = KeptnEvent(id="1", type="sh.keptn.event.x.started", source="s", shkeptncontext="c", data={}, time=plus_two)
    assert event.time == plus_two and event.time is not None and event.time.tzinfo is UTC
    assert json.loads(to_structured(event))["time"] == "2024-01-17T11:41:09.134279Z"
    whole = dataclasses.replace(event, time=datetime(2024, 1, 17, 11, 41, 9, tzinfo=UTC))
    assert json.loads(to_structured(whole))["time"] == "2024-01-17T11:41:09Z"


def test_extensions_pass_through_and_round_trip() -> None:
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "s",
            "type": "sh.keptn.event.x.finished",
            "time": "2024-01-17T11:41:09.134279817+02:00",
            "data": {"labels": {"a": "b"}, "n": [1, 2.5, None, True]},
            "shkeptncontext": "c",
            "triggeredid": "t",
            "gitcommitid": "g",
            "shkeptnspecversion": "0.2.4",
            "traceparent": "00-abc-def-01",
            "priority": 3,
            "flag": False,
            "subject": "carts",
        }
    )
    event = from_json(body)
    assert dict(event.extensions) == {
        "traceparent": "00-abc-def-01",
        "priority": 3,
        "flag": False,
        "subject": "carts",
    }
    assert event.time == datetime(2024, 1, 17, 9, 41, 9, 134279, tzinfo=UTC)
    out = json.loads(to_structured(event))
    assert (out["traceparent"], out["priority"], out["flag"], out["subject"]) == (
        "00-abc-def-01",
        3,
        False,
        "carts",
    )
    assert from_json(to_structured(event)) == event


def test_go_utils_extensions_object_is_accepted_and_dropped() -> None:
    body = {
        "id": "1",
        "source": "s",
        "type": "sh.keptn.event.x.started",
        "shkeptncontext": "c",
        "data": {},
        "extensions": {"a": 1},
    }
    event = from_json(json.dumps(body))
    assert dict(event.extensions) == {}
    assert "extensions" not in json.loads(to_structured(dataclasses.replace(event, time=NOW)))


def test_missing_time_is_written_as_go_zero_time() -> None:
    event = KeptnEvent(id="1", type="sh.keptn.event.x.started", source="s", shkeptncontext="c", data={}, time=None)
    assert json.loads(to_structured(event))["time"] == "0001-01-01T00:00:00Z"
    assert from_json(to_structured(event)) == event


def test_str_and_bytes_bodies_decode_alike(derived: Callable[[str], bytes]) -> None:
    body = derived(TRIGGERED)
    assert from_json(body.decode()) == from_json(body)


# ------------------------------------------------------------------------------------------------------------
# Immutability and validation at construction
# ------------------------------------------------------------------------------------------------------------


def test_event_is_frozen_and_data_is_a_private_read_only_copy() -> None:
    data: dict[str, Any] = {"project": "p", "nested": {"k": "v"}}
    event = KeptnEvent(id="1", type="sh.keptn.event.x.started", source="s", shkeptncontext="c", data=data, time=None)
    data["project"] = "changed"
    data["nested"]["k"] = "changed"
    assert event.data == {"project": "p", "nested": {"k": "v"}}
    with pytest.raises(TypeError):
        event.data["project"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.id = "2"  # type: ignore[misc]


def test_data_from_another_event_and_tuples_become_plain_json(derived: Callable[[str], bytes]) -> None:
    trigger = from_json(derived(TRIGGERED))
    data = {"copied": trigger.data, "uris": ("http://a", "http://b")}
    event = KeptnEvent(id="1", type="sh.keptn.event.x.started", source="s", shkeptncontext="c", data=data, time=NOW)
    assert event.data == {"copied": dict(trigger.data), "uris": ["http://a", "http://b"]}
    assert type(event.data["copied"]) is dict and type(event.data["uris"]) is list
    assert from_json(to_structured(event)) == event


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "id is empty"),
        ({"type": 5}, "type must be a string, got a number"),
        ({"source": ""}, "source is empty"),
        ({"type": "com.example.x"}, "type must start with 'sh.keptn.', got 'com.example.x'"),
        ({"triggeredid": None}, "triggeredid must be a string, got null"),
        ({"specversion": "0.3"}, "specversion must be '1.0', got '0.3'"),
        ({"datacontenttype": "text/plain"}, "datacontenttype must be a JSON media type, got 'text/plain'"),
        ({"data": ["x"]}, "data must be an object, got an array"),
        ({"data": {"a": {"b": float("nan")}}}, "data.a.b must be a finite number, got nan"),
        ({"data": {"a": [1, object()]}}, "data.a[1] must be a JSON value, got an instance of object"),
        ({"data": {1: "x"}}, "data has a key that is not a string: 1"),
        ({"time": "2024-01-01T00:00:00Z"}, "time must be a datetime, got a string"),
        (
            {"extensions": {"Foo": "x"}},
            "extension attribute 'Foo' must be named with lowercase letters and digits only",
        ),
        ({"extensions": {"time": "x"}}, "extension attribute 'time' clashes with a Keptn event attribute"),
        (
            {"extensions": {"foo": 1.5}},
            "extension attribute 'foo' must be a string, integer or boolean, got a number",
        ),
        ({"extensions": {"subject": ""}}, "subject is empty"),
    ],
)
def test_construction_errors(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "id": "1",
        "type": "sh.keptn.event.x.started",
        "source": "s",
        "shkeptncontext": "c",
        "data": {},
        "time": None,
    }
    with pytest.raises(EventError) as raised:
        KeptnEvent(**{**fields, **changes})
    assert str(raised.value) == message


# ------------------------------------------------------------------------------------------------------------
# Bad input: every kind gets an EventError naming the field
# ------------------------------------------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "specversion": "1.0",
    "id": "ffd870da-bca7-49a1-bafd-726c234bfd3b",
    "source": "shipyard-controller",
    "type": "sh.keptn.event.deployment.triggered",
    "datacontenttype": "application/json",
    "time": "2024-01-17T11:41:09.134279817Z",
    "data": {"project": "sockshop", "stage": "dev", "service": "carts"},
    "shkeptncontext": "62cca6f3-dc54-4df6-a04c-6ffc894a4b5e",
}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


def test_valid_base_event_decodes() -> None:
    assert from_json(json.dumps(VALID)).id == VALID["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"id": "a" "type": "b"}', "event is not valid JSON: Expecting ',' delimiter at line 1 column 12"),
        ("", "event is not valid JSON: Expecting value at line 1 column 1"),
        ('{"id": "a",\n "x": }', "event is not valid JSON: Expecting value at line 2 column 7"),
        (b'{"id": "\xff"}', "event is not valid UTF-8: invalid start byte at byte 8"),
        ('{"x": NaN}', "event is not valid JSON: NaN is not a valid JSON number"),
        ('{"x": -Infinity}', "event is not valid JSON: -Infinity is not a valid JSON number"),
        ('{"x": 1e400}', "event is not valid JSON: 1e400 is out of range"),
        ('{"x": ' + "9" * 5000 + "}", "event is not valid JSON: an integer has 5000 digits, more than 4000"),
        ("[" * 100_000, "event is not valid JSON: it is nested too deeply"),
        ("[]", "event must be a JSON object, got an array"),
        ('"sh.keptn.event.deployment.triggered"', "event must be a JSON object, got a string"),
        ("null", "event must be a JSON object, got null"),
        (json.dumps(without("id")), "id is missing"),
        (json.dumps(without("type")), "type is missing"),
        (json.dumps(without("source")), "source is missing"),
        (json.dumps({**VALID, "id": 42}), "id must be a string, got a number"),
        (json.dumps({**VALID, "id": None}), "id must be a string, got null"),
        (json.dumps({**VALID, "source": ""}), "source is empty"),
        (json.dumps({**VALID, "type": ["x"]}), "type must be a string, got an array"),
        (json.dumps({**VALID, "type": "sh.keptn"}), "type must start with 'sh.keptn.', got 'sh.keptn'"),
        (json.dumps({**VALID, "shkeptncontext": 1}), "shkeptncontext must be a string, got a number"),
        (json.dumps(without("shkeptncontext")), "shkeptncontext is missing"),
        (json.dumps({**VALID, "shkeptncontext": None}), "shkeptncontext must be a string, got null"),
        (json.dumps({**VALID, "shkeptncontext": ""}), "shkeptncontext is empty"),
        (
            json.dumps({**VALID, "id": "x\nKeptn-Context: victim\nKeptn-Scope: sockshop/dev/carts"}),
            "id must be a single line of printable characters, but 'x\\nKeptn-Context: victim\\nKeptn-Scope:"
            " sockshop/dev/carts' contains '\\n'",
        ),
        (
            json.dumps({**VALID, "shkeptncontext": "c\r"}),
            "shkeptncontext must be a single line of printable characters, but 'c\\r' contains '\\r'",
        ),
        (
            json.dumps({**VALID, "triggeredid": "a\u2028b"}),
            "triggeredid must be a single line of printable characters, but 'a\\u2028b' contains '\\u2028'",
        ),
        (json.dumps({**VALID, "id": " x"}), "id must not begin or end with whitespace, got ' x'"),
        (
            json.dumps({**VALID, "shkeptncontext": "c "}),
            "shkeptncontext must not begin or end with whitespace, got 'c '",
        ),
        (json.dumps({**VALID, "id": "i" * 257}), "id is 257 characters long, at most 256 are allowed"),
        (json.dumps({**VALID, "triggeredid": True}), "triggeredid must be a string, got a boolean"),
        (json.dumps({**VALID, "gitcommitid": {}}), "gitcommitid must be a string, got an object"),
        (
            json.dumps({**VALID, "shkeptnspecversion": 0.2}),
            "shkeptnspecversion must be a string, got a number",
        ),
        (json.dumps({**VALID, "specversion": "0.3"}), "specversion must be '1.0', got '0.3'"),
        (json.dumps({**VALID, "specversion": 1.0}), "specversion must be a string, got a number"),
        (
            json.dumps({**VALID, "datacontenttype": "text/xml"}),
            "datacontenttype must be a JSON media type, got 'text/xml'",
        ),
        (
            json.dumps({**without("datacontenttype"), "contenttype": 1}),
            "contenttype must be a string, got a number",
        ),
        (json.dumps(without("data")), "data is missing"),
        (
            json.dumps({**without("data"), "data_base64": "e30="}),
            "data_base64 is not supported: Keptn event data must be a JSON object",
        ),
        (json.dumps({**VALID, "data": "project=sockshop"}), "data must be an object, got a string"),
        (json.dumps({**VALID, "data": None}), "data must be an object, got null"),
        (json.dumps({**VALID, "time": 1705491669}), "time must be a string, got a number"),
        (json.dumps({**VALID, "time": "yesterday"}), "time is not an RFC 3339 timestamp: 'yesterday'"),
        (
            json.dumps({**VALID, "time": "2024-01-17T11:41:09"}),
            "time is not an RFC 3339 timestamp: '2024-01-17T11:41:09'",
        ),
        (json.dumps({**VALID, "time": ""}), "time is not an RFC 3339 timestamp: ''"),
        (
            json.dumps({**VALID, "time": "2024-13-17T11:41:09Z"}),
            "time is not a valid timestamp: '2024-13-17T11:41:09Z' (month must be in 1..12)",
        ),
        (json.dumps({**VALID, "extensions": "x"}), "extensions must be an object, got a string"),
        (
            json.dumps({**VALID, "foo": {"a": 1}}),
            "extension attribute 'foo' must be a string, integer or boolean, got an object",
        ),
        (
            json.dumps({**VALID, "fooBar": "x"}),
            "extension attribute 'fooBar' must be named with lowercase letters and digits only",
        ),
        (json.dumps({**VALID, "subject": 5}), "subject must be a string, got a number"),
    ],
)
def test_bad_input_errors(body: str | bytes, message: str) -> None:
    with pytest.raises(EventError) as raised:
        from_json(body)
    assert str(raised.value) == message
    assert raised.value.__cause__ is None or isinstance(raised.value.__cause__, EventError)


def test_deeply_nested_data_is_refused() -> None:
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(150):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(EventError, match=r"^data is nested deeper than 100 levels \(at data(\.a){101}\)$"):
        from_json(json.dumps({**VALID, "data": nested}))


def test_oversized_payload() -> None:
    body = json.dumps({**VALID, "data": {**VALID["data"], "pad": "x" * MAX_EVENT_BYTES}})
    size = len(body.encode())
    with pytest.raises(EventError) as raised:
        from_json(body)
    assert str(raised.value) == f"event is {size} bytes, more than the limit of 1048576 bytes"
    with pytest.raises(EventError, match=r"^event is \d+ bytes, more than the limit of 100 bytes$"):
        from_json(json.dumps(VALID), max_bytes=100)
    assert from_json(json.dumps(VALID), max_bytes=len(json.dumps(VALID))).id == VALID["id"]


def test_empty_triggeredid_and_gitcommitid_are_absent() -> None:
    event = from_json(json.dumps({**VALID, "triggeredid": "", "gitcommitid": "", "shkeptnspecversion": ""}))
    assert (event.triggeredid, event.gitcommitid, event.shkeptnspecversion) == ("", "", "")
    out = json.loads(to_structured(event))
    assert "triggeredid" not in out and "gitcommitid" not in out


def test_null_optional_attributes_are_absent() -> None:
    event = from_json(json.dumps({**VALID, "time": None, "triggeredid": None, "datacontenttype": None}))
    assert (event.time, event.triggeredid, event.datacontenttype) == (None, "", "application/json")


# ------------------------------------------------------------------------------------------------------------
# keptn/spec cloudevents.md examples (deployment, release, rollback)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC_DELIVERY_FILES)
def test_spec_example_decodes(name: str, spec: Callable[[str], bytes]) -> None:
    body = spec(name)
    try:
        raw = json.loads(body)
    except ValueError:
        with pytest.raises(EventError, match=r"^event is not valid JSON: "):
            from_json(body)
        return
    event = from_json(body)
    task, _, kind = name.removesuffix(".json").partition("-")
    assert event.task == task
    assert event.kind == kind.replace("-", ".")
    assert event.source == "source-service"
    assert event.time is None  # the spec examples carry no time
    assert dict(event.data) == raw["data"]
    assert event.gitcommitid == raw["gitcommitid"]
    assert event.triggeredid == raw.get("triggeredid", "")
    assert from_json(to_structured(event)) == event


@pytest.mark.parametrize("name", [n for n in SPEC_DELIVERY_FILES if n.endswith("-triggered.json")])
def test_spec_triggered_reply_echoes_scope(name: str, spec: Callable[[str], bytes]) -> None:
    trigger = from_json(spec(name))
    reply = make_reply(
        trigger,
        "started",
        started_data(scope_from_data(trigger.data)),
        source=OUR_SOURCE,
        now=NOW,
        event_id="r",
    )
    out = json.loads(to_structured(reply))
    assert out["type"] == trigger.type.replace(".triggered", ".started")
    assert out["triggeredid"] == trigger.id
    assert out["data"] == {
        "project": "sockshop",
        "stage": "dev",
        "service": "carts",
        "labels": {"label-key": "label-value"},
        "status": "succeeded",
    }
