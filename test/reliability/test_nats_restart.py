"""NATS goes away while deployments are in flight and comes back (same port, same JetStream store): every trigger
is finished exactly once, replies held during the outage go out after the reconnect, and the durable consumer
keeps delivering (issue 8, parts 4 and 5)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from reliability.rig import SOAK, Rig, overtaken, rig

from keptn_gitops_sim.natsd import NatsServer

pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream


def held_replies(r: Rig) -> set[str]:
    """Triggers whose reply the service logged as waiting for NATS."""
    return {
        str(line.get("triggeredid"))
        for line in r.service.logs()
        if str(line.get("event", "")).startswith("NATS unavailable")
    }


def answered_or_held(r: Rig, ids: list[str]) -> bool:
    """Every deployment is over: its reply is held for NATS, or (wrongly, NATS being down) recorded as sent."""
    held = held_replies(r)
    return all(t in held or r.state.phase(t) == "finished" for t in ids)


def assert_exactly_once(r: Rig, ids: list[str], replies: object) -> None:
    from reliability.rig import Replies

    assert isinstance(replies, Replies)
    wrong = {i: replies.kinds(i) for i in ids if replies.kinds(i) != ["started", "finished"]}
    assert not wrong, f"replies in Keptn's stream: {wrong}"
    failed = {
        i: (f or {}).get("data", {}).get("message")
        for i in ids
        if ((f := replies.finished(i)) is None or f["data"]["result"] != "pass") and not overtaken(f)
    }
    assert not failed, failed
    assert any((replies.finished(i) or {}).get("data", {}).get("result") == "pass" for i in ids)
    commits = {i: len(r.remote.commits_for(i)) for i in ids}
    assert set(commits.values()) == {1}, commits


async def reconnected(r: Rig) -> None:
    await r.until(lambda: r.nc.is_connected, "the test's NATS client reconnected", service=False)


async def test_nats_restart_while_deployments_wait_loses_and_repeats_nothing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with rig(tmp_path, nats_server) as r:
        await r.cluster.pause()
        waiting = [await r.publish("carts", f"2.{i}.0") for i in range(3)]
        await r.until(lambda: all(r.state.phase(t) == "committed" for t in waiting), "three deployments waiting")

        r.nats.stop()
        r.cluster.resume()  # Flux applies the commits while NATS is away: the finished replies meet no server
        await r.until(lambda: answered_or_held(r, waiting), "the three deployments are over")
        sent = [t for t in waiting if r.state.phase(t) == "finished"]
        assert not sent, f"recorded as sent while NATS was down: {sent}"

        r.nats.start()
        await reconnected(r)
        after = [await r.publish("orders", f"2.{i}.0") for i in range(2)]
        replies = await r.all_finished(waiting + after)
        assert_exactly_once(r, waiting + after, replies)
        assert r.service.alive()


async def test_a_service_restart_during_a_nats_outage_loses_no_reply(tmp_path: Path, nats_server: NatsServer) -> None:
    """The pod is replaced while NATS is away: replies the old process could not deliver come from the new one."""
    async with rig(tmp_path, nats_server) as r:
        await r.cluster.pause()
        waiting = [await r.publish("carts", f"4.{i}.0") for i in range(2)]
        await r.until(lambda: all(r.state.phase(t) == "committed" for t in waiting), "two deployments waiting")
        r.nats.stop()
        r.cluster.resume()
        await r.until(lambda: answered_or_held(r, waiting), "the two deployments are over")
        await r.service.kill9()
        r.nats.start()
        await reconnected(r)
        await r.service.start()
        replies = await r.all_finished(waiting)
        assert_exactly_once(r, waiting, replies)


OUTAGES = 12 if SOAK else 1


async def test_nats_outages_at_random_moments_of_a_busy_service(tmp_path: Path, nats_server: NatsServer) -> None:
    """NATS is stopped at an arbitrary moment while triggers are being received, committed and answered (carts
    waits for the SIMULATED Flux, orders finishes after the push), then started again. CI: 1 outage, soak: 12."""
    rng = random.Random(8)
    async with rig(tmp_path, nats_server) as r:
        ids: list[str] = []
        for outage in range(OUTAGES):
            burst = [await r.publish(("carts", "orders")[i % 2], f"3.{outage}.{i}") for i in range(4)]
            ids += burst
            # a seeded random moment inside the burst, picked by what happened: after 0-7 of its 8 replies
            replies_seen = rng.randrange(8)
            await r.until(lambda b=burst, k=replies_seen: sum(len(r.live.seen[i]) for i in b) >= k, "replies")
            r.nats.stop()
            r.nats.start()
            await reconnected(r)
        replies = await r.all_finished(ids)
        assert_exactly_once(r, ids, replies)
        print(f"\n{OUTAGES} NATS outages, {len(ids)} triggers: each finished exactly once")
