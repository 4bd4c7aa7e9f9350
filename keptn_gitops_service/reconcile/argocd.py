"""Wait until Argo CD has synced our commit (or a descendant) and reports the Application Healthy, through the
Kubernetes API or through Argo CD's REST API (:mod:`.argocd_rest`).

The verdict is :func:`~.argo_rules.application_verdict` on every change of the Application. Around it, the wait
asks Argo CD to refresh at once (instead of its 3-minute poll) and, when configured, to sync our commit with
``info`` entries that link the operation back to Keptn. A failure is only believed once the refresh is done: until
then the Application may still show the error conditions of the revision before ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import ArgoWait
from keptn_gitops_service.errors import AccessDeniedError, KubernetesAccessError, ReconcileError, describe_error
from keptn_gitops_service.reconcile.argo_rules import (
    REFRESH_ANNOTATION,
    application_verdict,
    describe_application,
    refresh_patch,
    sync_operation,
)
from keptn_gitops_service.reconcile.following import (
    Judge,
    Object,
    ObjectFeed,
    duration_text,
    follow,
    older_version,
)
from keptn_gitops_service.reconcile.kube import APPLICATION, KubeHub
from keptn_gitops_service.reconcile.outcome import Ancestry, Observation, Verdict, WaitOutcome

log = structlog.get_logger(__name__)

_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_FIRST_RETRY, _MAX_RETRY = 5.0, 60.0
_SYNC_ATTEMPTS = 3


@dataclass(frozen=True)
class SyncRequest:
    """What a sync we trigger carries: the revision(s) and the Keptn event it belongs to."""

    revision: str
    source_index: int | None
    shkeptncontext: str
    triggeredid: str


class ArgoApi(Protocol):
    """One way of reaching the Applications of one namespace."""

    def feed(self) -> ObjectFeed: ...

    async def refresh(self, name: str) -> Object | None:
        """Ask for a refresh; the Application as it is afterwards, or ``None`` when it is not there for us."""

    async def sync(self, app: Object, request: SyncRequest) -> None:
        """Ask Argo CD to sync; raises :class:`ReconcileError` (:class:`AccessDeniedError` when refused)."""


class ArgoApplicationWaiter:
    """Judges an Application on every change of it, until a verdict or the deadline."""

    def __init__(self, api: ArgoApi, clock: Clock) -> None:
        self._api = api
        self._clock = clock

    async def wait(
        self,
        *,
        namespace: str,
        name: str,
        options: ArgoWait,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
        shkeptncontext: str = "",
        triggeredid: str = "",
    ) -> WaitOutcome:
        """Follow Application ``namespace/name`` as the rule's rendered ``wait.argocd`` (``options``) says; a sync
        we trigger carries ``shkeptncontext`` and ``triggeredid`` in its ``info``."""
        deadline = self._clock.monotonic() + timeout
        keptn = (shkeptncontext, triggeredid)
        judge = _ApplicationJudge(self._api, self._clock, f"{namespace}/{name}", name, options, commit, ancestry, keptn)
        try:
            followed = await follow(self._api.feed(), name, judge, clock=self._clock, deadline=deadline)
        finally:
            await judge.close()
        summary = followed.observation.summary
        if followed.timed_out:
            waited = f"timed out after {duration_text(timeout)} waiting for Argo CD to deploy commit {commit[:12]}"
            return WaitOutcome(False, f"{waited}: {summary}", timed_out=True)
        if followed.observation.verdict is Verdict.SUCCEEDED:
            return WaitOutcome(True, f"Argo CD deployed commit {commit[:12]}: {summary}")
        return WaitOutcome(False, summary)


class _Retry:
    """Spaced retries of a request: 5 s, 10 s, 20 s … up to a minute."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.failures = 0
        self._not_before = 0.0

    def due(self) -> bool:
        return self._clock.monotonic() >= self._not_before

    def failed(self) -> float:
        delay = min(_MAX_RETRY, _FIRST_RETRY * 2.0**self.failures)
        self.failures += 1
        self._not_before = self._clock.monotonic() + delay
        return delay


class _ApplicationJudge(Judge):
    def __init__(
        self,
        api: ArgoApi,
        clock: Clock,
        what: str,
        name: str,
        options: ArgoWait,
        commit: str,
        ancestry: Ancestry,
        keptn: tuple[str, str],
    ) -> None:
        self._api = api
        self._clock = clock
        self._what = f"Application {what}"
        self._name = name
        self._options = options
        self._keptn = keptn  # shkeptncontext, triggeredid: the info of a sync we trigger
        self._commit = commit.lower()
        self._ancestry = ancestry
        self._contains: dict[str, bool] = {}
        self._superseded: dict[str, str] = {}  # descendants that no longer hold our change, and why
        self._refresh: asyncio.Task[Object | None] | None = None
        self._refresh_retry = _Retry(clock)
        self._refreshed: Object | None = None  # the refresh's answer: copies older than it are not trusted
        self._refresh_missed = False  # the last refresh found no Application: try again once the feed shows it
        self._refresh_saw_app = False  # the feed held the Application when the refresh started
        self._sync_retry = _Retry(clock)
        self._synced = False
        self._degraded_since: datetime | None = None
        self._note = ""

    def background(self) -> Sequence[asyncio.Future[Any]]:
        return [self._refresh] if self._refresh is not None and not self._refresh.done() else []

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh

    async def judge(self, obj: Object | None) -> Observation:
        denied = self._follow_refresh(obj)
        if denied is not None:
            return denied
        app = self._current(obj)
        if app is None:
            self._schedule_recheck()
            return self._noted(Observation(Verdict.IN_PROGRESS, f"{self._what} does not exist (yet)"))
        observation = await self._verdict(app)
        if observation.verdict is Verdict.FAILED and self._options.refresh and self._refreshed is None:
            observation = Observation(
                Verdict.IN_PROGRESS, f"{observation.summary} (not trusted before the requested refresh is done)"
            )
        if observation.verdict is Verdict.IN_PROGRESS and await self._should_sync(app):
            denied = await self._request_sync(app)
            if denied is not None:
                return denied
        self._schedule_recheck()
        return self._noted(observation)

    def _follow_refresh(self, obj: Object | None) -> Observation | None:
        """Start the refresh, take its answer, retry it; a refusal (401/403) ends the wait."""
        if not self._options.refresh or self._refreshed is not None:
            return None
        if self._refresh is not None and self._refresh.done():
            task, self._refresh = self._refresh, None
            error = task.exception()
            if isinstance(error, AccessDeniedError):
                return Observation(Verdict.FAILED, str(error))
            if error is not None:
                delay = self._refresh_retry.failed()
                problem = describe_error(error)
                self._note = f"the refresh request failed ({problem}); trying again in {duration_text(delay)}"
                log.warning("Argo CD refresh failed", application=self._what, error=problem)
            elif (answer := task.result()) is None:
                self._refresh_missed = True
                if self._refresh_saw_app:  # the feed shows it, the API does not (another project?): space retries
                    self._refresh_retry.failed()
                self._note = f"Argo CD does not show {self._what} to us (not yet created, or not readable)"
            else:
                self._refreshed, self._note = answer, ""
                return None
        missed_and_still_absent = self._refresh_missed and obj is None
        if self._refresh is None and self._refresh_retry.due() and not missed_and_still_absent:
            self._refresh_missed, self._refresh_saw_app = False, obj is not None
            self._refresh = asyncio.create_task(self._api.refresh(self._name), name=f"refresh {self._what}")
        return None

    def _current(self, obj: Object | None) -> Object | None:
        """The feed's copy, unless the refresh's answer is newer (the feed may not have caught up with it yet)."""
        fresh = self._refreshed
        if fresh is None:
            return obj
        floor = str((fresh.get("metadata") or {}).get("resourceVersion") or "")
        if obj is None or older_version(obj, floor):
            return fresh
        return obj

    async def _verdict(self, app: Object) -> Observation:
        for revision in _revisions(app):
            if revision not in self._contains:
                self._contains[revision] = await self._ours_or_descendant(revision)
        superseded = self._superseded_target(app)
        if superseded is not None:
            return Observation(Verdict.FAILED, f"{superseded}. {describe_application(app)}")
        health = ((app.get("status") or {}).get("health") or {}).get("status")
        if health == "Degraded":
            self._degraded_since = self._degraded_since or self._clock.now()
        else:
            self._degraded_since = None
        return application_verdict(
            app,
            commit_matches=lambda revision: self._contains.get(revision.lower(), False),
            now=self._clock.now(),
            degraded_grace=self._options.degraded_grace,
            degraded_since=self._degraded_since,
            source_index=self._options.source_index,
        )

    async def _ours_or_descendant(self, revision: str) -> bool:
        """Our commit, or a descendant that still holds our change (one that does not is remembered with why)."""
        if not _SHA.match(revision):
            return False  # a chart version, a branch name: not a commit of our repository
        if revision == self._commit:
            return True
        if not await self._ancestry.is_ancestor(self._commit, revision):
            return False
        reason = await self._ancestry.superseded(self._commit, revision)
        if reason is not None:
            self._superseded[revision] = reason
        return reason is None

    def _superseded_target(self, app: Object) -> str | None:
        """Why the revision Argo CD compares with (and would sync) no longer holds our change, unless the last
        operation deployed our change before."""
        status = app.get("status") or {}
        targets = _sync_revisions(status.get("sync") or {}, self._options.source_index)
        reason = next((self._superseded[r.lower()] for r in targets if r.lower() in self._superseded), None)
        if reason is None:
            return None
        result = (status.get("operationState") or {}).get("syncResult") or {}
        deployed = _sync_revisions(result, self._options.source_index)
        return None if deployed and all(self._contains.get(r.lower(), False) for r in deployed) else reason

    async def _should_sync(self, app: Object) -> bool:
        """Sync once, after the refresh, when nothing else is syncing and our commit is not synced yet."""
        options = self._options
        if not options.sync or self._synced or (options.refresh and self._refreshed is None):
            return False
        if REFRESH_ANNOTATION in ((app.get("metadata") or {}).get("annotations") or {}):
            return False  # what the Application says about revisions is from before the refresh
        if self._sync_retry.failures >= _SYNC_ATTEMPTS or not self._sync_retry.due():
            return False
        status = app.get("status") or {}
        phase = (status.get("operationState") or {}).get("phase")
        if app.get("operation") or phase in ("Running", "Terminating"):
            return False
        sync = status.get("sync") or {}
        if any(r.lower() in self._superseded for r in _sync_revisions(sync, options.source_index)):
            return False  # the target undid our change: syncing our commit would take that back
        return not (sync.get("status") == "Synced" and self._contain_ours(sync))

    def _contain_ours(self, sync: Mapping[str, Any]) -> bool:
        """``sync.revision(s)`` — the revisions Argo CD compared with, after a refresh its resolved
        ``targetRevision`` — are our commit or descendants of it."""
        revisions = _sync_revisions(sync, self._options.source_index)
        return bool(revisions) and all(self._contains.get(r.lower(), False) for r in revisions)

    async def _request_sync(self, app: Object) -> Observation | None:
        """Sync our commit — or, when Argo CD's target already moved past it (someone else's newer commit), that
        target, so that our sync never takes a newer change back. When every source of a multi-source Application
        tracks our repository, each source syncs to its ``targetRevision`` (an empty revision)."""
        every_source = self._options.source_index is None and _source_count(app) > 1
        sync = (app.get("status") or {}).get("sync") or {}
        target = (_sync_revisions(sync, self._options.source_index) or [""])[0].lower()
        revision = target if target != self._commit and self._contain_ours(sync) else self._commit
        request = SyncRequest(
            revision="" if every_source else revision,
            source_index=0 if every_source else self._options.source_index,
            shkeptncontext=self._keptn[0],
            triggeredid=self._keptn[1],
        )
        try:
            await self._api.sync(app, request)
        except AccessDeniedError as exc:
            return Observation(Verdict.FAILED, f"Argo CD refused to sync {self._what}: {exc}")
        except ReconcileError as exc:
            delay = self._sync_retry.failed()
            self._note = f"the sync request failed ({exc})"
            if self._sync_retry.failures < _SYNC_ATTEMPTS:
                self._note += f"; trying again in {duration_text(delay)}"
            log.warning("Argo CD sync request failed", application=self._what, error=describe_error(exc))
            return None
        self._synced, self._note = True, ""
        log.info("Argo CD sync requested", application=self._what, revision=request.revision or "targetRevision")
        return None

    def _schedule_recheck(self) -> None:
        """Degraded turns into a failure when the grace period passes, even if nothing changes; retries are due."""
        waits = []
        if self._degraded_since is not None:
            waits.append(max(1.0, self._options.degraded_grace.total_seconds() / 4))
        if self._refresh is None and self._options.refresh and self._refreshed is None:
            waits.append(_FIRST_RETRY)  # a retry of the refresh is due then (the Application is in the feed)
        if self._options.sync and not self._synced and 0 < self._sync_retry.failures < _SYNC_ATTEMPTS:
            waits.append(_FIRST_RETRY)
        self.recheck = min(waits) if waits else None

    def _noted(self, observation: Observation) -> Observation:
        if not self._note or observation.verdict is not Verdict.IN_PROGRESS:
            return observation
        return Observation(observation.verdict, f"{observation.summary}; {self._note}")


class KubernetesArgoApi:
    """Applications as Kubernetes objects (the Argo CD namespace, or any namespace Argo CD watches)."""

    def __init__(self, hub: KubeHub, namespace: str, clock: Clock) -> None:
        self._hub = hub
        self._namespace = namespace
        self._clock = clock

    def feed(self) -> ObjectFeed:
        return self._hub.watch(APPLICATION, self._namespace)

    async def refresh(self, name: str) -> Object | None:
        """The ``argocd.argoproj.io/refresh`` annotation; the answer still carries it (the controller removes it
        once refreshed), and the verdict rules do not trust errors while it is there."""
        return await self._hub.patch(APPLICATION, self._namespace, name, refresh_patch(now=self._clock.now()))

    async def sync(self, app: Object, request: SyncRequest) -> None:
        """Set ``operation`` like the API server's ``SetAppOperation``: only on the version we judged (a 409 means
        someone else changed it first), and clearing the previous ``operationState``."""
        spec, meta = app.get("spec") or {}, app.get("metadata") or {}
        operation = sync_operation(
            request.revision,
            shkeptncontext=request.shkeptncontext,
            triggeredid=request.triggeredid,
            source_index=request.source_index,
            source_count=_source_count(app) if request.source_index is not None else None,
            sync_policy=spec.get("syncPolicy"),
        )
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "operation": operation,
            "status": {"operationState": None},
        }
        name = str(meta.get("name"))
        if await self._hub.patch(APPLICATION, self._namespace, name, patch) is None:
            raise KubernetesAccessError(f"cannot sync Application {self._namespace}/{name}: not found")


def _revisions(app: Object) -> set[str]:
    """Every revision the verdict may ask about: synced, and of the last operation."""
    status = app.get("status") or {}
    found: set[str] = set()
    for holder in (status.get("sync") or {}, ((status.get("operationState") or {}).get("syncResult") or {})):
        found.update(str(r).lower() for r in _sync_revisions(holder, None) if r)
    return found


def _sync_revisions(holder: Mapping[str, Any], source_index: int | None) -> list[str]:
    revisions = holder.get("revisions")
    values = [str(r or "") for r in revisions] if isinstance(revisions, list) and revisions else []
    if not values and holder.get("revision"):
        values = [str(holder["revision"])]
    if source_index is None:
        return values
    return values[source_index : source_index + 1]


def _source_count(app: Object) -> int:
    spec = app.get("spec") or {}
    return len(spec.get("sources") or []) or 1
