"""The decision rules for a Flux HelmRelease, as a pure function of the object (helm-controller's spec docs).

Helm state is keyed by chart version and values digest, never by Git SHA: tie the HelmRelease to our commit
through its parent Kustomization (:func:`~keptn_gitops_service.reconcile.flux_rules.kustomization_verdict`),
then judge the release with :func:`helmrelease_verdict`.

Upstream code paths (fluxcd/helm-controller @0f61a86):

* ``api/v2/helmrelease_types.go``, ``api/v2/snapshot_types.go`` — ``status.history[]`` snapshots (newest first),
  ``observedGeneration``, ``lastAttemptedGeneration``, ``lastAttemptedConfigDigest``.
* ``api/v2/condition_types.go`` — the ``Ready``/``Released``/``TestSuccess``/``Remediated`` reasons.
* ``internal/reconcile/release.go`` ``summarize()`` — Ready is copied from ``Remediated > TestSuccess > Released``;
  any remediated state (``RollbackSucceeded``, ``UninstallSucceeded``, …) forces ``Ready=False``.
* ``internal/reconcile/atomic_release.go`` — ``Stalled=True`` with ``RetriesExceeded`` ("Failed to install after
  N attempt(s)") or ``MissingRollbackTarget`` once remediation gives up: terminal until the spec changes or
  ``reconcile.fluxcd.io/resetAt`` is set.
* ``internal/controller/helmrelease_controller.go`` — ``Ready=Unknown/Progressing "reconciliation in progress"``
  at the start of every reconcile; ``status.observedGeneration`` is only patched when a reconcile ends without a
  retryable error, so a release that failed and will be retried keeps the old ``observedGeneration`` while
  ``lastAttemptedGeneration`` already equals ``metadata.generation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keptn_gitops_service.reconcile.flux_rules import condition
from keptn_gitops_service.reconcile.outcome import Observation, Verdict

#: ``Ready=False`` reasons that mean the release of the current generation failed (helm-controller's spec docs).
#: ``DependencyNotReady``, ``Progressing`` and controller-internal reasons are waited out instead.
FAILURE_REASONS = frozenset(
    {
        "InstallFailed",
        "UpgradeFailed",
        "TestFailed",
        "RollbackSucceeded",
        "RollbackFailed",
        "UninstallSucceeded",
        "UninstallFailed",
        "ArtifactFailed",
        "InitFailed",
    }
)

# Conditions that ``summarize()`` folds into Ready; when one of them is False for another reason than Ready's
# (e.g. Ready=RollbackSucceeded after Released=UpgradeFailed) it is the root cause worth reporting.
_CAUSES = ("Released", "TestSuccess")


def helmrelease_verdict(
    hr: Mapping[str, Any],
    *,
    expected_chart_version: str | None = None,
    expected_values_digest: str | None = None,
) -> Observation:
    """Judge a HelmRelease after the commit that changed it was applied by its parent Kustomization.

    Succeeded: ``status.observedGeneration == metadata.generation``; ``Ready=True`` for that generation and not
    ``Reconciling``; ``history[0]`` (the latest release) is ``deployed`` and its ``configDigest`` equals
    ``status.lastAttemptedConfigDigest`` (the values Flux last tried are the ones released); and, when given,
    ``history[0].chartVersion`` is ``expected_chart_version`` exactly or with a ``+<suffix>`` (helm-controller
    appends ``+<digest prefix>`` for OCI charts, e.g. ``6.6.1+0cc9a8446c95``), and ``history[0].configDigest`` is
    ``expected_values_digest`` (``sha256:…``). ``expected_chart_version`` is an exact version, not a range such
    as ``spec.chart.spec.version: 6.5.*``.

    Failed: ``Stalled=True`` (remediation gave up: ``RetriesExceeded``, ``MissingRollbackTarget``, …), or
    ``Ready=False`` for the current generation with a reason in :data:`FAILURE_REASONS` — also while
    ``observedGeneration`` still lags, as long as ``lastAttemptedGeneration`` (else the Ready condition's
    ``observedGeneration``) is the current generation: helm-controller may retry (remediation), we fail fast.

    Everything else is in progress: a suspended HelmRelease, a generation not yet attempted, the
    ``Ready=Unknown`` that opens every reconcile, ``DependencyNotReady``, or a release that does not yet show
    the expected chart version/values. The summary then names what is still missing.
    """
    summary = describe_helmrelease(hr)
    spec, status = hr.get("spec") or {}, hr.get("status") or {}
    generation = (hr.get("metadata") or {}).get("generation")
    ready, stalled, reconciling = condition(hr, "Ready"), condition(hr, "Stalled"), condition(hr, "Reconciling")
    if spec.get("suspend"):
        return Observation(Verdict.IN_PROGRESS, f"{summary} (suspended)")
    if stalled is not None and stalled.get("status") == "True":
        return Observation(Verdict.FAILED, f"Flux stalled: {_reason(stalled)}{_causes(hr, ready)}. {summary}")
    ready_fresh = ready is not None and ready.get("observedGeneration", generation) == generation
    failing = (
        ready is not None and ready_fresh and ready.get("status") == "False" and ready.get("reason") in FAILURE_REASONS
    )
    failure = (
        f"Flux failed to release the HelmRelease: {_reason(ready)}{_causes(hr, ready)}. {summary}" if ready else ""
    )
    if status.get("observedGeneration") != generation:
        attempted = status.get("lastAttemptedGeneration", ready.get("observedGeneration") if ready else None)
        if failing and attempted == generation:
            return Observation(Verdict.FAILED, failure)
        return Observation(
            Verdict.IN_PROGRESS,
            f"{summary}; waiting for generation {generation} to be reconciled "
            f"(observedGeneration {status.get('observedGeneration', 'none')})",
        )
    missing = _missing(hr, ready, ready_fresh, reconciling, expected_chart_version, expected_values_digest)
    if not missing:
        return Observation(Verdict.SUCCEEDED, summary)
    if failing:
        return Observation(Verdict.FAILED, failure)
    return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting for {', '.join(missing)}")


def describe_helmrelease(hr: Mapping[str, Any]) -> str:
    """A one-line summary of a HelmRelease's status for messages and logs."""
    meta, status = hr.get("metadata") or {}, hr.get("status") or {}
    ready = condition(hr, "Ready")
    state = f"Ready={ready.get('status')} ({_reason(ready)})" if ready else "no Ready condition yet"
    latest = _latest(hr)
    if latest is None:
        release = "no release in status.history"
    else:
        chart = f"{latest.get('chartName') or '?'}@{latest.get('chartVersion') or '?'}"
        name = f"{latest.get('namespace')}/{latest.get('name')}" if latest.get("namespace") else latest.get("name")
        release = f"release {name}.v{latest.get('version', '?')} {latest.get('status') or 'unknown'} with chart {chart}"
    generations = (
        f"generation {meta.get('generation', '?')} (observed {status.get('observedGeneration', 'none')}, "
        f"last attempted {status.get('lastAttemptedGeneration', 'none')})"
    )
    return f"HelmRelease {meta.get('namespace')}/{meta.get('name')}: {state}, {release}, {generations}"


def chart_version_matches(actual: str, expected: str) -> bool:
    """``actual`` is ``expected`` or ``expected+<suffix>`` (helm-controller's ``+<OCI digest prefix>``)."""
    return bool(expected) and (actual == expected or actual.startswith(expected + "+"))


def _missing(
    hr: Mapping[str, Any],
    ready: Mapping[str, Any] | None,
    ready_fresh: bool,
    reconciling: Mapping[str, Any] | None,
    expected_chart_version: str | None,
    expected_values_digest: str | None,
) -> list[str]:
    """What still stands between the current status and success, in words; empty means success."""
    status = hr.get("status") or {}
    missing: list[str] = []
    if ready is None:
        missing.append("a Ready condition")
    elif ready.get("status") != "True" or not ready_fresh:
        missing.append("Ready=True for the current generation")
    if reconciling is not None and reconciling.get("status") == "True":
        missing.append("the running reconcile to finish")
    latest = _latest(hr)
    if latest is None:
        return [*missing, "a release in status.history"]
    if latest.get("status") != "deployed":
        missing.append(f"the latest release to be deployed (it is {latest.get('status') or 'unknown'})")
    digest = latest.get("configDigest")
    if not digest or digest != status.get("lastAttemptedConfigDigest"):
        missing.append(
            f"the released values digest {digest or 'none'} to equal lastAttemptedConfigDigest "
            f"{status.get('lastAttemptedConfigDigest') or 'none'}"
        )
    version = str(latest.get("chartVersion") or "")
    if expected_chart_version and not chart_version_matches(version, expected_chart_version):
        missing.append(f"chart version {expected_chart_version} (released: {version or 'none'})")
    if expected_values_digest and digest != expected_values_digest:
        missing.append(f"values digest {expected_values_digest} (released: {digest or 'none'})")
    return missing


def _latest(hr: Mapping[str, Any]) -> Mapping[str, Any] | None:
    history = (hr.get("status") or {}).get("history") or []
    first = history[0] if history else None
    return first if isinstance(first, Mapping) else None


def _causes(hr: Mapping[str, Any], ready: Mapping[str, Any] | None) -> str:
    """``Released``/``TestSuccess`` failures that Ready hides behind another reason (e.g. a rollback)."""
    parts = [
        f"{kind}=False {_reason(cond)}"
        for kind in _CAUSES
        if (cond := condition(hr, kind)) is not None
        and cond.get("status") == "False"
        and (ready is None or cond.get("reason") != ready.get("reason"))
    ]
    return "".join(f"; {part}" for part in parts)


def _reason(cond: Mapping[str, Any] | None) -> str:
    """``Reason: message`` on one line (helm-controller messages span lines: test failures, admission denials)."""
    if cond is None:
        return "no reason"
    reason, message = cond.get("reason") or "no reason", " ".join(str(cond.get("message") or "").split())
    return f"{reason}: {message}" if message else str(reason)
