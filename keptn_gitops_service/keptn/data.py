"""Keptn event ``data``: the trigger payloads we read and the reply payloads we write.

JSON field names and ``omitempty`` behaviour are go-utils' [go-utils:pkg/lib/v0_2_0/events.go (EventData),
deployment.go, configuration_change.go, release.go, rollback.go]; the reply contents copy helm-service
[keptn@0.18.1:helm-service/controller/{deployment,release,rollback}_handler.go]. Parsing raises
:class:`~keptn_gitops_service.errors.EventError` naming the field (``data.project is missing``); the builders
return plain dicts ready for JSON and raise :class:`ValueError` when called with values Keptn cannot accept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.events import describe_json_type, plain_copy

__all__ = [
    "KEPTN_NAME_MAX_LENGTH",
    "DeploymentTrigger",
    "EventScope",
    "Result",
    "Status",
    "Strategy",
    "deployment_block",
    "echoed_result",
    "finished_data",
    "parse_deployment_triggered",
    "parse_strategy",
    "scope_fields",
    "scope_from_data",
    "started_data",
]


class Status(StrEnum):
    """The ``status`` values we send [go-utils:pkg/lib/v0_2_0/status.go]."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"


class Result(StrEnum):
    """``result`` values [go-utils:pkg/lib/v0_2_0/result.go] — note ``fail``, not ``failed``."""

    PASS = "pass"
    WARNING = "warning"
    FAIL = "fail"


class Strategy(StrEnum):
    """Deployment strategies as go-utils prints them (``DeploymentStrategy.String()``)
    [go-utils:pkg/lib/deployment_strategy.go]."""

    DIRECT = "direct"
    DUPLICATE = "duplicate"
    USER_MANAGED = "user_managed"


KEPTN_NAME_MAX_LENGTH: Final = 63
_KEPTN_NAME_CHARS: Final = re.compile(r"[a-z0-9-]*")

# go-utils' deploymentStrategyToID [go-utils:pkg/lib/deployment_strategy.go], matched exactly (case-sensitive)
# like GetDeploymentStrategy, which helm-service calls [helm-service:controller/deployment_handler.go].
_STRATEGY_BY_NAME: Final[Mapping[str, Strategy]] = MappingProxyType(
    {
        "direct": Strategy.DIRECT,
        "duplicate": Strategy.DUPLICATE,
        "blue_green_service": Strategy.DUPLICATE,
        "user_managed": Strategy.USER_MANAGED,
    }
)

# Keys of go-utils' EventData; a builder's ``extra`` must not override them.
_EVENT_DATA_KEYS: Final = frozenset({"project", "stage", "service", "labels", "status", "result", "message"})


# ------------------------------------------------------------------------------------------------------------
# Scope: project / stage / service / labels
# ------------------------------------------------------------------------------------------------------------


def _name_problem(value: str) -> str | None:
    """Why a non-empty *value* is not a Keptn entity name (lowercase letters, digits, ``-``; starts with a
    letter; at most 63 characters — a DNS label, as the ``<project>-<stage>`` namespace must be)."""
    if len(value) > KEPTN_NAME_MAX_LENGTH:
        return f"is {len(value)} characters long, at most {KEPTN_NAME_MAX_LENGTH} are allowed"
    if not _KEPTN_NAME_CHARS.fullmatch(value):
        return "is not a valid Keptn name: only lowercase letters, digits and '-' are allowed"
    if not value[0].isalpha():
        return "is not a valid Keptn name: it must start with a lowercase letter"
    return None


def _check_name(value: object, where: str) -> str:
    if value is None:
        raise EventError(f"{where} is missing")
    if not isinstance(value, str):
        raise EventError(f"{where} must be a string, got {describe_json_type(value)}")
    if not value:
        raise EventError(f"{where} is empty")
    problem = _name_problem(value)
    if problem is not None:
        shown = value if len(value) <= 80 else value[:80] + "…"
        raise EventError(f"{where} {shown!r} {problem}")
    return value


def _check_labels(value: object, where: str) -> dict[str, str]:
    """``labels`` is a ``map[string]string``; missing or ``null`` means none."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(f"{where} must be an object, got {describe_json_type(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise EventError(f"{where}.{key} must be a string, got {describe_json_type(item)}")
    return dict(value)


@dataclass(frozen=True)
class EventScope:
    """Who an event is about: go-utils ``EventData``'s project/stage/service/labels (validated)."""

    project: str
    stage: str
    service: str
    labels: Mapping[str, str]

    def __post_init__(self) -> None:
        for name in ("project", "stage", "service"):
            _check_name(getattr(self, name), name)
        object.__setattr__(self, "labels", MappingProxyType(_check_labels(self.labels, "labels")))


def scope_from_data(data: Mapping[str, Any]) -> EventScope:
    """The :class:`EventScope` of an event's data. Like the shipyard-controller's ``NewEventScope``
    [keptn:shipyard-controller/models/eventscope.go], project, stage and service are required (checked in
    that order; the message names the first bad one)."""
    return EventScope(
        project=_check_name(data.get("project"), "data.project"),
        stage=_check_name(data.get("stage"), "data.stage"),
        service=_check_name(data.get("service"), "data.service"),
        labels=_check_labels(data.get("labels"), "data.labels"),
    )


# ------------------------------------------------------------------------------------------------------------
# deployment.triggered
# ------------------------------------------------------------------------------------------------------------


def _object(value: object, where: str) -> dict[str, Any]:
    """A JSON object field where missing or ``null`` means empty (Go decodes both into the zero value)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(f"{where} must be an object, got {describe_json_type(value)}")
    return dict(plain_copy(value))


def _string_list(value: object, where: str) -> tuple[str, ...]:
    """A ``[]string`` field; ``null`` (go-utils' ``deploymentURIsLocal`` has no ``omitempty``) means empty."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise EventError(f"{where} must be an array of strings, got {describe_json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise EventError(f"{where}[{index}] must be a string, got {describe_json_type(item)}")
    return tuple(value)


def parse_strategy(value: object, where: str = "data.deployment.deploymentstrategy") -> Strategy:
    """Parse a deployment strategy like go-utils' ``GetDeploymentStrategy`` [go-utils:pkg/lib/
    deployment_strategy.go]: ``direct``, ``duplicate``, ``blue_green_service`` (= ``duplicate``),
    ``user_managed``; anything else fails with helm-service's wording "The deployment strategy X is invalid".

    Unlike helm-service, an empty or missing strategy means ``direct``: ``keptn trigger delivery`` sends
    ``"deploymentstrategy": ""`` [keptn:cli/cmd/trigger_delivery.go] and a shipyard may give the
    deployment task no properties, in which case that ``""`` reaches the service unchanged; with GitOps there
    is only one way to deploy, so there is nothing to choose.
    """
    if value is None or value == "":
        return Strategy.DIRECT
    if not isinstance(value, str):
        raise EventError(f"{where} must be a string, got {describe_json_type(value)}")
    strategy = _STRATEGY_BY_NAME.get(value)
    if strategy is None:
        raise EventError(f"The deployment strategy {value} is invalid")
    return strategy


@dataclass(frozen=True)
class DeploymentTrigger:
    """What a ``deployment.triggered`` asks for [go-utils:pkg/lib/v0_2_0/deployment.go
    DeploymentTriggeredEventData]."""

    scope: EventScope
    values: Mapping[str, Any]
    """``configurationChange.values`` (may be empty)."""
    strategy: Strategy
    uris_local: tuple[str, ...]
    uris_public: tuple[str, ...]
    properties: Mapping[str, Any]
    """The whole ``data.deployment`` object: the shipyard's task properties land there
    [keptn:shipyard-controller/models/sequence_execution.go GetNextTriggeredEventData]."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        object.__setattr__(self, "values", MappingProxyType(plain_copy(self.values)))
        object.__setattr__(self, "properties", MappingProxyType(plain_copy(self.properties)))
        object.__setattr__(self, "uris_local", tuple(self.uris_local))
        object.__setattr__(self, "uris_public", tuple(self.uris_public))


def parse_deployment_triggered(data: Mapping[str, Any], *, scope: EventScope | None = None) -> DeploymentTrigger:
    """Decode ``deployment.triggered`` data: the scope (unless already decoded: ``scope``), then
    ``configurationChange``, then ``deployment``."""
    scope = scope if scope is not None else scope_from_data(data)
    change = _object(data.get("configurationChange"), "data.configurationChange")
    values = _object(change.get("values"), "data.configurationChange.values")
    deployment = _object(data.get("deployment"), "data.deployment")
    return DeploymentTrigger(
        scope=scope,
        values=values,
        strategy=parse_strategy(deployment.get("deploymentstrategy")),
        uris_local=_string_list(deployment.get("deploymentURIsLocal"), "data.deployment.deploymentURIsLocal"),
        uris_public=_string_list(deployment.get("deploymentURIsPublic"), "data.deployment.deploymentURIsPublic"),
        properties=deployment,
    )


# ------------------------------------------------------------------------------------------------------------
# Reply data builders
# ------------------------------------------------------------------------------------------------------------


def scope_fields(scope: EventScope) -> dict[str, Any]:
    """project/stage/service, and labels only when there are any (``labels,omitempty``): what every reply carries."""
    fields: dict[str, Any] = {"project": scope.project, "stage": scope.stage, "service": scope.service}
    if scope.labels:
        fields["labels"] = dict(scope.labels)
    return fields


def started_data(scope: EventScope | Mapping[str, Any], message: str = "") -> dict[str, Any]:
    """``.started`` data as helm-service's ``getStartedEventData``: the trigger's EventData with
    ``status: succeeded`` and no result/message [helm-service:controller/deployment_handler.go]. ``scope`` may
    also be the scope fields themselves (whatever an invalid event carried). A ``message`` (EventData's own field)
    says where the work is when it is not ours alone to do (the pull request a deployment waits for)."""
    data = {**(scope_fields(scope) if isinstance(scope, EventScope) else scope), "status": Status.SUCCEEDED.value}
    return {**data, "message": message} if message else data


def finished_data(
    scope: EventScope | Mapping[str, Any],
    *,
    status: Status | str,
    result: Result | str,
    message: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``.finished`` data: EventData with ``status`` (succeeded|errored) and ``result`` (pass|warning|fail,
    never empty: the shipyard-controller counts an empty result as ``fail``), ``message`` (omitted when
    empty, ``omitempty``), plus task-specific keys from *extra*, e.g. ``{"deployment": deployment_block(…)}``.
    ``scope`` may also be the scope fields themselves (whatever an invalid event carried)."""
    if status not in set(Status):
        raise ValueError(f"status must be one of {', '.join(Status)}, got {status!r}")
    if result not in set(Result):
        raise ValueError(f"result must be one of {', '.join(Result)}, got {result!r}")
    clashes = sorted(_EVENT_DATA_KEYS.intersection(extra or {}))
    if clashes:
        raise ValueError(f"extra must not set the EventData keys {', '.join(clashes)}")
    data: dict[str, Any] = {
        **(scope_fields(scope) if isinstance(scope, EventScope) else scope),
        "status": Status(status).value,
        "result": Result(result).value,
    }
    if message:
        data["message"] = message
    data.update(plain_copy(extra or {}))
    return data


def _uri_list(uris: Sequence[str], name: str) -> list[str]:
    if isinstance(uris, str) or not all(isinstance(uri, str) for uri in uris):
        raise ValueError(f"{name} must be a sequence of strings, got {uris!r}")
    return list(uris)


def deployment_block(
    strategy: Strategy | str,
    uris_local: Sequence[str],
    uris_public: Sequence[str],
    git_commit: str,
) -> dict[str, Any]:
    """``deployment`` of ``deployment.finished``
    [go-utils:pkg/lib/v0_2_0/deployment.go DeploymentFinishedData]:
    ``deploymentURIsLocal`` is emitted even when empty (no ``omitempty``), ``deploymentURIsPublic`` is omitted
    when empty, ``deploymentNames`` is ``["direct"]`` (a GitOps deployment replaces the workload in place),
    and
    ``gitCommit`` — the GitOps commit, a field go-utils <= v0.14 had — is omitted when empty."""
    if strategy not in set(Strategy):
        raise ValueError(f"strategy must be one of {', '.join(Strategy)}, got {strategy!r}")
    block: dict[str, Any] = {
        "deploymentstrategy": Strategy(strategy).value,
        "deploymentURIsLocal": _uri_list(uris_local, "uris_local"),
    }
    public = _uri_list(uris_public, "uris_public")
    if public:
        block["deploymentURIsPublic"] = public
    block["deploymentNames"] = [Strategy.DIRECT.value]
    if git_commit:
        block["gitCommit"] = git_commit
    return block


# ------------------------------------------------------------------------------------------------------------
# release / rollback
# ------------------------------------------------------------------------------------------------------------


def echoed_result(data: Mapping[str, Any]) -> Result:
    """The ``result`` for ``release.finished``/``rollback.finished``: helm-service echoes the trigger's
    ``data.result`` [helm-service:controller/release_handler.go, rollback_handler.go]; when that is not
    pass/warning/fail (typically empty) we send ``pass`` instead of an empty result, which the
    shipyard-controller would count as ``fail``."""
    value = data.get("result")
    return Result(value) if isinstance(value, str) and value in set(Result) else Result.PASS
