"""``run`` checks at start-up what it can before the first event: every repository reached with its credentials,
the kubeconfig loaded. Until that works ``/readyz`` says what is wrong, and the checks run again, spaced out on
the service's clock."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import start_loop, stop_loop
from structlog.testing import capture_logs
from support import make_remote, service_config, until

from keptn_gitops_service.clock import ManualClock


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_not_ready_until_the_token_is_there_and_the_repository_reachable(
    tmp_path: Path, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STARTUP_GIT_TOKEN", raising=False)
    remote, archive = tmp_path / "remote.git", tmp_path / "archive.git"
    text = service_config(remote).replace(
        "    branch: main\n", "    branch: main\n    auth: {type: token, tokenEnv: STARTUP_GIT_TOKEN}\n"
    )
    text = text.replace("rules:\n", f"  - name: archive\n    url: file://{archive}\nrules:\n")
    token_missing = (
        f"the git token environment variable STARTUP_GIT_TOKEN of repository 'fleet' (file://{remote}, branch main) "
        "is not set"
    )
    unreachable = (
        f"git ls-remote for repository 'archive' (file://{archive}, branch main) failed: fatal: Could not read from "
        "remote repository. / Please make sure you have the correct access rights / and the repository exists."
    )
    clock = ManualClock()
    with capture_logs() as logs:
        loop = await start_loop(tmp_path, nats_url, clock=clock, config=text)
        try:
            service, probes = loop.service, loop.service.probes
            assert probes is not None
            await service.startup_checked.wait()
            status, body = await asyncio.to_thread(get, probes.port, "/readyz")
            assert status == 503 and body["ready"] is False
            assert body["checks"]["startupChecks"] == {"ok": False, "problems": [token_missing, unreachable]}
            failed = [e for e in logs if e["event"] == "start-up check failed; not ready"]
            assert [(e["log_level"], e["problem"], e["retry_in"]) for e in failed] == [
                ("error", token_missing, 30.0),
                ("error", unreachable, 30.0),
            ]

            monkeypatch.setenv("STARTUP_GIT_TOKEN", "t0ken")
            await until(lambda: clock.sleepers == 1)
            clock.advance(30)
            await until(lambda: service.startup_problems == [unreachable] and clock.sleepers == 1)

            make_remote(tmp_path / "later", {"README.md": "archive\n"}).rename(archive)
            clock.advance(59)  # the next check is due 60 s after the second failure
            await asyncio.sleep(0)
            assert service.startup_problems == [unreachable]
            clock.advance(1)
            await until(lambda: service.startup_problems == [])
            status, body = await asyncio.to_thread(get, probes.port, "/readyz")
            assert status == 200 and body["checks"]["startupChecks"] == {"ok": True, "problems": []}
            assert clock.sleepers == 0  # no more checks once they passed
        finally:
            await stop_loop(loop)
    assert any(e["event"] == "start-up checks passed" and e["log_level"] == "info" for e in logs)
