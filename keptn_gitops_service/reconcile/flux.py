"""Wait until Flux has applied our commit (or a descendant) through a Kustomization."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import KubernetesAccessError, describe_error
from keptn_gitops_service.reconcile.flux_rules import describe, kustomization_verdict
from keptn_gitops_service.reconcile.kube import GIT_REPOSITORY, KUSTOMIZATION, KubeHub, SharedWatch
from keptn_gitops_service.reconcile.outcome import Ancestry, Observation, Verdict, WaitOutcome
from keptn_gitops_service.reconcile.progress import note
from keptn_gitops_service.reconcile.revisions import revision_sha

log = structlog.get_logger(__name__)


class FluxKustomizationWaiter:
    """Judges a Kustomization on every change of it, until a verdict or the deadline."""

    def __init__(self, hub: KubeHub, clock: Clock) -> None:
        self._hub = hub
        self._clock = clock
        # (commit, revision sha) -> None: contains our change; "": not a descendant; else why a descendant no
        # longer holds our change. The answer never changes, and Flux rewrites the same revisions at every
        # reconcile: without this, each status write costs git calls under the repository's lock.
        self._contains: dict[tuple[str, str], str | None] = {}

    async def wait(self, *, namespace: str, name: str, commit: str, ancestry: Ancestry, timeout: float) -> WaitOutcome:
        watch = self._hub.watch(KUSTOMIZATION, namespace)
        with watch.interest(name):  # webhook hints for this Kustomization now wake us (KubeHub.nudge)
            return await self._follow(watch, namespace, name, commit, ancestry, timeout)

    async def _follow(
        self, watch: SharedWatch, namespace: str, name: str, commit: str, ancestry: Ancestry, timeout: float
    ) -> WaitOutcome:
        deadline = self._clock.monotonic() + timeout
        last = f"Kustomization {namespace}/{name} has not been observed yet"
        poked = False
        while True:
            change = watch.next_change(name)
            if watch.fatal is not None:
                return WaitOutcome(False, str(watch.fatal))
            ks = watch.get(name)
            if ks is not None:
                if not poked:
                    poked = await self._request_reconcile(ks)
                observation = await self._judge(ks, commit, ancestry)
                last = observation.summary
                if observation.verdict is Verdict.SUCCEEDED:
                    return WaitOutcome(True, f"Flux applied commit {commit[:12]}: {observation.summary}")
                if observation.verdict is Verdict.FAILED:
                    return WaitOutcome(False, observation.summary)
            elif watch.last_error:
                last = f"Kustomization {namespace}/{name} not readable: {watch.last_error}"
            note(last)
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return WaitOutcome(
                    False,
                    f"timed out after {_duration(timeout)} waiting for Flux to apply commit {commit[:12]}: {last}",
                    timed_out=True,
                )
            await _first(change.wait(), self._clock.sleep(remaining))

    async def _judge(self, ks: Mapping[str, Any], commit: str, ancestry: Ancestry) -> Observation:
        status = ks.get("status") or {}
        applied, applied_superseded = await self._contains_ours(
            str(status.get("lastAppliedRevision") or ""), commit, ancestry
        )
        attempted, attempted_superseded = await self._contains_ours(
            str(status.get("lastAttemptedRevision") or ""), commit, ancestry
        )
        # Flux applied, or is applying, a later commit that changed our values again (a rollback, a newer
        # deployment): our change will never be what runs. Unless Flux applied ours before.
        superseded = applied_superseded or (None if applied else attempted_superseded)
        if superseded:
            return Observation(Verdict.FAILED, f"{superseded}. {describe(ks)}")
        return kustomization_verdict(ks, applied_ours=applied, attempted_ours=attempted)

    async def _contains_ours(self, revision: str, commit: str, ancestry: Ancestry) -> tuple[bool, str | None]:
        """Whether the revision is our commit or a descendant that still carries it; else why it does not, when
        it is a descendant that a later commit superseded."""
        sha = revision_sha(revision)
        if not sha or sha == commit:
            return bool(sha), None
        if (commit, sha) not in self._contains:
            reason = await ancestry.superseded(commit, sha) if await ancestry.is_ancestor(commit, sha) else ""
            self._contains[(commit, sha)] = reason
        reason = self._contains[(commit, sha)]
        return reason is None, reason or None

    async def _request_reconcile(self, ks: Mapping[str, Any]) -> bool:
        """Poke the Kustomization's GitRepository so Flux fetches our commit now, not at its next interval."""
        source = (ks.get("spec") or {}).get("sourceRef") or {}
        if source.get("kind") != "GitRepository" or not source.get("name"):
            return True
        namespace = source.get("namespace") or (ks.get("metadata") or {}).get("namespace") or "default"
        try:
            await self._hub.request_reconcile(GIT_REPOSITORY, namespace, source["name"], self._clock.now())
        except KubernetesAccessError as exc:
            problem = describe_error(exc)
            log.warning("could not request an immediate reconcile; waiting for Flux's interval", error=problem)
        return True


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
