"""``keptn-gitops-demo``: one Keptn delivery through the whole loop, on this machine.

Real: the service, a nats-server, a git repository, the Keptn events. SIMULATED (and labelled so): the
Kubernetes API server and the Flux controllers, which update the Kustomization's status the way Flux does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.config.loader import load_config
from keptn_gitops_service.errors import GitOpsServiceError
from keptn_gitops_service.logs import configure_logging
from keptn_gitops_service.service import Service
from keptn_gitops_service.settings import Settings
from keptn_gitops_sim import content
from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.kubeapi import StoreEvent
from keptn_gitops_sim.natsd import NatsServer

DEFAULT_IMAGE = "docker.io/keptnexamples/carts:0.13.1"

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Platform Team",
    "GIT_AUTHOR_EMAIL": "platform@example.invalid",
    "GIT_COMMITTER_NAME": "Platform Team",
    "GIT_COMMITTER_EMAIL": "platform@example.invalid",
}


def say(who: str, text: str) -> None:
    print(f"{who:<24} {text}", flush=True)


async def git(*args: str, cwd: Path | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"git {args[0]} failed: {err.decode().strip()}")
    return out.decode()


async def seed_repository(root: Path) -> Path:
    """A bare 'fleet' repository holding the demo's Kustomize overlay."""
    bare, work = root / "fleet.git", root / "seed"
    await git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    await git("clone", "--quiet", str(bare), str(work))
    await git("checkout", "--quiet", "-B", "main", cwd=work)
    for rel, text in content.REPOSITORY_FILES.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    await git("add", "--all", cwd=work)
    await git("commit", "--quiet", "-m", "fleet: carts 0.13.0 in dev", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    return bare


def shipyard_trigger(image: str) -> dict[str, Any]:
    """deployment.triggered as the shipyard-controller publishes it after ``keptn trigger delivery``."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "shipyard-controller",
        "type": "sh.keptn.event.deployment.triggered",
        "datacontenttype": "application/json",
        "time": "2024-01-17T11:41:09.134279817Z",
        "gitcommitid": "3f1c9b0e2d4a5b6c7d8e9f00112233445566778a",
        "shkeptncontext": str(uuid.uuid4()),
        "shkeptnspecversion": "0.2.4",
        "data": {
            "project": content.PROJECT,
            "stage": content.STAGE,
            "service": content.SERVICE,
            "configurationChange": {"values": {"image": image}},
            "deployment": {"deploymentURIsLocal": None, "deploymentstrategy": "direct"},
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The ``keptn-gitops-demo`` console script: exit 0 when the delivery passed, 1 when it did not."""
    parser = argparse.ArgumentParser(
        prog="keptn-gitops-demo", description="The whole loop on this machine, with a SIMULATED cluster."
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"the image to deliver (default: {DEFAULT_IMAGE})")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run_demo(image=args.image))
    except GitOpsServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def run_demo(image: str) -> int:
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="keptn-gitops-demo-") as tmp:
        return await _run(Path(tmp), image)


async def _run(root: Path, image: str) -> int:
    print(
        "keptn-gitops-demo — real: NATS, git, the service, Keptn events;"
        " SIMULATED: Kubernetes API server and Flux controllers\n"
    )
    async with NatsServer() as nats_url:
        say("[nats-server]", f"listening on {nats_url}")
        bare = await seed_repository(root)
        say("[git]", f"GitOps repository file://{bare} (apps/dev/carts/kustomization.yaml at newTag 0.13.0)")
        cluster = SimulatedCluster(bare)
        try:
            await cluster.start(root / "kubeconfig", run_flux=False)
            unsubscribe = cluster.kube.add_listener(_show_flux_status)
            cluster.resume(interval=60)
            say(
                "[SIMULATED k8s + Flux]",
                f"API at {cluster.kube.url}; Kustomization sockshop-dev/carts applied the seed commit",
            )
            try:
                return await _deliver(root, nats_url, bare, image)
            finally:
                unsubscribe()
        finally:
            await cluster.stop()


def _show_flux_status(change: StoreEvent) -> None:
    """Print the SIMULATED Flux's Kustomization status transitions as they are written."""
    if change.object.get("kind") != "Kustomization":
        return
    ready = next((c for c in change.object.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None)
    old = next(
        (c for c in ((change.old or {}).get("status") or {}).get("conditions", []) if c.get("type") == "Ready"), None
    )
    if ready and ready != old:
        say("[SIMULATED Flux]", f"Kustomization carts Ready={ready['status']} {ready['reason']}: {ready['message']}")


async def _deliver(root: Path, nats_url: str, bare: Path, image: str) -> int:
    config_path = root / "gitops.yaml"
    config_path.write_text(content.CONFIG.format(url=f"file://{bare}"))
    settings = Settings(
        nats_url=nats_url,
        state_dir=root / "state",
        kubeconfig=str(root / "kubeconfig"),
        log_format="console",
        http_port=0,
    )
    service = Service(settings, load_config(config_path))
    await service.start()
    say(f"[{SERVICE_NAME}]", f"subscribed to {', '.join(settings.topics)} (queue group {settings.queue_group})")
    nc = await nats.connect(nats_url)
    finished: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    trigger = shipyard_trigger(image)

    async def show(msg: Any) -> None:
        event = json.loads(msg.data)
        data = event.get("data", {})
        detail = " ".join(f"{k}={data[k]}" for k in ("status", "result") if data.get(k))
        say(f"[{event.get('source')}]", f"{event['type']}  {detail}")
        if event["type"].endswith(".finished") and event.get("triggeredid") == trigger["id"] and not finished.done():
            finished.set_result(event)

    try:
        await nc.subscribe("sh.keptn.event.>", cb=show)
        await nc.flush()
        say("[you]", f"keptn trigger delivery --project sockshop --stage dev --service carts --image {image}")
        await nc.publish(trigger["type"], json.dumps(trigger).encode())
        event = await asyncio.wait_for(finished, 150)
    finally:
        await nc.close()
        await service.stop()
    data = event["data"]
    print()
    say("[result]", f"{data['status']}/{data['result']}: {data.get('message', '')}")
    commit = data.get("deployment", {}).get("gitCommit", "")
    if commit:
        diff = await git("show", "--format=%h %s%n%n%b", "--unified=0", commit, cwd=bare)
        print("\nThe GitOps commit:\n" + "\n".join("    " + line for line in diff.rstrip().splitlines()))
    return 0 if data.get("result") == "pass" else 1
