"""``wait.clusters`` on two real clusters: two kube-apiservers (each with its own etcd) and, on each, its own Flux
source- and kustomize-controller, both following the one fleet repository. The service commits once and answers
when the policy is met, with each cluster's outcome read from that cluster's API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.build import Toolchain
from e2e.environment import Cluster, running_cluster
from e2e.fleet import SERVICES, Fleet
from e2e.keptnside import KeptnBus, deployment_triggered, start_service
from e2e.processes import Process
from e2e.test_flux import deliver
from support import WAIT_FLUX


@pytest.fixture(scope="module")
def second(tools: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second cluster: its own etcd, kube-apiserver and Flux controllers (and Git server, unused: its Flux
    fetches the fleet repository from the first cluster's)."""
    with running_cluster(tools, tmp_path_factory.mktemp("e2e-second")) as running:
        yield running


@pytest.fixture
def followed(fleet: Fleet, second: Cluster) -> Fleet:
    """The test's fleet as the second cluster sees it: the same GitRepository (same URL) and Kustomizations,
    reconciled once."""
    second.flux.check_running()
    there = Fleet(fleet.project, fleet.bare, fleet.url, second.kube)
    second.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": there.namespace}})
    for obj in (fleet.git_repository(), *(fleet.kustomization(s) for s in SERVICES)):
        metadata = {"name": obj["metadata"]["name"], "namespace": there.namespace}
        second.kube.create(
            {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": metadata} | {"spec": obj["spec"]}
        )
    seed = fleet.head()
    there.wait_kustomization("carts", ready="True", revision=seed)
    there.wait_kustomization("orders", ready="False", revision=seed, attempted=True)
    return there


@pytest.fixture
def service(
    fleet: Fleet, followed: Fleet, cluster: Cluster, second: Cluster, nats_url: str, tmp_path: Path
) -> Iterator[Process]:
    targets = ", ".join(
        f"{{name: {name}, kubeconfig: {kubeconfig}, flux: {WAIT_FLUX.removeprefix('flux: ')}}}"
        for name, kubeconfig in (("eu", cluster.kubeconfig), ("us", second.kubeconfig))
    )
    process = start_service(fleet, nats_url, cluster.kubeconfig, tmp_path, wait=f"clusters: {{targets: [{targets}]}}")
    try:
        yield process
    finally:
        process.stop()


async def test_both_clusters_apply_the_commit(fleet: Fleet, followed: Fleet, keptn: KeptnBus) -> None:
    data = await deliver(keptn, deployment_triggered(fleet, "carts", "docker.io/keptnexamples/carts:0.13.1"))
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    commit = fleet.head()
    assert data["message"].startswith(f"2 of 2 clusters applied commit {commit[:12]} (policy all"), data["message"]
    for where in (fleet, followed):  # what each cluster's API server shows
        assert where.kustomization("carts")["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"
        assert where.deployment_image("carts") == "docker.io/keptnexamples/carts:0.13.1"
    assert f"[eu] applied: Flux applied commit {commit[:12]}" in data["message"]
    assert f"[us] applied: Flux applied commit {commit[:12]}" in data["message"]


async def test_a_revision_that_fails_on_a_cluster_fails_at_once(fleet: Fleet, followed: Fleet, keptn: KeptnBus) -> None:
    data = await deliver(keptn, deployment_triggered(fleet, "orders", "docker.io/keptnexamples/orders:0.13.1"))
    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    assert data["message"].startswith(f"0 of 2 clusters applied commit {fleet.head()[:12]}"), data["message"]
    assert "failed: Flux failed to apply the revision: BuildFailed: " in data["message"]
    assert "timed out" not in data["message"]
