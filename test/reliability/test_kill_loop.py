"""``kill -9`` at every stage of a deployment, restart, and in the end every trigger has exactly one ``.started``,
exactly one ``.finished`` and exactly one commit (issue 8, part 2) — with either state store.

Each trial publishes one trigger and kills the service with every process it started (a pod kill) at one stage,
chosen by what can be seen from outside, so the same loop runs against both stores:

* ``received``  — JetStream's ack floor passed the trigger (the service acks once the trigger is in its store),
  then a kill 0-100 ms later (before or after ``.started``, during the fetch, the edit or the local commit);
* ``committed`` — the commit is made and its push is held by the remote's pre-receive hook (not on the remote);
* ``pushed``    — the push landed and is held in the post-receive hook (on the remote, not yet recorded);
* ``waiting``   — the SIMULATED Flux is paused and the service asked the Kubernetes API for a reconcile, which a
  wait does right after recording the commit (carts waits for Flux);
* ``finishing`` — the moment ``.finished`` is seen on NATS (the window between publishing and recording it).

Then the service is started again and must finish the trigger. Odd trials of every stage but ``waiting`` deploy
``orders``, whose rule finishes right after the push (``wait: none``). CI: 10 trials (2 per stage) with the
SQLite store and 5 with the JetStream key-value store; ``KGS_SOAK=1``: 60 (12 per stage) with each.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from reliability.rig import SOAK, Replies, Rig, all_hooks_released, rig

from keptn_gitops_sim.natsd import NatsServer

pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream

STAGES = ("received", "committed", "pushed", "waiting", "finishing")
TRIALS = {"sqlite": 60 if SOAK else 10, "jetstream": 60 if SOAK else 5}
RECEIVED_KILL_OFFSETS = (0.0, 0.02, 0.05, 0.1)


@dataclass
class Trial:
    number: int
    stage: str
    service: str
    triggered_id: str
    phase_at_kill: str | None

    def describe(self) -> str:
        return (
            f"trial {self.number} (stage {self.stage}, service {self.service}, state at kill "
            f"{self.phase_at_kill or 'nothing recorded'}, trigger {self.triggered_id})"
        )


async def kill_at(r: Rig, number: int, stage: str) -> Trial:
    service = "carts" if stage == "waiting" or number % 2 == 0 else "orders"
    if stage == "committed":
        r.remote.block("pre-receive")
    elif stage == "pushed":
        r.remote.block("post-receive")
    elif stage == "waiting":
        await r.cluster.pause()
    with all_hooks_released(r.remote):
        patches = r.reconcile_requests()
        tid = await r.publish(service, f"1.{number}.0")
        if stage == "received":
            await r.until_recorded(tid)
            # Not time logic: it only spreads the kill over .started, the fetch, the edit and the local commit.
            await asyncio.sleep(RECEIVED_KILL_OFFSETS[number // len(STAGES) % len(RECEIVED_KILL_OFFSETS)])
        elif stage == "committed":
            await r.until(lambda: r.remote.entered("pre-receive"), "the push reached the remote's pre-receive hook")
        elif stage == "pushed":
            await r.until(lambda: r.remote.entered("post-receive"), "the push reached the remote's post-receive hook")
        elif stage == "waiting":
            await r.until(lambda: r.reconcile_requests() > patches, f"{tid} waiting for Flux")
        else:
            await r.live.wait_for(tid, "finished")
        await r.service.kill9()
    trial = Trial(number, stage, service, tid, r.state.phase(tid) if r.store == "sqlite" else "not read")
    if stage == "waiting":
        r.cluster.resume()
    await r.service.start()
    await r.live.wait_for(tid, "finished")
    return trial


def problems(r: Rig, trials: list[Trial], replies: Replies) -> list[str]:
    found = []
    for trial in trials:
        tid = trial.triggered_id
        kinds = replies.kinds(tid)
        commits = r.remote.commits_for(tid)
        finished = replies.finished(tid)
        if kinds != ["started", "finished"]:
            found.append(f"{trial.describe()}: replies {kinds}")
        if len(commits) != 1:
            found.append(f"{trial.describe()}: {len(commits)} commits in the remote")
        if finished is not None:
            data = finished["data"]
            if data.get("result") != "pass":
                found.append(
                    f"{trial.describe()}: finished {data.get('status')}/{data.get('result')}: {data['message']}"
                )
            elif commits and data.get("deployment", {}).get("gitCommit") != commits[0]:
                found.append(f"{trial.describe()}: finished names {data['deployment'].get('gitCommit')}, not {commits}")
    return found


@pytest.mark.parametrize("store", ["sqlite", "jetstream"])
async def test_kill_nine_at_every_stage_loses_nothing_and_repeats_nothing(
    tmp_path: Path, store: str, nats_server: NatsServer
) -> None:
    async with rig(tmp_path, nats_server, hooks=True, store=store) as r:
        trials = [await kill_at(r, number, STAGES[number % len(STAGES)]) for number in range(TRIALS[store])]
        replies = await r.all_finished(r.published)
        found = problems(r, trials, replies)
        phases = Counter(f"{t.stage}:{t.phase_at_kill}" for t in trials)
        print(f"\nkill loop, {store} store: {len(trials)} trials, state at kill: {dict(sorted(phases.items()))}")
        print(f"remote: {r.remote.commit_count() - 1} deployment commits for {len(trials)} triggers")
        resent = [t.describe() for t in trials if len(r.live.seen[t.triggered_id]) > 2]
        print(f"replies re-sent on resume (seen twice by core-NATS subscribers, once in the stream): {len(resent)}")
        assert not found, "\n".join(found)


async def test_the_locks_of_a_git_killed_mid_command_do_not_block_the_next_process(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """What a ``kill -9`` during ``git fetch`` or ``git checkout`` leaves in the service's working clone (found by the
    loop above at random moments; planted here): the next process must deploy, not fail on "unable to update local
    ref ... remove the file manually to continue"."""
    async with rig(tmp_path, nats_server) as r:
        first = await r.publish("orders", "2.0.0")
        await r.live.wait_for(first, "finished")
        await r.service.kill9()
        clones = [git_dir for git_dir in (tmp_path / "state").rglob(".git") if git_dir.is_dir()]
        assert clones, "the service made no working clone"
        for git_dir in clones:
            for lock in ("index.lock", "HEAD.lock", "packed-refs.lock", "refs/remotes/origin/main.lock"):
                (git_dir / lock).write_text("")
        await r.service.start()
        after = [await r.publish("orders", "2.1.0"), await r.publish("carts", "2.1.0")]
        replies = await r.all_finished([first, *after])
        assert {
            i: (replies.finished(i) or {}).get("data", {}).get("message")
            for i in after
            if (replies.finished(i) or {}).get("data", {}).get("result") != "pass"
        } == {}
