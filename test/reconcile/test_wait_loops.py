"""The whole loop for each wait kind: deployment.triggered over a real NATS → commit to a real git remote → the
SIMULATED controllers (Flux's, a helm-controller, Argo CD's) act on that commit → deployment.finished."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import start_loop, stop_loop, triggered
from support import ConfigRule, git, service_config
from waitobjects import application, get_app, helmrelease

from keptn_gitops_sim.argocd import ArgoCdApiServer, SimulatedArgoCD
from keptn_gitops_sim.helmsim import SimulatedHelmController
from keptn_gitops_sim.kubeapi import KubeApiServer

APP = "sockshop-dev-carts"


def head(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


async def test_a_helmrelease_delivery(tmp_path: Path, nats_url: str) -> None:
    wait = (
        'flux: {kind: HelmRelease, name: "{service}", namespace: "{project}-{stage}", '
        'kustomization: {name: "{service}", namespace: "{project}-{stage}"}, chartVersion: "1.1.0"}'
    )
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    helm = SimulatedHelmController(loop.kube, ("sockshop-dev", "carts"), ("sockshop-dev", "carts"))
    helm.start()
    try:
        loop.kube.put_object(helmrelease("0.13.0"))
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        commit = head(loop.remote)
        assert data["message"].startswith(f"Flux released commit {commit[:12]}: HelmRelease sockshop-dev/carts: ")
        assert "release sockshop-dev/carts.v2 deployed with chart carts@1.1.0" in data["message"]
    finally:
        await helm.aclose()
        await stop_loop(loop)


async def test_a_failing_helm_upgrade_fails_the_delivery(tmp_path: Path, nats_url: str) -> None:
    parent = "kustomization: {name: carts, namespace: sockshop-dev}"
    wait = f"flux: {{kind: HelmRelease, name: carts, namespace: sockshop-dev, {parent}}}"
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    helm = SimulatedHelmController(loop.kube, ("sockshop-dev", "carts"), ("sockshop-dev", "carts"))
    helm.start()
    try:
        loop.kube.put_object(helmrelease("0.13.0"))
        helm.fail_with = "UpgradeFailed"
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith(
            "Flux failed to release the HelmRelease: UpgradeFailed: UpgradeFailed message"
        )
    finally:
        await helm.aclose()
        await stop_loop(loop)


@pytest.mark.parametrize("sync", [False, True], ids=["auto-sync", "sync-by-keptn"])
async def test_an_argocd_delivery_through_the_kubernetes_api(tmp_path: Path, nats_url: str, sync: bool) -> None:
    wait = f'argocd: {{application: "{{project}}-{{stage}}-{{service}}", namespace: argocd, sync: {str(sync).lower()}}}'
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    argo = SimulatedArgoCD(loop.kube, {f"file://{loop.remote}": loop.remote})
    argo.start()
    try:
        app = application(APP)
        if not sync:
            app["spec"]["syncPolicy"] = {"automated": {"prune": True}}
        app["spec"]["source"]["repoURL"] = f"file://{loop.remote}"
        loop.kube.put_object(app)
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        commit = head(loop.remote)
        assert data["message"].startswith(f"Argo CD deployed commit {commit[:12]}: Application argocd/{APP}: ")
        operation = get_app(loop.kube, APP)["status"]["operationState"]["operation"]
        if sync:
            assert operation["info"] == [
                {"name": "shkeptncontext", "value": event["shkeptncontext"]},
                {"name": "triggeredid", "value": event["id"]},
            ]
        else:
            assert operation["initiatedBy"] == {"automated": True}
    finally:
        await argo.aclose()
        await stop_loop(loop)


async def test_an_argocd_delivery_through_the_rest_api(
    tmp_path: Path, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argo CD in another cluster: its Applications live in a store of their own, reached only through its API."""
    monkeypatch.setenv("ARGOCD_TOKEN", "loop-token")
    remote = tmp_path / "remote.git"
    argocd_cluster = KubeApiServer()  # never started: only the SIMULATED Argo CD reads and writes its store
    api = ArgoCdApiServer(argocd_cluster, token="loop-token")
    await api.start()
    wait = (
        f'argocd: {{application: "{{project}}-{{stage}}-{{service}}", api: rest, server: "{api.url}", '
        "tokenEnv: ARGOCD_TOKEN, project: default, sync: true}"
    )
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    argo = SimulatedArgoCD(argocd_cluster, {f"file://{remote}": remote})
    argo.start()
    try:
        app = application(APP)
        app["spec"]["source"]["repoURL"] = f"file://{remote}"
        argocd_cluster.put_object(app)
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert data["message"].startswith(f"Argo CD deployed commit {head(remote)[:12]}: Application argocd/{APP}: ")
        assert (api.request_count["stream"], api.request_count["refresh"], api.request_count["sync"]) == (1, 1, 1)
        assert loop.kube.request_count["total"] == 0  # nothing went to the Keptn cluster's Kubernetes API
        operation = get_app(argocd_cluster, APP)["status"]["operationState"]["operation"]
        assert {"name": "triggeredid", "value": event["id"]} in operation["info"]
    finally:
        await argo.aclose()
        await stop_loop(loop)
        await api.stop()
