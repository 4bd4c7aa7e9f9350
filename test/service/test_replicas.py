"""Replicas sharing the JetStream state store: the queue group splits the triggers, and a deployment whose
replica died is taken over once its lease expires — finished exactly once, committed exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness import Loop, overlay, start_loop, stop_loop, triggered
from support import NO_WAIT, git, service_config

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.service import Service
from keptn_gitops_service.settings import Settings
from keptn_gitops_service.state.store import Phase

LEASE = 30.0


pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream


def replica(loop: Loop, name: str, clock: ManualClock) -> Service:
    settings = loop.service.settings
    own = Settings(**{**settings.__dict__, "k8s_pod_name": name, "state_dir": loop.tmp / f"state-{name}"})
    return Service(own, loop.service.config, clock=clock)


async def until(predicate: object, clock: ManualClock | None = None, step: float = 0.0) -> None:
    assert callable(predicate)
    for _ in range(3000):
        if await predicate():
            return
        if clock is not None and step:
            clock.advance(step)
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_a_dead_replicas_deployment_is_taken_over_after_its_lease(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    loop = await start_loop(
        tmp_path,
        nats_url,
        clock=clock,
        run_flux=False,  # Flux does not reconcile until told: the deployment waits
        settings={"state_store": "jetstream", "k8s_pod_name": "a", "state_lease_seconds": LEASE},
    )
    b = replica(loop, "b", clock)
    await b.start()
    try:
        event = triggered("docker.io/keptnexamples/carts:0.40.0")
        await loop.publish(event)

        async def committed() -> bool:
            record = await b.store.get(event["id"])
            return record is not None and record.phase is Phase.COMMITTED

        await until(committed)
        owner, survivor = (loop.service, b) if await loop.service.store.owns(event["id"]) else (b, loop.service)
        await owner.stop(grace=0)  # the owner dies: in-flight work stays in the store, its lease stops renewing
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started"]

        async def taken_over() -> bool:
            return await survivor.store.owns(event["id"])

        await until(taken_over, clock, step=LEASE / 4)  # the survivor adopts the orphan after the lease
        await loop.flux.reconcile_once()
        finished = await loop.finished(event["id"])
        assert finished["data"]["result"] == "pass", finished["data"]["message"]
        await survivor.wait_idle()
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
        assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "2"  # the seed and ours, once
    finally:
        await b.stop(grace=0)
        await stop_loop(loop)


async def test_replicas_share_the_work_and_answer_each_trigger_once(tmp_path: Path, nats_url: str) -> None:
    services = [f"svc{i}" for i in range(12)]
    loop = await start_loop(
        tmp_path,
        nats_url,
        files={f"apps/dev/{s}/kustomization.yaml": overlay(s) for s in services},
        config=service_config(tmp_path / "remote.git", NO_WAIT),
        settings={"state_store": "jetstream", "k8s_pod_name": "a", "state_lease_seconds": LEASE},
    )
    others = [replica(loop, name, ManualClock()) for name in ("b", "c")]
    for service in others:
        await service.start()
    try:
        events = [triggered(f"docker.io/keptnexamples/{s}:2.0.0", service=s) for s in services]
        for event in events:
            await loop.publish(event)
        for event in events:
            assert (await loop.finished(event["id"]))["data"]["result"] == "pass"
        for service in (loop.service, *others):
            await service.wait_idle()
        for event in events:
            assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
        for service in services:
            assert "newTag: 2.0.0 " in git("show", f"main:apps/dev/{service}/kustomization.yaml", cwd=loop.remote)
            assert (
                len(
                    git(
                        "log", "--format=%H", f"--grep=^Keptn-Scope: sockshop/dev/{service}$", "main", cwd=loop.remote
                    ).split()
                )
                == 1
            )
    finally:
        for service in others:
            await service.stop(grace=0)
        await stop_loop(loop)
