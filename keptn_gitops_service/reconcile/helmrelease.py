"""Wait until Flux has released our commit through a HelmRelease (helm-controller's spec docs).

Helm state is keyed by chart version and values digest, never by Git SHA, so the commit is tied to the release in
two steps. First the parent Kustomization must have applied the commit or a descendant
(:class:`~keptn_gitops_service.reconcile.flux.FluxKustomizationWaiter`): from then on, the HelmRelease in the API
server carries what the commit says. Then we ask helm-controller to reconcile (``reconcile.fluxcd.io/requestedAt``,
as ``flux reconcile helmrelease`` does). The patch answers with the object as it is after the Kustomization's apply,
and only a status at or after that generation, written by a reconcile that handled our request
(``status.lastHandledReconcileAt``), is judged by :func:`~.helm_rules.helmrelease_verdict`. That rules out a watch
copy from before the apply, and a status from before a change that does not move the generation (values from a
ConfigMap of fixed name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import FluxWait
from keptn_gitops_service.errors import AccessDeniedError, KubernetesAccessError, describe_error
from keptn_gitops_service.reconcile.flux import FluxKustomizationWaiter
from keptn_gitops_service.reconcile.following import Judge, Object, duration_text, follow
from keptn_gitops_service.reconcile.helm_rules import describe_helmrelease, helmrelease_verdict
from keptn_gitops_service.reconcile.kube import HELM_RELEASE, REQUESTED_AT, KubeHub, request_token
from keptn_gitops_service.reconcile.outcome import Ancestry, Observation, Verdict, WaitOutcome

log = structlog.get_logger(__name__)

#: How soon to try again to ask for a reconcile after the API server failed (500, unreachable).
_RETRY = 5.0


@dataclass(frozen=True)
class _Tie:
    """What a HelmRelease status must show to be about our commit."""

    generation: int
    token: str | None  # None when we could not annotate (no RBAC ``patch``): then the generation alone ties


class FluxHelmReleaseWaiter:
    """The parent Kustomization applies our commit, then the HelmRelease releases it."""

    def __init__(self, hub: KubeHub, clock: Clock) -> None:
        self._hub = hub
        self._clock = clock

    async def wait(
        self,
        *,
        target: FluxWait,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
    ) -> WaitOutcome:
        """Wait for the Kustomization that applies the HelmRelease ``target`` to apply ``commit``, then for the
        release to be upgraded and ready."""
        kustomization = target.kustomization
        if kustomization is None:
            return WaitOutcome(
                False, f"the HelmRelease wait for {target.namespace}/{target.name} names no Kustomization"
            )
        deadline = self._clock.monotonic() + timeout
        applied = await FluxKustomizationWaiter(self._hub, self._clock).wait(
            namespace=kustomization.namespace,
            name=kustomization.name,
            commit=commit,
            ancestry=ancestry,
            timeout=timeout,
        )
        if not applied.succeeded:
            return applied
        judge = _HelmReleaseJudge(self._hub, self._clock, target)
        watch = self._hub.watch(HELM_RELEASE, target.namespace)
        followed = await follow(watch, target.name, judge, clock=self._clock, deadline=deadline)
        summary = followed.observation.summary
        if followed.timed_out:
            return WaitOutcome(
                False,
                f"timed out after {duration_text(timeout)} waiting for Flux to release commit {commit[:12]}: {summary}",
                timed_out=True,
            )
        if followed.observation.verdict is Verdict.SUCCEEDED:
            return WaitOutcome(True, f"Flux released commit {commit[:12]}: {summary}")
        return WaitOutcome(False, summary)


class _HelmReleaseJudge(Judge):
    def __init__(self, hub: KubeHub, clock: Clock, release: FluxWait) -> None:
        self._hub = hub
        self._clock = clock
        self._release = release
        self._chart_version = release.chart_version
        self._tie: _Tie | None = None
        self._next_try = 0.0
        self._last_error = ""

    @property
    def _what(self) -> str:
        return f"HelmRelease {self._release.namespace}/{self._release.name}"

    async def judge(self, obj: Object | None) -> Observation:
        if obj is None:
            return Observation(Verdict.IN_PROGRESS, f"{self._what} does not exist (yet)")
        summary = describe_helmrelease(obj)
        if self._tie is None:
            if self._clock.monotonic() < self._next_try:
                return Observation(Verdict.IN_PROGRESS, f"{summary}; {self._last_error}; trying again")
            try:
                self._tie = await self._tie_to_commit()
            except AccessDeniedError as exc:
                return Observation(Verdict.FAILED, str(exc))
            except KubernetesAccessError as exc:
                self._next_try, self.recheck = self._clock.monotonic() + _RETRY, _RETRY
                self._last_error = str(exc)
                return Observation(Verdict.IN_PROGRESS, f"{summary}; {exc}; trying again")
            self.recheck = None
            if self._tie is None:
                return Observation(Verdict.IN_PROGRESS, f"{self._what} does not exist (yet)")
        generation = _generation(obj)
        if generation < self._tie.generation:
            return Observation(Verdict.IN_PROGRESS, f"{summary}; waiting to see generation {self._tie.generation}")
        if self._tie.token and not _handled(obj, self._tie.token):
            return Observation(
                Verdict.IN_PROGRESS,
                f"{summary}; waiting for helm-controller to handle the reconcile request {self._tie.token}",
            )
        return helmrelease_verdict(obj, expected_chart_version=self._chart_version)

    async def _tie_to_commit(self) -> _Tie | None:
        """Annotate the HelmRelease (``None``: it does not exist). Without the RBAC verb ``patch``, settle for a
        fresh read: the generation then ties, as long as the commit changes the HelmRelease's spec."""
        token = request_token(self._clock.now())
        namespace, name = self._release.namespace, self._release.name
        try:
            patched = await self._hub.patch(HELM_RELEASE, namespace, name, _annotation(token))
        except AccessDeniedError as exc:
            log.warning("cannot ask helm-controller to reconcile; tying by generation only", error=describe_error(exc))
            current = await self._hub.get(HELM_RELEASE, namespace, name)
            return None if current is None else _Tie(_generation(current), None)
        return None if patched is None else _Tie(_generation(patched), token)


def _annotation(token: str) -> Object:
    return {"metadata": {"annotations": {REQUESTED_AT: token}}}


def _generation(obj: Object) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _handled(obj: Object, token: str) -> bool:
    """helm-controller finished a reconcile that saw our request (or a later one: another waiter's, ``flux``'s)."""
    handled = str((obj.get("status") or {}).get("lastHandledReconcileAt") or "")
    if handled == token:
        return True
    try:
        return datetime.fromisoformat(handled) >= datetime.fromisoformat(token)
    except (TypeError, ValueError):
        return False
