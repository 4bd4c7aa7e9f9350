"""How a ``wait.clusters`` cluster is reached: a kubeconfig's current context or a named ``context``; each cluster
checked before the commit, the failures named by cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from waitobjects import kustomization

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.model import Cluster, ClustersWait, FluxWait
from keptn_gitops_service.errors import KubernetesAccessError, WaitTargetMissingError
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.reconcile.kube import KubeHub, load_client
from keptn_gitops_sim.kubeapi import KubeApiServer

CARTS = FluxWait(kind="Kustomization", name="apps", namespace="flux-system")


def two_contexts(kube: KubeApiServer, path: Path) -> Path:
    """A kubeconfig whose current context ``nowhere`` points at a closed port, and whose context ``sim`` is
    ``kube``."""
    doc: dict[str, Any] = kube.kubeconfig()
    doc["clusters"].append({"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}})
    doc["contexts"] = [
        {"name": "nowhere", "context": {"cluster": "nowhere", "user": "simulated-user"}},
        {"name": "sim", "context": {"cluster": "simulated", "user": "simulated-user"}},
    ]
    doc["current-context"] = "nowhere"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_a_named_context_of_a_kubeconfig_is_the_one_used(kube: KubeApiServer, tmp_path: Path) -> None:
    kube.put_object(kustomization())
    kubeconfig = str(two_contexts(kube, tmp_path / "kubeconfig"))
    reconciler = Reconciler(lambda: KubeHub(load_client(None)), ManualClock())
    try:
        await reconciler.check(ClustersWait((Cluster("sim", CARTS, kubeconfig=kubeconfig, context="sim"),)))
        with pytest.raises(KubernetesAccessError) as caught:
            await reconciler.check(ClustersWait((Cluster("eu", CARTS, kubeconfig=kubeconfig, context="eu"),)))
        assert str(caught.value).startswith(
            f"cluster eu: cannot load the Kubernetes configuration from {kubeconfig} (context eu): "
        )
        with pytest.raises(KubernetesAccessError, match=r"^cluster nowhere: cannot read Kustomization flux-system/"):
            await reconciler.check(ClustersWait((Cluster("nowhere", CARTS, kubeconfig=kubeconfig),)))
    finally:
        await reconciler.close()


async def test_every_failing_cluster_is_named(kube: KubeApiServer, tmp_path: Path) -> None:
    kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    reconciler = Reconciler(lambda: KubeHub(load_client(None)), ManualClock())
    clusters = ClustersWait(
        (
            Cluster("eu", CARTS, kubeconfig=kubeconfig),
            Cluster("us", FluxWait(kind="Kustomization", name="cart", namespace="flux-system"), kubeconfig=kubeconfig),
        )
    )
    kube.put_object(kustomization())
    try:
        with pytest.raises(WaitTargetMissingError) as caught:
            await reconciler.check(clusters)
        assert str(caught.value) == (
            "cluster us: Flux Kustomization flux-system/cart does not exist in the cluster "
            "(if the commit creates it, set wait.flux.mayAppear: true)"
        )
    finally:
        await reconciler.close()
