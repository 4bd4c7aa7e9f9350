"""N deployments through one long-running service process, with its open file descriptors, child processes and
resident memory sampled from /proc every k deployments (issue 8, part 5). CI: N=100, k=10; ``KGS_SOAK=1``:
N=1,000, k=50 (the figures in docs/reliability.md); ``KGS_SOAK_DEPLOYMENTS`` sets N.

Half the deployments (``carts``) wait for the SIMULATED Flux through the Kubernetes watch, half (``orders``)
finish after the push; five are in flight at a time. Samples are taken when the service is idle (every trigger
so far finished), so git children that are still running cannot be mistaken for leaked ones.

"Flat" is judged by growth against the sample after the warm-up (the first 10%: clone, watch, connection
pools), never by time: file descriptors may not grow by more than :data:`FD_SLACK`, no child process may be left,
and the resident set may not grow by more than :data:`RSS_SLACK_MIB` plus :data:`RSS_SLACK_PER_DEPLOYMENT_KIB`
per deployment after the warm-up. The fixed slack covers SQLite's page cache, which grows by about 1 KiB per
state record until its 2 MiB limit (about 2,000 records), and allocator noise; a leak of 3 KiB per deployment
fails the 1,000 run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from reliability.rig import SOAK, descendants, overtaken, rig

from keptn_gitops_sim.natsd import NatsServer

pytestmark = pytest.mark.jetstream  # the nats_server fixture (test/conftest.py) runs JetStream

N = int(os.environ.get("KGS_SOAK_DEPLOYMENTS") or (1000 if SOAK else 100))
EVERY = 50 if SOAK else 10
IN_FLIGHT = 5
FD_SLACK = 4
RSS_SLACK_MIB = 4.0
RSS_SLACK_PER_DEPLOYMENT_KIB = 1.0


@dataclass(frozen=True)
class Sample:
    deployments: int
    fds: int
    children: int
    rss_kib: int


def sample(pid: int, deployments: int) -> Sample:
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return Sample(deployments, fds, len(descendants(pid)), rss)


def flat(samples: list[Sample]) -> list[str]:
    warm = next(s for s in samples if s.deployments >= N // 10)
    problems = []
    for s in samples:
        if s.children:
            problems.append(f"{s.children} child processes left at {s.deployments} deployments")
        if s.deployments < warm.deployments:
            continue
        if s.fds > warm.fds + FD_SLACK:
            problems.append(f"{s.fds} open fds at {s.deployments} deployments, {warm.fds} after the warm-up")
        allowed = (
            warm.rss_kib + RSS_SLACK_MIB * 1024 + RSS_SLACK_PER_DEPLOYMENT_KIB * (s.deployments - warm.deployments)
        )
        if s.rss_kib > allowed:
            problems.append(
                f"RSS {s.rss_kib / 1024:.1f} MiB at {s.deployments} deployments, {warm.rss_kib / 1024:.1f} MiB "
                f"after the warm-up (allowed {allowed / 1024:.1f} MiB)"
            )
    return problems


async def test_soak_file_descriptors_children_and_memory_stay_flat(tmp_path: Path, nats_server: NatsServer) -> None:
    async with rig(tmp_path, nats_server) as r:
        pid = r.service.pid
        # the start-up checks' git ls-remote runs right after start: the baseline is taken once it is done
        await r.until(lambda: not descendants(pid), "no git child running")
        samples = [sample(pid, 0)]
        ids: list[str] = []
        while len(ids) < N:
            batch = [
                await r.publish(("carts", "orders")[n % 2], f"9.{n}.0") for n in range(len(ids), len(ids) + IN_FLIGHT)
            ]
            for triggered_id in batch:
                await r.live.wait_for(triggered_id, "finished")
            ids += batch
            if len(ids) % EVERY == 0:
                await r.until(lambda: not descendants(pid), "no git child running")  # idle: the batch is answered
                samples.append(sample(pid, len(ids)))
        replies = await r.all_finished(ids)

        print(f"\nsoak: {N} deployments through one process (pid {pid}), sampled every {EVERY}")
        print(f"{'deployments':>11} {'open fds':>8} {'children':>8} {'RSS MiB':>8}")
        for s in samples:
            print(f"{s.deployments:>11} {s.fds:>8} {s.children:>8} {s.rss_kib / 1024:>8.1f}")
        warm = next(s for s in samples if s.deployments >= N // 10)
        last = samples[-1]
        print(
            f"after warm-up ({warm.deployments}) → end ({last.deployments}): fds {warm.fds} → {last.fds}, "
            f"RSS {warm.rss_kib / 1024:.1f} → {last.rss_kib / 1024:.1f} MiB "
            f"({(last.rss_kib - warm.rss_kib) / max(1, last.deployments - warm.deployments):+.2f} KiB/deployment)"
        )
        wrong = {i: replies.kinds(i) for i in ids if replies.kinds(i) != ["started", "finished"]}
        assert not wrong, wrong
        failed = [
            i for i in ids if ((f := replies.finished(i)) is None or f["data"]["result"] != "pass") and not overtaken(f)
        ]
        assert not failed, [replies.finished(i) for i in failed[:3]]
        commits = r.remote.commits_by_trigger()
        assert {i: len(commits.get(i, [])) for i in ids} == dict.fromkeys(ids, 1)
        problems = flat(samples)
        assert not problems, "\n".join(problems)
