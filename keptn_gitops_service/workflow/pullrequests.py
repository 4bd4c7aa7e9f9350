"""Deploying through a pull request: push the change to a branch of its own, open a pull request into the deployment
branch, wait for its merge; the merge commit is then waited for like a pushed one.

What a trigger's pull request is lives in the state store (``pullrequest/<triggered id>``), written as soon as it is
open: a restart or a redelivery finds it and waits on, and never opens a second one. A newer deployment of the same
project/stage/service closes the older open pull requests with a comment linking its own, after noting in the store
that they were superseded (``superseded/<repository>#<number>``), so the older trigger finishes ``fail`` saying so.
Forge webhooks wake a waiting deployment at once (:class:`Wakeups`); without them it polls, every 2 s at first and
then less often, up to ``pullRequest.pollInterval``. A forge that fails (after the HTTP client's own retries) is
asked again at the next poll; only a refused token ends the deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import PullRequestOptions, Repository, Rule
from keptn_gitops_service.errors import EventError, ForgeAccessDeniedError, ForgeError, StateError, describe_error
from keptn_gitops_service.forges.model import Forge, MergeMethod, PullRequest, PullRequestSpec, PullState
from keptn_gitops_service.gitops.writer import Change, GitWriter, WriteResult
from keptn_gitops_service.keptn.data import EventScope
from keptn_gitops_service.state.store import StateStore

log = structlog.get_logger(__name__)

ForgeFactory = Callable[[Repository], Forge]
"""The forge of a repository (its token read from the environment now); raises :class:`ForgeError` when it has none
or its token is unset."""

BRANCH_PREFIX = "keptn"
FIRST_POLL = 2.0


@dataclass(frozen=True)
class Proposal:
    """A trigger's open pull request, as kept in the state store."""

    number: int
    url: str
    branch: str
    repository: str
    """The repository's path on its forge."""
    head: str
    """The commit pushed to ``branch``."""
    opened_at: float
    """Wall-clock seconds when it was opened: the merge timeout counts from here, across restarts."""

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Proposal:
        try:
            data = json.loads(raw)
            return cls(
                int(data["number"]),
                str(data["url"]),
                str(data["branch"]),
                str(data["repository"]),
                str(data["head"]),
                float(data["opened_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"a stored pull request is corrupt: {exc}") from None


@dataclass(frozen=True)
class NotMerged:
    """The pull request will not bring the change: closed by someone, superseded, or not merged in time."""

    message: str
    timed_out: bool = False


@dataclass
class Wakeups:
    """Forge webhooks wake the waits of the pull request they name (``repository`` path, number)."""

    _waiting: dict[tuple[str, int], set[asyncio.Event]] = field(default_factory=dict)

    def wake(self, repository: str, number: int) -> bool:
        events = self._waiting.get((repository, number), set())
        for event in events:
            event.set()
        return bool(events)

    @contextlib.contextmanager
    def listen(self, repository: str, number: int) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        key = (repository, number)
        self._waiting.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            self._waiting[key].discard(event)
            if not self._waiting[key]:
                del self._waiting[key]


def gated(rule: Rule, properties: Mapping[str, Any], gate: PullRequestGate | None, task: str) -> bool:
    """Whether a task goes through a pull request: the rule's ``mode``, or the shipyard task's property ``mode``."""
    mode: object = properties.get("mode", rule.mode)
    if mode not in ("direct", "pullRequest"):
        raise EventError(f"data.{task}.mode must be direct or pullRequest, got {str(mode)[:40]!r}")
    if mode == "pullRequest" and gate is None:
        raise EventError(f"data.{task}.mode is pullRequest, but this service has no forge to open it on")
    return mode == "pullRequest"


async def through_pull_request(
    gate: PullRequestGate, change: Change, scope: EventScope, event_id: str, context: str, rule: Rule
) -> WriteResult | str | NotMerged:
    """Open (or find) the pull request of ``change`` and wait for its merge: the merge commit (``str``), or why it
    brought nothing (:class:`NotMerged`); a :class:`WriteResult` when there was nothing to propose."""
    opened = await gate.open(change, scope, event_id, context, rule.pull_request)
    if not isinstance(opened, Proposal):
        return opened
    return await gate.merged(change.repository, opened, rule.pull_request)


def head_branch(scope: EventScope, triggered_id: str) -> str:
    """``keptn/<project>/<stage>/<service>/<12 hex digits of the triggered id>``: one branch per trigger."""
    digest = hashlib.sha256(triggered_id.encode()).hexdigest()[:12]
    return f"{_service_prefix(scope)}{digest}"


def _service_prefix(scope: EventScope) -> str:
    return f"{BRANCH_PREFIX}/{scope.project}/{scope.stage}/{scope.service}/"


@dataclass
class PullRequestGate:
    """Opens a trigger's pull request and waits for its merge."""

    writer: GitWriter
    forges: ForgeFactory
    store: StateStore
    clock: Clock
    wakeups: Wakeups = field(default_factory=Wakeups)
    bridge_url: str = ""
    """Keptn's Bridge (``KEPTN_BRIDGE_URL``): the pull request's description links the sequence there."""
    progress_interval: float = 30.0

    async def open(
        self, change: Change, scope: EventScope, triggered_id: str, context: str, options: PullRequestOptions
    ) -> Proposal | WriteResult:
        """The trigger's pull request — found in the state store, or pushed and opened now. A
        :class:`WriteResult` instead when there is nothing to propose: the branch holds the change already (its
        ``commit`` is then the one to wait for)."""
        stored = await self.stored(triggered_id)
        if stored is not None:
            return stored
        repository = change.repository
        forge = self.forges(repository)
        branch = head_branch(scope, triggered_id)
        pushed = await self.writer.propose(change, branch)
        if not pushed.created:
            return pushed
        title, body = _describe(change, scope, context, self.bridge_url)
        spec = PullRequestSpec(branch, repository.branch, title, body, options.labels, options.reviewers)
        opened = await forge.open_pull_request(spec)
        proposal = Proposal(
            opened.number, opened.url, branch, forge.repository.path, pushed.commit, self.clock.now().timestamp()
        )
        await self.store.memo_put(_key(triggered_id), proposal.encode())
        log.info("pull request opened", url=opened.url, branch=branch, commit=pushed.commit, triggeredid=triggered_id)
        await self._supersede(forge, scope, proposal)
        return proposal

    async def record_merge(self, context: str, scope: EventScope, commit: str) -> None:
        """Remember the commit a merged pull request of ``context`` brought for ``scope``: a squash merge keeps none
        of the proposed commit's trailers, so a rollback of the context finds it only here."""
        key = _merges_key(context, scope)
        known = await self.merges(context, scope)
        if commit not in known:
            await self.store.memo_put(key, json.dumps([*known, commit]).encode())

    async def merges(self, context: str, scope: EventScope) -> list[str]:
        """The commits merged pull requests of ``context`` brought for ``scope``, oldest first."""
        raw = await self.store.memo_get(_merges_key(context, scope))
        try:
            found = json.loads(raw) if raw is not None else []
        except ValueError:
            raise StateError(f"the stored merges of Keptn context {context} are corrupt") from None
        return [str(sha) for sha in found] if isinstance(found, list) else []

    async def stored(self, triggered_id: str) -> Proposal | None:
        """The pull request opened for ``triggered_id``, if any."""
        raw = await self.store.memo_get(_key(triggered_id))
        return Proposal.decode(raw) if raw is not None else None

    async def merged(self, repository: Repository, proposal: Proposal, options: PullRequestOptions) -> str | NotMerged:
        """Wait until the pull request is merged and return the commit that brought it into the branch."""
        forge = self.forges(repository)
        deadline = proposal.opened_at + options.timeout.total_seconds()
        pause, last_note = FIRST_POLL, self.clock.monotonic()
        with self.wakeups.listen(proposal.repository, proposal.number) as woken:
            while True:
                woken.clear()
                current = await self._look(forge, proposal)
                if current is not None:
                    if current.state is PullState.MERGED and current.merge_commit:
                        log.info("pull request merged", url=proposal.url, commit=current.merge_commit)
                        return current.merge_commit
                    if current.state is PullState.CLOSED:
                        return await self._closed(current, proposal)
                    if (
                        options.auto_merge
                        and current.state is PullState.OPEN
                        and current.mergeable
                        and await forge.merge(proposal.number, MergeMethod(options.merge_method))
                    ):
                        log.info("pull request merged by the service (autoMerge)", url=proposal.url)
                        continue
                remaining = deadline - self.clock.now().timestamp()
                if remaining <= 0:
                    return await self._timed_out(forge, proposal, options)
                if self.clock.monotonic() - last_note >= self.progress_interval:
                    last_note = self.clock.monotonic()
                    log.info(
                        "still waiting for the pull request to be merged",
                        url=proposal.url,
                        state=current.state.value if current else "unknown (the forge did not answer)",
                        mergeable=current.mergeable if current else None,
                        remaining=round(remaining),
                    )
                await self._pause(woken, min(pause, remaining))
                pause = min(pause * 2, max(FIRST_POLL, options.poll_interval.total_seconds()))

    async def _look(self, forge: Forge, proposal: Proposal) -> PullRequest | None:
        try:
            return await forge.get_pull_request(proposal.number)
        except ForgeAccessDeniedError:
            raise
        except ForgeError as exc:
            log.warning("cannot read the pull request now; asking again later", url=proposal.url, error=str(exc))
            return None

    async def _closed(self, current: PullRequest, proposal: Proposal) -> NotMerged:
        newer = await self.store.memo_get(_superseded_key(proposal.repository, proposal.number))
        if newer is not None:
            return NotMerged(f"pull request {proposal.url} was superseded by {newer.decode()} and closed")
        who = f" by {current.closed_by}" if current.closed_by else ""
        return NotMerged(f"pull request {proposal.url} was closed{who} without being merged")

    async def _timed_out(self, forge: Forge, proposal: Proposal, options: PullRequestOptions) -> NotMerged:
        limit = _duration(options.timeout.total_seconds())
        message = f"pull request {proposal.url} was not merged within {limit}"
        if options.close_on_timeout:
            try:
                await forge.close(
                    proposal.number,
                    f"Closed by keptn-gitops-service: not merged within {limit}, so the Keptn deployment failed.",
                )
                message += "; it was closed"
            except ForgeError as exc:
                message += f"; closing it failed: {exc}"
        return NotMerged(message, timed_out=True)

    async def _pause(self, woken: asyncio.Event, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(woken.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _supersede(self, forge: Forge, scope: EventScope, newer: Proposal) -> None:
        """Close the older open pull requests of the same project/stage/service, linking the new one."""
        try:
            older = [pr for pr in await forge.open_pull_requests(_service_prefix(scope)) if pr.number != newer.number]
        except ForgeError as exc:
            log.warning("cannot list older pull requests to supersede", error=describe_error(exc))
            return
        for pr in older:
            await self.store.memo_put(_superseded_key(newer.repository, pr.number), newer.url.encode())
            try:
                await forge.close(pr.number, f"Superseded by {newer.url}: a newer Keptn deployment of this service.")
                log.info("closed a superseded pull request", url=pr.url, newer=newer.url)
            except ForgeError as exc:
                log.warning("cannot close a superseded pull request", url=pr.url, error=describe_error(exc))


def _key(triggered_id: str) -> str:
    return f"pullrequest/{triggered_id}"


def _merges_key(context: str, scope: EventScope) -> str:
    return f"merges/{context}/{scope.project}/{scope.stage}/{scope.service}"


def _superseded_key(repository: str, number: int) -> str:
    return f"superseded/{repository}#{number}"


def _describe(change: Change, scope: EventScope, context: str, bridge_url: str) -> tuple[str, str]:
    subject, _, rest = change.message.partition("\n")
    link = ""
    if bridge_url:
        link = (
            f"\n\nKeptn Bridge: {bridge_url.rstrip('/')}/project/{scope.project}/sequence/{context}/stage/{scope.stage}"
        )
    body = (
        f"{rest.strip()}\n\nKeptn project `{scope.project}`, stage `{scope.stage}`, service `{scope.service}`, "
        f"context `{context}`.{link}\n\nOpened by keptn-gitops-service: merging it deploys the change; the Keptn "
        "deployment finishes once the GitOps controller has applied the merge."
    )
    return subject, body


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
