"""Load and latency of the Flux wait: our shared watch against a plain polling baseline, measured in the same run.

N concurrent deployments (default 1, 20 and 200 services) go through the whole service — a real nats-server, the
real git writer pushing to a bare remote, the real lightkube client — against the Kubernetes-API test server and the
simulated Flux controllers (``keptn_gitops_sim``). For each N and each waiter:

* **API requests per deployment**: every request the service makes to the API server, counted by verb by the test
  server (simulated Flux writes to its store directly and is not counted);
* **detection latency**: from the moment simulated Flux writes the Kustomization status that applies the
  deployment's commit (``Ready=True`` with ``lastAppliedRevision`` at that commit or a descendant) to the moment the
  ``deployment.finished`` arrives on NATS (a subscriber in this process; one ``perf_counter`` clock for both).

The baseline replaces the service's waiter with a plain poller: one GET of the Kustomization every ``--poll-interval``
seconds per deployment (default 5 s, for real: no scaled or fake clock), judged by the same rule and with the same
reconcile request. Simulated Flux answers a reconcile request within milliseconds, which would put every status change
just after a poll; so the poller's grid starts at a random phase (seeded), as it would when Flux's apply time is
unrelated to it. ``--flux-delay S`` makes simulated Flux take S seconds per requested reconcile (apply and health
checks), for both waiters. Usage:
``python bench/reconcile_load.py [--sizes 1,20,200] [--poll-interval 5] [--flux-delay 0] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats
from benchgit import GIT_ENV, git
from lightkube.generic_resource import create_namespaced_resource

from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.config.model import FluxWait
from keptn_gitops_service.logs import configure_logging
from keptn_gitops_service.reconcile.dispatch import Target
from keptn_gitops_service.reconcile.flux_rules import kustomization_verdict
from keptn_gitops_service.reconcile.kube import GIT_REPOSITORY, KUSTOMIZATION, KubeHub, load_client
from keptn_gitops_service.reconcile.outcome import Ancestry, Verdict, WaitOutcome
from keptn_gitops_service.reconcile.revisions import revision_sha
from keptn_gitops_service.service import Service
from keptn_gitops_service.settings import Settings
from keptn_gitops_sim import content
from keptn_gitops_sim.fluxsim import SimulatedFlux
from keptn_gitops_sim.kubeapi import KubeApiServer, StoreEvent
from keptn_gitops_sim.natsd import NatsServer
from keptn_gitops_sim.runner import shipyard_trigger

NAMESPACE = f"{content.PROJECT}-{content.STAGE}"


def service_name(i: int) -> str:
    return f"svc-{i:03d}"


def make_remote(root: Path, count: int) -> Path:
    """A bare GitOps repository with one Kustomize overlay per service (``apps/dev/svc-NNN``)."""
    bare, seed = root / "fleet.git", root / "seed"
    git("init", "-q", "--bare", "--initial-branch=main", str(bare))
    git("clone", "-q", str(bare), str(seed))
    for i in range(count):
        overlay = seed / "apps" / content.STAGE / service_name(i)
        overlay.mkdir(parents=True)
        image = f"docker.io/keptnexamples/{service_name(i)}"
        (overlay / "kustomization.yaml").write_text(
            f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n"
            f"  - name: {image}\n    newTag: 1.0.0\n"
        )
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return bare


def kustomization(name: str) -> dict[str, Any]:
    ks: dict[str, Any] = json.loads(json.dumps(content.KUSTOMIZATION))
    ks["metadata"]["name"] = name
    ks["spec"]["path"] = f"./apps/{content.STAGE}/{name}"
    return ks


class PollingReconciler:
    """The baseline: a plain poll loop per deployment (GET every ``interval`` seconds), judged like ours."""

    def __init__(self, kubeconfig: str, interval: float, seed: int = 4) -> None:
        self._random = random.Random(seed)
        self._client = load_client(kubeconfig)
        self._hub = KubeHub(self._client)  # only for the same reconcile request our waiter makes
        self._res = create_namespaced_resource(
            KUSTOMIZATION.group, KUSTOMIZATION.version, KUSTOMIZATION.kind, KUSTOMIZATION.plural
        )
        self._interval = interval

    async def check(self, target: Target) -> None:
        """The same read before the commit as the service's (one GET), so both sides count it."""
        assert isinstance(target, FluxWait)
        await self._hub.get(KUSTOMIZATION, target.namespace, target.name)

    async def wait(
        self, target: Target, *, commit: str, ancestry: Ancestry, timeout: float, **keptn: str
    ) -> WaitOutcome:
        assert isinstance(target, FluxWait)
        deadline = time.monotonic() + timeout
        poked = False
        pause = self._random.uniform(0, self._interval)  # the first re-poll sets the grid's phase
        while time.monotonic() < deadline:
            obj = await self._client.get(self._res, target.name, namespace=target.namespace)
            ks: dict[str, Any] = dict(obj.to_dict())  # type: ignore[no-untyped-call]
            if not poked:
                source = ks["spec"]["sourceRef"]
                await self._hub.request_reconcile(GIT_REPOSITORY, source.get("namespace") or NAMESPACE, source["name"])
                poked = True
            status = ks.get("status") or {}

            async def ours(revision: str) -> bool:
                sha = revision_sha(revision)
                return bool(sha) and (sha == commit or await ancestry.is_ancestor(commit, sha))

            observation = kustomization_verdict(
                ks,
                applied_ours=await ours(str(status.get("lastAppliedRevision") or "")),
                attempted_ours=await ours(str(status.get("lastAttemptedRevision") or "")),
            )
            if observation.verdict is not Verdict.IN_PROGRESS:
                return WaitOutcome(observation.verdict is Verdict.SUCCEEDED, observation.summary)
            await asyncio.sleep(pause)
            pause = self._interval
        return WaitOutcome(False, "timed out", timed_out=True)

    async def close(self) -> None:
        await self._hub.close()


class SlowFlux(SimulatedFlux):
    """Simulated Flux that takes ``delay`` seconds (apply, health checks) for every reconcile pass it makes."""

    delay = 0.0

    async def reconcile_once(self) -> None:
        await asyncio.sleep(self.delay)
        await super().reconcile_once()


@dataclass
class Round:
    """One measured round: a waiter and a number of concurrent deployments."""

    waiter: str
    deployments: int
    requests: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    passed: int = 0
    seconds: float = 0.0

    @property
    def per_deployment(self) -> float:
        return self.requests.get("total", 0) / self.deployments

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


class ReadyLog:
    """When simulated Flux wrote each Kustomization status with Ready=True, and at which revision."""

    def __init__(self) -> None:
        self.writes: dict[str, list[tuple[float, str]]] = {}

    def __call__(self, change: StoreEvent) -> None:
        obj = change.object
        if obj.get("kind") != "Kustomization":
            return
        status = obj.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("lastAppliedRevision"):
            sha = revision_sha(str(status["lastAppliedRevision"]))
            self.writes.setdefault(obj["metadata"]["name"], []).append((time.perf_counter(), sha))


def contains(bare: Path, cache: dict[tuple[str, str], bool]) -> Callable[[str, str], bool]:
    def check(commit: str, revision: str) -> bool:
        if (commit, revision) not in cache:
            result = subprocess.run(
                ["git", "--git-dir", str(bare), "merge-base", "--is-ancestor", commit, revision],
                env=GIT_ENV,
                capture_output=True,
            )
            cache[(commit, revision)] = result.returncode == 0
        return cache[(commit, revision)]

    return check


async def run_round(
    root: Path, nats_url: str, waiter: str, count: int, poll_interval: float, flux_delay: float = 0.0
) -> Round:
    bare = make_remote(root, count)
    kube = KubeApiServer()
    await kube.start()
    flux = SlowFlux(kube, {f"file://{bare}": bare})
    service: Service | None = None
    nc: Any = None
    try:
        repo = json.loads(json.dumps(content.GIT_REPOSITORY))
        repo["spec"]["url"] = f"file://{bare}"
        kube.put_object(repo)
        for i in range(count):
            kube.put_object(kustomization(service_name(i)))
        await flux.reconcile_once()
        flux.delay = flux_delay
        ready = ReadyLog()
        kube.add_listener(ready)
        flux.start(interval=3600)  # reconciles when asked (requestedAt), like `flux reconcile`

        kubeconfig = str(kube.write_kubeconfig(root / "kubeconfig"))
        settings = Settings(
            nats_url=nats_url,
            topics=("sh.keptn.event.deployment.triggered",),
            state_dir=root / "state",
            kubeconfig=kubeconfig,
            log_level="WARNING",
            log_format="console",
            http_port=None,
        )
        config = parse_config(content.CONFIG.format(url=f"file://{bare}").replace("timeout: 2m", "timeout: 10m"), "b")
        service = Service(settings, config)
        if waiter == "polling":
            poller = PollingReconciler(kubeconfig, poll_interval)
            service.lifecycle.tasks["deployment"].reconciler = poller  # type: ignore[attr-defined]
            service.reconciler = poller  # type: ignore[assignment]
        await service.start()

        finished: dict[str, tuple[float, dict[str, Any]]] = {}
        done = asyncio.Event()

        async def on_finished(msg: Any) -> None:
            event = json.loads(msg.data)
            finished[event["triggeredid"]] = (time.perf_counter(), event["data"])
            if len(finished) == count:
                done.set()

        nc = await nats.connect(nats_url)
        await nc.subscribe("sh.keptn.event.deployment.finished", cb=on_finished)
        await nc.flush()
        triggers = []
        for i in range(count):
            trigger = shipyard_trigger(f"docker.io/keptnexamples/{service_name(i)}:2.0.0")
            trigger["data"]["service"] = service_name(i)
            triggers.append(trigger)
        kube.reset_request_count()
        start = time.perf_counter()
        for trigger in triggers:
            await nc.publish(trigger["type"], json.dumps(trigger).encode())
        await nc.flush()
        await asyncio.wait_for(done.wait(), 900)
        result = Round(waiter, count, dict(kube.request_count), seconds=time.perf_counter() - start)
        check = contains(bare, {})
        for trigger in triggers:
            received, data = finished[trigger["id"]]
            if data.get("result") != "pass":
                print(f"  {data.get('service')}: {data.get('result')}: {data.get('message')}", file=sys.stderr)
                continue
            result.passed += 1
            commit = data["deployment"]["gitCommit"]
            applied = [t for t, sha in ready.writes.get(data["service"], []) if check(commit, sha)]
            result.latencies_ms.append((received - min(applied)) * 1000)
        return result
    finally:
        if nc is not None:
            await nc.close()
        if service is not None:
            await service.stop()
        await flux.aclose()
        await kube.stop()


def report(rounds: list[Round], poll_interval: float) -> None:
    print(
        f"\n{'waiter':<22} {'N':>4} {'pass':>5} {'API requests':>13} {'per deployment':>15}  "
        f"{'get/list/watch/patch':<22} {'latency p50':>12} {'p90':>9} {'max':>9} {'wall s':>7}"
    )
    for r in rounds:
        verbs = "/".join(str(r.requests.get(v, 0)) for v in ("get", "list", "watch", "patch"))
        label = "shared watch (ours)" if r.waiter == "watch" else f"polling every {poll_interval:g} s"
        print(
            f"{label:<22} {r.deployments:>4} {r.passed:>5} {r.requests.get('total', 0):>13} {r.per_deployment:>15.2f}  "
            f"{verbs:<22} {r.percentile(0.5):>9.1f} ms {r.percentile(0.9):>6.1f} ms {max(r.latencies_ms):>6.1f} ms "
            f"{r.seconds:>7.1f}"
        )
    print("\nratios (polling / ours):")
    by: Mapping[tuple[str, int], Round] = {(r.waiter, r.deployments): r for r in rounds}
    for n in sorted({r.deployments for r in rounds}):
        ours, poll = by.get(("watch", n)), by.get(("polling", n))
        if ours and poll:
            print(
                f"  N={n:<4} API requests per deployment x{poll.per_deployment / ours.per_deployment:.2f}   "
                f"latency p50 x{poll.percentile(0.5) / ours.percentile(0.5):.0f}"
            )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,20,200", help="comma-separated numbers of concurrent deployments")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="the baseline's GET interval in seconds")
    parser.add_argument("--flux-delay", type=float, default=0.0, help="seconds simulated Flux takes per reconcile")
    parser.add_argument("--only", choices=["watch", "polling"])
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args()
    configure_logging("ERROR", "console")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rounds: list[Round] = []
    async with NatsServer() as nats_url:
        for count in sizes:
            for waiter in ("watch", "polling"):
                if args.only and waiter != args.only:
                    continue
                with tempfile.TemporaryDirectory(prefix="reconcile-load-") as tmp:
                    r = await run_round(Path(tmp), nats_url, waiter, count, args.poll_interval, args.flux_delay)
                print(
                    f"{waiter:>8} N={count:<4} {r.passed}/{count} passed, {r.requests.get('total', 0)} API requests, "
                    f"p50 {r.percentile(0.5):.1f} ms, {r.seconds:.1f} s",
                    flush=True,
                )
                rounds.append(r)
    report(rounds, args.poll_interval)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0 if all(r.passed == r.deployments for r in rounds) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
