"""Which rule owns an event, decided by one rule for every path: live messages, messages that
do not decode, and records resumed from the state store.

The first rule whose globs match project, stage and service owns an event. The three are read *loosely* — as
whatever strings the raw JSON holds, before any strict decoding — so whether an event is ours never depends on
the rest of it being valid: an event no rule could own gets no reply at all, however malformed it is (another
deployment service owns it, and must not be raced); one a rule owns gets ``.started`` and ``.finished``, errored
with the precise problem when it is otherwise invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

import structlog

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.cdevents.model import FinishedTask, TaskObserver
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.data import EventScope, scope_from_data
from keptn_gitops_service.keptn.events import (
    MAX_EVENT_BYTES,
    KeptnEvent,
    describe_json_type,
    from_json,
    make_reply,
    to_structured,
)
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.state.store import Phase, Record, StateStore

log = structlog.get_logger(__name__)

TRIGGER_TASKS: Final = ("deployment", "release", "rollback")
"""The tasks whose ``.triggered`` events this service answers."""

_TASK_BY_TYPE: Final = {f"sh.keptn.event.{task}.triggered": task for task in TRIGGER_TASKS}
_SCOPE_KEYS: Final = ("project", "stage", "service")


def find_rule(config: GitOpsConfig, project: str, stage: str, service: str) -> Rule | None:
    """The first matching rule, or ``None`` (then another deployment service may own the event)."""
    for rule in config.rules:
        m = rule.match
        if fnmatchcase(project, m.project) and fnmatchcase(stage, m.stage) and fnmatchcase(service, m.service):
            return rule
    return None


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
    """THE ownership rule, for a trigger's raw JSON object (or a decoded event's :func:`envelope`).

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


def envelope(event: KeptnEvent) -> dict[str, Any]:
    """What :func:`ownership` reads, from a decoded event."""
    return {"type": event.type, "source": event.source, "data": event.data}


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


def scope_problem(data: Mapping[str, Any]) -> str | None:
    """The precise error of an event's scope (project/stage/service/labels), ``None`` when it is valid."""
    try:
        scope_from_data(data)
    except EventError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Replier:
    """What answering a trigger needs: where replies go, the time, and new event ids."""

    store: StateStore
    sink: EventSink
    clock: Clock
    new_id: Callable[[], str]

    async def reject(
        self,
        event: KeptnEvent,
        message: str,
        *,
        claim: bool = False,
        started: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer an owned trigger that is invalid: ``.started`` (unless ``started``: a resumed record that already
        sent it), then ``.finished`` errored/fail with ``message`` and ``extra`` data. ``claim``: record the trigger
        first (nothing is sent when it was recorded before: a redelivery)."""
        if claim and not (await self.store.claim(event.id, event.shkeptncontext, event.type, to_structured(event)))[1]:
            return
        scope = loose_scope(event.data)
        if not started:
            reply = make_reply(
                event,
                "started",
                {**scope, "status": "succeeded"},
                source=SERVICE_NAME,
                now=self.clock.now(),
                event_id=self.new_id(),
            )
            await self.sink.publish(reply)
            await self.store.advance(event.id, Phase.STARTED)
        data = {**scope, "status": "errored", "result": "fail", "message": message, **(extra or {})}
        log_finished(f"invalid {event.task}", status="errored", result="fail", triggeredid=event.id, message=message)
        reply = make_reply(event, "finished", data, source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id())
        await publish_finished(self.store, self.sink, event, reply, result="fail")


async def claim_owned(
    event: KeptnEvent, task: str, config: GitOpsConfig, store: StateStore, on_claimed: Ack | None
) -> tuple[EventScope | None, Rule] | None:
    """For a ``<task>.triggered`` a rule owns (:func:`ownership`): record it (calling ``on_claimed`` once it is
    persisted) and return its scope and rule — the scope ``None`` when it is invalid, then the caller answers
    errored (:meth:`Replier.reject` with :func:`scope_problem`). ``None`` when it is not ours or was already
    claimed."""
    owner = ownership(config, envelope(event))
    if owner.rule is None or owner.task != task:
        owner.log_not_ours(event.id)
        return None
    created = (await store.claim(event.id, event.shkeptncontext, event.type, to_structured(event)))[1]
    if on_claimed is not None:
        await on_claimed()
    if not created:
        return None
    try:
        return scope_from_data(event.data), owner.rule
    except EventError:
        return None, owner.rule


async def publish_finished(
    store: StateStore,
    sink: EventSink,
    trigger: KeptnEvent,
    reply: KeptnEvent,
    *,
    commit: str = "",
    result: str = "",
    task: FinishedTask | None = None,
    observer: TaskObserver | None = None,
) -> bool:
    """Publish ``.finished`` for ``trigger`` and record it — unless another replica has taken the trigger over
    (its lease had expired while this one was paused or cut off): then the other replica answers, not us.

    THE call site of the finished-task observer (the CDEvents): after the reply is published (it never waits for
    the observer) and before the record is marked finished (a crash in between finishes the task again, and the
    observer is told again)."""
    if not await store.owns(trigger.id):
        log.warning("another replica took this trigger over; it will answer", triggeredid=trigger.id)
        return False
    await sink.publish(reply)
    if observer is not None and task is not None:
        await observer.finished(task)
    await store.advance(trigger.id, Phase.FINISHED, commit=commit, result=result)
    return True


def log_finished(what: str, *, status: str, result: str, **fields: object) -> None:
    """Log a ``.finished`` at the level it deserves: errored at error, fail at warning, pass at info."""
    level = log.error if status == "errored" else log.warning if result == "fail" else log.info
    level(f"{what} finished", status=status, result=result, **fields)


def stored_trigger(record: Record) -> KeptnEvent:
    """The trigger of a stored record. It passed the wire's size limit when it arrived; its stored re-encoding
    may be a little larger, which must not make it impossible to resume."""
    return from_json(record.payload, max_bytes=len(record.payload) + MAX_EVENT_BYTES)
