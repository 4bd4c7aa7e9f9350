"""``wait.clusters``: one commit awaited on two or three clusters, each its own SIMULATED Kubernetes API with its own
SIMULATED Flux (keptn_gitops_sim.cluster) following the same fleet repository, over a real NATS and git."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import Loop, fleet_remote, start_loop, stop_loop, triggered
from structlog.testing import capture_logs
from support import WAIT_FLUX, ConfigRule, git, service_config, until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.workflow.preflight import startup_problems
from keptn_gitops_sim.cluster import SimulatedCluster


def config(tmp: Path, remote: Path, names: Sequence[str], policy: str = "all") -> str:
    """The demo's rule, waiting on the clusters ``names`` (kubeconfigs ``tmp/<name>.kubeconfig``) by ``policy``
    (``atLeast 2``: ``policy: atLeast`` with ``atLeast: 2``)."""
    kind, _, count = policy.partition(" ")
    targets = ", ".join(
        f"{{name: {name}, kubeconfig: {tmp / f'{name}.kubeconfig'}, {WAIT_FLUX}, "
        f'deploymentURIs: {{public: ["https://{{service}}.{name}.example.com"]}}}}'
        for name in names
    )
    at_least = f", atLeast: {count}" if count else ""
    return service_config(remote, ConfigRule(wait=f"clusters: {{policy: {kind}{at_least}, targets: [{targets}]}}"))


@asynccontextmanager
async def fleet(
    tmp: Path,
    nats_url: str,
    names: Sequence[str],
    *,
    policy: str = "all",
    idle: Sequence[str] = (),
    clock: ManualClock | None = None,
    settings: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Loop, dict[str, SimulatedCluster]]]:
    """The service and one SIMULATED cluster per name, all following one fleet remote; the clusters in ``idle``
    reconcile once at the start and never again (their Flux is not running)."""
    remote = fleet_remote(tmp)
    clusters = {name: SimulatedCluster(remote) for name in names}
    for name, cluster in clusters.items():
        await cluster.start(tmp / f"{name}.kubeconfig", run_flux=name not in idle)
    loop = await start_loop(
        tmp,
        nats_url,
        cluster=clusters[names[0]],
        config=config(tmp, remote, names, policy),
        clock=clock,
        settings=settings,
    )
    try:
        yield loop, clusters
    finally:
        await stop_loop(loop)  # stops the first cluster too
        for cluster in list(clusters.values())[1:]:
            await cluster.stop()


def head(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


def applied(cluster: SimulatedCluster) -> str:
    ks = cluster.kube.get_object("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "sockshop-dev", "carts")
    return str(((ks or {}).get("status") or {}).get("lastAppliedRevision", ""))


def poked(cluster: SimulatedCluster) -> bool:
    """The service asked this cluster's Flux to reconcile now (it does so after it observed the Kustomization)."""
    repo = cluster.kube.get_object("source.toolkit.fluxcd.io", "v1", "gitrepositories", "flux-system", "fleet")
    return bool(repo and "reconcile.fluxcd.io/requestedAt" in (repo["metadata"].get("annotations") or {}))


async def test_two_clusters_both_apply_the_commit(tmp_path: Path, nats_url: str) -> None:
    with capture_logs() as logs:
        async with fleet(tmp_path, nats_url, ["eu", "us"]) as (loop, clusters):
            event = triggered()
            await loop.publish(event)
            data = (await loop.finished(event["id"]))["data"]
            commit = head(loop.remote)
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    assert data["message"].startswith(
        f"2 of 2 clusters applied commit {commit[:12]} (policy all: every cluster must apply it). "
        f"[eu] applied: Flux applied commit {commit[:12]}"
    )
    assert f"[us] applied: Flux applied commit {commit[:12]}" in data["message"]
    assert all(applied(c) == f"main@sha1:{commit}" for c in clusters.values())
    # the rule's URIs, then each cluster's that applied the commit
    assert data["deployment"]["deploymentURIsLocal"] == ["http://carts.sockshop-dev:80"]
    assert data["deployment"]["deploymentURIsPublic"] == [
        "https://carts.eu.example.com",
        "https://carts.us.example.com",
    ]
    waiting = [e["waiting_for"] for e in logs if e["event"] == "waiting for reconciliation"]
    assert sorted(waiting) == [
        "Flux Kustomization sockshop-dev/carts in cluster eu",
        "Flux Kustomization sockshop-dev/carts in cluster us",
    ]


async def test_three_clusters_all_apply_it(tmp_path: Path, nats_url: str) -> None:
    async with fleet(tmp_path, nats_url, ["eu", "us", "ap"]) as (loop, clusters):
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass", data["message"]
        assert data["message"].startswith(f"3 of 3 clusters applied commit {head(loop.remote)[:12]}")
        assert [m.split("]")[0] for m in data["message"].split("[")[1:]] == ["eu", "us", "ap"]
        assert len(data["deployment"]["deploymentURIsPublic"]) == 3
        assert {applied(c) for c in clusters.values()} == {f"main@sha1:{head(loop.remote)}"}


async def test_one_failing_cluster_fails_at_once_under_all(tmp_path: Path, nats_url: str) -> None:
    """us fails; eu never reconciles: the deployment fails without waiting for eu's timeout (the controlled clock
    never moves), and says what eu showed at that moment."""
    clock = ManualClock()
    async with fleet(tmp_path, nats_url, ["eu", "us"], idle=["eu"], clock=clock) as (loop, clusters):
        clusters["us"].flux.fail_with("sockshop-dev", "carts")
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert clock.monotonic() == 0
        assert (data["status"], data["result"]) == ("errored", "fail")
        commit = head(loop.remote)[:12]
        assert data["message"].startswith(
            f"0 of 2 clusters applied commit {commit} (policy all: every cluster must apply it); the deployment fails. "
            "[eu] still waiting: last observed "
        )
        assert "[us] failed: " in data["message"] and "HealthCheckFailed" in data["message"]
        assert data["deployment"]["gitCommit"] == head(loop.remote)
        assert "example.com" not in str(data["deployment"])  # no cluster applied it: none of their URIs


async def test_a_cluster_that_never_reconciles_is_named_by_the_timeout(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    async with fleet(tmp_path, nats_url, ["eu", "us"], idle=["us"], clock=clock) as (loop, clusters):
        event = triggered()
        await loop.publish(event)
        await until(lambda: git("log", "-1", "--format=%B", "main", cwd=loop.remote).count(event["id"]) == 1)
        commit = head(loop.remote)
        await until(lambda: applied(clusters["eu"]) == f"main@sha1:{commit}" and poked(clusters["us"]))
        # eu's wait has ended (its timeout and progress sleepers are gone): only us's two remain
        await until(lambda: clock.sleepers == 2)
        clock.advance(120)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith(f"1 of 2 clusters applied commit {commit[:12]} (policy all")
        assert f"[eu] applied: Flux applied commit {commit[:12]}" in data["message"]
        assert f"[us] timed out: timed out after 2m0s waiting for Flux to apply commit {commit[:12]}" in data["message"]
        assert data["deployment"]["deploymentURIsPublic"] == ["https://carts.eu.example.com"]


async def test_progress_lines_per_cluster_while_waiting(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    idle = ["eu", "us"]
    settings = {"progress_interval_seconds": 30.0}
    with capture_logs() as logs:
        async with fleet(tmp_path, nats_url, idle, idle=idle, clock=clock, settings=settings) as (loop, clusters):
            await loop.publish(triggered())
            await until(lambda: all(poked(c) for c in clusters.values()) and clock.sleepers == 4)
            clock.advance(30)  # each cluster's progress line is due; no timeout yet
            await until(lambda: len([e for e in logs if e["event"] == "still waiting for reconciliation"]) == 2)
    lines = sorted(
        (e["waiting_for"], e["observed"], e["waited"]) for e in logs if e["event"] == "still waiting for reconciliation"
    )
    assert [(w, waited) for w, _, waited in lines] == [
        ("Flux Kustomization sockshop-dev/carts in cluster eu", "30s"),
        ("Flux Kustomization sockshop-dev/carts in cluster us", "30s"),
    ]
    assert all(observed.startswith("Kustomization sockshop-dev/carts: Ready=True") for _, observed, _ in lines)


async def test_any_passes_with_the_first_cluster_and_says_what_the_others_showed(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    async with fleet(tmp_path, nats_url, ["eu", "us"], policy="any", idle=["eu"], clock=clock) as (loop, _):
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        commit = head(loop.remote)[:12]
        assert data["message"].startswith(
            f"1 of 2 clusters applied commit {commit} (policy any: one cluster suffices). "
            "[eu] still waiting: last observed Kustomization sockshop-dev/carts: "
        )
        assert f"[us] applied: Flux applied commit {commit}" in data["message"]
        assert data["deployment"]["deploymentURIsPublic"] == ["https://carts.us.example.com"]


async def test_at_least_two_of_three(tmp_path: Path, nats_url: str) -> None:
    async with fleet(tmp_path, nats_url, ["eu", "us", "ap"], policy="atLeast 2") as (loop, clusters):
        clusters["ap"].flux.fail_with("sockshop-dev", "carts")
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass", data["message"]
        assert data["message"].startswith(
            f"2 of 3 clusters applied commit {head(loop.remote)[:12]} (policy atLeast: 2 of 3 needed). "
        )
        assert "[eu] applied: " in data["message"] and "[us] applied: " in data["message"]


async def test_at_least_two_of_three_fails_once_two_cannot_be_reached(tmp_path: Path, nats_url: str) -> None:
    """eu applies, us fails, ap never reconciles: still possible until ap times out."""
    clock = ManualClock()
    async with fleet(tmp_path, nats_url, ["eu", "us", "ap"], policy="atLeast 2", idle=["ap"], clock=clock) as (
        loop,
        clusters,
    ):
        clusters["us"].flux.fail_with("sockshop-dev", "carts")
        event = triggered()
        await loop.publish(event)
        await until(lambda: git("log", "-1", "--format=%B", "main", cwd=loop.remote).count(event["id"]) == 1)
        commit = head(loop.remote)
        await until(lambda: applied(clusters["eu"]) == f"main@sha1:{commit}" and poked(clusters["ap"]))
        await until(lambda: clock.sleepers == 2)  # eu and us are decided; ap's wait remains
        assert not [r for r in loop.replies_to(event["id"]) if r["type"].endswith(".finished")]
        clock.advance(120)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "fail"
        assert data["message"].startswith(f"1 of 3 clusters applied commit {commit[:12]} (policy atLeast: 2 of 3")
        assert "[us] failed: " in data["message"] and "[ap] timed out: timed out after 2m0s" in data["message"]


async def test_an_unreachable_cluster_is_named_before_the_commit(tmp_path: Path, nats_url: str) -> None:
    async with fleet(tmp_path, nats_url, ["eu", "us"]) as (loop, clusters):
        before = head(loop.remote)
        port = urlsplit(clusters["us"].kube.url).port
        await clusters["us"].stop()  # its API is gone; its kubeconfig still points at it
        with socket.socket() as probe:  # nothing listens there any more
            assert port is not None and probe.connect_ex(("127.0.0.1", port)) != 0
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith("cluster us: cannot read Kustomization sockshop-dev/carts: ")
        assert "cluster eu" not in data["message"]
        assert data["message"].endswith("; nothing was committed (rules[0].wait is checked before the commit)"), data[
            "message"
        ]
        assert head(loop.remote) == before


async def test_the_start_up_checks_load_each_clusters_kubeconfig(tmp_path: Path) -> None:
    remote = fleet_remote(tmp_path)
    (tmp_path / "eu.kubeconfig").write_text(  # loadable (nothing is read from the cluster at start-up)
        "apiVersion: v1\nkind: Config\ncurrent-context: eu\n"
        "clusters: [{name: eu, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: eu, user: {}}]\n"
        "contexts: [{name: eu, context: {cluster: eu, user: eu}}]\n"
    )
    parsed = parse_config(config(tmp_path, remote, ["eu", "us"]), "gitops.yaml")
    problems = await startup_problems(parsed, helper_dir=tmp_path / "helpers", kubeconfig=None)
    us = tmp_path / "us.kubeconfig"
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"cannot load the Kubernetes configuration from {us}: ")
    assert problems[0].endswith("(needed by cluster us, rules[0].wait.clusters.targets[1])")


async def test_a_rollback_waits_for_every_cluster_too(tmp_path: Path, nats_url: str) -> None:
    async with fleet(tmp_path, nats_url, ["eu", "us"]) as (loop, clusters):
        deployment = triggered()
        await loop.publish(deployment)
        assert (await loop.finished(deployment["id"]))["data"]["result"] == "pass"
        rollback = triggered()
        rollback["type"] = "sh.keptn.event.rollback.triggered"
        rollback["shkeptncontext"] = deployment["shkeptncontext"]
        rollback["data"] = {"project": "sockshop", "stage": "dev", "service": "carts", "result": "fail"}
        await loop.publish(rollback)
        data = (await loop.finished(rollback["id"]))["data"]
        reverted = head(loop.remote)
        assert f"2 of 2 clusters applied commit {reverted[:12]}" in data["message"], data["message"]
        assert all(applied(c) == f"main@sha1:{reverted}" for c in clusters.values())
