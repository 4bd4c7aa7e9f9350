"""The multi-cluster policy as a pure function: when ``all``, ``any`` and ``atLeast`` N decide, and the message."""

from __future__ import annotations

import pytest

from keptn_gitops_service.config.model import Cluster, ClustersWait, FluxWait
from keptn_gitops_service.reconcile.clusters import Decision, State, decide, needed, summarize

A, F, T, W = State.APPLIED, State.FAILED, State.TIMED_OUT, State.WAITING


def wait(names: str, policy: str = "all", at_least: int | None = None) -> ClustersWait:
    target = FluxWait(kind="Kustomization", name="carts", namespace="sockshop-dev")
    clusters = tuple(Cluster(name=n, target=target, in_cluster=True) for n in names.split())
    return ClustersWait(targets=clusters, policy=policy, at_least=at_least)


@pytest.mark.parametrize(
    ("policy", "at_least", "states", "decision"),
    [
        ("all", None, [A, W, W], Decision.PENDING),
        ("all", None, [A, A, A], Decision.PASSED),
        ("all", None, [W, F, W], Decision.FAILED),  # one failure settles it: the others are not waited for
        ("all", None, [A, A, T], Decision.FAILED),
        ("any", None, [W, W, A], Decision.PASSED),  # the first that applies settles it
        ("any", None, [F, T, W], Decision.PENDING),
        ("any", None, [F, T, F], Decision.FAILED),
        ("atLeast", 2, [A, F, W], Decision.PENDING),
        ("atLeast", 2, [A, W, A], Decision.PASSED),
        ("atLeast", 2, [F, W, T], Decision.FAILED),  # two of three can no longer apply it
    ],
)
def test_the_policy_decides_as_soon_as_the_outcomes_settle_it(
    policy: str, at_least: int | None, states: list[State], decision: Decision
) -> None:
    assert decide(needed(wait("eu us ap", policy, at_least)), states) is decision


def test_the_message_names_each_cluster_and_its_outcome() -> None:
    outcome = summarize(
        wait("eu us ap"),
        "1ea281c6c2d5e1f0aa",
        False,
        [A, F, W],
        ["Flux applied commit 1ea281c6c2d5.", "Kustomization failed: HealthCheckFailed", "last observed Ready=Unknown"],
    )
    assert not outcome.succeeded and not outcome.timed_out and outcome.applied == ("eu",)
    assert outcome.message == (
        "1 of 3 clusters applied commit 1ea281c6c2d5 (policy all: every cluster must apply it); the deployment fails. "
        "[eu] applied: Flux applied commit 1ea281c6c2d5. [us] failed: Kustomization failed: HealthCheckFailed. "
        "[ap] still waiting: last observed Ready=Unknown."
    )


def test_a_failure_by_timeouts_alone_counts_as_a_timeout() -> None:
    target = wait("eu us", "atLeast", 2)
    outcome = summarize(target, "abc", False, [A, T], ["applied", "timed out after 2m0s"])
    assert outcome.timed_out and "(policy atLeast: 2 of 2 needed)" in outcome.message
    assert summarize(wait("eu us", "any"), "abc", True, [W, A], ["x", "y"]).message.startswith(
        "1 of 2 clusters applied commit abc (policy any: one cluster suffices). [eu] still waiting: x. [us] applied: y."
    )
