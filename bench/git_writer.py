"""Git writer benchmarks, each printed as ratios against baselines measured in the same run.

    python bench/git_writer.py latency [--count 30]     (a) one-line kustomize image change: trigger -> pushed
    python bench/git_writer.py burst [--services 500]   (b) N deployments for N services in one repository
    python bench/git_writer.py bigrepo [--files 20000 --commits 10000 --count 20]
                                                        (c) per-deployment latency in a big repository
    python bench/git_writer.py sizes [--count 30 --sizes 20000x10000,200000x100000 --per-event 10,3,1]
                                                        (d) floor, ours and clone per event on 50 services and on
                                                        the big repositories, in one run
    python bench/git_writer.py all                      (a), (b) and (c) with the defaults

(a) compares ``GitWriter.write`` with the floor (a raw ``git commit`` + ``git push`` of the same change from a warm
clone) and with a clone-per-event baseline (fresh clone, edit, commit, push), and measures the whole loop: a
``deployment.triggered`` published on a real nats-server, handled by the service (``wait: none``), until its
``deployment.finished`` (sent right after the push) arrives. (b) calls ``GitWriter.write`` for every deployment at
once (``asyncio.gather``) and one at a time, and counts the commits and pushes that reached the remote. (c) builds
the repository once with ``git fast-import`` and caches it under ``~/.cache/keptn-gitops-service/bench/``. (d)
measures the floor and ours interleaved on each size (each on a remote of its own with the same content), and a
few clones per event; it prints ours / floor, clone per event / ours and ours / ours on 50 services.
Remotes are local bare repositories (``file://``), so the figures are git's and ours, not a network's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchgit import GIT_ENV

from keptn_gitops_service.config.model import Author, CloneOptions, Repository
from keptn_gitops_service.editing.imageref import parse_image
from keptn_gitops_service.editing.kustomize import set_kustomize_image
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

AUTHOR = Author("keptn-gitops-service", "gitops@keptn.invalid")
IMAGE = "docker.io/keptnexamples/{service}"
CACHE = Path.home() / ".cache" / "keptn-gitops-service" / "bench"
# The service's configuration for a fleet() repository (format with ``bare``), without its rule's ``wait``.
RULE = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - {{name: fleet, url: "file://{bare}", author: {{name: bench, email: bench@x.invalid}}}}
rules:
  - match: {{project: sockshop}}
    repository: fleet
    updates:
      - file: "apps/{{service}}/kustomization.yaml"
        kustomizeImage: {{name: "docker.io/keptnexamples/{{service}}"}}
"""
NONE_RULE = RULE + "    wait: {{none: {{}}}}\n"


# ---- repositories -----------------------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, input=stdin, capture_output=True, check=True)
    return done.stdout.decode()


def overlay(service: str, tag: str) -> str:
    """A service's Kustomize overlay, in the style Flux image automation users keep them."""
    return (
        f"# {service}: applied by Flux, image updated by keptn-gitops-service\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {service}\nresources:\n  - deployment.yaml\n  - service.yaml\n\nimages:\n"
        f"  - name: {IMAGE.format(service=service)}\n"
        f'    newTag: {tag} # {{"$imagepolicy": "flux-system:{service}:tag"}}\n'
    )


def blob(path: str, text: str) -> str:
    data = text.encode()
    return f"M 100644 inline {path}\ndata {len(data)}\n{text}\n"


def fast_import(bare: Path, commits: list[tuple[str, list[str]]]) -> None:
    """``commits``: (message, file commands) in order, each on top of the previous one, into ``main``."""
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    stream = []
    for i, (message, files) in enumerate(commits, start=1):
        stream.append(f"commit refs/heads/main\nmark :{i}\ncommitter Bot <bot@x.invalid> {1_700_000_000 + i} +0000\n")
        stream.append(f"data {len(message.encode())}\n{message}\n" + (f"from :{i - 1}\n" if i > 1 else ""))
        stream.extend(files)
    git("fast-import", "--quiet", cwd=bare, stdin="".join(stream).encode())
    prepare_remote(bare)


def prepare_remote(bare: Path) -> None:
    """Count every update of a branch (a reflog in the bare remote) and allow partial clones."""
    git("config", "core.logAllRefUpdates", "always", cwd=bare)
    git("config", "uploadpack.allowFilter", "true", cwd=bare)


def fleet(root: Path, services: int) -> Path:
    """A bare remote with one overlay per service: ``apps/svc000/kustomization.yaml`` …"""
    files = [
        blob(f"apps/{service_name(i)}/kustomization.yaml", overlay(service_name(i), "1.0.0")) for i in range(services)
    ]
    fast_import(root / "fleet.git", [("fleet", [blob("README.md", "# fleet\n"), *files])])
    return root / "fleet.git"


def service_name(i: int) -> str:
    return f"svc{i:03d}"


def service_dir(files: int, i: int) -> str:
    """Where service ``i`` of a big repository lives: ``apps/svcNNNNN``, or, above 50,000 files,
    ``apps/gNNN/svcNNNNN`` (100 services a group), so that a commit rewrites a few small trees rather than one
    directory of 20,000 entries: the 100,000 commits of the biggest repository are then built in minutes."""
    return f"apps/g{i // 100:03d}/svc{i:05d}" if files > 50_000 else f"apps/svc{i:05d}"


def big_repository(files: int, commits: int, cache: Path) -> Path:
    """``files`` files (10 per service directory) and ``commits`` commits, each later one bumping one service's
    tag; built once with ``git fast-import`` and cached by its parameters."""
    bare = cache / f"bigrepo-f{files}-c{commits}.git"
    if (bare / "refs" / "heads" / "main").exists() or (bare / "packed-refs").exists():
        return bare
    tmp = bare.with_name(bare.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    services = max(1, files // 10)
    first = [blob("README.md", "# big fleet\n")]
    for i in range(services):
        name, folder = f"svc{i:05d}", service_dir(files, i)
        first.append(blob(f"{folder}/kustomization.yaml", overlay(name, "1.0.0")))
        for extra in range(1, min(10, files - 10 * i)):
            first.append(
                blob(f"{folder}/manifest-{extra}.yaml", f"kind: ConfigMap\nmetadata: {{name: {name}-{extra}}}\n")
            )
    history = [("fleet", first)]
    for c in range(1, commits):
        name, folder = f"svc{c % services:05d}", service_dir(files, c % services)
        message = f"bump {name}\n\nKeptn-Context: history-{c}\n"
        history.append((message, [blob(f"{folder}/kustomization.yaml", overlay(name, f"1.{c}.0"))]))
    fast_import(tmp, history)
    if files <= 50_000:  # fast-import's own pack serves the biggest one well enough, and gc would take minutes
        git("gc", "--quiet", "--aggressive" if files * commits < 10_000 else "--quiet", cwd=tmp)
    tmp.rename(bare)
    return bare


def working_copy_of(cached: Path, root: Path) -> Path:
    """A bare remote sharing ``cached``'s objects (``--shared``): pushes never change the cache."""
    bare = root / "remote.git"
    git("clone", "--quiet", "--bare", "--shared", str(cached), str(bare))
    prepare_remote(bare)
    return bare


def ref_updates(bare: Path) -> int:
    return len(git("reflog", "show", "--format=%H", "refs/heads/main", cwd=bare).split())


def commit_count(bare: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=bare))


# ---- the deployments ---------------------------------------------------------------------------------------------


def deployment(repo: Repository, path: str, service: str, tag: str) -> Change:
    """What the deployment workflow hands the writer for a kustomizeImage update: one file, one scalar."""
    image = parse_image(f"{IMAGE.format(service=service)}:{tag}")
    name = IMAGE.format(service=service)
    triggered = str(uuid.uuid4())
    message = (
        f"deploy {service} {tag}\n\nKeptn-Context: {uuid.uuid4()}\nKeptn-Scope: bench/dev/{service}\n"
        f"Keptn-Triggered-Id: {triggered}\n"
    )
    edit = FileEdit(path, lambda text: set_kustomize_image(text, name, image))
    return Change(repo, (edit,), message, ("Keptn-Triggered-Id", triggered))


def repository(bare: Path, clone: CloneOptions | None = None) -> Repository:
    return Repository("fleet", f"file://{bare}", author=AUTHOR, clone=clone or CloneOptions())


@dataclass(frozen=True)
class Latency:
    name: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def timed(count: int, once: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for i in range(count):
        start = time.perf_counter()
        await once(i)
        samples.append(time.perf_counter() - start)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


# ---- (a) latency -------------------------------------------------------------------------------------------------


Once = Callable[[int], Awaitable[None]]
LOOP = "whole loop: NATS trigger -> service -> pushed -> .finished"


async def floor(bare: Path, root: Path) -> Once:
    """Raw ``git commit -a`` + ``git push`` of the same one-line change from a warm clone."""
    work = root / "warm"
    git("clone", "--quiet", f"file://{bare}", str(work))
    path = work / "apps" / "svc000" / "kustomization.yaml"

    async def once(i: int) -> None:
        path.write_text(overlay("svc000", f"2.0.{i}"))
        git("commit", "--quiet", "--all", "--message", f"deploy svc000 2.0.{i}", cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)

    return once


async def clone_per_event(bare: Path, root: Path) -> Once:
    async def once(i: int) -> None:
        work = root / f"event-{i}"
        git("clone", "--quiet", "--single-branch", "--branch", "main", f"file://{bare}", str(work))
        path = work / "apps" / "svc000" / "kustomization.yaml"
        path.write_text(overlay("svc000", f"3.0.{i}"))
        git("commit", "--quiet", "--all", "--message", f"deploy svc000 3.0.{i}", cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
        shutil.rmtree(work)

    return once


async def writer_warm(bare: Path, root: Path) -> Once:
    writer = GitWriter(root / "state")
    repo = repository(bare)
    await writer.clone(repo).sync()  # warm: the clone exists, as in a running service

    async def once(i: int) -> None:
        await writer.write(deployment(repo, "apps/svc000/kustomization.yaml", "svc000", f"4.0.{i}"))

    return once


async def interleaved(count: int, runs: dict[str, Once]) -> list[Latency]:
    """Every path once per round, so a load change on the machine hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(count):
        for name, once in runs.items():
            start = time.perf_counter()
            await once(i)
            samples[name].append(time.perf_counter() - start)
    return [Latency(name, values) for name, values in samples.items()]


@contextlib.asynccontextmanager
async def through_the_service(root: Path) -> AsyncIterator[Once]:
    """Publish ``deployment.triggered`` on a real nats-server; the service (``wait: none``) answers
    ``deployment.finished`` right after its push: the time between the two."""
    import nats

    from keptn_gitops_service.config.loader import parse_config
    from keptn_gitops_service.service import Service
    from keptn_gitops_service.settings import Settings
    from keptn_gitops_sim.natsd import NatsServer
    from keptn_gitops_sim.runner import shipyard_trigger

    bare = fleet(root / "e2e", 50)
    config = NONE_RULE.format(bare=bare)
    async with NatsServer() as url:
        settings = Settings(nats_url=url, state_dir=root / "e2e" / "state", log_format="console", http_port=None)
        service = Service(settings, parse_config(config, "bench.yaml"))
        await service.start()
        nc = await nats.connect(url)
        waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

        async def on_finished(msg: Any) -> None:
            event = json.loads(msg.data)
            future = waiting.get(event.get("triggeredid", ""))
            if future is not None and not future.done():
                future.set_result(event)

        await nc.subscribe("sh.keptn.event.deployment.finished", cb=on_finished)
        await nc.flush()

        async def once(i: int) -> None:
            trigger = shipyard_trigger(f"docker.io/keptnexamples/svc000:5.0.{i}")
            trigger["data"]["service"] = "svc000"
            waiting[trigger["id"]] = asyncio.get_running_loop().create_future()
            await nc.publish(trigger["type"], json.dumps(trigger).encode())
            finished = await asyncio.wait_for(waiting[trigger["id"]], 60)
            if finished["data"].get("result") != "pass":
                raise RuntimeError(f"the deployment failed: {finished['data'].get('message')}")

        try:
            await once(-1)  # warm: the first delivery clones
            yield once
        finally:
            await nc.close()
            await service.stop()


async def latency(count: int, with_service: bool = True) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        root = Path(tmp)
        setups = {
            "floor: `git commit -a && git push`, warm clone": floor,
            "GitWriter.write (ours), warm clone": writer_warm,
            "clone per event: clone, edit, commit, push": clone_per_event,
        }
        runs = {}
        for i, (name, setup) in enumerate(setups.items()):
            (root / str(i)).mkdir()
            runs[name] = await setup(fleet(root / str(i), 50), root / str(i))
        async with contextlib.AsyncExitStack() as stack:
            if with_service:
                runs[LOOP] = await stack.enter_async_context(through_the_service(root))
            results = await interleaved(count, runs)
    base = results[0].p50
    rows = [[r.name, ms(r.p50), ms(r.p95), f"{r.p50 / base:.2f}"] for r in results]
    ours = results[1].p50
    note = f"clone per event / ours (p50): {results[2].p50 / ours:.2f}"
    if with_service:
        note += f"; whole loop - ours (p50): {(results[3].p50 - ours) * 1000:+.1f} ms"
        # the same, round by round: what the loop adds to the write of its own round (a load change hits both)
        paired = statistics.median(b - a for a, b in zip(results[1].samples, results[3].samples, strict=True))
        note += f"; whole loop - ours, paired by round (p50): {paired * 1000:+.1f} ms"
    return (
        f"(a) one-line kustomize image change, {count} deployments each, 50-service repository\n"
        + table(["path", "p50", "p95", "p50 / floor"], rows)
        + f"\n{note}\n"
    )


# ---- (b) burst ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    name: str
    seconds: float
    commits: int
    pushes: int


async def burst_run(root: Path, services: int, concurrent: bool) -> Burst:
    bare = fleet(root, services)
    writer = GitWriter(root / "state")
    repo = repository(bare)
    await writer.clone(repo).sync()
    commits, pushes = commit_count(bare), ref_updates(bare)
    changes = [
        deployment(repo, f"apps/{service_name(i)}/kustomization.yaml", service_name(i), "9.9.9")
        for i in range(services)
    ]
    start = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(*(writer.write(change) for change in changes))
    else:
        results = [await writer.write(change) for change in changes]
    seconds = time.perf_counter() - start
    for i, result in enumerate(results):  # every deployment's own commit carries its change
        text = git("show", f"{result.commit}:apps/{service_name(i)}/kustomization.yaml", cwd=bare)
        if "newTag: 9.9.9" not in text:
            raise RuntimeError(f"the commit reported for {service_name(i)} does not carry its change")
    name = f"{services} x write() at once (asyncio.gather)" if concurrent else "one at a time (sequential awaits)"
    return Burst(name, seconds, commit_count(bare) - commits, ref_updates(bare) - pushes)


async def burst(services: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        results = []
        for i, concurrent in enumerate((False, True)):
            (Path(tmp) / str(i)).mkdir()
            results.append(await burst_run(Path(tmp) / str(i), services, concurrent))
    base = results[0].seconds
    rows = [
        [
            r.name,
            f"{r.seconds:.1f} s",
            f"{services / r.seconds:.1f}",
            str(r.commits),
            str(r.pushes),
            f"{base / r.seconds:.2f}",
        ]
        for r in results
    ]
    header = ["mode", "wall time", "deployments/s", "commits", "pushes", "speed-up vs one at a time"]
    return f"(b) burst: {services} deployments for {services} services in one repository\n" + table(header, rows) + "\n"


# ---- (c) big repository ------------------------------------------------------------------------------------------


async def bigrepo_clone(cached: Path, root: Path, options: CloneOptions, services: int, run: int) -> tuple[float, Once]:
    """A remote sharing the cached repository's objects and a writer with ``options``: (first clone seconds, one
    deployment to a service spread over the repository)."""
    bare = working_copy_of(cached, root)
    writer = GitWriter(root / "state")
    repo = repository(bare, options)
    start = time.perf_counter()
    await writer.clone(repo).sync()
    first = time.perf_counter() - start

    async def once(j: int) -> None:
        n = (j * 7919) % services
        path = f"{service_dir(services * 10, n)}/kustomization.yaml"
        await writer.write(deployment(repo, path, f"svc{n:05d}", f"7.{run}.{j}"))

    return first, once


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def bigrepo(files: int, commits: int, count: int, cache: Path, depth: int) -> str:
    start = time.perf_counter()
    cached = big_repository(files, commits, cache)
    built = time.perf_counter() - start
    variants = {
        "full clone": CloneOptions(),
        f"shallow (depth {depth})": CloneOptions(depth=depth),
        "partial (blob:none)": CloneOptions(filter="blob:none"),
        f"shallow + partial (depth {depth}, blob:none)": CloneOptions(depth=depth, filter="blob:none"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-bigrepo-") as tmp:
        firsts, runs = {}, {}
        for i, (name, options) in enumerate(variants.items()):
            (Path(tmp) / str(i)).mkdir()
            firsts[name], runs[name] = await bigrepo_clone(cached, Path(tmp) / str(i), options, files // 10 or 1, i)
        results = await interleaved(count, runs)
        sizes = [tree_size(next((Path(tmp) / str(i) / "state" / "clones").iterdir()) / ".git") for i in range(4)]
    rows = [
        [
            r.name,
            f"{firsts[r.name]:.2f} s",
            ms(r.p50),
            ms(r.p95),
            f"{r.p50 / results[0].p50:.2f}",
            f"{size / 2**20:.1f} MiB",
        ]
        for r, size in zip(results, sizes, strict=True)
    ]
    header = ["clone", "first clone", "p50", "p95", "p50 / full", ".git size"]
    where = f"cached at {cached}" + (f", built in {built:.0f} s" if built > 1 else "")
    return (
        f"(c) big repository: {files} files, {commits} commits ({where}); {count} deployments each, interleaved\n"
        + table(header, rows)
        + "\n"
    )


# ---- (d) three repository sizes ----------------------------------------------------------------------------------


async def size_run(
    bares: list[Path], root: Path, services: int, count: int, per_event: int, big: bool
) -> list[Latency]:
    """Floor, ours and clone-per-event, each on a remote of its own (``bares``, the same content), interleaved;
    clone-per-event only ``per_event`` times (a clone of a big repository takes seconds)."""

    def path_of(j: int, offset: int) -> tuple[str, str]:
        """Each path its own services (``offset``): the floor never changes what ours is about to change."""
        if big:
            n = (j * 7919 + offset) % services
            return f"svc{n:05d}", f"{service_dir(services * 10, n)}/kustomization.yaml"
        name = service_name((j * 3 + offset) % services)
        return name, f"apps/{name}/kustomization.yaml"

    work = root / "warm"
    git("clone", "--quiet", f"file://{bares[0]}", str(work))

    async def floor_once(j: int) -> None:
        name, path = path_of(j, 0)
        (work / path).write_text(overlay(name, f"2.0.{j}"))
        git("commit", "--quiet", "--all", "--message", f"deploy {name} 2.0.{j}", cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)

    writer = GitWriter(root / "state")
    repo = repository(bares[1])
    await writer.clone(repo).sync()

    async def ours_once(j: int) -> None:
        name, path = path_of(j, 1)
        await writer.write(deployment(repo, path, name, f"4.0.{j}"))

    async def per_event_once(j: int) -> None:
        name, path = path_of(j, 2)
        event = root / f"event-{j}"
        git("clone", "--quiet", "--single-branch", "--branch", "main", f"file://{bares[2]}", str(event))
        (event / path).write_text(overlay(name, f"3.0.{j}"))
        git("commit", "--quiet", "--all", "--message", f"deploy {name} 3.0.{j}", cwd=event)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=event)
        shutil.rmtree(event)

    runs: dict[str, Once] = {"floor": floor_once, "ours": ours_once}
    results = await interleaved(count, runs)
    results.append(Latency("clone per event", await timed(per_event, per_event_once)))
    await writer.close()
    return results


async def sizes(count: int, sizes_: list[tuple[int, int]], per_event: list[int], cache: Path) -> str:
    rows, ours_small = [], 0.0
    with tempfile.TemporaryDirectory(prefix="bench-sizes-") as tmp:
        for i, ((files, commits), events) in enumerate(zip([(50, 1), *sizes_], per_event, strict=True)):
            root = Path(tmp) / str(i)
            root.mkdir()
            bares = []
            for path in ("floor", "ours", "event"):
                (root / path).mkdir()
            if i == 0:
                bares = [fleet(root / path, 50) for path in ("floor", "ours", "event")]
                label, services = "50 services (50 files, 1 commit)", 50
            else:
                start = time.perf_counter()
                cached = big_repository(files, commits, cache)
                built = time.perf_counter() - start
                bares = [working_copy_of(cached, root / path) for path in ("floor", "ours", "event")]
                services = max(1, files // 10)
                label = f"{files:,} files, {commits:,} commits" + (f" (built in {built:.0f} s)" if built > 1 else "")
            floor_, ours, per = await size_run(bares, root, services, count, events, i > 0)
            if i == 0:
                ours_small = ours.p50
            rows.append(
                [
                    label,
                    ms(floor_.p50),
                    ms(ours.p50),
                    ms(ours.p95),
                    f"{ours.p50 / floor_.p50:.2f}",
                    f"{ms(per.p50)} (n={len(per.samples)})",
                    f"{per.p50 / ours.p50:.1f}",
                    f"{ours.p50 / ours_small:.2f}",
                ]
            )
            print(f"  measured: {label}", file=sys.stderr, flush=True)
    header = [
        "repository",
        "floor p50",
        "ours p50",
        "ours p95",
        "ours / floor",
        "clone per event p50",
        "clone per event / ours",
        "ours / ours on 50 services",
    ]
    return (
        f"(d) trigger -> pushed by repository size: floor (`git commit -a && git push`, warm clone), ours "
        f"(GitWriter.write, warm full clone) interleaved, {count} deployments each\n" + table(header, rows) + "\n"
    )


# ---- main --------------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {git('--version').strip()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    a = sub.add_parser("latency", help="(a) trigger -> pushed latency")
    a.add_argument("--count", type=int, default=30)
    a.add_argument("--no-service", action="store_true", help="skip the whole-loop measurement (NATS + service)")
    b = sub.add_parser("burst", help="(b) a burst of deployments for as many services")
    b.add_argument("--services", type=int, default=500)
    c = sub.add_parser("bigrepo", help="(c) per-deployment latency in a big repository")
    c.add_argument("--files", type=int, default=20_000)
    c.add_argument("--commits", type=int, default=10_000)
    c.add_argument("--count", type=int, default=20)
    c.add_argument("--depth", type=int, default=50)
    c.add_argument("--cache-dir", type=Path, default=CACHE)
    d = sub.add_parser("sizes", help="(d) floor, ours and clone per event on 50 services and two big repositories")
    d.add_argument("--count", type=int, default=30)
    d.add_argument("--sizes", default="20000x10000,200000x100000", help="FILESxCOMMITS,…")
    d.add_argument("--per-event", default="10,3,1", help="clone-per-event samples for each size, 50 services first")
    d.add_argument("--cache-dir", type=Path, default=CACHE)
    sub.add_parser("all", help="everything with the defaults")
    args = parser.parse_args(argv)
    from keptn_gitops_service.logs import configure_logging

    configure_logging("WARNING", "console")
    print(machine(), file=sys.stderr)
    if args.bench in ("latency", "all"):
        print(asyncio.run(latency(getattr(args, "count", 30), not getattr(args, "no_service", False))))
    if args.bench in ("burst", "all"):
        print(asyncio.run(burst(getattr(args, "services", 500))))
    if args.bench == "sizes":
        pairs = [tuple(int(n) for n in part.split("x")) for part in args.sizes.split(",") if part]
        per_event = [int(n) for n in args.per_event.split(",")]
        print(asyncio.run(sizes(args.count, [(f, c) for f, c in pairs], per_event, args.cache_dir)))
    if args.bench in ("bigrepo", "all"):
        if args.bench == "all":
            args = c.parse_args([])
        print(asyncio.run(bigrepo(args.files, args.commits, args.count, args.cache_dir, args.depth)))


if __name__ == "__main__":
    main()
