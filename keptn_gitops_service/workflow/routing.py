"""Which rule owns an event, decided by one rule for every path: live messages, messages that
do not decode, and records resumed from the state store.

The first rule whose globs match project, stage and service owns an event. The three are read *loosely* — as
whatever strings the raw JSON holds, before any strict decoding — so whether an event is ours never depends on
the rest of it being valid: an event no rule could own gets no reply at all, however malformed it is (another
deployment service owns it, and must not be raced); one a rule owns gets ``.started`` and ``.finished``, errored
with the precise problem when it is otherwise invalid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

import structlog

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.keptn.events import describe_json_type

log = structlog.get_logger(__name__)

TRIGGER_TASKS: Final = ("deployment", "release", "rollback")
"""The tasks whose ``.triggered`` events this service answers."""

_TASK_BY_TYPE: Final = {f"sh.keptn.event.{task}.triggered": task for task in TRIGGER_TASKS}
_SCOPE_KEYS: Final = ("project", "stage", "service")


@dataclass(frozen=True)
class Ownership:
    """The answer of :func:`ownership`: the owning rule, or why the event is left alone."""

    task: str | None = None
    """The trigger's task (``deployment``, ``release``, ``rollback``); ``None``: not a trigger we answer at all
    (another event type, or one we sent ourselves)."""
    rule: Rule | None = None
    """The owning rule; ``None``: not ours."""
    scope: Mapping[str, str] = field(default_factory=dict)
    """The project/stage/service that were strings."""
    unknown: str = ""
    """When not ours only because of this (``data.project is missing or not a string``) while some rule might
    have matched: nobody can tell whose the event is."""

    def log_not_ours(self, triggered_id: object) -> None:
        """Say why an event is left alone (silent for non-triggers and our own events)."""
        if self.task is None or self.rule is not None:
            return
        where = {"triggeredid": triggered_id if isinstance(triggered_id, str) else None, **self.scope}
        if self.unknown:
            log.warning(
                f"cannot tell whether a rule owns this {self.task} trigger: {self.unknown}; leaving it to other "
                "services",
                **where,
            )
        else:
            log.info("no rule matches; leaving the event to other services", **where)


def ownership(config: GitOpsConfig, envelope: object) -> Ownership:
    """THE ownership rule, for a trigger's raw JSON object (live, or the bytes a resumed record kept).

    Only ``sh.keptn.event.<deployment|release|rollback>.triggered`` from another source can be ours. Then each
    rule is tried in order: a string field matches its glob or not; a missing or non-string field matches only
    a glob that matches every string (``*``), because only then would the rule own the event whatever the value
    was. A rule all of whose globs match owns the event — even when project/stage/service are not valid Keptn
    names: that is an error to answer, not a reason to stay silent. When no rule matches but one might, had the
    missing fields been given, nobody can tell whose the event is; it is left alone (and logged at warning)."""
    if not isinstance(envelope, Mapping):
        return Ownership()
    kind = envelope.get("type")
    task = _TASK_BY_TYPE.get(kind) if isinstance(kind, str) else None
    if task is None or envelope.get("source") == SERVICE_NAME:
        return Ownership()
    data = envelope.get("data")
    values = {k: data.get(k) for k in _SCOPE_KEYS} if isinstance(data, Mapping) else dict.fromkeys(_SCOPE_KEYS)
    scope = {k: v for k, v in values.items() if isinstance(v, str)}
    if "data" not in envelope:
        unknown = "data is missing"
    elif not isinstance(data, Mapping):
        unknown = f"data is {describe_json_type(data)}, not an object"
    else:
        names = [f"data.{k}" for k in _SCOPE_KEYS if k not in scope]
        unknown = f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} missing or not a string"
    undecided = False
    for rule in config.rules:
        globs = {"project": rule.match.project, "stage": rule.match.stage, "service": rule.match.service}
        fits = [_fits(globs[k], values[k]) for k in _SCOPE_KEYS]
        if all(f is True for f in fits):
            return Ownership(task, rule, scope)
        undecided = undecided or False not in fits
    return Ownership(task, None, scope, unknown if undecided else "")


def task_of(event_type: str) -> str | None:
    """The task of a ``.triggered`` type this service answers (``deployment``, ``release``, ``rollback``)."""
    return _TASK_BY_TYPE.get(event_type)


def _fits(glob: str, value: object) -> bool | None:
    """Whether ``value`` matches ``glob``; ``None`` when it is not a string and the glob does not match all."""
    if isinstance(value, str):
        return fnmatchcase(value, glob)
    return True if glob and set(glob) == {"*"} else None


def loose_scope(data: object) -> dict[str, Any]:
    """project/stage/service (strings) and labels (a string map) of a possibly invalid event, for replies to it."""
    if not isinstance(data, Mapping):
        return {}
    scope: dict[str, Any] = {k: data[k] for k in _SCOPE_KEYS if isinstance(data.get(k), str)}
    labels = data.get("labels")
    if isinstance(labels, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        scope["labels"] = dict(labels)
    return scope
