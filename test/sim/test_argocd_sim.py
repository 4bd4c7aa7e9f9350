"""The SIMULATED Argo CD application controller writes what the real one (v2.14, test/e2e/test_argocd.py) writes,
in the same order: every write of the Application is recorded and checked step by step."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support import git, make_remote
from waitobjects import application

from keptn_gitops_sim.argocd import REFRESH, REFRESH_TIMESTAMP, SimulatedArgoCD
from keptn_gitops_sim.kubeapi import KubeApiServer, StoreEvent

APP = ("argocd", "sockshop-dev-carts")
URL = "https://git.example.invalid/org/fleet.git"
WAIT = 10.0  # seconds: only bounds a simulator that stopped writing


class Recorder:
    """Every committed write of the Application, in order."""

    def __init__(self, kube: KubeApiServer) -> None:
        self.writes: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        kube.add_listener(self._record)

    def _record(self, event: StoreEvent) -> None:
        meta = event.object["metadata"]
        if event.rtype.plural == "applications" and (meta.get("namespace"), meta.get("name")) == APP:
            self.writes.append(copy.deepcopy(event.object))
            self._changed.set()

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        """The index of the first write (from now on or before) that satisfies ``predicate``."""

        async def wait() -> int:
            while True:
                for index, app in enumerate(self.writes):
                    if predicate(app):
                        return index
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), WAIT)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[KubeApiServer, SimulatedArgoCD, Recorder, Path]]:
    kube = KubeApiServer()
    remote = make_remote(tmp_path, {"apps/dev/carts/cm.yaml": "kind: ConfigMap\n"})
    argo = SimulatedArgoCD(kube, {URL: remote}, retry_delay=0.01)
    recorder = Recorder(kube)
    argo.start()
    try:
        yield kube, argo, recorder, remote
    finally:
        await argo.aclose()


def _app(automated: bool, **policy: Any) -> dict[str, Any]:
    app = application()
    app["spec"]["source"]["repoURL"] = URL
    if automated:
        app["spec"]["syncPolicy"] = {"automated": {"prune": True}, **policy}
    return app


def _refresh(kube: KubeApiServer) -> None:
    app = kube.get_object("argoproj.io", "v1alpha1", "applications", *APP)
    assert app is not None
    app["metadata"].setdefault("annotations", {}).update({REFRESH: "normal", REFRESH_TIMESTAMP: "2026-01-01T00:00:00Z"})
    kube.put_object(app)


def _status(app: dict[str, Any]) -> dict[str, Any]:
    return app.get("status") or {}


def _ops(app: dict[str, Any]) -> dict[str, Any]:
    return _status(app).get("operationState") or {}


async def test_auto_sync_writes_the_operation_first_then_the_status_then_each_step_of_the_sync(setup: Any) -> None:
    kube, _argo, rec, remote = setup
    tip = git("rev-parse", "main", cwd=remote).strip()
    kube.put_object(_app(automated=True))
    _refresh(kube)

    # 1. SetAppOperation: the operation alone, the status as before (no revision yet), no operationState.
    first = await rec.until(lambda a: bool(a.get("operation")))
    app = rec.writes[first]
    assert app["operation"]["sync"]["revision"] == tip
    assert app["operation"]["initiatedBy"] == {"automated": True}
    assert app["operation"]["retry"] == {"limit": 5}
    assert "sync" not in _status(app) and "operationState" not in _status(app)
    assert REFRESH in app["metadata"]["annotations"]
    # 2. The status write: OutOfSync to the tip; the refresh annotation removed, its timestamp left.
    status_write = await rec.until(lambda a: (_status(a).get("sync") or {}).get("status") == "OutOfSync")
    app = rec.writes[status_write]
    assert status_write > first and app.get("operation")
    assert REFRESH not in app["metadata"]["annotations"]
    assert app["metadata"]["annotations"][REFRESH_TIMESTAMP] == "2026-01-01T00:00:00Z"
    # 3. Running, at first without syncResult: the revision is only in the operation.
    running = await rec.until(lambda a: _ops(a).get("phase") == "Running")
    assert "syncResult" not in _ops(rec.writes[running])
    assert _ops(rec.writes[running])["operation"]["sync"]["revision"] == tip
    # 4. Succeeded, operation cleared, while sync still says OutOfSync and reconciledAt predates the operation.
    done = await rec.until(lambda a: _ops(a).get("phase") == "Succeeded")
    app = rec.writes[done]
    assert "operation" not in app and _ops(app)["syncResult"]["revision"] == tip
    assert _status(app)["sync"]["status"] == "OutOfSync"
    # 5. Synced and Healthy with the old reconciledAt, 6. then reconciledAt again.
    synced = await rec.until(lambda a: (_status(a).get("sync") or {}).get("status") == "Synced")
    assert synced == done + 1
    assert _status(rec.writes[synced])["health"]["status"] == "Healthy"
    assert _status(rec.writes[synced])["reconciledAt"] == _status(rec.writes[done])["reconciledAt"]
    last = await rec.until(
        lambda a: _ops(a).get("phase") == "Succeeded" and _status(a)["reconciledAt"] >= _ops(a)["finishedAt"]
    )
    assert last == synced + 1 or _status(rec.writes[synced])["reconciledAt"] >= _ops(rec.writes[synced])["finishedAt"]
    # No status subresource: every status write moved metadata.generation.
    generations = [w["metadata"]["generation"] for w in rec.writes]
    assert generations == sorted(generations) and generations[-1] >= len(rec.writes) - 1


async def test_a_failing_auto_sync_retries_five_times_then_fails_and_a_sync_error_follows(setup: Any) -> None:
    kube, argo, rec, remote = setup
    tip = git("rev-parse", "main", cwd=remote).strip()
    kube.put_object(_app(automated=True))
    argo.fail_next_sync(*APP, 'ConfigMap "carts" is invalid')
    _refresh(kube)

    retrying = await rec.until(lambda a: _ops(a).get("retryCount") == 1 and bool(_ops(a).get("finishedAt")))
    app = rec.writes[retrying]
    assert _ops(app)["phase"] == "Running" and app.get("operation")
    assert _ops(app)["message"].startswith(
        'ConfigMap "carts" is invalid due to application controller sync timeout. Retrying attempt #1 at '
    )
    failed = await rec.until(lambda a: _ops(a).get("phase") == "Failed")
    app = rec.writes[failed]
    assert _ops(app)["message"] == 'ConfigMap "carts" is invalid (retried 5 times).'
    assert _ops(app)["retryCount"] == 5 and "operation" not in app
    assert not _status(app).get("conditions")  # the SyncError comes one write later
    error = await rec.until(lambda a: bool(_status(a).get("conditions")))
    assert error == failed + 1
    assert _status(rec.writes[error])["conditions"][0]["type"] == "SyncError"
    assert _status(rec.writes[error])["conditions"][0]["message"] == (
        f'Failed sync attempt to {tip}: ConfigMap "carts" is invalid (retried 5 times).'
    )
    # Each retry began with a write that cleared finishedAt, retryCount 1 to 5.
    retries = [
        _ops(w)["retryCount"]
        for previous, w in itertools.pairwise(rec.writes)
        if _ops(previous).get("finishedAt") and _ops(w).get("phase") == "Running" and not _ops(w).get("finishedAt")
    ]
    assert retries == [1, 2, 3, 4, 5]


async def test_a_requested_sync_without_a_retry_policy_fails_at_once(setup: Any) -> None:
    kube, argo, rec, remote = setup
    tip = git("rev-parse", "main", cwd=remote).strip()
    app = _app(automated=False)
    app["operation"] = {"sync": {"revision": tip}, "initiatedBy": {"username": "keptn-gitops-service"}}
    argo.fail_next_sync(*APP, "one or more objects failed to apply")
    kube.put_object(app)

    failed = await rec.until(lambda a: _ops(a).get("phase") == "Failed")
    assert _ops(rec.writes[failed])["message"] == "one or more objects failed to apply"
    assert "retryCount" not in _ops(rec.writes[failed])
    refreshed = await rec.until(lambda a: bool(_status(a).get("reconciledAt")))
    assert not _status(rec.writes[refreshed]).get("conditions")  # no auto-sync: no SyncError


async def test_a_degraded_sync_puts_the_reason_on_the_resource_not_on_the_application(setup: Any) -> None:
    kube, argo, rec, _remote = setup
    kube.put_object(_app(automated=True))
    argo.degrade_next_sync(*APP, 'Deployment "sockshop-dev-carts" exceeded its progress deadline')
    _refresh(kube)

    degraded = await rec.until(lambda a: (_status(a).get("health") or {}).get("status") == "Degraded")
    status = _status(rec.writes[degraded])
    assert status["health"] == {"status": "Degraded"}
    assert status["resources"][0]["health"] == {
        "status": "Degraded",
        "message": 'Deployment "sockshop-dev-carts" exceeded its progress deadline',
    }
