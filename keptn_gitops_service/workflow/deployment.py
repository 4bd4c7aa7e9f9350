"""``deployment.triggered`` → GitOps commit → reconciled → ``deployment.finished``.

:meth:`DeploymentWorkflow.handle` reads as the five steps: receive, start, write, wait, finish. Every owned
trigger gets exactly one ``.started`` followed by exactly one ``.finished`` — errors included — and a
redelivered trigger (same ``id``) gets nothing new.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from keptn_gitops_service import SERVICE_NAME, metrics
from keptn_gitops_service.cdevents.model import TaskObserver
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError, GitOpsServiceError
from keptn_gitops_service.gitops.writer import Change, GitWriter
from keptn_gitops_service.keptn.data import (
    DeploymentTrigger,
    EventScope,
    deployment_block,
    finished_data,
    parse_deployment_triggered,
    scope_from_data,
    started_data,
)
from keptn_gitops_service.keptn.events import KeptnEvent, make_reply, to_structured
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.state.store import Phase, Record, StateStore
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.edits import EditNotes, file_edits
from keptn_gitops_service.workflow.observed import TaskFacts, artifact_of, finished_task, target_uri
from keptn_gitops_service.workflow.routing import (
    Replier,
    envelope,
    log_finished,
    ownership,
    publish_finished,
    stored_trigger,
)
from keptn_gitops_service.workflow.waits import RepositoryAncestry, check_wait_target, wait_target, wait_timeout

log = structlog.get_logger(__name__)

TRIGGERED_ID_TRAILER = "Keptn-Triggered-Id"
CONTEXT_TRAILER = "Keptn-Context"
SCOPE_TRAILER = "Keptn-Scope"


@dataclass(frozen=True)
class Finished:
    """What the workflow reported in ``.finished``."""

    status: str
    result: str
    message: str
    commit: str = ""

    @property
    def passed(self) -> bool:
        return self.result == "pass"


@dataclass
class DeploymentWorkflow:
    """Handles deployment triggers with the service's edges injected."""

    config: GitOpsConfig
    writer: GitWriter
    reconciler: Reconciler
    store: StateStore
    sink: EventSink
    clock: Clock
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    observer: TaskObserver | None = None
    """Told about every finished deployment (the CDEvents emitter)."""

    async def handle(self, event: KeptnEvent, *, wait: bool = True, on_claimed: Ack | None = None) -> Finished | None:
        """Answer one ``deployment.triggered``; ``None`` when it is not ours or already handled.
        ``on_claimed`` runs as soon as the trigger is persisted (the transport acknowledges it then)."""
        # 1. receive: is it ours, and is it new?
        owner = self._owner(event)
        if owner is None:
            return None
        rule, scope = owner
        _, created = await self.store.claim(event.id, event.shkeptncontext, event.type, _payload(event))
        if on_claimed is not None:
            await on_claimed()
        if not created:
            log.info("duplicate delivery ignored", triggeredid=event.id)
            return None
        # 2. start at once
        await self._start(event, scope)
        return await self._deploy(event, rule, scope, commit="", wait=wait)

    async def resume(self, record: Record) -> Finished | None:
        """Finish a deployment a previous process left unfinished (crash, restart), continuing from its phase:
        ``.started`` is not sent twice, and the commit is found again by its trailer, never made twice."""
        event = stored_trigger(record)
        if record.phase is Phase.FINISHED or event.task != "deployment":
            return None
        rule, scope = ownership(self.config, envelope(event)).rule, _scope_or_none(event)
        log.info("resuming an unfinished deployment", triggeredid=event.id, phase=record.phase.value)
        if record.phase is Phase.RECEIVED:
            await self._start(event, scope)
        if rule is None and scope is not None:
            finished = Finished("errored", "fail", "no rule of the current configuration owns this deployment anymore")
            await self._finish(event, scope, finished, None)
            return finished
        return await self._deploy(event, rule, scope, commit=record.commit, wait=True)

    async def _start(self, event: KeptnEvent, scope: EventScope | None) -> None:
        await self._reply(event, "started", started_data(scope) if scope else _partial_scope(event.data))
        await self.store.advance(event.id, Phase.STARTED)

    async def _deploy(
        self, event: KeptnEvent, rule: Rule | None, scope: EventScope | None, *, commit: str, wait: bool
    ) -> Finished:
        metrics.IN_FLIGHT.inc()
        try:
            return await self._deploy_in_flight(event, rule, scope, commit=commit, wait=wait)
        finally:
            metrics.IN_FLIGHT.dec()  # also when shutdown cancels the wait: the work stays in the state store

    async def _deploy_in_flight(
        self, event: KeptnEvent, rule: Rule | None, scope: EventScope | None, *, commit: str, wait: bool
    ) -> Finished:
        started = self.clock.monotonic()
        facts = TaskFacts(rule) if rule is not None else None
        try:
            if scope is None or rule is None:
                scope_from_data(event.data)  # raises the precise error
                raise EventError("the event cannot be routed")  # pragma: no cover - scope_from_data raised
            trigger = parse_deployment_triggered(event.data)
            # what the wait needs is checked before anything is written: a bad timeout must not deploy and fail
            target = wait_target(rule, _context(event, trigger), event.id) if wait else None
            timeout = wait_timeout(rule, trigger.properties, "data.deployment")
            facts = TaskFacts(rule, artifact_of(_context(event, trigger)), target_uri(target))
            # 3. write the new version into the GitOps repository (unless a previous run already pushed it)
            note = ""
            if not commit:
                # what the wait will read must be readable now: a wrong name or a 403 must not deploy and then fail
                await check_wait_target(self.reconciler, rule, target)
                commit, note = await self._commit(event, rule, trigger)
                await self.store.advance(event.id, Phase.COMMITTED, commit=commit)
                metrics.TIME_TO_COMMIT.observe(self.clock.monotonic() - started)
            committed = self.clock.monotonic()
            # 4. wait until the GitOps controller has applied it
            outcome = await self.reconciler.wait(
                target,
                commit=commit,
                ancestry=RepositoryAncestry(self.writer, self.config, rule, {TRIGGERED_ID_TRAILER: event.id}),
                timeout=timeout,
            )
            verdict = "succeeded" if outcome.succeeded else "timeout" if outcome.timed_out else "failed"
            metrics.TIME_TO_RECONCILE.labels(verdict).observe(self.clock.monotonic() - committed)
            finished = Finished(
                "succeeded" if outcome.succeeded else "errored",
                "pass" if outcome.succeeded else "fail",
                f"{note} {outcome.message}" if note else outcome.message,
                commit,
            )
            block = deployment_block(trigger.strategy, *self._uris(rule, event, trigger), commit)
        except GitOpsServiceError as exc:
            finished, block = Finished("errored", "fail", str(exc), commit), None
        except Exception as exc:  # a bug must still end the task, never leave Keptn waiting
            log.exception("deployment failed unexpectedly", triggeredid=event.id)
            finished, block = (
                Finished("errored", "fail", f"internal error: {exc.__class__.__name__}: {exc}", commit),
                None,
            )
        # 5. finish, exactly like helm-service (plus the commit)
        await self._finish(event, scope, finished, block, facts=facts)
        metrics.DEPLOYMENTS.labels(scope.stage if scope else "", finished.result).inc()
        return finished

    async def reject(self, event: KeptnEvent, message: str, *, claim: bool = False, started: bool = False) -> None:
        """Answer an owned trigger that is invalid (could not be decoded) with ``.started`` then ``.finished``
        errored/fail and ``message`` (see :meth:`Replier.reject`), with helm-service's zero deployment block."""
        block = {"deploymentstrategy": "", "deploymentURIsLocal": None, "deploymentNames": None}
        replier = Replier(self.store, self.sink, self.clock, self.new_id)
        await replier.reject(event, message, claim=claim, started=started, extra={"deployment": block})

    def _owner(self, event: KeptnEvent) -> tuple[Rule, EventScope | None] | None:
        """The rule owning this trigger by the one ownership rule (:func:`routing.ownership`) and its scope;
        the scope is ``None`` when invalid (then the trigger is answered errored with the precise problem)."""
        owner = ownership(self.config, envelope(event))
        if owner.rule is None or owner.task != "deployment":
            owner.log_not_ours(event.id)
            return None
        return owner.rule, _scope_or_none(event)

    async def _commit(self, event: KeptnEvent, rule: Rule, trigger: DeploymentTrigger) -> tuple[str, str]:
        """Write the change; return the commit that carries it and what the finished message must say first.

        An event without ``configurationChange.values`` (a sequence re-run to deploy what is there) and edits the
        branch already holds make no commit: the tip is then the commit to wait for."""
        context = _context(event, trigger)
        notes = EditNotes()
        repository = self.config.repository(rule.repository)
        edits = file_edits(rule, context, notes) if trigger.values else ()
        change = Change(
            repository=repository,
            edits=edits,
            message=commit_message(event, trigger),
            trailer=(TRIGGERED_ID_TRAILER, event.id),
        )
        result = await self.writer.write(change)
        log.info(
            "gitops commit ready",
            commit=result.commit,
            created=result.created,
            unchanged=result.unchanged,
            attempts=result.attempts,
            triggeredid=event.id,
        )
        at = f"{repository.branch}@{result.commit[:12]}"
        if not edits:
            return result.commit, (
                "no commit made: the event carries no configurationChange.values (a redeploy), so what "
                f"{at} holds is what must be deployed."
            )
        if result.unchanged:
            held = [
                f"{edit.path} already has {notes.unchanged[i]}" for i, edit in enumerate(edits) if i in notes.unchanged
            ]
            return (
                result.commit,
                f"no commit made: {'; '.join(held) or 'the branch already holds every update'} at {at}.",
            )
        return result.commit, " ".join(f"{message}." for message in notes.messages())

    @staticmethod
    def _uris(rule: Rule, event: KeptnEvent, trigger: DeploymentTrigger) -> tuple[list[str], list[str]]:
        if rule.deployment_uris is None:
            return list(trigger.uris_local), list(trigger.uris_public)
        context = _context(event, trigger)
        where = f"rules[{rule.index}].deploymentURIs"
        local = [context.render(t, f"{where}.local[{i}]") for i, t in enumerate(rule.deployment_uris.local)]
        public = [context.render(t, f"{where}.public[{i}]") for i, t in enumerate(rule.deployment_uris.public)]
        return local, public

    async def _finish(
        self,
        event: KeptnEvent,
        scope: EventScope | None,
        finished: Finished,
        block: Mapping[str, Any] | None,
        partial: Mapping[str, Any] | None = None,
        *,
        facts: TaskFacts | None = None,
    ) -> None:
        if block is None:
            # helm-service's zero block on errors (upstream keptn/derived/07), plus the commit when one was made
            block = {"deploymentstrategy": "", "deploymentURIsLocal": None, "deploymentNames": None}
            if finished.commit:
                block["gitCommit"] = finished.commit
        if scope is not None:
            data = finished_data(
                scope,
                status=finished.status,
                result=finished.result,
                message=finished.message,
                extra={"deployment": block},
            )
        else:
            data = {
                **(partial if partial is not None else _partial_scope(event.data)),
                "status": finished.status,
                "result": finished.result,
                "message": finished.message,
                "deployment": block,
            }
        log_finished(
            "deployment",
            status=finished.status,
            result=finished.result,
            message=finished.message,
            commit=finished.commit,
            triggeredid=event.id,
        )
        now = self.clock.now()
        reply = make_reply(event, "finished", data, source=SERVICE_NAME, now=now, event_id=self.new_id())
        task = None
        if facts is not None and scope is not None:
            task = finished_task(
                "deployment",
                event,
                scope,
                facts,
                self.config,
                status=finished.status,
                result=finished.result,
                commit=finished.commit,
                now=now,
                finished_id=reply.id,
            )
        await publish_finished(
            self.store,
            self.sink,
            event,
            reply,
            commit=finished.commit,
            result=finished.result,
            task=task,
            observer=self.observer,
        )

    async def _reply(self, trigger: KeptnEvent, kind: Literal["started"], data: Mapping[str, Any]) -> None:
        reply = make_reply(
            trigger,
            kind,
            data,
            source=SERVICE_NAME,
            now=self.clock.now(),
            event_id=self.new_id(),
        )
        await self.sink.publish(reply)


def commit_message(event: KeptnEvent, trigger: DeploymentTrigger) -> str:
    """Subject naming project/stage/service/image, and the trailers that trace the commit back to Keptn."""
    s = trigger.scope
    image = trigger.values.get("image")
    what = f" to {image}" if isinstance(image, str) and image else ""
    return (
        f"deploy {s.project}/{s.stage}/{s.service}{what}\n\n"
        f"Keptn deployment of service {s.service} in stage {s.stage} of project {s.project}"
        f"{f', image {image}' if what else ''}.\n\n"
        f"{CONTEXT_TRAILER}: {event.shkeptncontext}\n"
        f"{SCOPE_TRAILER}: {s.project}/{s.stage}/{s.service}\n"
        f"{TRIGGERED_ID_TRAILER}: {event.id}\n"
    )


def _partial_scope(data: Mapping[str, Any]) -> dict[str, Any]:
    """Whatever project/stage/service/labels an invalid event carries, for replies to it."""
    return {k: data[k] for k in ("project", "stage", "service", "labels") if isinstance(data.get(k), str | dict)}


def _context(event: KeptnEvent, trigger: DeploymentTrigger) -> TemplateContext:
    return TemplateContext(trigger.scope, trigger.values, event.shkeptncontext)


def _scope_or_none(event: KeptnEvent) -> EventScope | None:
    try:
        return scope_from_data(event.data)
    except EventError:
        return None


def _payload(event: KeptnEvent) -> bytes:
    return to_structured(event)
