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
        status, body = await asyncio.to_thread(get, probes.port, "/readyz")
        assert status == 200 and body["ready"] is True
        assert body["checks"]["nats"]["mode"] == "core" and body["checks"]["stateStore"] == {"ok": True}
        loop.service.store.close()  # the state store becomes unusable
        status, body = await asyncio.to_thread(get, probes.port, "/readyz")
        assert status == 503 and body["checks"]["stateStore"]["ok"] is False
        assert "cannot read event" in body["checks"]["stateStore"]["error"]
    finally:
        loop.service.store = type(loop.service.store)(tmp_path / "state" / "state.sqlite3")
        await stop_loop(loop)


def test_http_port_comes_from_the_environment() -> None:
    assert Settings.from_env({"HTTP_PORT": "9090"}).http_port == 9090
    assert Settings.from_env({}).http_port == 8080
