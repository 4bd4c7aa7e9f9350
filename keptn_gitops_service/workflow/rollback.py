"""``rollback.triggered`` → restore what this Keptn context deployed → reconciled → ``rollback.finished``.

helm-service's rollback shifts traffic back to the primary and answers with the incoming result
[keptn@0.18.1:helm-service/controller/rollback_handler.go]. In GitOps the equivalent is to restore, in the
repository, the values that this context's deployment commit(s) for the service replaced — found by their
``Keptn-Context`` and ``Keptn-Scope`` trailers — with the same minimal edit (:mod:`editing.revert`), wait until
the controller applied that, and answer ``rollback.finished`` with the incoming ``result`` (typically ``fail``,
inherited from the failed delivery), as helm-service does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import structlog

from keptn_gitops_service import SERVICE_NAME, metrics
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.editing.revert import ScalarChange, revert_changes, scalar_changes
from keptn_gitops_service.errors import EditError, EventError, GitOpsServiceError
from keptn_gitops_service.gitops.writer import Change, FileEdit, FileVersions, GitWriter
from keptn_gitops_service.keptn.data import EventScope, echoed_result, finished_data, scope_from_data, started_data
from keptn_gitops_service.keptn.events import KeptnEvent, make_reply
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.state.store import Phase, Record, StateStore
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.deployment import CONTEXT_TRAILER, SCOPE_TRAILER, TRIGGERED_ID_TRAILER, Finished
from keptn_gitops_service.workflow.routing import (
    Replier,
    claim_owned,
    envelope,
    log_finished,
    ownership,
    publish_finished,
    scope_problem,
    stored_trigger,
)
from keptn_gitops_service.workflow.waits import RepositoryAncestry, check_wait_target, wait_target, wait_timeout

log = structlog.get_logger(__name__)

ROLLBACK_OF_TRAILER = "Keptn-Rollback-Of"


@dataclass
class RollbackWorkflow:
    """Handles rollback triggers for the services our rules own."""

    config: GitOpsConfig
    writer: GitWriter
    reconciler: Reconciler
    store: StateStore
    sink: EventSink
    clock: Clock
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))

    async def handle(self, event: KeptnEvent, *, on_claimed: Ack | None = None) -> Finished | None:
        """Answer one ``rollback.triggered``; ``None`` when it is not ours or already handled."""
        owned = await claim_owned(event, "rollback", self.config, self.store, on_claimed)
        if owned is None:
            return None
        scope, rule = owned
        if scope is None:
            problem = scope_problem(event.data) or "the event cannot be routed"
            await self.reject(event, problem)
            return Finished("errored", "fail", problem)
        await self._reply(event, "started", started_data(scope))
        await self.store.advance(event.id, Phase.STARTED)
        return await self._rollback(event, rule, scope)

    async def resume(self, record: Record) -> Finished | None:
        """Finish a rollback a previous process left unfinished (the revert commit is found by its trailer)."""
        event = stored_trigger(record)
        if record.phase is Phase.FINISHED:
            return None
        problem = scope_problem(event.data)
        if problem is not None:
            await self.reject(event, problem, started=record.phase is not Phase.RECEIVED)
            return Finished("errored", "fail", problem)
        scope = scope_from_data(event.data)
        rule = ownership(self.config, envelope(event)).rule
        if record.phase is Phase.RECEIVED:
            await self._reply(event, "started", started_data(scope))
            await self.store.advance(event.id, Phase.STARTED)
        if rule is None:
            finished = Finished("errored", "fail", "no rule of the current configuration owns this rollback anymore")
            await self._finish(event, scope, finished)
            return finished
        return await self._rollback(event, rule, scope)

    async def reject(self, event: KeptnEvent, message: str, *, claim: bool = False, started: bool = False) -> None:
        """Answer an owned rollback trigger that is invalid with errored/fail and ``message`` (see
        :meth:`Replier.reject`)."""
        replier = Replier(self.store, self.sink, self.clock, self.new_id)
        await replier.reject(event, message, claim=claim, started=started)

    async def _rollback(self, event: KeptnEvent, rule: Rule, scope: EventScope) -> Finished:
        commit = ""
        try:
            repository = self.config.repository(rule.repository)
            where = f"{scope.project}/{scope.stage}/{scope.service}"
            history = (
                await self.writer.history(
                    repository,
                    f"{CONTEXT_TRAILER}: {event.shkeptncontext}",
                    f"{SCOPE_TRAILER}: {where}",
                    match={CONTEXT_TRAILER: event.shkeptncontext, SCOPE_TRAILER: where},
                )
                if event.shkeptncontext
                else []
            )
            if not event.shkeptncontext:  # decoding refuses it; an empty context must never match every commit
                message = f"nothing to roll back: the rollback of {where} carries no Keptn context"
                finished = Finished("succeeded", echoed_result(event.data), message)
            elif not history:
                message = f"nothing to roll back: Keptn context {event.shkeptncontext} made no commit for {where}"
                finished = Finished("succeeded", echoed_result(event.data), message)
            else:
                # diffing the history's YAML is CPU-bound: a worker thread, under the YAML limits and deadline
                edits = await self.writer.offload(partial(_revert_edits, history))
                change = Change(
                    repository=repository,
                    edits=edits,
                    message=_message(event, scope, [sha for sha, _ in history]),
                    trailer=(TRIGGERED_ID_TRAILER, event.id),
                )
                # checked before anything is written: a bad timeout must not roll back and fail
                target = wait_target(rule, TemplateContext(scope, {}, event.shkeptncontext), event.id)
                timeout = wait_timeout(rule, _properties(event), "data.rollback")
                await check_wait_target(self.reconciler, rule, target)
                commit = (await self.writer.write(change)).commit
                await self.store.advance(event.id, Phase.COMMITTED, commit=commit)
                outcome = await self.reconciler.wait(
                    target,
                    commit=commit,
                    ancestry=RepositoryAncestry(self.writer, self.config, rule, {TRIGGERED_ID_TRAILER: event.id}),
                    timeout=timeout,
                )
                rolled = ", ".join(sha[:12] for sha, _ in history)
                if outcome.succeeded:
                    message = f"Rolled back {rolled} with commit {commit[:12]}. {outcome.message}"
                    finished = Finished("succeeded", echoed_result(event.data), message, commit)
                else:
                    finished = Finished("errored", "fail", f"Rollback of {rolled}: {outcome.message}", commit)
        except GitOpsServiceError as exc:
            finished = Finished("errored", "fail", str(exc), commit)
        except Exception as exc:  # a bug must still end the task
            log.exception("rollback failed unexpectedly", triggeredid=event.id)
            finished = Finished("errored", "fail", f"internal error: {exc.__class__.__name__}: {exc}", commit)
        await self._finish(event, scope, finished)
        metrics.ROLLBACKS.labels(scope.stage, finished.result).inc()
        return finished

    async def _finish(self, event: KeptnEvent, scope: EventScope, finished: Finished) -> None:
        data = finished_data(scope, status=finished.status, result=finished.result, message=finished.message)
        log_finished(
            "rollback",
            status=finished.status,
            result=finished.result,
            message=finished.message,
            commit=finished.commit,
            triggeredid=event.id,
        )
        reply = make_reply(event, "finished", data, source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id())
        await publish_finished(self.store, self.sink, event, reply, commit=finished.commit, result=finished.result)

    async def _reply(self, trigger: KeptnEvent, kind: Literal["started"], data: Mapping[str, Any]) -> None:
        reply = make_reply(trigger, kind, data, source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id())
        await self.sink.publish(reply)


def _properties(event: KeptnEvent) -> Mapping[str, Any]:
    """The shipyard's rollback task properties (``data.rollback``)."""
    properties = event.data.get("rollback")
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise EventError("data.rollback must be an object (the rollback task's properties)")
    return properties


def _revert_edits(history: list[tuple[str, list[FileVersions]]], current: list[str]) -> tuple[FileEdit, ...]:
    """One edit per file, undoing the newest commit's changes first (``current`` names the file being read)."""
    per_file: dict[str, list[ScalarChange]] = {}
    for sha, files in history:
        for path, before, after in files:
            current[0] = path
            if before is None or after is None:
                raise EditError(f"{path}: commit {sha[:12]} created or deleted this file; it cannot be rolled back")
            try:
                per_file.setdefault(path, []).extend(scalar_changes(before, after))
            except EditError as exc:
                raise type(exc)(f"{path}: commit {sha[:12]}: {exc}") from None
    return tuple(FileEdit(path, partial(revert_changes, changes=changes)) for path, changes in per_file.items())


def _message(event: KeptnEvent, scope: EventScope, commits: list[str]) -> str:
    where = f"{scope.project}/{scope.stage}/{scope.service}"
    trailers = "".join(f"{ROLLBACK_OF_TRAILER}: {sha}\n" for sha in commits)
    return (
        f"rollback {where}\n\n"
        f"Keptn rollback of service {scope.service} in stage {scope.stage} of project {scope.project}:"
        f" restores the values before {', '.join(sha[:12] for sha in commits)}.\n\n"
        f"{CONTEXT_TRAILER}: {event.shkeptncontext}\n{trailers}{TRIGGERED_ID_TRAILER}: {event.id}\n"
    )
