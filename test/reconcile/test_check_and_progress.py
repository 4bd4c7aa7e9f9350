"""Before a commit, :meth:`Reconciler.check` reads what the wait will follow, through the same API and with the
same credentials: a missing object, a 403, an unusable kubeconfig, an unreachable Argo CD end the deployment
before anything is written. While a wait runs, an info line says what it follows and what it last observed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from support import until
from waitobjects import (
    KS_GROUP,
    KS_PLURAL,
    KS_VERSION,
    OURS,
    Linear,
    application,
    helmrelease,
    ks_status,
    kustomization,
)

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.model import ArgoWait, FluxWait, KustomizationRef
from keptn_gitops_service.errors import (
    ArgoCdAccessDeniedError,
    ArgoCdAccessError,
    KubernetesAccessDeniedError,
    KubernetesAccessError,
    WaitTargetMissingError,
)
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.reconcile.kube import KubeHub, load_client
from keptn_gitops_sim.argocd import ArgoCdApiServer
from keptn_gitops_sim.kubeapi import KubeApiServer

TOKEN = "argocd-check-token-77aa"


@pytest.fixture
async def reconciler(kube: KubeApiServer, tmp_path: Path) -> AsyncIterator[Reconciler]:
    kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    reconciler = Reconciler(lambda: KubeHub(load_client(kubeconfig)), ManualClock())
    try:
        yield reconciler
    finally:
        await reconciler.close()


def carts(**changes: Any) -> FluxWait:
    return FluxWait(**{"kind": "Kustomization", "namespace": "sockshop-dev", "name": "carts", **changes})


async def test_an_existing_kustomization_passes(kube: KubeApiServer, reconciler: Reconciler) -> None:
    """The check reads the cluster each time: it passes while the object exists and not once it is gone."""
    kube.put_object(kustomization("carts", "sockshop-dev"))
    await reconciler.check(carts())
    kube.delete_object("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "sockshop-dev", "carts")
    with pytest.raises(WaitTargetMissingError):
        await reconciler.check(carts())


async def test_a_wrong_name_is_refused_with_the_object_and_the_way_out(
    kube: KubeApiServer, reconciler: Reconciler
) -> None:
    kube.put_object(kustomization("carts", "sockshop-dev"))
    with pytest.raises(WaitTargetMissingError) as caught:
        await reconciler.check(carts(name="cart"))
    assert str(caught.value) == (
        "Flux Kustomization sockshop-dev/cart does not exist in the cluster "
        "(if the commit creates it, set wait.flux.mayAppear: true)"
    )


async def test_may_appear_accepts_a_missing_object_but_not_a_403(kube: KubeApiServer, reconciler: Reconciler) -> None:
    await reconciler.check(carts(may_appear=True))
    kube.deny(KS_PLURAL, verbs={"get"})
    with pytest.raises(KubernetesAccessDeniedError, match=r"^cannot read Kustomization sockshop-dev/carts: 403 "):
        await reconciler.check(carts(may_appear=True))


async def test_a_403_names_the_object_and_the_refusal(kube: KubeApiServer, reconciler: Reconciler) -> None:
    kube.put_object(kustomization("carts", "sockshop-dev"))
    kube.deny(KS_PLURAL, verbs={"get"}, namespace="sockshop-dev")
    with pytest.raises(KubernetesAccessDeniedError) as caught:
        await reconciler.check(carts())
    assert str(caught.value).startswith("cannot read Kustomization sockshop-dev/carts: 403 Forbidden: ")
    assert "kustomizations" in str(caught.value)


async def test_a_helmrelease_needs_its_kustomization_too(kube: KubeApiServer, reconciler: Reconciler) -> None:
    kube.put_object(helmrelease())
    target = FluxWait(
        kind="HelmRelease",
        namespace="sockshop-dev",
        name="carts",
        kustomization=KustomizationRef("apps", "flux-system"),
    )
    with pytest.raises(WaitTargetMissingError, match=r"^Flux Kustomization flux-system/apps does not exist"):
        await reconciler.check(target)
    kube.put_object(kustomization())
    await reconciler.check(target)


async def test_an_unreadable_kubeconfig_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [this is not a kubeconfig\n")
    reconciler = Reconciler(lambda: KubeHub(load_client(str(broken))), ManualClock())
    with pytest.raises(KubernetesAccessError) as caught:
        await reconciler.check(carts())
    assert str(caught.value).startswith(f"cannot load the Kubernetes configuration from {broken}: ")


async def test_an_argocd_application_through_kubernetes(kube: KubeApiServer, reconciler: Reconciler) -> None:
    with pytest.raises(WaitTargetMissingError, match=r"^Argo CD Application argocd/sockshop-dev-carts does not exist$"):
        await reconciler.check(ArgoWait("sockshop-dev-carts"))
    kube.put_object(application())
    await reconciler.check(ArgoWait("sockshop-dev-carts"))


async def test_argocd_rest_missing_app_missing_token_and_closed_port(
    kube: KubeApiServer, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    argocd = ArgoCdApiServer(kube, token=TOKEN)
    await argocd.start()
    try:
        server = {"api": "rest", "server": argocd.url, "token_env": "CHECK_ARGOCD_TOKEN"}
        with pytest.raises(ArgoCdAccessDeniedError, match="CHECK_ARGOCD_TOKEN is not set"):
            await reconciler.check(ArgoWait("sockshop-dev-carts", **server))
        monkeypatch.setenv("CHECK_ARGOCD_TOKEN", TOKEN)
        with pytest.raises(WaitTargetMissingError) as caught:
            await reconciler.check(ArgoWait("sockshop-dev-carts", **server))
        assert str(caught.value) == (
            f"Argo CD at {argocd.url} does not show Application sockshop-dev-carts: it does not exist, or the "
            "token's roles do not allow reading it"
        )
        kube.put_object(application())
        await reconciler.check(ArgoWait("sockshop-dev-carts", **server))
    finally:
        await argocd.stop()
    closed = _closed_port()
    url = f"http://127.0.0.1:{closed}"
    with pytest.raises(ArgoCdAccessError, match=rf"^cannot reach Argo CD at {url}: "):
        await reconciler.check(ArgoWait("sockshop-dev-carts", api="rest", server=url, token_env="CHECK_ARGOCD_TOKEN"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_waiting_deployment_says_what_it_waits_for_every_interval(kube: KubeApiServer, tmp_path: Path) -> None:
    kube.put_object(kustomization("carts", "sockshop-dev"))
    kube.update_status(
        KS_GROUP, KS_VERSION, KS_PLURAL, "sockshop-dev", "carts", ks_status("False", "Progressing", "b" * 40)
    )
    clock = ManualClock()
    kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    reconciler = Reconciler(lambda: KubeHub(load_client(kubeconfig)), clock, progress_interval=30)
    with capture_logs() as logs:
        wait = asyncio.create_task(reconciler.wait(carts(), commit=OURS, ancestry=Linear(), timeout=600))
        try:
            # the waiter read the Kustomization (it asked for a reconcile of its GitRepository, which is not there),
            # judged it and sleeps again, next to the reporter
            await until(lambda: clock.sleepers >= 2 and _asked_for_a_reconcile(logs))
            assert _still(logs) == []
            clock.advance(29)
            await asyncio.sleep(0)
            assert _still(logs) == []
            clock.advance(1)
            await until(lambda: len(_still(logs)) == 1)
            line = _still(logs)[0]
            assert line["log_level"] == "info"
            assert line["waiting_for"] == "Flux Kustomization sockshop-dev/carts"
            assert line["commit"] == OURS[:12]
            assert line["waited"] == "30s"
            assert line["observed"] == (
                f"Kustomization sockshop-dev/carts: Ready=False (Progressing: Progressing message), "
                f"lastAppliedRevision main@sha1:{'b' * 40}, lastAttemptedRevision main@sha1:{'b' * 40}"
            )
            kube.update_status(
                KS_GROUP,
                KS_VERSION,
                KS_PLURAL,
                "sockshop-dev",
                "carts",
                ks_status("True", "ReconciliationSucceeded", OURS),
            )
            outcome = await asyncio.wait_for(wait, 10)
            assert outcome.succeeded
            clock.advance(60)  # the reporter ended with the wait
            await asyncio.sleep(0)
            assert len(_still(logs)) == 1
        finally:
            wait.cancel()
            await reconciler.close()
    started = [e for e in logs if e["event"] == "waiting for reconciliation"]
    assert started == [
        {
            "event": "waiting for reconciliation",
            "log_level": "info",
            "waiting_for": "Flux Kustomization sockshop-dev/carts",
            "commit": OURS[:12],
        }
    ]


def _still(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "still waiting for reconciliation"]


def set_carts(kube: KubeApiServer, status: dict[str, Any]) -> None:
    kube.update_status(KS_GROUP, KS_VERSION, KS_PLURAL, "sockshop-dev", "carts", status)


def _asked_for_a_reconcile(logs: list[dict[str, Any]]) -> bool:
    return any(e["event"].startswith("could not request an immediate reconcile") for e in logs)
