"""``deployment.triggered`` → GitOps commit → reconciled → ``deployment.finished``.

A deployment is the five steps: **receive** and **start** (:class:`~workflow.lifecycle.Lifecycle`: the trigger is
owned, decoded once, claimed, answered ``.started``), **write** and **wait** (:meth:`DeploymentBody.run`: commit the
new version, wait until the GitOps controller applied it), **finish** (the lifecycle answers ``.finished`` from the
:class:`Finished` the body returns, or errored/fail from what it raised). Every owned trigger gets exactly one
``.started`` followed by exactly one ``.finished`` — errors included — and a redelivered trigger (same ``id``) gets
nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from keptn_gitops_service import metrics
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError
from keptn_gitops_service.gitops.writer import Change, GitWriter, WriteResult
from keptn_gitops_service.keptn.data import DeploymentTrigger, Result, Status, deployment_block
from keptn_gitops_service.keptn.events import KeptnEvent
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.edits import EditNotes, file_edits
from keptn_gitops_service.workflow.lifecycle import Finished, Job, TaskBody
from keptn_gitops_service.workflow.pullrequests import (
    NotMerged,
    Proposal,
    PullRequestGate,
    gated,
    through_pull_request,
)
from keptn_gitops_service.workflow.waits import (
    RepositoryAncestry,
    check_wait_target,
    cluster_uris,
    wait_target,
    wait_timeout,
)

log = structlog.get_logger(__name__)

TRIGGERED_ID_TRAILER = "Keptn-Triggered-Id"
CONTEXT_TRAILER = "Keptn-Context"
SCOPE_TRAILER = "Keptn-Scope"

#: helm-service's zero ``deployment`` block of an errored ``.finished`` (upstream keptn/derived/07).
_ERRORED_BLOCK: Mapping[str, Any] = {"deploymentstrategy": "", "deploymentURIsLocal": None, "deploymentNames": None}


@dataclass
class DeploymentBody(TaskBody):
    """The body of a deployment: write the new version into the GitOps repository, wait until it is applied."""

    config: GitOpsConfig
    writer: GitWriter
    reconciler: Reconciler
    clock: Clock
    wait: bool = True
    """``False``: finish right after the push (``keptn-gitops-service deploy --no-wait``)."""
    pull_requests: PullRequestGate | None = None
    """Opens pull requests and waits for their merge (rules or stages in ``pullRequest`` mode)."""

    async def begin(self, job: Job) -> str:
        """In pull-request mode, open the pull request before ``.started``, which then names it."""
        if not self._gated(job) or job.commit:
            return ""
        request = _request(job)
        target = wait_target(job.rule, job.context) if self.wait else None
        wait_timeout(job.rule, request.properties, "data.deployment")
        await check_wait_target(self.reconciler, job.rule, target)
        opened = await self._propose(job, request)
        if isinstance(opened, Proposal):
            branch = self.config.repository(job.rule.repository).branch
            return f"waiting for pull request {opened.url} ({opened.branch} into {branch})"
        return ""

    async def run(self, job: Job) -> Finished:
        rule, context, request = job.rule, job.context, _request(job)
        started = self.clock.monotonic()
        # what the wait needs is checked before anything is written: a bad timeout must not deploy and fail
        target = wait_target(rule, context) if self.wait else None
        timeout = wait_timeout(rule, request.properties, "data.deployment")
        # 3. write the new version into the GitOps repository (unless a previous run already pushed it)
        note = ""
        if not job.commit:
            # what the wait will read must be readable now: a wrong name or a 403 must not deploy and then fail
            await check_wait_target(self.reconciler, rule, target)
            if self._gated(job):
                merged = await self._through_pull_request(job, request)
                if isinstance(merged, Finished):
                    return merged
                commit, note = merged
            else:
                commit, note = await self._commit(job.event, rule, context, request)
            await job.committed(commit)
            metrics.TIME_TO_COMMIT.observe(self.clock.monotonic() - started)
        committed = self.clock.monotonic()
        # 4. wait until the GitOps controller has applied it
        outcome = await self.reconciler.wait(
            target,
            commit=job.commit,
            ancestry=RepositoryAncestry(self.writer, self.config, rule, {TRIGGERED_ID_TRAILER: job.event.id}),
            timeout=timeout,
            shkeptncontext=job.event.shkeptncontext,
            triggeredid=job.event.id,
        )
        verdict = "succeeded" if outcome.succeeded else "timeout" if outcome.timed_out else "failed"
        metrics.TIME_TO_RECONCILE.labels(verdict).observe(self.clock.monotonic() - committed)
        # 5. finish, exactly like helm-service (plus the commit)
        local, public = _uris(rule, context, request)
        more_local, more_public = cluster_uris(target, outcome.applied)
        block = deployment_block(request.strategy, local + more_local, public + more_public, job.commit)
        return Finished(
            Status.SUCCEEDED if outcome.succeeded else Status.ERRORED,
            Result.PASS if outcome.succeeded else Result.FAIL,
            f"{note} {outcome.message}" if note else outcome.message,
            job.commit,
            {"deployment": block},
            target,
        )

    def errored_data(self, commit: str) -> Mapping[str, Any]:
        """helm-service's zero block on errors, plus the commit when one was made."""
        return {"deployment": {**_ERRORED_BLOCK, **({"gitCommit": commit} if commit else {})}}

    async def _commit(
        self, event: KeptnEvent, rule: Rule, context: TemplateContext, trigger: DeploymentTrigger
    ) -> tuple[str, str]:
        """Write the change; return the commit that carries it and what the finished message must say first.

        An event without ``configurationChange.values`` (a sequence re-run to deploy what is there) and edits the
        branch already holds make no commit: the tip is then the commit to wait for."""
        change, notes = self._change(event, rule, context, trigger)
        result = await self.writer.write(change)
        log.info(
            "gitops commit ready",
            commit=result.commit,
            created=result.created,
            unchanged=result.unchanged,
            attempts=result.attempts,
            triggeredid=event.id,
        )
        return result.commit, _note(change, notes, result)

    def _change(
        self, event: KeptnEvent, rule: Rule, context: TemplateContext, trigger: DeploymentTrigger
    ) -> tuple[Change, EditNotes]:
        notes = EditNotes()
        edits = file_edits(rule, context, notes) if trigger.values else ()
        change = Change(
            repository=self.config.repository(rule.repository),
            edits=edits,
            message=commit_message(event, trigger),
            trailer=(TRIGGERED_ID_TRAILER, event.id),
        )
        return change, notes

    def _gated(self, job: Job) -> bool:
        return gated(job.rule, job.trigger.properties, self.pull_requests, "deployment")

    async def _propose(self, job: Job, request: DeploymentTrigger) -> Proposal | tuple[WriteResult, str]:
        """The trigger's pull request (opened now, or found); or, when the branch holds the change already, that
        commit and what the finished message must say first."""
        assert self.pull_requests is not None  # _gated() checked it
        change, notes = self._change(job.event, job.rule, job.context, request)
        opened = await self.pull_requests.open(
            change, job.scope, job.event.id, job.event.shkeptncontext, job.rule.pull_request
        )
        return opened if isinstance(opened, Proposal) else (opened, _note(change, notes, opened))

    async def _through_pull_request(self, job: Job, request: DeploymentTrigger) -> tuple[str, str] | Finished:
        """Open (or find) the pull request and wait for its merge: the merge commit is what the cluster must apply."""
        assert self.pull_requests is not None
        change, notes = self._change(job.event, job.rule, job.context, request)
        merged = await through_pull_request(
            self.pull_requests, change, job.scope, job.event.id, job.event.shkeptncontext, job.rule
        )
        if isinstance(merged, WriteResult):
            return merged.commit, _note(change, notes, merged)
        if isinstance(merged, NotMerged):
            status = Status.ERRORED if merged.timed_out else Status.SUCCEEDED
            return Finished(status, Result.FAIL, merged.message, "", self.errored_data(""))
        await self.pull_requests.record_merge(job.event.shkeptncontext, job.scope, merged)
        proposal = await self.pull_requests.stored(job.event.id)
        url = proposal.url if proposal is not None else "the pull request"
        return merged, f"pull request {url} merged as {merged[:12]}."


def _note(change: Change, notes: EditNotes, result: WriteResult) -> str:
    """What the finished message says first about the commit: none made (and why), or what the edits did."""
    edits = change.edits
    at = f"{change.repository.branch}@{result.commit[:12]}"
    if not edits:
        return (
            "no commit made: the event carries no configurationChange.values (a redeploy), so what "
            f"{at} holds is what must be deployed."
        )
    if result.unchanged:
        held = [f"{edit.path} already has {notes.unchanged[i]}" for i, edit in enumerate(edits) if i in notes.unchanged]
        return f"no commit made: {'; '.join(held) or 'the branch already holds every update'} at {at}."
    return " ".join(f"{message}." for message in notes.messages())


def _request(job: Job) -> DeploymentTrigger:
    if job.trigger.deployment is None:  # decode() reads it for every deployment trigger
        raise EventError("the deployment.triggered event carries no deployment data")
    return job.trigger.deployment


def _uris(rule: Rule, context: TemplateContext, trigger: DeploymentTrigger) -> tuple[list[str], list[str]]:
    if rule.deployment_uris is None:
        return list(trigger.uris_local), list(trigger.uris_public)
    where = f"rules[{rule.index}].deploymentURIs"
    local = [context.render(t, f"{where}.local[{i}]") for i, t in enumerate(rule.deployment_uris.local)]
    public = [context.render(t, f"{where}.public[{i}]") for i, t in enumerate(rule.deployment_uris.public)]
    return local, public


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
