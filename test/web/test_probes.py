"""The probes of a running service: healthy while alive, ready only while NATS and the state store work."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from harness import start_loop, stop_loop

from keptn_gitops_service.settings import Settings


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_probes_report_nats_and_the_state_store(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url)
    try:
        probes = loop.service.probes
        assert probes is not None and probes.port > 0
        status, body = await asyncio.to_thread(get, probes.port, "/healthz")
        assert (status, body) == (200, {"status": "ok"})
        await loop.service.startup_checked.wait()
        status, body = await asyncio.to_thread(get, probes.port, "/readyz")
        assert status == 200 and body["ready"] is True
        assert body["checks"]["startupChecks"] == {"ok": True, "problems": []}
        assert body["checks"]["nats"]["mode"] == "core" and body["checks"]["stateStore"] == {"ok": True}
        await loop.service.store.close()  # the state store becomes unusable
        status, body = await asyncio.to_thread(get, probes.port, "/readyz")
        assert status == 503 and body["checks"]["stateStore"]["ok"] is False
        assert body["checks"]["stateStore"]["error"] == "the state store is closed"
    finally:
        loop.service.store = type(loop.service.store)(tmp_path / "state" / "state.sqlite3")
        await stop_loop(loop)


def test_http_port_comes_from_the_environment() -> None:
    assert Settings.from_env({"HTTP_PORT": "9090"}).http_port == 9090
    assert Settings.from_env({}).http_port == 8080


async def test_metrics_count_deployments_commits_and_reconciles(tmp_path: Path, nats_url: str) -> None:
    from harness import triggered
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "pass": value("keptn_gitops_deployments_total", stage="dev", result="pass"),
        "commits": value("keptn_gitops_time_to_commit_seconds_count"),
        "reconciles": value("keptn_gitops_time_to_reconcile_seconds_count", outcome="succeeded"),
        "inflight": value("keptn_gitops_inflight_deployments"),
    }
    loop = await start_loop(tmp_path, nats_url)
    try:
        event = triggered("docker.io/keptnexamples/carts:0.50.0")
        await loop.publish(event)
        await loop.finished(event["id"])
        await loop.service.wait_idle()
        assert value("keptn_gitops_deployments_total", stage="dev", result="pass") == before["pass"] + 1
        assert value("keptn_gitops_time_to_commit_seconds_count") == before["commits"] + 1
        assert value("keptn_gitops_time_to_reconcile_seconds_count", outcome="succeeded") == before["reconciles"] + 1
        assert value("keptn_gitops_inflight_deployments") == before["inflight"]
        assert loop.service.probes is not None
        port = loop.service.probes.port

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                assert response.headers["Content-Type"].startswith("text/plain")
                return str(response.read().decode())

        text = await asyncio.to_thread(scrape)
        assert 'keptn_gitops_deployments_total{result="pass",stage="dev"}' in text
        assert "keptn_gitops_push_retries_total" in text and "keptn_gitops_watch_reconnects_total" in text
    finally:
        await stop_loop(loop)
