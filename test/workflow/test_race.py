"""No lost update: 200 deployments for 200 services at once, while another bot keeps pushing to the branch."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from pathlib import Path

from harness import overlay, start_loop, stop_loop, triggered
from support import NO_WAIT, GitCommandError, git, push_unrelated, service_config, until

SERVICES = [f"svc{i:03d}" for i in range(200)]


async def test_200_deployments_and_an_external_pusher_lose_nothing(tmp_path: Path, nats_url: str) -> None:
    files = {f"apps/dev/{s}/kustomization.yaml": overlay(s) for s in SERVICES}
    remote_path = tmp_path / "remote.git"
    loop = await start_loop(
        tmp_path, nats_url, files=files, run_flux=False, config=service_config(remote_path, NO_WAIT)
    )
    stop = threading.Event()
    pushed: list[str] = []

    def other_bot() -> None:
        """A busy bot: a push every 0.05-0.3 s (image automation bots push every minute or so); 200 deployments
        take about a second, so it must push often to push while they are written."""
        rng = random.Random(3)
        work = tmp_path / "bot"
        while not stop.is_set():
            try:
                push_unrelated(loop.remote, work, f"n{len(pushed)}")
            except GitCommandError:  # it lost a race against us: start again from the new tip
                git("fetch", "--quiet", "origin", cwd=work)
                git("reset", "--quiet", "--hard", "origin/main", cwd=work)
                continue
            pushed.append(f"n{len(pushed)}")
            stop.wait(rng.uniform(0.05, 0.3))

    bot = threading.Thread(target=other_bot)
    bot.start()
    try:
        await until(lambda: pushed)  # its clone is made: from now on it pushes as fast as we deploy
        before = len(pushed)
        events = {s: triggered(f"docker.io/keptnexamples/{s}:2.0.{i}", service=s) for i, s in enumerate(SERVICES)}
        for event in events.values():
            event["id"] = str(uuid.uuid4())
            await loop.publish(event)
        finished = await asyncio.gather(*(loop.finished(e["id"], timeout=240) for e in events.values()))
    finally:
        stop.set()
        await asyncio.to_thread(bot.join)
        await stop_loop(loop)

    assert len(pushed) > before, "the other bot pushed nothing while we deployed"
    tree = {s: git("show", f"main:apps/dev/{s}/kustomization.yaml", cwd=loop.remote) for s in SERVICES}
    for i, (service, done) in enumerate(zip(SERVICES, finished, strict=True)):
        assert done["data"]["result"] == "pass", done["data"]["message"]
        assert tree[service] == overlay(service).replace("newTag: 1.0.0", f"newTag: 2.0.{i}")  # exactly once
        commit = done["data"]["deployment"]["gitCommit"]
        assert f"newTag: 2.0.{i} " in git("show", f"{commit}:apps/dev/{service}/kustomization.yaml", cwd=loop.remote)
        carrying = git(
            "log",
            "--format=%H",
            "--fixed-strings",
            f"--grep=Keptn-Triggered-Id: {events[service]['id']}",
            "main",
            cwd=loop.remote,
        )
        assert carrying.split() == [commit]
    for name in pushed:
        assert git("show", f"main:other/{name}", cwd=loop.remote) == f"{name}\n"
    ours = git("rev-list", "--count", "--author=keptn-gitops-service", "main", cwd=loop.remote)
    assert 0 < int(ours) < len(SERVICES), "concurrent deployments were not batched"
