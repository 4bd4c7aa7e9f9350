"""Three replicas sharing the JetStream state store, killed at random (issue 8, part 3).

Three service processes (``KEPTN_GITOPS_STATE_STORE=jetstream``, a 2 s lease) share Keptn's stream through one
durable consumer and one key-value bucket. Every round deploys ``carts`` (waits for the SIMULATED Flux) and
``orders`` (finishes after the push) — one deployment per service at a time, as Keptn's shipyard-controller
sequences a service's deliveries — and in most rounds ``kill -9`` hits a random replica at a random moment. The
killed replica comes back either as the same pod (same name and volume: it resumes its own records at start) or
as a new pod (new name, new empty volume: a survivor takes its records over once their lease expires). In the end
Keptn's stream must hold exactly one ``.started`` and one ``.finished`` for every trigger, and the remote exactly
one commit per trigger. With the SQLite store instead, the new-pod restarts lose work and this test fails.

CI: 6 rounds; ``KGS_SOAK=1``: 30.

A second case bounds recovery by the lease: two of three replicas are frozen, twelve triggers are published (the
frozen ones are delivered some of them, which they never record) and the two are killed. Every trigger must be
finished exactly once within a few leases of the kill — JetStream's ack wait is the lease, not a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path
from typing import Any

import nats
import pytest
from harness import overlay
from nats.aio.client import Client
from reliability.rig import (
    CONSUMER,
    KEPTN_STREAM,
    SOAK,
    Remote,
    ServiceProcess,
    create_keptn_stream,
    freeze_tree,
    publish_to_stream,
    read_replies,
    service_env,
    simulated_cluster,
    write_config,
)
from support import NO_WAIT, git, make_remote, service_config

from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.natsd import NatsServer
from keptn_gitops_sim.runner import shipyard_trigger

pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream

ROUNDS = 30 if SOAK else 6
LEASE = "2"


def trigger(service: str, tag: str) -> dict[str, object]:
    event = shipyard_trigger(f"docker.io/keptnexamples/{service}:{tag}")
    event["data"]["service"] = service
    return event


async def test_three_replicas_killed_at_random_answer_every_trigger_exactly_once(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    rng = random.Random(20261121)
    server = nats_server
    cluster: SimulatedCluster | None = None
    replicas: list[ServiceProcess] = []
    nc = None
    try:
        await create_keptn_stream(server.url)
        remote = Remote(tmp_path)
        cluster = simulated_cluster(remote)
        await cluster.start(tmp_path / "kubeconfig")
        config = write_config(tmp_path / "gitops.yaml", remote.url)
        for i in range(3):
            root = tmp_path / f"replica-{i}"
            root.mkdir()
            env = service_env(root, server.url, config, tmp_path / "kubeconfig")
            env |= {"KEPTN_GITOPS_STATE_STORE": "jetstream", "KEPTN_GITOPS_STATE_LEASE": LEASE}
            env["K8S_POD_NAME"] = f"pod-{i}-0"
            replicas.append(ServiceProcess(root, env))
        await asyncio.gather(*(r.start() for r in replicas))
        nc = await nats.connect(server.url)
        live = ReplyCounter()
        await nc.subscribe("sh.keptn.event.*.*", cb=live.record)

        ids: list[str] = []
        kills = restarts_as_new_pod = 0
        for round_ in range(ROUNDS):
            events = [trigger("carts", f"1.{round_}.0"), trigger("orders", f"2.{round_}.0")]
            round_ids = {str(e["id"]) for e in events}
            for event in events:
                await publish_to_stream(nc, event)
                ids.append(str(event["id"]))
            if rng.random() < 0.8:
                # the moment: after 0-3 of the round's 4 replies (started and finished of both triggers) were seen
                await live.until_seen(round_ids, rng.randrange(4))
                victim = rng.choice(replicas)
                await victim.kill9()
                kills += 1
                if rng.random() < 0.5:  # a new pod, with a new empty volume: only a survivor can finish its work
                    pod = f"pod-{replicas.index(victim)}-{victim.generation}"
                    victim.env["K8S_POD_NAME"] = pod
                    victim.env["KEPTN_GITOPS_STATE_DIR"] = str(victim.root / pod)
                    restarts_as_new_pod += 1
                await victim.start()
            await until_finished(nc, [str(e["id"]) for e in events], replicas)

        replies = await read_replies(nc)
        commits = remote.commits_by_trigger()
        for triggered_id in ids:
            assert replies.kinds(triggered_id) == ["started", "finished"], (triggered_id, replies.kinds(triggered_id))
            finished = replies.finished(triggered_id)
            assert finished is not None and finished["data"]["result"] == "pass", finished
            assert len(commits.get(triggered_id, [])) == 1, (triggered_id, commits.get(triggered_id))
        assert kills >= ROUNDS // 2 and restarts_as_new_pod >= 1  # the seed does kill, both ways
        print(f"\nreplicas: {ROUNDS} rounds, {len(ids)} triggers, {kills} kills ({restarts_as_new_pod} as new pods)")
    finally:
        for replica in replicas:
            replica.stop_now()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        if cluster is not None:
            await cluster.stop()


class ReplyCounter:
    """Counts the replies seen on core NATS, to pick a kill moment by what has happened, not by the clock."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    async def record(self, msg: Any) -> None:
        if msg.subject.endswith((".started", ".finished")):
            self.seen.append(str(json.loads(msg.data).get("triggeredid")))
            self._changed.set()

    def count(self, ids: set[str]) -> int:
        return sum(1 for i in self.seen if i in ids)

    async def until_seen(self, ids: set[str], at_least: int, timeout: float = 90) -> None:
        async def wait() -> None:
            while self.count(ids) < at_least:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def until_finished(nc: Client, ids: list[str], replicas: list[ServiceProcess], timeout: float = 90) -> None:
    """Until the stream holds a ``.finished`` for every id (the Flux simulation runs in this loop meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        replies = await read_replies(nc)
        if all(replies.finished(i) is not None for i in ids):
            return
        if loop.time() > deadline:
            tails = "\n---\n".join(r.log_tail(15) for r in replicas)
            raise AssertionError(f"not finished within {timeout:.0f}s: {ids}\n{tails}")
        await asyncio.sleep(0.1)


RECOVERY_LEASE = 3.0
"""``KEPTN_GITOPS_STATE_LEASE`` of the recovery case (seconds)."""
OLD_ACK_WAIT = 60.0
"""What earlier versions created their durable consumer with."""


async def test_triggers_a_killed_replica_had_fetched_are_answered_within_a_few_leases(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    server = nats_server
    replicas: list[ServiceProcess] = []
    nc = None
    try:
        # the consumer as an earlier version left it: the service must shorten its ack wait to the lease
        await create_keptn_stream(server.url, ack_wait=OLD_ACK_WAIT)
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        services = [f"svc{i:02d}" for i in range(12)]
        remote = make_remote(tmp_path, {f"apps/dev/{s}/kustomization.yaml": overlay(s) for s in services})
        config = tmp_path / "gitops.yaml"
        config.write_text(service_config(remote, NO_WAIT))
        for i in range(3):
            root = tmp_path / f"replica-{i}"
            root.mkdir()
            env = service_env(root, server.url, config, tmp_path / "no-kubeconfig")  # wait none: no cluster
            env |= {"KEPTN_GITOPS_STATE_STORE": "jetstream", "KEPTN_GITOPS_STATE_LEASE": str(RECOVERY_LEASE)}
            env["K8S_POD_NAME"] = f"pod-{i}"
            replicas.append(ServiceProcess(root, env))
        await asyncio.gather(*(r.start() for r in replicas))
        assert (await js.consumer_info(KEPTN_STREAM, CONSUMER)).config.ack_wait == RECOVERY_LEASE

        finished_at: dict[str, float] = {}
        loop = asyncio.get_running_loop()

        async def record(msg: Any) -> None:
            finished_at.setdefault(str(json.loads(msg.data).get("triggeredid")), loop.time())

        await nc.subscribe("sh.keptn.event.deployment.finished", cb=record)
        victims = replicas[:2]
        for victim in victims:  # the kill lands now: what they fetch from here on is never recorded
            freeze_tree(victim.pid)
        events = [trigger_for(s) for s in services]
        for event in events:
            await publish_to_stream(nc, event)
        while (await js.consumer_info(KEPTN_STREAM, CONSUMER)).num_pending:  # every trigger went to a replica
            await asyncio.sleep(0.05)
        killed = loop.time()
        for victim in victims:
            await victim.kill9()
        ids = [str(e["id"]) for e in events]
        await until_finished(nc, ids, replicas[2:], timeout=30 * RECOVERY_LEASE)

        replies = await read_replies(nc)
        commits = git("log", "main", "--format=%B", cwd=remote)
        for triggered_id in ids:
            assert replies.kinds(triggered_id) == ["started", "finished"], (triggered_id, replies.kinds(triggered_id))
            finished = replies.finished(triggered_id)
            assert finished is not None and finished["data"]["result"] == "pass", finished
            assert commits.count(f"Keptn-Triggered-Id: {triggered_id}") == 1, triggered_id
        delivered = (await js.consumer_info(KEPTN_STREAM, CONSUMER)).delivered
        redelivered = int(delivered.consumer_seq or 0) - len(ids)  # the consumer counts every delivery
        assert redelivered >= 1, "the frozen replicas were delivered nothing: the case tested nothing"
        after_kill = sorted(max(0.0, finished_at[i] - killed) for i in ids)
        print(
            f"\nrecovery: lease {RECOVERY_LEASE:.0f}s, {redelivered} deliveries to the killed replicas repeated; "
            f"finished after the kill (s): {', '.join(f'{t:.1f}' for t in after_kill)}"
        )
        # redelivery comes after the ack wait (the lease); the bound is generous: the old ack wait was 60 s
        assert after_kill[-1] <= 4 * RECOVERY_LEASE, after_kill
        empty = [r for replica in replicas[2:] for r in replica.logs() if r.get("error") == ""]
        assert not empty, f"a logged error does not say what failed: {empty[:3]}"
    finally:
        for replica in replicas:
            replica.stop_now()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


def trigger_for(service: str) -> dict[str, object]:
    event = shipyard_trigger(f"docker.io/keptnexamples/{service}:2.0.0")
    event["data"]["service"] = service
    return event
