"""The decision rules for a Flux Kustomization, as a pure function of its status (kustomize-controller's spec docs).

Applied: ``lastAppliedRevision`` is our commit or a descendant, ``Ready=True`` (reason
``ReconciliationSucceeded``) whose ``observedGeneration`` equals ``metadata.generation``, not reconciling, and
``Healthy=True`` where health checks exist. Failed: ``Stalled=True``, or ``Ready=False`` for an attempted
revision that is ours or newer, with a failure reason. Everything else — including the ``Ready=Unknown`` that
opens every reconcile — is still in progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keptn_gitops_service.reconcile.outcome import Observation, Verdict

_NOT_FAILURES = frozenset({"Progressing", "ProgressingWithRetry", "DependencyNotReady", "Suspended"})


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The status condition of type ``kind``, if present."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def kustomization_verdict(ks: Mapping[str, Any], *, applied_ours: bool, attempted_ours: bool) -> Observation:
    """Judge a Kustomization. ``applied_ours``/``attempted_ours``: the applied/attempted revision is our commit
    or a descendant of it (the caller checks ancestry in git)."""
    summary = describe(ks)
    generation = (ks.get("metadata") or {}).get("generation")
    ready, stalled = condition(ks, "Ready"), condition(ks, "Stalled")
    reconciling, healthy = condition(ks, "Reconciling"), condition(ks, "Healthy")
    fresh = ready is not None and ready.get("observedGeneration", generation) == generation
    if (ks.get("spec") or {}).get("suspend"):
        return Observation(Verdict.IN_PROGRESS, f"{summary} (suspended)")
    if stalled is not None and stalled.get("status") == "True":
        return Observation(Verdict.FAILED, f"Flux stalled: {_reason(stalled)}. {summary}")
    if (
        fresh
        and ready is not None
        and ready.get("status") == "True"
        and applied_ours
        and not (reconciling is not None and reconciling.get("status") == "True")
        and (healthy is None or healthy.get("status") == "True")
    ):
        return Observation(Verdict.SUCCEEDED, summary)
    if (
        fresh
        and ready is not None
        and ready.get("status") == "False"
        and attempted_ours
        and ready.get("reason") not in _NOT_FAILURES
    ):
        return Observation(Verdict.FAILED, f"Flux failed to apply the revision: {_reason(ready)}. {summary}")
    return Observation(Verdict.IN_PROGRESS, summary)


def describe(ks: Mapping[str, Any]) -> str:
    """A one-line summary of a Kustomization's status for messages and logs."""
    meta, status = ks.get("metadata") or {}, ks.get("status") or {}
    ready = condition(ks, "Ready")
    state = f"Ready={ready.get('status')} ({_reason(ready)})" if ready else "no Ready condition yet"
    applied = status.get("lastAppliedRevision") or "none"
    attempted = status.get("lastAttemptedRevision") or "none"
    return (
        f"Kustomization {meta.get('namespace')}/{meta.get('name')}: {state}, "
        f"lastAppliedRevision {applied}, lastAttemptedRevision {attempted}"
    )


def _reason(cond: Mapping[str, Any]) -> str:
    reason, message = cond.get("reason") or "no reason", (cond.get("message") or "").strip()
    return f"{reason}: {message}" if message else str(reason)
