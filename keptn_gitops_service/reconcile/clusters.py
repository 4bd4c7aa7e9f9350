"""One commit, several clusters: a ``wait.clusters`` wait runs the single-cluster wait of each cluster at once and
decides by its policy (``all``, ``any``, ``atLeast`` N) as soon as the outcomes so far settle it.

:func:`decide` is the policy as a pure function. :class:`Fleet` keeps one single-cluster waiter (with its own
:class:`~keptn_gitops_service.reconcile.kube.KubeHub`, so one shared watch per kind and namespace *per cluster*) per
way of reaching a cluster, checks every cluster before the commit, and waits: a cluster that fails under ``all``
fails the deployment at once (the others are not waited for), the first cluster that applies the commit under
``any`` passes it, and the message says what each cluster showed when the policy decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Sequence
from typing import Protocol

from keptn_gitops_service.config.model import ArgoWait, Cluster, ClustersWait, FluxWait
from keptn_gitops_service.errors import ReconcileError
from keptn_gitops_service.reconcile.kube import KubeHub, check_kubeconfig, load_client
from keptn_gitops_service.reconcile.outcome import Ancestry, WaitOutcome
from keptn_gitops_service.reconcile.progress import Progress


class State(enum.Enum):
    """Where one cluster's wait stands."""

    WAITING = "still waiting"
    APPLIED = "applied"
    FAILED = "failed"
    TIMED_OUT = "timed out"


class Decision(enum.Enum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


def needed(target: ClustersWait) -> int:
    """How many clusters must apply the commit."""
    if target.policy == "any":
        return 1
    if target.policy == "atLeast" and target.at_least is not None:
        return target.at_least
    return len(target.targets)


def decide(need: int, states: Sequence[State]) -> Decision:
    """The policy's verdict on the outcomes so far: passed once ``need`` clusters applied the commit, failed once
    that can no longer happen (too many failed or timed out), else pending."""
    applied = sum(state is State.APPLIED for state in states)
    waiting = sum(state is State.WAITING for state in states)
    if applied >= need:
        return Decision.PASSED
    if applied + waiting < need:
        return Decision.FAILED
    return Decision.PENDING


def describe_policy(target: ClustersWait) -> str:
    if target.policy == "any":
        return "policy any: one cluster suffices"
    if target.policy == "atLeast":
        return f"policy atLeast: {needed(target)} of {len(target.targets)} needed"
    return "policy all: every cluster must apply it"


class ClusterWaiter(Protocol):
    """The single-cluster wait (:class:`~keptn_gitops_service.reconcile.dispatch.Reconciler`)."""

    async def check(self, target: FluxWait | ArgoWait) -> None: ...

    async def wait(
        self,
        target: FluxWait | ArgoWait,
        *,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
        shkeptncontext: str = "",
        triggeredid: str = "",
        progress: Progress | None = None,
    ) -> WaitOutcome: ...

    async def close(self) -> None: ...


Connection = tuple[str | None, str | None, bool]
"""How a cluster is reached: (kubeconfig, context, in-cluster)."""


def connection(cluster: Cluster) -> Connection:
    return (cluster.kubeconfig, cluster.context, bool(cluster.in_cluster))


def client_factory(cluster: Cluster) -> Callable[[], KubeHub]:
    """The cluster's Kubernetes edge, created when first needed."""
    kubeconfig, context, in_cluster = connection(cluster)
    return lambda: KubeHub(load_client(kubeconfig, context=context, in_cluster=in_cluster))


async def check_cluster(cluster: Cluster) -> None:
    """Load the cluster's Kubernetes configuration (the start-up check); raise a :class:`KubernetesAccessError`."""
    kubeconfig, context, in_cluster = connection(cluster)
    await check_kubeconfig(kubeconfig, context=context, in_cluster=in_cluster)


class Fleet:
    """The clusters of every ``wait.clusters``: one waiter (and Kubernetes client) per connection, made by ``make``
    from the connection's hub factory on first use; ``describe`` names a cluster's target in progress lines."""

    def __init__(
        self,
        make: Callable[[Callable[[], KubeHub]], ClusterWaiter],
        describe: Callable[[FluxWait | ArgoWait], str],
    ) -> None:
        self._make = make
        self._describe = describe
        self._waiters: dict[Connection, ClusterWaiter] = {}

    def waiter(self, cluster: Cluster) -> ClusterWaiter:
        key = connection(cluster)
        if key not in self._waiters:
            self._waiters[key] = self._make(client_factory(cluster))
        return self._waiters[key]

    async def check(self, target: ClustersWait) -> None:
        """Read every cluster's object before the commit (all at once); raise the first failure's error type with
        a message naming every cluster that failed and why."""

        async def one(cluster: Cluster) -> tuple[ReconcileError, str] | None:
            try:
                await self.waiter(cluster).check(cluster.target)
            except ReconcileError as exc:
                return exc, f"cluster {cluster.name}: {exc}"
            return None

        found = [f for f in await asyncio.gather(*(one(c) for c in target.targets)) if f is not None]
        if found:
            raise type(found[0][0])("; ".join(message for _, message in found))

    async def wait(
        self,
        target: ClustersWait,
        *,
        commit: str,
        ancestry: Ancestry,
        timeout: float,
        shkeptncontext: str = "",
        triggeredid: str = "",
    ) -> WaitOutcome:
        """Wait on every cluster at once until the policy decides; cancel the waits it no longer needs."""
        clusters = target.targets
        progress = [Progress(f"{self._describe(c.target)} in cluster {c.name}", commit[:12]) for c in clusters]
        states = [State.WAITING] * len(clusters)
        reasons = [""] * len(clusters)

        async def one(i: int) -> WaitOutcome:
            try:
                return await self.waiter(clusters[i]).wait(
                    clusters[i].target,
                    commit=commit,
                    ancestry=ancestry,
                    timeout=timeout,
                    shkeptncontext=shkeptncontext,
                    triggeredid=triggeredid,
                    progress=progress[i],
                )
            except ReconcileError as exc:  # this cluster cannot be followed: the others may still decide
                return WaitOutcome(False, str(exc))

        tasks = {asyncio.create_task(one(i), name=f"wait cluster {c.name}"): i for i, c in enumerate(clusters)}
        pending = set(tasks)
        decision = Decision.PENDING
        try:
            while pending and decision is Decision.PENDING:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    i, outcome = tasks[task], task.result()
                    states[i] = (
                        State.APPLIED if outcome.succeeded else State.TIMED_OUT if outcome.timed_out else State.FAILED
                    )
                    reasons[i] = outcome.message
                decision = decide(needed(target), states)
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for i, state in enumerate(states):
            if state is State.WAITING:
                reasons[i] = f"last observed {progress[i].status}"
        return summarize(target, commit, decision is Decision.PASSED, states, reasons)

    async def close(self) -> None:
        for waiter in self._waiters.values():
            await waiter.close()
        self._waiters.clear()


def summarize(
    target: ClustersWait, commit: str, passed: bool, states: Sequence[State], reasons: Sequence[str]
) -> WaitOutcome:
    """The finished message: how many clusters applied the commit under which policy, then each cluster's outcome
    (``still waiting`` for one the policy did not need to wait for, with what it showed then)."""
    names = [c.name for c in target.targets]
    applied = tuple(name for name, state in zip(names, states, strict=True) if state is State.APPLIED)
    head = (
        f"{len(applied)} of {len(names)} clusters applied commit {commit[:12]} ({describe_policy(target)})"
        f"{'' if passed else '; the deployment fails'}."
    )
    each = " ".join(
        f"[{name}] {state.value}: {reason.rstrip('.')}."
        for name, state, reason in zip(names, states, reasons, strict=True)
    )
    timed_out = not passed and State.TIMED_OUT in states and State.FAILED not in states
    return WaitOutcome(passed, f"{head} {each}", timed_out=timed_out, applied=applied)
