"""The decision rules for an Argo CD Application, as pure functions of the object (Argo CD's Application status).

The verdict is the revision-aware version of ``argocd app wait --sync --health --operation`` (argoproj/argo-cd
@37ee009 ``cmd/argocd/commands/app.go`` ``checkAppWaitConditions``) combined with Kargo's Application health
checker (akuity/kargo ``pkg/health/checker/builtin/argocd.go`` ``getApplicationHealth``): an operation is still
under way while the top-level ``operation`` field is set, while ``status.operationState.finishedAt`` is unset, or
while ``status.reconciledAt`` is before ``finishedAt`` — the operation and the health assessment are separate
controller loops, so health read right after a sync may predate it (akuity/kargo#2196).

Status fields (``pkg/apis/application/v1alpha1/types.go``): ``status.sync.{status,revision,revisions}``,
``status.health.{status,message,lastTransitionTime}``, ``status.operationState.{phase,message,finishedAt,
syncResult.{revision,revisions}}``, ``status.reconciledAt``, ``status.conditions[].{type,message}``.
``syncResult.revision`` is the resolved commit SHA from the moment a sync starts (``controller/sync.go``), and
auto-sync never retries a revision whose sync failed (``controller/appcontroller.go`` ``alreadyAttemptedSync``,
which raises a ``SyncError`` condition instead) — so a failed operation for our commit is final.

Which source counts (``source_index``): ``None`` means every source — ``status.sync.revision`` for a
single-source Application, every entry of ``status.sync.revisions`` (aligned with ``spec.sources``) for a
multi-source one; use it when all sources track the GitOps repository we commit to. ``source_index=i`` means
only ``spec.sources[i]`` (``status.sync.revisions[i]``, ``syncResult.revisions[i]``): the source fed by our
repository, e.g. the ``ref: values`` source next to a Helm chart source whose revision is a chart version. For a
single-source Application, index 0 is the one source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from keptn_gitops_service.reconcile.outcome import Observation, Verdict

#: ``initiatedBy.username`` of the sync operations this service starts.
INITIATOR = "keptn-gitops-service"
#: The refresh annotation, removed by the application controller once it has refreshed
#: (``pkg/apis/application/v1alpha1/application_annotations.go``).
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
#: Set together with the refresh annotation so a request arriving mid-refresh is not dropped (same file).
REFRESH_TIMESTAMP_ANNOTATION = "argocd.argoproj.io/refresh-timestamp"
#: Terminal operation phases that mean the sync failed (``gitops-engine/pkg/sync/common/types.go``; the same two
#: phases as the ``on-sync-failed`` notification trigger).
FAILED_PHASES = frozenset({"Failed", "Error"})
#: Error conditions that fail the wait: Kargo's ``ComparisonError``/``InvalidSpecError`` plus ``SyncError``
#: ("Failed last sync attempt to [X]: …", or auto-sync refusing to act).
ERROR_CONDITIONS = ("SyncError", "ComparisonError", "InvalidSpecError")

_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


def application_verdict(
    app: Mapping[str, Any],
    *,
    commit_matches: Callable[[str], bool],
    now: datetime,
    degraded_grace: timedelta = timedelta(seconds=60),
    degraded_since: datetime | None = None,
    source_index: int | None = None,
) -> Observation:
    """Judge an Application after our commit was pushed to the repository it tracks.

    ``commit_matches(revision)`` answers "is this revision our commit or a descendant of it?" for a revision
    string from the status (``sync.revision(s)``, ``operationState.syncResult.revision(s)``); the caller checks
    ancestry in git. It is never called with an empty revision and may be called more than once.

    ``now`` is the current wall time (aware; a naive value is taken as UTC). ``degraded_since`` is the time the
    caller first saw this Application ``Degraded`` (forget it once health leaves ``Degraded``); it is only used
    when ``status.health.lastTransitionTime`` is absent (Argo CD sets it in ``controller/appcontroller.go``
    ``persistAppStatus`` on every health change). The Degraded clock never starts before the last operation
    finished; with neither time known, Degraded is waited out until the caller's deadline.

    Succeeded: no pending ``operation``; if ``operationState`` exists, phase ``Succeeded``, ``finishedAt`` set
    and ``reconciledAt >= finishedAt``; the relevant ``sync.revision(s)`` satisfy ``commit_matches``;
    ``sync.status == Synced``; ``health.status == Healthy``.

    Failed: the finished operation's ``syncResult.revision(s)`` satisfy ``commit_matches`` and its phase is
    ``Failed``/``Error``; or a ``SyncError``/``ComparisonError``/``InvalidSpecError`` condition (once the status
    is current); or ``Degraded`` while synced to our revision for longer than ``degraded_grace`` (rolling updates
    of some resources pass through Degraded, argoproj/argo-cd#17993); or a ``source_index`` outside
    ``spec.sources``.

    Everything else — an operation requested or running, stale health, another revision, ``OutOfSync``,
    ``Progressing``/``Suspended``/``Missing``/``Unknown`` health — is in progress.

    Error conditions and Degraded health do not fail the wait while the ``argocd.argoproj.io/refresh`` annotation
    is present: a refresh was requested and not yet done, so they may still describe the revision before ours
    (a broken commit we are fixing forward; when manifest generation fails ``sync.revision`` is only the
    unresolved ``targetRevision``, so the condition cannot be tied to a commit). Callers should request a refresh
    (:func:`refresh_patch`) after pushing and judge only objects at or after the patch's ``resourceVersion``.
    """
    summary = describe_application(app)
    status = app.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    ops = status.get("operationState") or None
    now = _aware(now)

    sources = _source_count(app)
    if source_index is not None and sources is not None and not 0 <= source_index < sources:
        return Observation(
            Verdict.FAILED,
            f"source index {source_index} is out of range: the Application has {sources} source(s). {summary}",
        )
    if app.get("operation"):
        return Observation(Verdict.IN_PROGRESS, f"{summary}; {_pending_operation(ops)}")
    finished_at = _timestamp(ops.get("finishedAt")) if ops else None
    if ops and finished_at is None:
        return Observation(Verdict.IN_PROGRESS, f"{summary}; the operation has not finished")
    if ops:
        result = ops.get("syncResult") or {}
        if ops.get("phase") in FAILED_PHASES and _matches(_revisions(result), source_index, commit_matches):
            message = " ".join(str(ops.get("message") or "no message").split())
            return Observation(Verdict.FAILED, f"Argo CD sync failed ({ops.get('phase')}): {message}. {summary}")
        reconciled_at = _timestamp(status.get("reconciledAt"))
        if finished_at is not None and (reconciled_at is None or reconciled_at < finished_at):
            return Observation(
                Verdict.IN_PROGRESS,
                f"{summary}; health not trusted yet: the Application was not reconciled after its last operation",
            )
    refresh_pending = REFRESH_ANNOTATION in ((app.get("metadata") or {}).get("annotations") or {})
    errors = [c for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") in ERROR_CONDITIONS]
    if errors and refresh_pending:
        return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for the requested refresh before trusting errors")
    if errors:
        text = "; ".join(f"{c.get('type')}: {' '.join(str(c.get('message') or 'no message').split())}" for c in errors)
        return Observation(Verdict.FAILED, f"Argo CD reports {text}. {summary}")
    if not _matches(_revisions(sync), source_index, commit_matches):
        return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for Argo CD to sync our commit or a newer one")
    if sync.get("status") != "Synced":
        return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for sync status Synced")
    if ops and ops.get("phase") != "Succeeded":
        return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for a successful sync operation")
    state = health.get("status")
    if state == "Healthy":
        return Observation(Verdict.SUCCEEDED, summary)
    if state == "Degraded":
        since = _timestamp(health.get("lastTransitionTime")) or (_aware(degraded_since) if degraded_since else None)
        if since is not None and finished_at is not None:
            since = max(since, finished_at)
        if since is not None and now - since > degraded_grace and not refresh_pending:
            return Observation(
                Verdict.FAILED, f"Argo CD reports the Application Degraded for {_duration(now - since)}. {summary}"
            )
    return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for health Healthy")


def _pending_operation(ops: Mapping[str, Any] | None) -> str:
    """What the requested ``operation`` is doing: not started, running, or retrying after failed attempts.

    While an operation runs, ``operationState`` is its state (the controller writes ``Running`` before it acts
    and clears ``operation`` in the write that ends it). A failed attempt with retries left (auto-sync retries
    5 times by default, backing off 5 s, 10 s, 20 s, 40 s, 80 s) stays ``Running`` with ``retryCount`` and
    Argo CD's message ("… Retrying attempt #N at 3:04PM."); ``finishedAt`` is set between attempts only.
    """
    phase = str(ops.get("phase") or "") if ops else ""
    if not ops or phase not in ("Running", "Terminating"):
        return "a sync operation is requested but has not started"
    message = " ".join(str(ops.get("message") or "").split())
    retries = ops.get("retryCount")
    if isinstance(retries, int) and retries > 0:
        waiting = "waiting to retry" if ops.get("finishedAt") else "retrying"
        text = f"the sync operation is {phase}, {waiting} after {retries} failed attempt(s)"
        return f"{text}: {message}" if message else text
    return f"the sync operation is {phase}: {message}" if message else f"the sync operation is {phase}"


def describe_application(app: Mapping[str, Any]) -> str:
    """A one-line summary of an Application's status for messages and logs."""
    meta, status = app.get("metadata") or {}, app.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    revisions = ", ".join(_short(r) for r in _revisions(sync)) or "no revision"
    health_text = f"health {health.get('status') or 'unknown'}"
    detail = health.get("message") or _resources_in(status, str(health.get("status") or ""))
    if detail:
        health_text += f" ({' '.join(str(detail).split())})"
    parts = [f"sync {sync.get('status') or 'unknown'} to {revisions}", health_text]
    ops = status.get("operationState")
    if isinstance(ops, Mapping) and ops:
        # ``syncResult`` is written once the sync has resolved the revision; before that (and between retries)
        # the requested revision is in the operation (a SHA for auto-sync, maybe a branch for a manual sync).
        requested = (ops.get("operation") or {}).get("sync") or {}
        op_revisions = ", ".join(_short(r) for r in _revisions(ops.get("syncResult") or {}) or _revisions(requested))
        op_revisions = op_revisions or "unresolved revision"
        finished = f"finished {ops['finishedAt']}" if ops.get("finishedAt") else f"started {ops.get('startedAt', '?')}"
        if ops.get("finishedAt") and ops.get("phase") == "Running":  # between two attempts of a retried sync
            finished = f"attempt {int(ops.get('retryCount') or 0)} failed {ops['finishedAt']}"
        parts.append(f"last operation {ops.get('phase') or 'unknown'} for {op_revisions} ({finished})")
    else:
        parts.append("no operation yet")
    parts.append(f"reconciledAt {status.get('reconciledAt') or 'never'}")
    kinds = [str(c.get("type")) for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("type")]
    if kinds:
        parts.append(f"conditions {', '.join(kinds)}")
    refresh = ((meta.get("annotations") or {}).get(REFRESH_ANNOTATION)) or None
    if refresh:
        parts.append(f"{refresh} refresh requested")
    return f"Application {meta.get('namespace')}/{meta.get('name')}: {', '.join(parts)}"


def _resources_in(status: Mapping[str, Any], state: str, limit: int = 3) -> str:
    """Argo CD v2.14 leaves the Application's ``health.message`` empty; the reasons are on the resources
    (``status.resources[].health``): the first ``limit`` of those ``Degraded``/``Progressing`` like the whole."""
    if state not in ("Degraded", "Progressing"):
        return ""
    found = []
    for resource in status.get("resources") or []:
        if not isinstance(resource, Mapping):
            continue
        health = resource.get("health") or {}
        if health.get("status") == state and health.get("message"):
            found.append(f"{resource.get('kind')} {resource.get('name')}: {health['message']}")
    more = f"; and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def sync_operation(
    revision: str,
    *,
    shkeptncontext: str,
    triggeredid: str,
    source_index: int | None = None,
    source_count: int | None = None,
    sync_policy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``operation`` field body that asks the application controller to sync ``revision``.

    Same shape as the API server's ``Sync`` (``server/application/application.go``) and Kargo's ``argocd-update``
    (``pkg/promotion/runner/builtin/argocd_updater.go`` ``syncApplication``): ``initiatedBy.username``, ``info``
    entries carrying the Keptn context and triggering event id (shown in the UI and in
    ``status.operationState.operation``), ``sync.revision`` for a single-source Application. For a multi-source
    Application pass ``source_index`` and ``source_count`` (``len(spec.sources)``): ``sync.revisions`` must have
    one entry per source — ``controller/state.go`` ``CompareAppState`` falls back to every source's
    ``targetRevision`` when the lengths differ — and empty entries mean "that source's ``targetRevision``".
    ``sync_policy`` (the Application's ``spec.syncPolicy``) contributes ``syncOptions`` and ``retry``, as the API
    server does.

    Writing this straight into the Application (bypassing the API server) should also clear
    ``status.operationState`` as ``util/argo/argo.go`` ``SetAppOperation`` does (argoproj/argo-cd#20875);
    refused while another ``operation`` is set. With auto-sync enabled, syncing to a revision other than
    ``targetRevision`` is refused by the API server — prefer a refresh then.
    """
    sync: dict[str, Any]
    if source_index is None:
        sync = {"revision": revision}
    else:
        if source_count is None or not 0 <= source_index < source_count:
            raise ValueError(f"source_index {source_index} needs a source_count above it, got {source_count}")
        revisions = [""] * source_count
        revisions[source_index] = revision
        sync = {"revisions": revisions}
    policy = sync_policy or {}
    if policy.get("syncOptions"):
        sync["syncOptions"] = list(policy["syncOptions"])
    operation: dict[str, Any] = {
        "initiatedBy": {"username": INITIATOR},
        "info": [{"name": "shkeptncontext", "value": shkeptncontext}, {"name": "triggeredid", "value": triggeredid}],
        "sync": sync,
    }
    if policy.get("retry"):
        operation["retry"] = dict(policy["retry"])
    return operation


def refresh_patch(hard: bool = False, *, now: datetime | None = None) -> dict[str, Any]:
    """The merge patch that asks the application controller to refresh (``hard`` also drops the manifest cache).

    With ``now``, also sets ``argocd.argoproj.io/refresh-timestamp`` (RFC 3339, UTC) as ``util/argo/argo.go``
    ``RefreshApp`` does, so a request that arrives while a refresh is running is not dropped by newer controllers
    (older ones ignore the annotation).
    """
    annotations = {REFRESH_ANNOTATION: "hard" if hard else "normal"}
    if now is not None:
        annotations[REFRESH_TIMESTAMP_ANNOTATION] = _aware(now).astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"metadata": {"annotations": annotations}}


def _source_count(app: Mapping[str, Any]) -> int | None:
    spec = app.get("spec") or {}
    if spec.get("sources"):
        return len(spec["sources"])
    return 1 if spec.get("source") else None


def _revisions(holder: Mapping[str, Any]) -> list[str]:
    """``revisions`` (multi-source, aligned with ``spec.sources``) or ``[revision]``; as in the pseudo-code."""
    revisions = holder.get("revisions")
    if isinstance(revisions, Sequence) and not isinstance(revisions, str) and revisions:
        return [str(r or "") for r in revisions]
    revision = holder.get("revision")
    return [str(revision)] if revision else []


def _matches(revisions: list[str], source_index: int | None, commit_matches: Callable[[str], bool]) -> bool:
    if source_index is None:
        relevant = revisions
    elif source_index < len(revisions):
        relevant = [revisions[source_index]]
    else:
        relevant = []
    return bool(relevant) and all(r and commit_matches(r) for r in relevant)


def _timestamp(value: object) -> datetime | None:
    """An RFC 3339 timestamp from the status (``2024-03-05T07:33:04Z``), or ``None`` if absent/unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _short(revision: str) -> str:
    return revision[:12] if _SHA.match(revision) else (revision or '""')


def _duration(delta: timedelta) -> str:
    minutes, seconds = divmod(round(delta.total_seconds()), 60)
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
