"""The one SIMULATED cluster (keptn_gitops_sim.cluster.SimulatedCluster), through the shared ``cluster`` fixture."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import git, until

from keptn_gitops_sim import content
from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.fluxsim import GITREPOSITORY, KUSTOMIZATION, REQUESTED_AT


def kustomization(cluster: SimulatedCluster) -> dict[str, Any]:
    meta = content.KUSTOMIZATION["metadata"]
    found = cluster.kube.get_object(
        KUSTOMIZATION.group, KUSTOMIZATION.version, KUSTOMIZATION.plural, meta["namespace"], meta["name"]
    )
    assert found is not None
    return found


def applied(cluster: SimulatedCluster) -> str:
    return str((kustomization(cluster).get("status") or {}).get("lastAppliedRevision", ""))


def push_commit(remote: Path, work: Path) -> str:
    git("clone", "--quiet", str(remote), str(work))
    (work / "apps/dev/carts/extra.txt").write_text("another change\n")
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "another change", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def request_reconcile(cluster: SimulatedCluster, token: str) -> None:
    """What ``flux reconcile source git fleet`` does: annotate the GitRepository."""
    repository = cluster.kube.get_object(
        GITREPOSITORY.group, GITREPOSITORY.version, GITREPOSITORY.plural, "flux-system", "fleet"
    )
    assert repository is not None
    repository = copy.deepcopy(repository)
    repository["metadata"].setdefault("annotations", {})[REQUESTED_AT] = token
    cluster.kube.put_object(repository)


async def test_the_cluster_starts_with_the_remotes_head_applied_and_a_kubeconfig(
    cluster: SimulatedCluster, tmp_path: Path
) -> None:
    head = git("rev-parse", "main", cwd=cluster.remote).strip()
    assert applied(cluster) == f"main@sha1:{head}"
    ready = next(c for c in kustomization(cluster)["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    kubeconfig = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster.kube.url


async def test_a_paused_flux_applies_nothing_until_it_resumes(cluster: SimulatedCluster, tmp_path: Path) -> None:
    before = applied(cluster)
    await cluster.pause()
    new = push_commit(cluster.remote, tmp_path / "work")
    request_reconcile(cluster, "2026-01-01T00:00:00Z")
    assert applied(cluster) == before, "no controller runs while Flux is paused"
    cluster.resume()
    await until(lambda: applied(cluster) == f"main@sha1:{new}")


async def test_stop_ends_flux_and_the_api(cluster: SimulatedCluster) -> None:
    url = cluster.kube.url
    port = int(url.rsplit(":", 1)[1].strip("/"))
    await cluster.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
