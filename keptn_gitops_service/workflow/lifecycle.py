"""The life of one task, the same for every task: receive → claim → ``.started`` → the task's body → ``.finished``.

A message arrives as bytes and is read once (:func:`read`: strictly, and loosely only when that fails).
:func:`routing.ownership` says whether a rule owns it; an owned one becomes one immutable :class:`Trigger`
(:func:`decode`) — the received bytes, the event, its scope, the task's data and the template context — and is
claimed in the state store with those bytes. It then gets ``.started`` and runs the body its task names in the
``{task: body}`` table (deployment, rollback, release: :class:`TaskBody`); whatever the body returns or raises
becomes one :class:`Finished` (``Status``/``Result`` enums), which is answered as ``.finished``, counted, logged and
handed to the observers (:class:`FinishedObserver`). A record left unfinished by a previous process is resumed
through the same table from its stored bytes and phase (``.started`` is not sent twice; a pushed commit is not made
again). Every trigger we own gets ``.started`` then ``.finished``; one we do not own gets nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

import structlog
from prometheus_client import Counter

from keptn_gitops_service import SERVICE_NAME, metrics
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import ArgoWait, ClustersWait, FluxWait, GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError, GitOpsServiceError, StateError, describe_error
from keptn_gitops_service.keptn.data import (
    DeploymentTrigger,
    EventScope,
    Result,
    Status,
    finished_data,
    parse_deployment_triggered,
    scope_fields,
    scope_from_data,
    started_data,
)
from keptn_gitops_service.keptn.events import KeptnEvent, from_json, make_reply
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.keptn.uniform import Subscription
from keptn_gitops_service.state.store import Phase, Record, StateStore
from keptn_gitops_service.tasks import cancel_and_wait
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.routing import loose_scope, ownership, task_of

log = structlog.get_logger(__name__)

_NONE: Mapping[str, Any] = MappingProxyType({})
T = TypeVar("T")


@dataclass(frozen=True)
class Finished:
    """How a task ended: what ``.finished`` says, with its task-specific data (``{"deployment": …}``)."""

    status: Status
    result: Result
    message: str
    commit: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    target: FluxWait | ArgoWait | ClustersWait | None = None
    """What the task's wait followed (the rule's wait, rendered); ``None``: it did not wait, or failed before."""
    reply: KeptnEvent | None = None
    """The ``.finished`` event as sent: set by the lifecycle on what it hands to the observers."""

    @property
    def passed(self) -> bool:
        return self.result is Result.PASS

    @classmethod
    def errored(cls, message: str, commit: str = "", data: Mapping[str, Any] | None = None) -> Finished:
        return cls(Status.ERRORED, Result.FAIL, message, commit, data or {})


@dataclass(frozen=True)
class Trigger:
    """One owned ``<task>.triggered``, decoded once from the bytes received; every step of its task reads this."""

    task: str
    payload: bytes
    """The bytes as received: what the state store keeps, and what a resume decodes."""
    event: KeptnEvent
    """The decoded event (for one that does not decode: its id, type, context and loose scope, to answer it)."""
    rule: Rule | None
    """The owning rule (``None``: a resumed record that no rule of the current configuration owns any more)."""
    problem: str = ""
    """Why the trigger cannot be worked on (it is answered errored with this); empty when it is valid."""
    scope: EventScope | None = None
    context: TemplateContext | None = None
    """What templates render from (scope, ``configurationChange.values`` of deployments, Keptn context)."""
    deployment: DeploymentTrigger | None = None
    """A deployment's data: values, strategy, URIs and the shipyard's task properties."""
    properties: Mapping[str, Any] = field(default_factory=dict)
    """The shipyard's task properties (``data.<task>``)."""

    @property
    def id(self) -> str:
        return self.event.id

    def reply_scope(self) -> dict[str, Any]:
        """What every reply carries: the scope, or for an invalid trigger whatever scope strings it has."""
        return scope_fields(self.scope) if self.scope is not None else loose_scope(self.event.data)


@dataclass(frozen=True)
class Received:
    """A message as read, once: the decoded event, or — when it does not decode — its loose JSON and why not."""

    payload: bytes
    event: KeptnEvent | None
    envelope: Any
    """What :func:`routing.ownership` reads: the event's id, type, source and data, or the loose JSON."""
    error: str = ""


def read(payload: bytes) -> Received:
    """Read a message (live, or the bytes a record kept): strictly, and loosely only when that fails."""
    try:
        event = from_json(payload)
    except EventError as exc:
        return Received(payload, None, _loose_json(payload), str(exc))
    envelope = {"id": event.id, "type": event.type, "source": event.source, "data": event.data}
    return Received(payload, event, envelope)


def decode(task: str, rule: Rule | None, received: Received) -> Trigger | None:
    """THE decoding of a trigger, for live messages and resumed records alike. ``None`` when it cannot even be
    answered (no usable ``id``/``shkeptncontext``; logged)."""
    if received.event is not None:
        return triggered(task, rule, received.payload, received.event)
    raw = received.envelope
    stand_in = _stand_in(raw)
    if stand_in is None:
        log.error(
            "cannot answer an undecodable trigger: its id or shkeptncontext is missing or not a string",
            error=received.error,
            type=raw.get("type") if isinstance(raw, dict) else None,
        )
        return None
    log.error("answering an undecodable trigger with errored/fail", error=received.error, triggeredid=stand_in.id)
    problem = f"the event could not be decoded: {received.error}"
    return Trigger(task, received.payload, stand_in, rule, problem=problem)


def triggered(task: str, rule: Rule | None, payload: bytes, event: KeptnEvent) -> Trigger:
    """The :class:`Trigger` of a decoded event: its scope, the task's data and the template context, each read once
    (a problem with them makes the trigger invalid, answered errored)."""
    try:
        scope = scope_from_data(event.data)
    except EventError as exc:
        return Trigger(task, payload, event, rule, problem=str(exc))
    try:
        deployment = parse_deployment_triggered(event.data, scope=scope) if task == "deployment" else None
        properties = deployment.properties if deployment is not None else _task_properties(event.data, task)
    except EventError as exc:
        return Trigger(task, payload, event, rule, problem=str(exc), scope=scope)
    values = deployment.values if deployment is not None else _NONE
    context = TemplateContext(scope, values, event.shkeptncontext)
    return Trigger(task, payload, event, rule, "", scope, context, deployment, properties)


def _task_properties(data: Mapping[str, Any], task: str) -> Mapping[str, Any]:
    """The shipyard's task properties (``data.<task>``; missing means none)."""
    properties = data.get(task)
    if properties is None:
        return _NONE
    if not isinstance(properties, Mapping):
        raise EventError(f"data.{task} must be an object (the {task} task's properties)")
    return properties


def _stand_in(raw: Any) -> KeptnEvent | None:
    """An undecodable trigger's id, type, source and context with its loose scope, to answer it by."""
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) and raw.get(k) for k in ("id", "shkeptncontext")
    ):
        return None
    source = raw.get("source")
    return KeptnEvent(
        id=raw["id"],
        type=raw["type"],
        source=source if isinstance(source, str) and source else "unknown",
        shkeptncontext=raw["shkeptncontext"],
        data=loose_scope(raw.get("data")),
        time=None,
    )


def _loose_json(body: bytes) -> Any:
    """The message as plain JSON, before (and whatever) strict decoding says; ``None`` if it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        return None


@dataclass
class Job:
    """One run of a valid trigger's body: what it works on, and the commit it has pushed so far."""

    trigger: Trigger
    scope: EventScope
    context: TemplateContext
    commit: str
    """The commit that carries the change (pushed by this run, or by the run a resume continues); ``""``: none."""
    store: StateStore
    started: asyncio.Task[None] | None = None
    """Sending and recording ``.started``, which runs alongside the body (``None``: sent by an earlier run)."""

    @property
    def event(self) -> KeptnEvent:
        return self.trigger.event

    @property
    def rule(self) -> Rule:
        """The owning rule; raises when a resumed record's rule is gone from the configuration."""
        if self.trigger.rule is None:
            raise EventError(f"no rule of the current configuration owns this {self.trigger.task} anymore")
        return self.trigger.rule

    async def committed(self, commit: str) -> None:
        """Record the pushed commit (a resume then waits for it instead of writing again). ``.started`` is
        confirmed and recorded first: a record that says committed must never stand for an unsent ``.started``."""
        if self.started is not None:
            await self.started
        await self.store.advance(self.trigger.id, Phase.COMMITTED, commit=commit)
        self.commit = commit


class TaskBody(Protocol):
    """What a task supplies: its body, and the task-specific ``.finished`` data of an errored end."""

    async def begin(self, job: Job) -> str:
        """What must happen before ``.started`` is sent, and what ``.started`` then says (empty: nothing). Runs once
        per trigger, when it is first received; an error raised ends it errored/fail right after ``.started``."""
        return ""

    async def run(self, job: Job) -> Finished:
        """Do the task's work; an error raised (``GitOpsServiceError``: its message) ends it errored/fail."""
        ...

    def errored_data(self, commit: str) -> Mapping[str, Any]:
        """The task-specific keys of an errored ``.finished`` (``commit``: the one pushed before the error)."""
        return {}


class FinishedObserver(Protocol):
    """Told about every ``.finished`` this process sent, with its trigger and typed result (``finished.reply`` is the
    event sent). It is called after ``.finished`` was sent and before the record is marked finished: a process that
    stops in between finishes the task again on resume, and tells the observers again (at least once)."""

    async def __call__(self, trigger: Trigger, finished: Finished) -> None: ...


# Counted when a task finishes (by stage and result); deployments also count while in flight.
_FINISHED_TOTAL: Mapping[str, Counter] = {"deployment": metrics.DEPLOYMENTS, "rollback": metrics.ROLLBACKS}
_IN_FLIGHT_TASKS = frozenset({"deployment"})


@dataclass
class Lifecycle:
    """Owns every trigger from receipt to ``.finished``: one ownership rule, one decoding, one ``{task: body}``
    table for live messages and resumed records, one place that maps errors to status/result and answers."""

    config: GitOpsConfig
    store: StateStore
    sink: EventSink
    clock: Clock
    tasks: Mapping[str, TaskBody]
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    observers: list[FinishedObserver] = field(default_factory=list)
    """Called after each ``.finished`` was sent, before it is recorded (a failing observer is logged, never fails
    the task)."""
    subscriptions: Sequence[Subscription] | None = None
    """The control plane's subscriptions when registered (``None``: our own topic list, no filters)."""

    async def receive(self, body: bytes, ack: Ack) -> None:
        """Handle one message; never raises (a bad message must not stop the service). ``ack`` is called once the
        trigger is persisted in the state store (or is known not to be ours); a state-store failure leaves it
        unacknowledged, so a durable transport delivers it again."""
        try:
            await self.handle(body, on_claimed=ack)
        except StateError as exc:
            log.error("the state store failed; the trigger is left for redelivery", error=describe_error(exc))
            return
        except Exception:
            log.exception("handling a trigger failed")
        finally:
            structlog.contextvars.clear_contextvars()
        await ack()

    async def handle(self, body: bytes, *, on_claimed: Ack | None = None) -> Finished | None:
        """Answer one message; ``None`` when it is not ours (or filtered out, or a redelivery).

        Whether the event is ours is decided first, from its raw JSON (:func:`routing.ownership`): an event no rule
        owns gets no reply, however malformed the rest of it is; an owned one that does not decode or is invalid is
        answered errored/fail naming the problem."""
        received = read(body)
        raw = received.envelope
        if not isinstance(raw, dict):
            log.warning("dropped a message that is not a JSON object: nobody can tell whose it is", size=len(body))
            return None
        owner = ownership(self.config, raw)
        if owner.rule is None or owner.task is None or owner.task not in self.tasks:
            owner.log_not_ours(raw.get("id"))
            return None
        data = raw["data"] if isinstance(raw.get("data"), Mapping) else {}
        if self.subscriptions is not None and not any(s.matches(str(raw["type"]), data) for s in self.subscriptions):
            return None  # filtered out by the subscriptions edited in Keptn's Bridge
        trigger = decode(owner.task, owner.rule, received)
        if trigger is None:
            return None
        return await self.answer(trigger, on_claimed=on_claimed)

    async def answer(self, trigger: Trigger, *, on_claimed: Ack | None = None) -> Finished | None:
        """Claim ``trigger`` (``on_claimed`` runs once it is persisted) and see it through; ``None`` for a
        redelivery of one claimed before."""
        event = trigger.event
        structlog.contextvars.bind_contextvars(
            shkeptncontext=event.shkeptncontext, triggeredid=event.id, **_scope_strings(event.data)
        )
        _, created = await self.store.claim(event.id, event.shkeptncontext, event.type, trigger.payload)
        if on_claimed is not None:
            await on_claimed()
        if not created:
            log.info("duplicate delivery ignored", triggeredid=event.id)
            return None
        return await self._run(trigger, Phase.RECEIVED, "")

    async def resume(self, record: Record) -> None:
        """Continue a trigger a previous process (or a dead replica) left unfinished, from its phase; never raises."""
        structlog.contextvars.bind_contextvars(shkeptncontext=record.context, triggeredid=record.triggered_id)
        try:
            task = task_of(record.event_type)
            if record.phase is Phase.FINISHED or task is None or task not in self.tasks:
                return
            received = read(record.payload)
            trigger = decode(task, ownership(self.config, received.envelope).rule, received)
            if trigger is not None:
                log.info(f"resuming an unfinished {task}", triggeredid=record.triggered_id, phase=record.phase.value)
                await self._run(trigger, record.phase, record.commit)
        except Exception:
            log.exception("could not resume", triggeredid=record.triggered_id)
        finally:
            structlog.contextvars.clear_contextvars()

    async def _run(self, trigger: Trigger, phase: Phase, commit: str) -> Finished:
        """``.started`` (unless sent before), the body, ``.finished``: the same for every task.

        ``.started`` is published, confirmed by NATS and then recorded while the body already works (the two
        round trips, to the server and to the disk, are not on the path of a deployment): the order of the three
        is the same as if the body waited, and :meth:`Job.committed` and ``.finished`` wait for them. A failure to
        send or record ``.started`` ends the task there, as before, only later: the record still says received,
        so a restart sends ``.started`` again and finds the commit already pushed (the writer's trailer check)."""
        body = self.tasks[trigger.task]
        job = self._job(trigger, commit)
        early: Finished | None = None
        started: asyncio.Task[None] | None = None
        if phase is Phase.RECEIVED:
            note = await self._guarded(body, trigger, job, body.begin) if job is not None else ""
            if isinstance(note, Finished):
                early, note = note, ""
            data = started_data(trigger.scope or trigger.reply_scope(), note)
            started = asyncio.create_task(self._started(trigger, data), name=f"started {trigger.id}")
            if job is not None:
                job.started = started
        in_flight = trigger.task in _IN_FLIGHT_TASKS
        if in_flight:
            metrics.IN_FLIGHT.inc()
        try:
            if job is None:
                finished = Finished.errored(trigger.problem, data=body.errored_data(""))
            elif early is not None:
                finished = early
            else:
                finished = await self._guarded(body, trigger, job, body.run)
            if started is not None:
                await started  # .started is confirmed and recorded before .finished is sent (its error ends here)
        finally:
            if in_flight:
                metrics.IN_FLIGHT.dec()  # also when shutdown cancels the wait: the work stays in the state store
            if started is not None and not started.done():
                await cancel_and_wait([started])  # shutdown: the record says received, a restart sends it again
        await self._finish(trigger, finished)
        return finished

    async def _started(self, trigger: Trigger, data: Mapping[str, Any]) -> None:
        """Send ``.started``, then record that it was sent (never the other way round)."""
        await self._reply(trigger, "started", data)
        await self.store.advance(trigger.id, Phase.STARTED)

    def _job(self, trigger: Trigger, commit: str) -> Job | None:
        """The job of a valid trigger; ``None`` for one that is answered errored with its problem."""
        if trigger.problem or trigger.scope is None or trigger.context is None:
            return None
        return Job(trigger, trigger.scope, trigger.context, commit, self.store)

    async def _guarded(
        self, body: TaskBody, trigger: Trigger, job: Job, step: Callable[[Job], Awaitable[T]]
    ) -> T | Finished:
        """A step of the body, with every error mapped to errored/fail (a bug too: Keptn must never be left
        waiting)."""
        try:
            return await step(job)
        except GitOpsServiceError as exc:
            return Finished.errored(str(exc), job.commit, body.errored_data(job.commit))
        except Exception as exc:
            log.exception(f"{trigger.task} failed unexpectedly", triggeredid=trigger.id)
            message = f"internal error: {exc.__class__.__name__}: {exc}"
            return Finished.errored(message, job.commit, body.errored_data(job.commit))

    async def _finish(self, trigger: Trigger, finished: Finished) -> None:
        """Send ``.finished`` and record it — unless another replica has taken the trigger over (its lease expired
        while this one was paused or cut off): then the other replica answers, not us. Log, count, answer, tell the
        observers, and only then record it: what an observer keeps (the CDEvents outbox) is kept before the record
        says finished, so a crash in between finishes the task again and tells the observers again."""
        what = f"invalid {trigger.task}" if trigger.problem else trigger.task
        log_finished(
            what,
            status=finished.status,
            result=finished.result,
            message=finished.message,
            commit=finished.commit,
            triggeredid=trigger.id,
        )
        counter = _FINISHED_TOTAL.get(trigger.task)
        if counter is not None:
            counter.labels(trigger.scope.stage if trigger.scope else "", finished.result.value).inc()
        if not await self.store.owns(trigger.id):
            log.warning("another replica took this trigger over; it will answer", triggeredid=trigger.id)
            return
        data = finished_data(
            trigger.scope or trigger.reply_scope(),
            status=finished.status,
            result=finished.result,
            message=finished.message,
            extra=finished.data,
        )
        sent = replace(finished, reply=await self._reply(trigger, "finished", data))
        for observer in self.observers:
            try:
                await observer(trigger, sent)
            except Exception:
                log.exception("an observer of finished tasks failed", triggeredid=trigger.id)
        await self.store.advance(trigger.id, Phase.FINISHED, commit=finished.commit, result=finished.result.value)

    async def _reply(
        self, trigger: Trigger, kind: Literal["started", "finished"], data: Mapping[str, Any]
    ) -> KeptnEvent:
        reply = make_reply(trigger.event, kind, data, source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id())
        await self.sink.publish(reply)
        return reply


def log_finished(what: str, *, status: Status, result: Result, **fields: object) -> None:
    """Log a ``.finished`` at the level it deserves: errored at error, fail at warning, pass at info."""
    level = log.error if status is Status.ERRORED else log.warning if result is Result.FAIL else log.info
    level(f"{what} finished", status=status.value, result=result.value, **fields)


def _scope_strings(data: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in data.items() if k in ("project", "stage", "service") and isinstance(v, str)}
