"""The webhooks in the running service: mounted only with a secret, and a signed Flux event finishes a deployment
while the Kubernetes watch stream is held back — real NATS, git, Kubernetes-API test server and simulated Flux."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import Loop, start_loop, stop_loop, triggered

from keptn_gitops_service.errors import ConfigError
from keptn_gitops_service.settings import Settings
from keptn_gitops_sim.kubeapi import StoreEvent

SECRET = "flux-hmac-token"


async def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as response,
    ):
        return response.status


def flux_event(revision: str) -> bytes:
    """kustomize-controller's success event as notification-controller ≥ v1.5 posts it (eventv1.Event)."""
    event = {
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "carts",
            "namespace": "sockshop-dev",
        },
        "severity": "info",
        "timestamp": "2026-01-01T00:00:00Z",
        "message": "Reconciliation finished in 120ms, next run in 10m0s",
        "reason": "ReconciliationSucceeded",
        "metadata": {"revision": revision, "commit_status": "update"},
        "reportingController": "kustomize-controller",
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def test_without_a_secret_there_is_no_webhook_endpoint(loop: Loop) -> None:
    assert loop.service.probes is not None
    body = flux_event("main@sha1:" + "a" * 40)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert await post(loop.service.probes.port, "/webhooks/flux", body, {"X-Signature": signature}) == 404
    assert await post(loop.service.probes.port, "/webhooks/argocd", b"{}", {"X-Webhook-Secret": "x"}) == 404


async def test_a_signed_flux_event_finishes_the_deployment_before_the_watch_delivers(
    tmp_path: Path, nats_url: str
) -> None:
    loop = await start_loop(tmp_path, nats_url, settings={"flux_webhook_secret": SECRET})
    try:
        assert loop.service.probes is not None
        seed = loop.kube.get_object("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "sockshop-dev", "carts")
        assert seed is not None
        seed_revision = seed["status"]["lastAppliedRevision"]
        applied: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_change(change: StoreEvent) -> None:
            status = change.object.get("status") or {}
            ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready" and c["status"] == "True"]
            revision = status.get("lastAppliedRevision")
            if change.object["kind"] == "Kustomization" and ready and revision != seed_revision and not applied.done():
                applied.set_result(str(revision))

        loop.kube.add_listener(on_change)
        loop.kube.pause_watches()  # the service lists, but its watch stream stays silent
        event = triggered()
        await loop.publish(event)
        revision = await asyncio.wait_for(applied, 30)  # simulated Flux applied our commit (in the API server)
        assert not [r for r in loop.replies_to(event["id"]) if r["type"].endswith(".finished")]
        body = flux_event(revision)
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert await post(loop.service.probes.port, "/webhooks/flux", body, {"X-Signature": signature}) == 202
        finished = await loop.finished(event["id"], timeout=30)
        assert finished["data"]["result"] == "pass", finished["data"]
        assert finished["data"]["deployment"]["gitCommit"] in revision
        assert loop.kube.open_watches >= 1  # the watch is there; it just had not delivered
    finally:
        loop.kube.resume_watches()
        await stop_loop(loop)


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-a-file\n")
    settings = Settings.from_env(
        {
            "FLUX_WEBHOOK_SECRET": "  from-env ",
            "ARGOCD_WEBHOOK_SECRET_FILE": str(secret_file),
            "ARGOCD_WEBHOOK_HEADER": "Authorization",
        }
    )
    assert settings.flux_webhook_secret == "from-env"  # surrounding whitespace ignored, as Flux does
    assert settings.argocd_webhook_secret == "from-a-file"
    assert settings.argocd_webhook_header == "Authorization"
    assert "from-env" not in repr(settings) and "from-a-file" not in repr(settings)
    defaults = Settings.from_env({"FLUX_WEBHOOK_SECRET": ""})
    assert defaults.flux_webhook_secret is None and defaults.argocd_webhook_secret is None
    assert defaults.argocd_webhook_header == "X-Webhook-Secret"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"FLUX_WEBHOOK_SECRET": "a", "FLUX_WEBHOOK_SECRET_FILE": "/x"}, "are both set"),
        ({"FLUX_WEBHOOK_SECRET_FILE": "{missing}"}, "cannot read the file: FileNotFoundError"),
        ({"ARGOCD_WEBHOOK_SECRET_FILE": "{empty}"}, "the file is empty"),
        ({"ARGOCD_WEBHOOK_HEADER": "X Secret:"}, "must be an HTTP header name"),
    ],
)
def test_bad_webhook_settings_are_refused(tmp_path: Path, env: dict[str, str], problem: str) -> None:
    (tmp_path / "empty").write_text(" \n")
    paths: dict[str, Any] = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    with pytest.raises(ConfigError, match=problem) as caught:
        Settings.from_env({k: v.format(**paths) for k, v in env.items()})
    assert "a" * 3 not in str(caught.value)
