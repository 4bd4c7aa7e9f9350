"""``rollback.triggered`` → restore what this Keptn context deployed → reconciled → ``rollback.finished``.

helm-service's rollback shifts traffic back to the primary and answers with the incoming result
[keptn@0.18.1:helm-service/controller/rollback_handler.go]. In GitOps the equivalent is to restore, in the
repository, the values that this context's deployment commit(s) for the service replaced — found by their
``Keptn-Context`` and ``Keptn-Scope`` trailers — with the same minimal edit (:mod:`editing.revert`), wait until
the controller applied that, and answer ``rollback.finished`` with the incoming ``result`` (typically ``fail``,
inherited from the failed delivery), as helm-service does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import structlog

from keptn_gitops_service.config.model import GitOpsConfig
from keptn_gitops_service.editing.revert import ScalarChange, revert_changes, scalar_changes
from keptn_gitops_service.errors import EditError
from keptn_gitops_service.gitops.writer import Change, FileEdit, FileVersions, GitWriter, WriteResult
from keptn_gitops_service.keptn.data import EventScope, Result, Status, echoed_result
from keptn_gitops_service.keptn.events import KeptnEvent
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.workflow.deployment import CONTEXT_TRAILER, SCOPE_TRAILER, TRIGGERED_ID_TRAILER
from keptn_gitops_service.workflow.lifecycle import Finished, Job, TaskBody
from keptn_gitops_service.workflow.pullrequests import (
    NotMerged,
    Proposal,
    PullRequestGate,
    gated,
    through_pull_request,
)
from keptn_gitops_service.workflow.waits import RepositoryAncestry, check_wait_target, wait_target, wait_timeout

log = structlog.get_logger(__name__)

ROLLBACK_OF_TRAILER = "Keptn-Rollback-Of"


@dataclass
class RollbackBody(TaskBody):
    """The body of a rollback: find this context's commits for the service, revert them, wait until applied."""

    config: GitOpsConfig
    writer: GitWriter
    reconciler: Reconciler
    pull_requests: PullRequestGate | None = None
    """In pull-request mode the revert is proposed as a pull request, and its merge is what is waited for."""

    async def begin(self, job: Job) -> str:
        """In pull-request mode, open the revert's pull request before ``.started``, which then names it."""
        if job.commit or not gated(job.rule, job.trigger.properties, self.pull_requests, "rollback"):
            return ""
        found = await self._revert(job)
        if isinstance(found, Finished):
            return ""  # nothing to roll back: run() says so
        assert self.pull_requests is not None
        await check_wait_target(self.reconciler, job.rule, wait_target(job.rule, job.context))
        opened = await self.pull_requests.open(
            found[0], job.scope, job.event.id, job.event.shkeptncontext, job.rule.pull_request
        )
        if isinstance(opened, Proposal):
            return f"waiting for pull request {opened.url} ({opened.branch} into {found[0].repository.branch})"
        return ""

    async def run(self, job: Job) -> Finished:
        event, scope, rule = job.event, job.scope, job.rule
        result = echoed_result(event.data)
        found = await self._revert(job)
        if isinstance(found, Finished):
            return found
        change, history = found
        # checked before anything is written: a bad timeout must not roll back and fail
        target = wait_target(rule, job.context)
        timeout = wait_timeout(rule, job.trigger.properties, "data.rollback")
        await check_wait_target(self.reconciler, rule, target)
        if not job.commit:  # (a resumed rollback made its commit before)
            if gated(rule, job.trigger.properties, self.pull_requests, "rollback"):
                assert self.pull_requests is not None
                merged = await through_pull_request(
                    self.pull_requests, change, scope, event.id, event.shkeptncontext, rule
                )
                if isinstance(merged, NotMerged):
                    status = Status.ERRORED if merged.timed_out else Status.SUCCEEDED
                    return Finished(status, Result.FAIL, merged.message)
                await job.committed(merged.commit if isinstance(merged, WriteResult) else merged)
            else:
                await job.committed((await self.writer.write(change)).commit)
        outcome = await self.reconciler.wait(
            target,
            commit=job.commit,
            ancestry=RepositoryAncestry(self.writer, self.config, rule, {TRIGGERED_ID_TRAILER: event.id}),
            timeout=timeout,
            shkeptncontext=event.shkeptncontext,
            triggeredid=event.id,
        )
        rolled = ", ".join(sha[:12] for sha, _ in history)
        if outcome.succeeded:
            message = f"Rolled back {rolled} with commit {job.commit[:12]}. {outcome.message}"
            return Finished(Status.SUCCEEDED, result, message, job.commit, target=target)
        return Finished.errored(f"Rollback of {rolled}: {outcome.message}", job.commit)

    async def _revert(self, job: Job) -> tuple[Change, list[tuple[str, list[FileVersions]]]] | Finished:
        """The revert of what this Keptn context committed for the service, and those commits; or the answer when
        there is nothing to roll back."""
        event, scope = job.event, job.scope
        result = echoed_result(event.data)
        where = f"{scope.project}/{scope.stage}/{scope.service}"
        if not event.shkeptncontext:  # decoding refuses it; an empty context must never match every commit
            return Finished(
                Status.SUCCEEDED, result, f"nothing to roll back: the rollback of {where} carries no Keptn context"
            )
        repository = self.config.repository(job.rule.repository)
        history = await self.writer.history(
            repository,
            f"{CONTEXT_TRAILER}: {event.shkeptncontext}",
            f"{SCOPE_TRAILER}: {where}",
            match={CONTEXT_TRAILER: event.shkeptncontext, SCOPE_TRAILER: where},
            squashed=await self.pull_requests.merges(event.shkeptncontext, scope) if self.pull_requests else (),
        )
        if not history:
            message = f"nothing to roll back: Keptn context {event.shkeptncontext} made no commit for {where}"
            return Finished(Status.SUCCEEDED, result, message)
        # diffing the history's YAML is CPU-bound: a worker thread, under the YAML limits and deadline
        edits = await self.writer.offload(partial(_revert_edits, history))
        change = Change(
            repository=repository,
            edits=edits,
            message=_message(event, scope, [sha for sha, _ in history]),
            trailer=(TRIGGERED_ID_TRAILER, event.id),
        )
        return change, history


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
