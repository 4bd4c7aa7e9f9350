"""Flux and Argo CD objects shaped like the upstream fixtures (test/fixtures/upstream/gitops), for the wait tests."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from keptn_gitops_sim.helmsim import DIGEST, HR_GROUP, HR_PLURAL, HR_VERSION, condition, hr_status, snapshot
from keptn_gitops_sim.kubeapi import KubeApiServer

# HelmRelease statuses are built the way the SIMULATED helm-controller writes them; the tests take them from here.
__all__ = ["DIGEST", "HR_GROUP", "HR_PLURAL", "HR_VERSION", "condition", "hr_status", "snapshot"]

OLD, OURS, NEWER = "b" * 40, "a" * 40, "c" * 40  # a straight history: OLD, then OURS, then someone else's NEWER

KS_GROUP, KS_VERSION, KS_PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
APP_GROUP, APP_VERSION, APP_PLURAL = "argoproj.io", "v1alpha1", "applications"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
REFRESH = "argocd.argoproj.io/refresh"


class Linear:
    """Ancestry of OLD → OURS → NEWER."""

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        order = [OLD, OURS, NEWER]
        return ancestor in order and descendant in order and order.index(ancestor) <= order.index(descendant)

    async def superseded(self, commit: str, descendant: str) -> str | None:
        return None  # nobody changes our values again in these histories


# ---- Flux Kustomization ----


def kustomization(name: str = "apps", namespace: str = "flux-system") -> dict[str, Any]:
    return {
        "apiVersion": f"{KS_GROUP}/{KS_VERSION}",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "10m", "path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "fleet"}},
    }


def ks_status(ready: str, reason: str, applied: str, attempted: str | None = None) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "lastAppliedRevision": f"main@sha1:{applied}",
        "lastAttemptedRevision": f"main@sha1:{attempted or applied}",
        "conditions": [condition("Ready", ready, reason)],
    }


def set_ks(kube: KubeApiServer, status: dict[str, Any], name: str = "apps", namespace: str = "flux-system") -> None:
    kube.update_status(KS_GROUP, KS_VERSION, KS_PLURAL, namespace, name, status)


# ---- Flux HelmRelease (helmrelease_status_history.yaml, helmrelease_ready_describe.txt) ----


def helmrelease(tag: str = "0.13.0", name: str = "carts", namespace: str = "sockshop-dev") -> dict[str, Any]:
    return {
        "apiVersion": f"{HR_GROUP}/{HR_VERSION}",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "chart": {"spec": {"chart": "carts", "sourceRef": {"kind": "HelmRepository", "name": "keptn"}}},
            "values": {"image": {"tag": tag}},
        },
    }


def set_hr(kube: KubeApiServer, status: dict[str, Any], name: str = "carts", namespace: str = "sockshop-dev") -> None:
    kube.update_status(HR_GROUP, HR_VERSION, HR_PLURAL, namespace, name, status)


async def reconcile_request(kube: KubeApiServer, name: str = "carts", namespace: str = "sockshop-dev") -> str:
    """The ``reconcile.fluxcd.io/requestedAt`` the waiter put on the HelmRelease (bound with ``wait_for``)."""
    while True:
        hr = kube.get_object(HR_GROUP, HR_VERSION, HR_PLURAL, namespace, name) or {}
        token = ((hr.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT)
        if token:
            return str(token)
        await asyncio.sleep(0.01)


# ---- Argo CD Application (application_status_synced_succeeded.yaml) ----


def application(name: str = "sockshop-dev-carts", namespace: str = "argocd", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{APP_GROUP}/{APP_VERSION}",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example.com/org/fleet.git",
                "path": "apps/dev/carts",
                "targetRevision": "main",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "sockshop-dev"},
            **spec,
        },
    }


def app_status(
    revision: str,
    *,
    sync: str = "Synced",
    health: str = "Healthy",
    phase: str | None = "Succeeded",
    finished: str | None = "2026-01-01T00:01:00Z",
    reconciled: str = "2026-01-01T00:01:00Z",
    message: str = "successfully synced (all tasks run)",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "sync": {"status": sync, "revision": revision},
        "health": {"status": health},
        "reconciledAt": reconciled,
        "controllerNamespace": "argocd",
    }
    if phase is not None:
        status["operationState"] = {
            "phase": phase,
            "message": message,
            "startedAt": "2026-01-01T00:00:50Z",
            "syncResult": {"revision": revision},
            "operation": {"sync": {"revision": revision}, "initiatedBy": {"automated": True}},
        }
        if finished:
            status["operationState"]["finishedAt"] = finished
    if conditions:
        status["conditions"] = conditions
    return status


def get_app(kube: KubeApiServer, name: str = "sockshop-dev-carts", namespace: str = "argocd") -> dict[str, Any]:
    app = kube.get_object(APP_GROUP, APP_VERSION, APP_PLURAL, namespace, name)
    assert app is not None
    return app


def set_app(
    kube: KubeApiServer,
    status: dict[str, Any],
    name: str = "sockshop-dev-carts",
    namespace: str = "argocd",
    *,
    refreshed: bool = False,
    operation_taken: bool = False,
) -> None:
    """Write the status as the application controller does (``refreshed``: also remove the refresh annotation;
    ``operation_taken``: the controller took the requested ``operation`` into ``status.operationState``)."""
    app = copy.deepcopy(get_app(kube, name, namespace))
    app["status"] = status
    if refreshed:
        (app["metadata"].get("annotations") or {}).pop(REFRESH, None)
    if operation_taken:
        status["operationState"]["operation"] = app.pop("operation")
    kube.put_object(app)


async def refresh_requested(kube: KubeApiServer, name: str = "sockshop-dev-carts", namespace: str = "argocd") -> None:
    while REFRESH not in (
        (kube.get_object(APP_GROUP, APP_VERSION, APP_PLURAL, namespace, name) or {})
        .get("metadata", {})
        .get("annotations")
        or {}
    ):
        await asyncio.sleep(0.01)
