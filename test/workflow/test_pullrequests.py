"""Deploying through a pull request (rules with ``mode: pullRequest``): opened before ``.started``, which names it;
the merge commit waited for like a pushed one; closed, superseded, not merged in time → ``fail``; a restart waits
on and never opens a second one. The forge is in memory here (test/forgesim.py); the same forge calls against a
real Gitea are in test/forges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from forgesim import MemoryForge
from harness import Loop, rollback_of, start_loop, stop_loop, triggered
from support import ConfigRule, git, make_remote, read_remote, service_config, until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.model import Author, PullRequestOptions, Repository
from keptn_gitops_service.forges.model import PullState
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter
from keptn_gitops_service.keptn.data import EventScope
from keptn_gitops_service.state.store import SqliteStateStore
from keptn_gitops_service.workflow.pullrequests import NotMerged, Proposal, PullRequestGate, head_branch
from keptn_gitops_sim.cluster import SimulatedCluster

KS = "apps/dev/carts/kustomization.yaml"
FORGE = "{type: gitea, tokenEnv: FORGE_TOKEN, apiURL: http://forge.invalid/api/v1, path: acme/fleet}"


def pr_config(remote: Path, options: str = "{}") -> str:
    rule = ConfigRule(extra=("mode: pullRequest", f"pullRequest: {options}"))
    return service_config(remote, rule, forge=FORGE)


@pytest.fixture
def forge(tmp_path: Path, cluster: SimulatedCluster) -> MemoryForge:
    return MemoryForge(cluster.remote, tmp_path / "merger")


@pytest.fixture
async def pr_loop(tmp_path: Path, nats_url: str, cluster: SimulatedCluster, forge: MemoryForge) -> AsyncIterator[Loop]:
    running = await start_loop(
        tmp_path, nats_url, cluster=cluster, config=pr_config(cluster.remote), forges=lambda _: forge
    )
    try:
        yield running
    finally:
        await stop_loop(running)


def main(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


async def started(loop: Loop, triggered_id: str) -> dict:  # type: ignore[type-arg]
    await until(lambda: loop.replies_to(triggered_id))
    return loop.replies_to(triggered_id)[0]


async def test_a_deployment_through_a_pull_request_passes_once_its_merge_is_applied(
    pr_loop: Loop, forge: MemoryForge
) -> None:
    before = main(pr_loop.remote)
    event = triggered("docker.io/keptnexamples/carts:0.13.1")
    await pr_loop.publish(event)
    first = await started(pr_loop, event["id"])
    assert first["type"] == "sh.keptn.event.deployment.started"
    branch = head_branch(EventScope("sockshop", "dev", "carts", {}), event["id"])
    assert (
        first["data"]["message"]
        == f"waiting for pull request http://forge.invalid/acme/fleet/pulls/1 ({branch} into main)"
    )
    assert main(pr_loop.remote) == before  # nothing on the deployment branch before the merge
    spec = forge.specs[1]
    assert spec.title == "deploy sockshop/dev/carts to docker.io/keptnexamples/carts:0.13.1"
    assert "Keptn project `sockshop`, stage `dev`, service `carts`" in spec.body
    assert "newTag: 0.13.1" in read_remote(pr_loop.remote, "apps/dev/carts/kustomization.yaml", branch)
    merge = forge.merge_now(1)
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 1)
    finished = await pr_loop.finished(event["id"])
    data = finished["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    assert data["deployment"]["gitCommit"] == merge
    assert data["message"].startswith(f"pull request http://forge.invalid/acme/fleet/pulls/1 merged as {merge[:12]}.")
    assert f"Flux applied commit {merge[:12]}" in data["message"]


async def test_a_pull_request_closed_without_merge_fails_naming_who_closed_it(
    pr_loop: Loop, forge: MemoryForge
) -> None:
    before = main(pr_loop.remote)
    event = triggered("docker.io/keptnexamples/carts:0.13.1")
    await pr_loop.publish(event)
    await started(pr_loop, event["id"])
    forge.close_now(1, by="bob")
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 1)
    data = (await pr_loop.finished(event["id"]))["data"]
    assert (data["status"], data["result"]) == ("succeeded", "fail")
    assert (
        data["message"] == "pull request http://forge.invalid/acme/fleet/pulls/1 was closed by bob without being merged"
    )
    assert main(pr_loop.remote) == before


async def test_a_newer_deployment_supersedes_the_open_pull_request(pr_loop: Loop, forge: MemoryForge) -> None:
    older, newer = triggered("docker.io/keptnexamples/carts:0.13.1"), triggered("docker.io/keptnexamples/carts:0.13.2")
    await pr_loop.publish(older)
    await started(pr_loop, older["id"])
    await pr_loop.publish(newer)
    await started(pr_loop, newer["id"])
    assert forge.pulls[1].state is PullState.CLOSED
    assert forge.comments[1] == [
        "Superseded by http://forge.invalid/acme/fleet/pulls/2: a newer Keptn deployment of this service."
    ]
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 1)
    data = (await pr_loop.finished(older["id"]))["data"]
    assert data["result"] == "fail"
    assert data["message"] == (
        "pull request http://forge.invalid/acme/fleet/pulls/1 was superseded by "
        "http://forge.invalid/acme/fleet/pulls/2 and closed"
    )
    forge.merge_now(2)
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 2)
    assert (await pr_loop.finished(newer["id"]))["data"]["result"] == "pass"


async def test_a_rollback_opens_a_revert_pull_request_the_same_way(pr_loop: Loop, forge: MemoryForge) -> None:
    original = read_remote(pr_loop.remote, KS)
    event = triggered("docker.io/keptnexamples/carts:0.13.1")
    await pr_loop.publish(event)
    await started(pr_loop, event["id"])
    forge.merge_now(1)
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 1)
    assert (await pr_loop.finished(event["id"]))["data"]["result"] == "pass"
    assert read_remote(pr_loop.remote, KS) != original
    rollback = rollback_of(event)
    await pr_loop.publish(rollback)
    first = await started(pr_loop, rollback["id"])
    assert first["type"] == "sh.keptn.event.rollback.started"
    assert first["data"]["message"].startswith("waiting for pull request http://forge.invalid/acme/fleet/pulls/2 (")
    assert forge.specs[2].title == "rollback sockshop/dev/carts"
    assert read_remote(pr_loop.remote, KS) != original  # nothing is rolled back before the merge
    revert = forge.merge_now(2)
    pr_loop.service.pull_requests.wakeups.wake("acme/fleet", 2)
    data = (await pr_loop.finished(rollback["id"]))["data"]
    assert (data["status"], data["result"]) == ("succeeded", "fail"), data["message"]  # the echoed result
    assert f"with commit {revert[:12]}" in data["message"]
    assert read_remote(pr_loop.remote, KS) == original


async def test_auto_merge_merges_through_the_forge_once_it_is_mergeable(
    tmp_path: Path, nats_url: str, cluster: SimulatedCluster, forge: MemoryForge
) -> None:
    loop = await start_loop(
        tmp_path,
        nats_url,
        cluster=cluster,
        config=pr_config(cluster.remote, "{autoMerge: true, mergeMethod: squash}"),
        forges=lambda _: forge,
    )
    try:
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        await started(loop, event["id"])
        forge.mergeable = True  # required checks and approvals in place
        loop.service.pull_requests.wakeups.wake("acme/fleet", 1)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass", data["message"]
        assert forge.pulls[1].state is PullState.MERGED and forge.pulls[1].closed_by == "keptn-bot"
    finally:
        await stop_loop(loop)


async def test_a_restart_waits_on_the_same_pull_request_and_a_forge_outage_is_waited_out(
    tmp_path: Path, nats_url: str, cluster: SimulatedCluster, forge: MemoryForge
) -> None:
    config = pr_config(cluster.remote)
    loop = await start_loop(tmp_path, nats_url, cluster=cluster, config=config, forges=lambda _: forge)
    event = triggered("docker.io/keptnexamples/carts:0.13.1")
    try:
        await loop.publish(event)
        await started(loop, event["id"])
    finally:
        await loop.service.stop()  # the process ends; the cluster stays
        await loop._nc.close()
    forge.failures = 2  # the forge answers 502 for a while
    again = await start_loop(tmp_path, nats_url, cluster=cluster, config=config, forges=lambda _: forge)
    try:
        await until(lambda: forge.failures == 0)
        merge = forge.merge_now(1)
        again.service.pull_requests.wakeups.wake("acme/fleet", 1)
        data = (await again.finished(event["id"]))["data"]
        assert data["result"] == "pass" and data["deployment"]["gitCommit"] == merge
        assert forge.opened == 1
        assert [r["type"] for r in again.replies_to(event["id"])] == ["sh.keptn.event.deployment.finished"]
    finally:
        await stop_loop(again)


async def test_a_pull_request_not_merged_in_time_is_closed_and_fails(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"values.yaml": "tag: 1\n"})
    repository = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    forge = MemoryForge(remote, tmp_path / "merger")
    clock = ManualClock()
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    await store.open()
    writer = GitWriter(tmp_path / "state")
    gate = PullRequestGate(writer, lambda _: forge, store, clock)
    options = PullRequestOptions(timeout=timedelta(minutes=10), poll_interval=timedelta(minutes=1))
    change = Change(
        repository,
        (FileEdit("values.yaml", lambda text: text.replace("1", "2")),),
        "deploy\n\nKeptn-Triggered-Id: t1\n",
        ("Keptn-Triggered-Id", "t1"),
    )
    try:
        proposal = await gate.open(change, EventScope("p", "s", "svc", {}), "t1", "ctx", options)
        assert isinstance(proposal, Proposal) and proposal.number == 1
        waiting = asyncio.create_task(gate.merged(repository, proposal, options))
        for _ in range(10):  # 2, 4, 8 … s, then every minute, until ten minutes have passed
            await until(lambda: clock.sleepers == 1 or waiting.done())
            if waiting.done():
                break
            clock.advance(60)
        outcome = await waiting
        assert isinstance(outcome, NotMerged) and outcome.timed_out
        assert (
            outcome.message
            == "pull request http://forge.invalid/acme/fleet/pulls/1 was not merged within 10m; it was closed"
        )
        assert forge.pulls[1].state is PullState.CLOSED
        assert forge.comments[1] == [
            "Closed by keptn-gitops-service: not merged within 10m, so the Keptn deployment failed."
        ]
    finally:
        await writer.close()
        await store.close()
