"""Shutdown and outages, from outside the process (issue 8, part 4): SIGTERM leaves in-flight work for the next
process and exits within the chart's grace period; an unreachable git remote or Kubernetes API ends the
deployment with a clear errored/fail — never a hang past the configured timeout — and the service recovers."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import start_loop, stop_loop, triggered
from reliability.rig import SAFETY, Replies, descendants, overtaken, rig
from support import git, until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.model import Author, NoAuth
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.git import Git
from keptn_gitops_sim.natsd import NatsServer

ROOT = Path(__file__).resolve().parents[2]
CHART_GRACE = float(yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())["terminationGracePeriodSeconds"])


def assert_exactly_once(replies: Replies, ids: list[str]) -> None:
    wrong = {i: replies.kinds(i) for i in ids if replies.kinds(i) != ["started", "finished"]}
    assert not wrong, f"replies in Keptn's stream: {wrong}"


def outcome(replies: Replies, triggered_id: str) -> dict[str, Any]:
    finished = replies.finished(triggered_id)
    assert finished is not None
    return dict(finished["data"])


def waited(replies: Replies, triggered_id: str) -> float:
    """Seconds between the service's ``.started`` and ``.finished`` (their own timestamps)."""
    events = replies.by_trigger[triggered_id]
    started, finished = (datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events[:2])
    return (finished - started).total_seconds()


@pytest.mark.parametrize(
    "flux",
    [
        "applies during the drain",
        "stays paused",  # the drain runs out (10 s)
    ],
)
@pytest.mark.jetstream
async def test_sigterm_drains_leaves_unfinished_work_to_the_next_process_and_exits_in_time(
    tmp_path: Path,
    flux: str,
    nats_server: NatsServer,
) -> None:
    """SIGTERM with two deployments waiting for Flux: if Flux applies within the service's drain they finish before
    the exit; if it does not, the drain ends, the work stays in the state store, and the next process finishes it.
    Either way the exit is clean and within the chart's terminationGracePeriodSeconds, and a trigger published
    while no process runs is answered by the next one."""
    async with rig(tmp_path, nats_server) as r:
        await r.cluster.pause()
        waiting = [await r.publish("carts", f"5.{i}.0") for i in range(2)]
        await r.until(lambda: all(r.state.phase(t) == "committed" for t in waiting), "two deployments waiting")

        began = time.monotonic()
        r.service.sigterm()
        if flux == "applies during the drain":
            r.cluster.resume()
        code = await r.service.exited()
        took = time.monotonic() - began
        print(f"\nSIGTERM, 2 deployments waiting, Flux {flux}: exit code {code} after {took:.1f}s")
        assert code == 0, r.service.log_tail()
        assert took < CHART_GRACE, f"exited after {took:.0f}s, the chart grants {CHART_GRACE:.0f}s"
        if flux == "applies during the drain":
            assert [r.state.phase(t) for t in waiting] == ["finished", "finished"]
        else:
            assert [r.state.phase(t) for t in waiting] == ["committed", "committed"]
            assert all(r.live.seen[t] == ["started"] for t in waiting), dict(r.live.seen)

        sent_while_down = await r.publish("orders", "5.9.0")
        r.cluster.resume()
        await r.service.start()
        replies = await r.all_finished([*waiting, sent_while_down])
        assert_exactly_once(replies, [*waiting, sent_while_down])
        assert outcome(replies, sent_while_down)["result"] == "pass"
        # the two carts deployments were in flight together: the one Flux applied passes, the other was overtaken
        assert all(outcome(replies, t)["result"] == "pass" or overtaken(replies.finished(t)) for t in waiting)
        assert "pass" in {outcome(replies, t)["result"] for t in waiting}


@pytest.mark.jetstream
async def test_an_unreachable_git_remote_fails_the_deployment_clearly_and_the_service_recovers(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with rig(tmp_path, nats_server) as r:
        before = await r.publish("orders", "6.0.0")
        await r.live.wait_for(before, "finished")
        away = r.remote.path.with_name("remote.git.away")
        r.remote.path.rename(away)
        try:
            lost = await r.publish("orders", "6.1.0")
            await r.live.wait_for(lost, "finished")
        finally:
            away.rename(r.remote.path)
        after = await r.publish("orders", "6.2.0")
        replies = await r.all_finished([before, lost, after])

        assert_exactly_once(replies, [before, lost, after])
        data = outcome(replies, lost)
        print(f"\nremote gone: {data['status']}/{data['result']}: {data['message']}")
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith("git "), data["message"]
        assert r.remote.commits_for(lost) == []
        assert outcome(replies, before)["result"] == outcome(replies, after)["result"] == "pass"


@pytest.mark.jetstream
async def test_the_kubernetes_api_refusing_or_gone_ends_the_wait_clearly_and_the_service_recovers(
    tmp_path: Path,
    nats_server: NatsServer,
) -> None:
    """The rules wait 2s (configured); the shipyard task property ``timeout: 2m`` gives the other triggers room."""
    async with rig(tmp_path, nats_server, timeout="2s") as r:
        kube = r.cluster.kube
        kube.deny("kustomizations", verbs=["list", "watch"])
        denied = await r.publish("carts", "7.0.0", timeout="2m")
        await r.live.wait_for(denied, "finished")  # SAFETY (90s) < 2m: a refused list must not wait for the timeout
        kube.clear_denials()
        allowed = await r.publish("carts", "7.1.0", timeout="2m")
        await r.live.wait_for(allowed, "finished")

        await kube.stop()
        try:
            gone = await r.publish("carts", "7.2.0")
            await r.live.wait_for(gone, "finished")
        finally:
            await kube.start()
        back = await r.publish("carts", "7.3.0", timeout="2m")
        ids = [denied, allowed, gone, back]
        replies = await r.all_finished(ids)

        assert_exactly_once(replies, ids)
        refused, unreachable = outcome(replies, denied), outcome(replies, gone)
        print(
            f"\nRBAC 403: {refused['message']}\nAPI gone: {unreachable['message']} (after {waited(replies, gone):.1f}s)"
        )
        assert (refused["status"], refused["result"]) == ("errored", "fail")
        assert "403" in refused["message"], refused["message"]
        assert (unreachable["status"], unreachable["result"]) == ("errored", "fail")
        # gone before the commit: the read of the wait target fails, nothing is committed (a 2s wait is not needed)
        assert unreachable["message"].startswith("cannot read Kustomization sockshop-dev/carts: ConnectError: ")
        assert unreachable["message"].endswith("; nothing was committed (rules[1].wait is checked before the commit)")
        assert outcome(replies, allowed)["result"] == outcome(replies, back)["result"] == "pass"


async def test_with_a_controlled_clock_an_unreachable_api_ends_the_wait_exactly_at_the_timeout(
    tmp_path: Path, nats_url: str
) -> None:
    clock = ManualClock()
    loop = await start_loop(tmp_path, nats_url, clock=clock, run_flux=False)  # the rule waits 2m
    try:
        before = git("rev-parse", "main", cwd=loop.remote).strip()
        event = triggered("docker.io/keptnexamples/carts:0.70.0")
        await loop.publish(event)
        # the API goes away once the commit is pushed (before it, the check of the wait target would fail at once)
        await until(lambda: git("rev-parse", "main", cwd=loop.remote).strip() != before, timeout=60)
        await loop.kube.stop()
        await until(lambda: clock.sleepers > 0 and loop.replies_to(event["id"]), timeout=60)
        clock.advance(119.9)
        assert clock.sleepers > 0  # the wait is still asleep on the clock: nothing has timed out
        assert [r["type"] for r in loop.replies_to(event["id"])] == ["sh.keptn.event.deployment.started"]
        clock.advance(0.1)
        finished = await loop.finished(event["id"])
        assert finished["data"]["result"] == "fail"
        assert finished["data"]["message"].startswith("timed out after 2m0s waiting for Flux to apply commit")
    finally:
        await stop_loop(loop)


def silent_remote(path: Path) -> Path:
    """A "repository" whose HEAD is a FIFO nobody writes: git's helper (``git-upload-pack``) blocks opening it, the
    way a remote that accepts the connection and never answers holds ``ssh`` or ``git-remote-https``."""
    path.mkdir()
    os.mkfifo(path / "HEAD")
    (path / "objects").mkdir()
    (path / "refs").mkdir()
    return path


async def test_a_git_command_against_a_silent_remote_ends_at_its_time_limit(tmp_path: Path) -> None:
    """The limit must hold although git's helper process, which holds git's pipes, is still blocked."""
    runner = Git(auth=NoAuth(), author=Author(), helper_dir=tmp_path / "home", timeout=1)
    remote = silent_remote(tmp_path / "silent.git")
    with pytest.raises(GitError, match="did not finish within 1s"):
        await asyncio.wait_for(runner.run("ls-remote", f"file://{remote}"), SAFETY)
    helpers = [pid for pid in descendants(os.getpid()) if "upload-pack" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert helpers == [], "git's helper outlived the time limit"


@pytest.mark.jetstream
async def test_a_silent_git_remote_is_bounded_by_the_git_command_timeout(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """The remote never answers, so git blocks until the service's per-command limit (KEPTN_GITOPS_GIT_TIMEOUT,
    300 s by default, here 3 s; not the rule's wait.timeout)."""
    async with rig(tmp_path, nats_server, extra_env={"KEPTN_GITOPS_GIT_TIMEOUT": "3"}) as r:
        stalled = r.remote.path.with_name("remote.git.stalled")
        r.remote.path.rename(stalled)
        silent_remote(r.remote.path)
        try:
            hung = await r.publish("orders", "8.0.0")
            await r.live.wait_for(hung, "finished", timeout=60)
        finally:
            (r.remote.path / "HEAD").unlink()
            for sub in ("objects", "refs"):
                (r.remote.path / sub).rmdir()
            r.remote.path.rmdir()
            stalled.rename(r.remote.path)
        replies = await r.all_finished([hung])
        data = outcome(replies, hung)
        print(
            f"\nsilent remote: after {waited(replies, hung):.0f}s {data['status']}/{data['result']}: {data['message']}"
        )
        assert (data["status"], data["result"]) == ("errored", "fail")
