"""/healthz latency while the service works: idle, on the worst file, and under a burst of triggers.

The service runs in this process (a real nats-server, the real git writer pushing to a bare remote, rules that finish
right after the push). A separate prober process — as the kubelet would be — GETs ``/healthz`` over one kept-alive
connection every ``--interval`` seconds and reports each answer's latency. Three phases in one run, each with a
fresh prober:

* **idle**: nothing to do, ``--idle`` seconds (the baseline every other figure is divided by);
* **worst file**: one deployment of a flat multi-document manifest just under the size limit
  (``--manifest-mb``, default 4), within every YAML limit but too slow to edit, so it runs until the edit deadline
  (``--edit-timeout``, default 30 s), plus the issue's alias bomb: probed from the triggers to the last
  ``.finished``;
* **burst**: ``--burst`` triggers (default 2,000) over ``--services`` services, published at once; probed until
  every one is finished.

With ``--baseline`` the worst-file phase runs a second time with the YAML work back on the event loop (the writer's
off-loading replaced by a direct call, as before issue 13), to show what the worker thread buys.
Usage: ``python bench/probe_latency.py [--manifest-mb 4] [--edit-timeout 30] [--burst 2000] [--baseline]
[--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
from benchgit import git

from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.editing.yamllimits import limited
from keptn_gitops_service.gitops.writer import GitWriter
from keptn_gitops_service.logs import configure_logging
from keptn_gitops_service.service import Service
from keptn_gitops_service.settings import Settings
from keptn_gitops_sim.natsd import NatsServer
from keptn_gitops_sim.runner import shipyard_trigger

T = TypeVar("T")
CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: file://{remote}
rules:
  - match: {{project: bench}}
    repository: fleet
    updates:
      - file: "apps/{{stage}}/{{service}}/values.yaml"
        yamlPath: image.tag
        value: "{{image.tag}}"
    wait: {{none: {{}}}}
"""


def alias_bomb() -> str:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nimage:\n  tag: 1.0.0\n"


def manifest(size: int) -> str:
    """A flat multi-document manifest of at most ``size`` bytes with ``image.tag`` in its last document."""
    doc = "kind: ConfigMap\nmetadata: {name: cm-%06d}\ndata:\n" + "".join(f"  key{k}: value {k}\n" for k in range(40))
    tail = "---\nimage:\n  tag: 1.0.0\n"
    count = max(1, (size - len(tail)) // (len(doc % 0) + 4))
    return "---\n".join(doc % i for i in range(count)) + tail


def make_remote(root: Path, files: dict[str, str]) -> Path:
    bare, seed = root / "fleet.git", root / "seed"
    git("init", "-q", "--bare", "--initial-branch=main", str(bare))
    git("clone", "-q", str(bare), str(seed))
    for rel, text in files.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return bare


# ------------------------------------------------------------------------------------------ the prober process


PROBER = """
import http.client, json, sys, threading, time
port, interval = int(sys.argv[1]), float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
latencies, failures = [], 0
while not stop.is_set():
    began = time.perf_counter()
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        failures += response.status != 200
    except OSError:
        failures += 1
        connection.close()
    latencies.append((time.perf_counter() - began) * 1000)
    if len(latencies) == 1:
        print("ready", flush=True)
    stop.wait(interval)
print(json.dumps({"latencies": latencies[1:], "failures": failures}), flush=True)
"""
"""The prober process (no imports of this package: it starts in milliseconds): GETs /healthz until its stdin
closes, says ``ready`` after the first answer, then prints the latencies (ms) after that one as JSON."""


class Prober:
    def __init__(self, port: int, interval: float) -> None:
        args = [sys.executable, "-c", PROBER, str(port), str(interval)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        assert line.strip() == "ready", line

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = await asyncio.to_thread(self.proc.stdout.read)
        await asyncio.to_thread(self.proc.wait)
        result: dict[str, Any] = json.loads(out)
        return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------------------ phases


async def run(args: argparse.Namespace, root: Path, nats_url: str) -> list[dict[str, Any]]:
    files = {f"apps/dev/svc-{i:03d}/values.yaml": "image:\n  tag: 1.0.0\n" for i in range(args.services)}
    files["apps/dev/worst/values.yaml"] = manifest(int(args.manifest_mb * 1024 * 1024))
    files["apps/dev/bomb/values.yaml"] = alias_bomb()
    remote = make_remote(root, files)
    settings = Settings(
        nats_url=nats_url,
        topics=("sh.keptn.event.deployment.triggered",),
        state_dir=root / "state",
        log_level="WARNING",
        log_format="console",
        http_port=0,
        edit_timeout_seconds=args.edit_timeout,
        # the worst file is a manifest of thousands of small documents, kept within every limit so that only the
        # edit deadline stops it (the default allows 1,000 documents)
        yaml_max_documents=1_000_000,
    )
    service = Service(settings, parse_config(CONFIG.format(remote=remote), "bench.yaml"))
    await service.start()
    assert service.probes is not None
    port = service.probes.port
    nc = await nats.connect(nats_url)
    finished: dict[str, dict[str, Any]] = {}
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_finished(msg: Any) -> None:
        event = json.loads(msg.data)
        finished[event["triggeredid"]] = event["data"]
        future = waiting.pop(event["triggeredid"], None)
        if future is not None and not future.done():
            future.set_result(None)

    await nc.subscribe("sh.keptn.event.deployment.finished", cb=on_finished)
    await nc.flush()

    async def deploy(services: list[str]) -> list[dict[str, Any]]:
        ids = []
        for service_name in services:
            event = shipyard_trigger(f"docker.io/keptnexamples/{service_name}:2.{uuid.uuid4().int % 1000}.0")
            event["data"].update(project="bench", stage="dev", service=service_name)
            waiting[event["id"]] = asyncio.get_running_loop().create_future()
            ids.append(event["id"])
            await nc.publish("sh.keptn.event.deployment.triggered", json.dumps(event).encode())
        await nc.flush()
        await asyncio.gather(*(waiting[i] for i in ids if i in waiting))
        return [finished[i] for i in ids]

    async def phase(name: str, work: Callable[[], Any]) -> dict[str, Any]:
        prober = Prober(port, args.interval)
        await prober.ready()
        began = time.perf_counter()
        outcome = await work()
        wall = time.perf_counter() - began
        probed = await prober.stop()
        latencies = probed["latencies"]
        row = {
            "phase": name,
            "probes": len(latencies),
            "failures": probed["failures"],
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=float("nan")),
            "wall_s": wall,
            "outcome": outcome,
        }
        print(f"  {name}: {row['probes']} probes, p99 {row['p99_ms']:.1f} ms, {wall:.1f} s", file=sys.stderr)
        return row

    def results(done: list[dict[str, Any]]) -> str:
        kinds: dict[str, int] = {}
        for data in done:
            kinds[str(data.get("result"))] = kinds.get(str(data.get("result")), 0) + 1
        return ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))

    rows = []
    try:
        rows.append(await phase("idle", lambda: asyncio.sleep(args.idle, "")))
        rows.append(await phase("worst file", lambda: _worst(deploy, results)))
        if args.baseline:
            original = GitWriter.offload

            async def on_the_loop(self: GitWriter, work: Callable[[list[str]], T]) -> T:
                with limited(self.yaml_limits, seconds=self.edit_timeout):
                    return work(["the file"])

            GitWriter.offload = on_the_loop  # type: ignore[method-assign]
            try:
                rows.append(await phase("worst file, edits on the event loop", lambda: _worst(deploy, results)))
            finally:
                GitWriter.offload = original  # type: ignore[method-assign]
        names = [f"svc-{i % args.services:03d}" for i in range(args.burst)]
        rows.append(await phase(f"burst of {args.burst}", lambda: _burst(deploy, names, results)))
    finally:
        await nc.close()
        await service.stop()
    return rows


async def _worst(deploy: Any, results: Callable[[list[dict[str, Any]]], str]) -> str:
    done = await deploy(["worst", "bomb"])
    return results(done) + " | " + " | ".join(str(d.get("message", ""))[:100] for d in done)


async def _burst(deploy: Any, names: list[str], results: Callable[[list[dict[str, Any]]], str]) -> str:
    return str(results(await deploy(names)))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between two probes")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of the idle phase")
    parser.add_argument("--manifest-mb", type=float, default=4.0, help="size of the worst file (MB, under the limit)")
    parser.add_argument("--edit-timeout", type=float, default=30.0, help="KEPTN_GITOPS_EDIT_TIMEOUT for the run")
    parser.add_argument("--burst", type=int, default=2000, help="triggers in the burst")
    parser.add_argument("--services", type=int, default=50, help="services the burst's triggers are spread over")
    parser.add_argument("--baseline", action="store_true", help="also run the worst file with edits on the loop")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="keptn-gitops-probe-") as tmp:
        async with NatsServer() as nats_url:
            rows = await run(args, Path(tmp), nats_url)
    idle = rows[0]["p99_ms"]
    print("| phase | probes | failed | p50 | p99 | max | p99 / idle p99 | wall | outcome |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['phase']} | {row['probes']} | {row['failures']} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms"
            f" | {row['max_ms']:.1f} ms | x{row['p99_ms'] / idle:.2f} | {row['wall_s']:.1f} s | {row['outcome']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
