"""The whole loop under load: the service in a process of its own, triggers on a real nats-server, each figure
printed next to a baseline measured in the same run.

    python bench/git_loop.py burst [--services 5000]          every service deployed at once (``wait: none``)
    python bench/git_loop.py race [--deployments 500]         deployments while an outside bot keeps pushing
    python bench/git_loop.py memory [--in-flight 1000 --soak 10000 --wave 500]
                                                              RSS idle, with deployments waiting on Flux, and
                                                              fds / child processes / RSS over a long soak

``burst`` publishes one ``deployment.triggered`` per service, all at once, and waits for every
``deployment.finished``; then it checks the remote: every service's file carries its new tag, every trigger id is
in exactly one commit, and it counts the commits and pushes (the bare remote keeps a reflog). Its baseline is the
git writer alone in this process (``asyncio.gather`` of ``GitWriter.write``, no NATS, no service) on a copy of the
same repository. ``race`` sends its deployments at a steady rate while a bot in a thread of this process commits
and pushes to the same branch every 0.2-1 s (pulling and retrying when it loses); no update of either side may be
lost. Its baseline is the same run without the bot. ``memory`` samples the service process (``/proc``): resident
memory, open file descriptors and child processes, idle (after one deployment), with ``--in-flight`` deployments
waiting on Flux (the Kubernetes-API test server holds their Kustomizations, and nothing reconciles them), and after
every wave of a ``--soak`` of ``wait: none`` deployments; its baseline is the idle sample.

The service runs as shipped (``--interpreter product``, the default): with the interpreter of a virtualenv that holds
only what ``pip install .`` brings (setup.cfg's ``install_requires``, no extras), built once under
``${KEPTN_GITOPS_CACHE:-~/.cache/keptn-gitops-service}/bench/product-venv-<hash>``, and with ``LOG_FORMAT=json``, the
production default. ``--interpreter test`` runs it with this interpreter instead, whose test-only packages (``rich``,
pulled in by import-linter, which structlog imports when it can) cost memory the shipped service never pays.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from benchgit import GIT_ENV, children
from git_writer import (
    NONE_RULE,
    RULE,
    deployment,
    fleet,
    git,
    machine,
    ref_updates,
    repository,
    service_name,
    table,
)

from keptn_gitops_service.gitops.writer import GitWriter
from keptn_gitops_sim import content
from keptn_gitops_sim.kubeapi import KubeApiServer
from keptn_gitops_sim.natsd import NatsServer
from keptn_gitops_sim.runner import shipyard_trigger

ROOT = Path(__file__).resolve().parents[1]
FLUX_RULE = (
    RULE
    + """\
    wait:
      flux: {{kind: Kustomization, name: "{{service}}", namespace: "{{project}}-{{stage}}"}}
      timeout: 1h
"""
)


# ---- the interpreter that runs the service ------------------------------------------------------------------------


def cache_root() -> Path:
    configured = os.environ.get("KEPTN_GITOPS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "keptn-gitops-service"


def product_python() -> Path:
    """The interpreter of a virtualenv holding only the service's own requirements, built once per packaging.

    It holds setup.cfg's ``install_requires`` (what ``pip install .`` brings, no extras) and not the package itself:
    the service runs from this tree (``PYTHONPATH``), so a change to the code needs no rebuild, and worktrees with
    the same packaging can share the venv without installing different copies of the package into it.
    """
    packaging = b"".join((ROOT / name).read_bytes() for name in ("setup.cfg", "setup.py"))
    base = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}".encode()
    digest = hashlib.sha256(packaging + base).hexdigest()[:16]
    folder = cache_root() / "bench"
    venv = folder / f"product-venv-{digest}"
    python, ready = venv / "bin" / "python", venv / ".complete"
    if ready.is_file():
        return python
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"product-venv-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another bench may be building the same venv
        if not ready.is_file():
            shutil.rmtree(venv, ignore_errors=True)  # a build that was cut short
            cfg = configparser.ConfigParser()
            cfg.read(ROOT / "setup.cfg")
            requires = [line.strip() for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
            print(f"building the product virtualenv {venv} ({len(requires)} requirements)", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requires],
                check=True,
                stdout=sys.stderr,
            )
            ready.touch()
    return python


def interpreter(kind: str) -> tuple[str, str]:
    """The python that runs the service (``product`` or ``test``) and a line that says what it holds."""
    python = str(product_python()) if kind == "product" else sys.executable
    frozen = subprocess.run(  # what is installed: neither this tree (cwd, PYTHONPATH) nor an editable install
        [python, "-m", "pip", "freeze", "--disable-pip-version-check", "--exclude-editable"],
        cwd=Path(python).parent,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {line.split("==")[0].lower() for line in frozen}
    return python, (
        f"service interpreter: {kind} ({python}), {len(frozen)} packages in pip freeze"
        f" (rich {'installed' if 'rich' in names else 'absent'}), keptn_gitops_service from {ROOT}"
    )


# ---- the service in a process of its own -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    rss_mb: float
    fds: int
    children: int


@dataclass(frozen=True)
class Runtime:
    """How the service is started: its interpreter and its log format (``json`` in production)."""

    python: str = sys.executable
    log_format: str = "json"


class ServiceProcess:
    """``python -m keptn_gitops_service run`` with ``config``, stopped by its PID."""

    def __init__(
        self,
        root: Path,
        config: str,
        nats_url: str,
        runtime: Runtime,
        kubeconfig: Path | None = None,
        log_level: str = "WARNING",
    ) -> None:
        (root / "config.yaml").write_text(config)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NATS_URL": nats_url,
            "KEPTN_GITOPS_STATE_DIR": str(root / "state"),
            "LOG_LEVEL": log_level,
            "LOG_FORMAT": runtime.log_format,
            "HTTP_PORT": "0",
            "PUBSUB_TOPIC": "sh.keptn.event.deployment.triggered",
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        self._log = (root / "service.log").open("wb")
        self.proc = subprocess.Popen(
            [runtime.python, "-m", "keptn_gitops_service", "run", "--config", str(root / "config.yaml")],
            cwd=root,  # its own folder, so the package comes from PYTHONPATH (this tree), not from the caller's cwd
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = root / "service.log"

    def sample(self) -> Sample:
        pid = self.proc.pid
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line[:6] == "VmRSS:"
        )
        return Sample(rss / 1024, len(os.listdir(f"/proc/{pid}/fd")), len(children(pid)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def events(self) -> list[str]:
        """The messages of the service's log lines: the ``event`` of a JSON line, else the whole line (console)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            found.append(str(record.get("event", "")) if isinstance(record, dict) else line)
        return found


class Loop:
    """Publishes triggers and collects their ``deployment.finished``."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.finished: dict[str, dict[str, Any]] = {}
        self.started: set[str] = set()
        self._waiters: list[tuple[set[str], asyncio.Future[None]]] = []

    async def subscribe(self) -> None:
        async def on_finished(msg: Any) -> None:
            event = json.loads(msg.data)
            self.finished[event.get("triggeredid", "")] = event["data"]
            for ids, future in self._waiters:
                if not future.done() and ids <= self.finished.keys():
                    future.set_result(None)

        async def on_started(msg: Any) -> None:
            self.started.add(json.loads(msg.data).get("triggeredid", ""))

        await self.nc.subscribe("sh.keptn.event.deployment.finished", cb=on_finished)
        await self.nc.subscribe("sh.keptn.event.deployment.started", cb=on_started)
        await self.nc.flush()

    async def publish(self, triggers: Sequence[dict[str, Any]], rate: float | None = None) -> None:
        start = time.perf_counter()
        for i, trigger in enumerate(triggers):
            await self.nc.publish(trigger["type"], json.dumps(trigger).encode())
            if rate:
                ahead = start + (i + 1) / rate - time.perf_counter()
                if ahead > 0:
                    await self.nc.flush()
                    await asyncio.sleep(ahead)
        await self.nc.flush()

    async def wait(self, triggers: Sequence[dict[str, Any]], timeout: float) -> None:
        ids = {t["id"] for t in triggers}
        if ids <= self.finished.keys():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ids, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            missing = len(ids - self.finished.keys())
            raise RuntimeError(f"{missing} of {len(ids)} deployments did not finish within {timeout:.0f} s") from None

    def failures(self, triggers: Sequence[dict[str, Any]]) -> list[str]:
        return [
            f"{self.finished[t['id']].get('service')}: {self.finished[t['id']].get('message')}"
            for t in triggers
            if self.finished[t["id"]].get("result") != "pass"
        ]


def trigger(service: str, tag: str) -> dict[str, Any]:
    event = shipyard_trigger(f"docker.io/keptnexamples/{service}:{tag}")
    event["data"]["service"] = service
    return event


@asynccontextmanager
async def running(
    root: Path,
    config: str,
    nats_url: str,
    runtime: Runtime,
    kubeconfig: Path | None = None,
    log_level: str = "WARNING",
) -> Any:
    service = ServiceProcess(root, config, nats_url, runtime, kubeconfig, log_level)
    nc = await nats.connect(nats_url)
    loop = Loop(nc)
    try:
        await loop.subscribe()
        yield service, loop
    finally:
        await nc.close()
        service.stop()


async def warm_up(loop: Loop, service: ServiceProcess, name: str) -> None:
    """One deployment, resent until the service answers it (it subscribes a moment after it starts)."""
    event = trigger(name, "0.0.1")
    for _ in range(120):
        await loop.publish([event])
        try:
            await loop.wait([event], 1.0)
            return
        except RuntimeError:
            if service.proc.poll() is not None:
                raise RuntimeError(f"the service stopped: {service.log_path.read_text()[-2000:]}") from None
    raise RuntimeError("the service never answered")


def tags_in_place(bare: Path, tag: str) -> int:
    """How many files on ``main`` carry ``newTag: <tag>``."""
    out = subprocess.run(
        ["git", "grep", "-c", f"newTag: {tag}", "main", "--", "apps"],
        cwd=bare,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len(out.splitlines())


def trailer_counts(bare: Path) -> Counter[str]:
    out = git("log", "--format=%(trailers:key=Keptn-Triggered-Id,valueonly)", "main", cwd=bare)
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def exactly_once(bare: Path, triggers: Sequence[dict[str, Any]], tag: str) -> str:
    counts = trailer_counts(bare)
    wrong = [t["data"]["service"] for t in triggers if counts[t["id"]] != 1]
    files = tags_in_place(bare, tag)
    if wrong or files != len(triggers):
        return f"NOT exactly once: {len(wrong)} ids not in exactly one commit, {files}/{len(triggers)} files"
    return "every change exactly once"


# ---- burst -------------------------------------------------------------------------------------------------------


async def burst(services: int, runtime: Runtime) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-loop-burst-") as tmp:
        root = Path(tmp)
        (root / "loop").mkdir()
        (root / "writer").mkdir()
        # baseline: the writer alone, in this process
        bare = fleet(root / "writer", services)
        writer = GitWriter(root / "writer" / "state")
        repo = repository(bare)
        await writer.clone(repo).sync()
        pushes_before = ref_updates(bare)
        changes = [
            deployment(repo, f"apps/{service_name(i)}/kustomization.yaml", service_name(i), "9.9.9")
            for i in range(services)
        ]
        start = time.perf_counter()
        await asyncio.gather(*(writer.write(c) for c in changes))
        alone = time.perf_counter() - start
        alone_pushes = ref_updates(bare) - pushes_before
        await writer.close()
        # the whole loop
        bare = fleet(root / "loop", services)
        config = NONE_RULE.format(bare=bare)
        async with NatsServer() as url, running(root / "loop", config, url, runtime) as (svc, loop):
            await warm_up(loop, svc, service_name(0))
            commits_before, pushes_before = int(git("rev-list", "--count", "main", cwd=bare)), ref_updates(bare)
            triggers = [trigger(service_name(i), "9.9.9") for i in range(services)]
            start = time.perf_counter()
            await loop.publish(triggers)
            await loop.wait(triggers, 600)
            seconds = time.perf_counter() - start
            failed = loop.failures(triggers)
        commits = int(git("rev-list", "--count", "main", cwd=bare)) - commits_before
        pushes = ref_updates(bare) - pushes_before
        verdict = exactly_once(bare, triggers, "9.9.9")
    counts = [str(commits), str(pushes)]
    rows = [
        [
            "git writer alone (asyncio.gather of write)",
            f"{alone:.1f} s",
            f"{services / alone:.0f}",
            "",
            str(alone_pushes),
        ],
        [
            "whole loop: NATS -> service -> pushed -> .finished",
            f"{seconds:.1f} s",
            f"{services / seconds:.0f}",
            *counts,
        ],
    ]
    return (
        f"burst: {services} deployments for {services} services, all at once\n"
        + table(["path", "wall", "deployments/s", "commits", "pushes"], rows)
        + f"\nwhole loop / writer alone: {seconds / alone:.2f}; {services - len(failed)}/{services} passed; {verdict}\n"
        + "".join(f"  failed: {f}\n" for f in failed[:5])
    )


# ---- race with a bot ---------------------------------------------------------------------------------------------


class Bot(threading.Thread):
    """Commits and pushes ``bot/heartbeat.txt`` every 0.2-1 s from a clone of its own until stopped."""

    def __init__(self, bare: Path, work: Path, seed: int = 11) -> None:
        super().__init__(daemon=True)
        self.bare, self.work = bare, work
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.pushed: list[str] = []
        self.rejected = 0
        git("clone", "--quiet", str(bare), str(work))

    def run(self) -> None:
        while not self.stopping.wait(self.random.uniform(0.2, 1.0)):
            n = len(self.pushed) + 1
            (self.work / "bot").mkdir(exist_ok=True)
            (self.work / "bot" / "heartbeat.txt").write_text(f"beat {n}\n")
            git("add", "--all", cwd=self.work)
            git("commit", "--quiet", "-m", f"bot beat {n}", cwd=self.work)
            while True:
                done = subprocess.run(
                    ["git", "push", "--quiet", "origin", "HEAD:main"], cwd=self.work, env=GIT_ENV, capture_output=True
                )
                if done.returncode == 0:
                    break
                self.rejected += 1
                git("pull", "--quiet", "--rebase", "origin", "main", cwd=self.work)
            self.pushed.append(git("rev-parse", "HEAD", cwd=self.work).strip())


async def race_run(
    root: Path, count: int, rate: float, with_bot: bool, runtime: Runtime
) -> tuple[float, str, int, int]:
    bare = fleet(root, count)
    config = NONE_RULE.format(bare=bare)
    async with NatsServer() as url, running(root, config, url, runtime, log_level="INFO") as (svc, loop):
        await warm_up(loop, svc, service_name(0))
        bot = Bot(bare, root / "bot") if with_bot else None
        if bot is not None:
            bot.start()
        triggers = [trigger(service_name(i), "8.8.8") for i in range(count)]
        start = time.perf_counter()
        await loop.publish(triggers, rate)
        await loop.wait(triggers, 600)
        seconds = time.perf_counter() - start
        if bot is not None:
            bot.stopping.set()
            await asyncio.to_thread(bot.join)
        failed = loop.failures(triggers)
        rejected = sum(1 for event in svc.events() if "push rejected" in event)
    verdict = exactly_once(bare, triggers, "8.8.8") + f"; the service's pushes rejected {rejected} times"
    beats = 0
    if bot is not None:
        history = set(git("rev-list", "main", cwd=bare).split())
        lost = [sha for sha in bot.pushed if sha not in history]
        final = git("show", "main:bot/heartbeat.txt", cwd=bare).strip() if bot.pushed else ""
        beats = len(bot.pushed)
        ok = not lost and (not bot.pushed or final == f"beat {beats}")
        verdict += f"; bot: {beats} pushes, {bot.rejected} lost races, " + (
            "all on main" if ok else f"{len(lost)} LOST"
        )
    if failed:
        verdict += f"; {len(failed)} FAILED (first: {failed[0]})"
    return seconds, verdict, beats, count - len(failed)


async def race(count: int, rate: float, runtime: Runtime) -> str:
    rows, lines = [], []
    with tempfile.TemporaryDirectory(prefix="bench-loop-race-") as tmp:
        results = {}
        for i, (name, with_bot) in enumerate((("alone", False), ("with the bot", True))):
            (Path(tmp) / str(i)).mkdir()
            results[name] = await race_run(Path(tmp) / str(i), count, rate, with_bot, runtime)
    base = results["alone"][0]
    for name, (seconds, verdict, _, passed) in results.items():
        rows.append([name, f"{seconds:.1f} s", f"{passed}/{count}", f"{seconds / base:.2f}"])
        lines.append(f"{name}: {verdict}")
    return (
        f"race: {count} deployments through the whole loop at {rate:g}/s, an outside bot pushing every 0.2-1 s\n"
        + table(["run", "wall", "passed", "wall / alone"], rows)
        + "\n"
        + "\n".join(lines)
        + "\n"
    )


# ---- memory ------------------------------------------------------------------------------------------------------


def fmt(sample: Sample, base: Sample) -> list[str]:
    return [f"{sample.rss_mb:.1f} MB", f"{sample.rss_mb / base.rss_mb:.2f}", str(sample.fds), str(sample.children)]


async def settle(service: ServiceProcess, seconds: float = 2.0) -> Sample:
    """The sample after ``seconds`` without work (the lowest RSS seen)."""
    samples = []
    for _ in range(int(seconds / 0.25)):
        samples.append(service.sample())
        await asyncio.sleep(0.25)
    return min(samples, key=lambda s: s.rss_mb)


async def memory(in_flight: int, soak: int, wave: int, runtime: Runtime) -> str:
    rows: list[list[str]] = []
    curve: list[tuple[int, Sample]] = []
    with tempfile.TemporaryDirectory(prefix="bench-loop-memory-") as tmp:
        root = Path(tmp)
        # idle, then deployments waiting on Flux
        (root / "flux").mkdir()
        bare = fleet(root / "flux", max(in_flight, 1))
        kube = KubeApiServer()
        await kube.start()
        try:
            source = json.loads(json.dumps(content.GIT_REPOSITORY))
            source["spec"]["url"] = f"file://{bare}"
            kube.put_object(source)
            for i in range(in_flight):
                ks = json.loads(json.dumps(content.KUSTOMIZATION))
                ks["metadata"]["name"] = service_name(i)
                ks["spec"]["path"] = f"./apps/{service_name(i)}"
                kube.put_object(ks)
            kubeconfig = kube.write_kubeconfig(root / "kubeconfig")
            config = FLUX_RULE.format(bare=bare)
            async with NatsServer() as url, running(root / "flux", config, url, runtime, kubeconfig) as (svc, loop):
                warm = trigger("warm", "0.0.1")
                warm["data"]["service"] = "warm"
                for _ in range(120):  # the service answers (a failure: no such file) once it has subscribed
                    await loop.publish([warm])
                    with_timeout = asyncio.create_task(loop.wait([warm], 1.0))
                    try:
                        await with_timeout
                        break
                    except RuntimeError:
                        continue
                idle = await settle(svc)
                rows.append(["idle (after one deployment)", *fmt(idle, idle)])
                triggers = [trigger(service_name(i), "6.6.6") for i in range(in_flight)]
                await loop.publish(triggers)
                deadline = time.monotonic() + 600
                while (
                    tags_in_place(bare, "6.6.6") < in_flight
                    or len(loop.started & {t["id"] for t in triggers}) < in_flight
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the deployments were not all committed within 600 s")
                    await asyncio.sleep(0.5)
                waiting = await settle(svc)
                done = sum(1 for t in triggers if t["id"] in loop.finished)
                rows.append([f"{in_flight} deployments waiting on Flux ({done} finished)", *fmt(waiting, idle)])
        finally:
            await kube.stop()
        # soak
        (root / "soak").mkdir()
        services = max(wave, 1)
        bare = fleet(root / "soak", services)
        config = NONE_RULE.format(bare=bare)
        async with NatsServer() as url, running(root / "soak", config, url, runtime) as (svc, loop):
            await warm_up(loop, svc, service_name(0))
            first = await settle(svc, 1.0)
            curve.append((0, first))
            sent = 0
            start = time.perf_counter()
            failed = 0
            while sent < soak:
                batch = [
                    trigger(service_name(i % services), f"5.{sent // services}.{i}")
                    for i in range(min(wave, soak - sent))
                ]
                await loop.publish(batch)
                await loop.wait(batch, 600)
                failed += len(loop.failures(batch))
                sent += len(batch)
                curve.append((sent, svc.sample()))
            seconds = time.perf_counter() - start
            last = await settle(svc, 1.0)
            curve.append((sent, last))
    rows.append([f"after a soak of {soak} deployments", *fmt(last, first)])
    series = ", ".join(f"{n}: {s.rss_mb:.0f} MB/{s.fds} fds/{s.children} ch" for n, s in curve)
    return (
        "memory of the service process (RSS, open fds, child processes)\n"
        + table(["state", "RSS", "RSS / baseline", "fds", "child processes"], rows)
        + f"\nsoak: {soak} deployments in waves of {wave} in {seconds:.1f} s, {soak - failed}/{soak} passed;"
        + f" fds {first.fds} -> {last.fds} (x{last.fds / first.fds:.2f}),"
        + f" child processes {first.children} -> {last.children},"
        + f" RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB (x{last.rss_mb / first.rss_mb:.2f})\ncurve: {series}\n"
    )


# ---- main --------------------------------------------------------------------------------------------------------


@contextmanager
def quiet() -> Iterator[None]:
    from keptn_gitops_service.logs import configure_logging

    configure_logging("ERROR", "console")
    yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    b = sub.add_parser("burst")
    b.add_argument("--services", type=int, default=5000)
    r = sub.add_parser("race")
    r.add_argument("--deployments", type=int, default=500)
    r.add_argument("--rate", type=float, default=50.0, help="deployments per second")
    m = sub.add_parser("memory")
    m.add_argument("--in-flight", type=int, default=1000)
    m.add_argument("--soak", type=int, default=10_000)
    m.add_argument("--wave", type=int, default=500)
    for each in (b, r, m):
        each.add_argument(
            "--interpreter",
            choices=("product", "test"),
            default="product",
            help="product: a venv with only the service's requirements (as shipped); test: this interpreter",
        )
        each.add_argument("--log-format", choices=("json", "console"), default="json", help="the service's LOG_FORMAT")
    args = parser.parse_args(argv)
    print(machine(), file=sys.stderr)
    python, described = interpreter(args.interpreter)
    runtime = Runtime(python, args.log_format)
    print(f"{described}; LOG_FORMAT={args.log_format}")
    with quiet():
        if args.bench == "burst":
            print(asyncio.run(burst(args.services, runtime)))
        elif args.bench == "race":
            print(asyncio.run(race(args.deployments, args.rate, runtime)))
        else:
            print(asyncio.run(memory(args.in_flight, args.soak, args.wave, runtime)))


if __name__ == "__main__":
    main()
