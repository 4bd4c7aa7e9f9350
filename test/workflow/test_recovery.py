"""A restart while a deployment waits for Flux loses nothing: the new process resumes from the state store,
sends no second .started, makes no second commit, and sends exactly one .finished."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from harness import start_loop, stop_loop, triggered
from support import git

from keptn_gitops_service.keptn.events import from_json, to_structured
from keptn_gitops_service.service import Service
from keptn_gitops_service.state.store import Phase, SqliteStateStore


async def test_restart_while_waiting_resumes_exactly_once(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url, run_flux=False)
    try:
        event = triggered("docker.io/keptnexamples/carts:0.20.0")
        await loop.publish(event)
        store = SqliteStateStore(tmp_path / "state" / "state.sqlite3")  # a second reader of the same file
        while (record := await store.get(event["id"])) is None or record.phase is not Phase.COMMITTED:
            await asyncio.sleep(0.01)
        await store.close()
        await loop.service.stop(grace=0)  # SIGTERM-like: in-flight work stays in the store
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started"]

        loop.service = Service(loop.service.settings, loop.service.config)
        await loop.service.start()
        await loop.flux.reconcile_once()
        finished = await loop.finished(event["id"])
        await loop.service.wait_idle()
        assert finished["data"]["result"] == "pass", finished["data"]["message"]
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
        assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "2"
        assert finished["data"]["deployment"]["gitCommit"] == git("rev-parse", "main", cwd=loop.remote).strip()
    finally:
        await stop_loop(loop)


async def test_restart_after_receipt_sends_started_once_then_finishes(tmp_path: Path, nats_url: str) -> None:
    """A record still in RECEIVED (the process died before .started went out) gets .started on resume."""
    loop = await start_loop(tmp_path, nats_url)
    try:
        await loop.service.stop(grace=0)
        event = triggered("docker.io/keptnexamples/carts:0.21.0")
        store = SqliteStateStore(tmp_path / "state" / "state.sqlite3")
        await store.claim(
            event["id"], event["shkeptncontext"], event["type"], to_structured(from_json(json.dumps(event)))
        )
        await store.close()
        loop.service = Service(loop.service.settings, loop.service.config)
        await loop.service.start()
        finished = await loop.finished(event["id"])
        assert finished["data"]["result"] == "pass", finished["data"]["message"]
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
    finally:
        await stop_loop(loop)


async def test_a_deployment_cancelled_by_shutdown_is_no_longer_counted_in_flight(tmp_path: Path, nats_url: str) -> None:
    from keptn_gitops_service.metrics import IN_FLIGHT

    loop = await start_loop(tmp_path, nats_url, run_flux=False)
    try:
        before = IN_FLIGHT._value.get()
        event = triggered("docker.io/keptnexamples/carts:0.22.0")
        await loop.publish(event)
        while IN_FLIGHT._value.get() == before:
            await asyncio.sleep(0.01)
        await loop.service.stop(grace=0)
        assert IN_FLIGHT._value.get() == before
        loop.service = Service(loop.service.settings, loop.service.config)
        await loop.service.start()
    finally:
        await stop_loop(loop)
