"""The black-box rig of the reliability suite: the service as a real ``python -m keptn_gitops_service run``
subprocess, fed through a real JetStream nats-server, writing to a real bare git remote, and waiting on the
SIMULATED cluster (keptn_gitops_sim.cluster: Kubernetes API + Flux) that runs in the test's event loop. The
nats-server is the test's ``nats_server`` fixture (JetStream: the reliability tests are marked ``jetstream``).

What the tests observe is only what the outside world sees: the events on NATS (Keptn's ``keptn`` stream keeps
every ``sh.keptn.>`` message, so it is the record of truth), the acknowledgements of the service's durable
consumer, the commits in the remote, the requests to the Kubernetes API, the process's log and /proc entries —
and, read-only and only to report what a kill hit, the phases in the SQLite state file. Nothing here imports the
state store's Python API, so everything runs against either store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from support import WAIT_NONE, ConfigRule, free_port, git, make_remote, service_config

from keptn_gitops_sim import content
from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.natsd import NatsServer
from keptn_gitops_sim.runner import shipyard_trigger

SOAK = os.environ.get("KGS_SOAK", "") == "1"
"""``KGS_SOAK=1``: the long variants (docs/reliability.md)."""

KEPTN_STREAM = "keptn"
TRIGGER_SUBJECT = "sh.keptn.event.deployment.triggered"
CONSUMER = "keptn-gitops-service-sh_keptn_event_deployment_triggered"
"""The service's durable consumer name (docs/architecture.md, Durability)."""
ACK_WAIT = 2.0
"""The tests create the service's consumer themselves with this short ack wait, shorter than the lease the service
would set (30 s by default; a shorter one is kept), so a trigger fetched by a process that was killed before
recording it is redelivered in seconds."""
SAFETY = 90.0
"""Upper bound for waiting on something that must happen; reaching it means a hang, not slowness."""
JETSTREAM_LEASE = 2
"""``KEPTN_GITOPS_STATE_LEASE`` of the service when it runs with the JetStream key-value store."""


def overtaken(finished: dict[str, Any] | None) -> bool:
    """A deployment that a later deployment of the same service overtook before Flux applied it: it fails as
    ``superseded`` (docs/troubleshooting.md), the right answer when several deliveries of one service are in flight
    at once — only the one Flux applies passes."""
    data = (finished or {}).get("data") or {}
    return data.get("result") == "fail" and str(data.get("message", "")).startswith("superseded: commit ")


# ------------------------------------------------------------------------------------------------ NATS


async def create_keptn_stream(url: str, *, ack_wait: float = ACK_WAIT) -> None:
    """What Keptn's shipyard-controller does on start-up, plus our consumer (short ack wait unless told)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=KEPTN_STREAM, subjects=["sh.keptn.>"]))
        await js.add_consumer(
            KEPTN_STREAM,
            ConsumerConfig(
                durable_name=CONSUMER,
                filter_subject=TRIGGER_SUBJECT,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=ack_wait,
                max_ack_pending=1000,
            ),
        )
    finally:
        await nc.close()


@dataclass
class Replies:
    """Every ``.started``/``.finished`` in Keptn's stream, by triggered id, in stream order."""

    by_trigger: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def kinds(self, triggered_id: str) -> list[str]:
        return [r["type"].rsplit(".", 1)[1] for r in self.by_trigger.get(triggered_id, [])]

    def finished(self, triggered_id: str) -> dict[str, Any] | None:
        return next((r for r in self.by_trigger.get(triggered_id, []) if r["type"].endswith(".finished")), None)


async def read_replies(nc: Client) -> Replies:
    """The whole stream, read through an ephemeral consumer (what the shipyard-controller would get)."""
    js = nc.jetstream()
    last = (await js.stream_info(KEPTN_STREAM)).state.last_seq
    replies = Replies()
    if not last:
        return replies
    sub = await js.pull_subscribe(
        "sh.keptn.event.>",
        stream=KEPTN_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30),
    )
    try:
        seen = 0
        while seen < last:
            for msg in await sub.fetch(512, timeout=5):
                seen = msg.metadata.sequence.stream
                if msg.subject.endswith((".started", ".finished")):
                    event = json.loads(msg.data)
                    replies.by_trigger[event.get("triggeredid", "")].append(event)
    finally:
        with contextlib.suppress(NatsError, TimeoutError):  # else it lingers until its inactivity threshold
            await js.delete_consumer(KEPTN_STREAM, (await sub.consumer_info()).name)
        await sub.unsubscribe()
    return replies


class LiveReplies:
    """A core subscription for *when* replies appear (the moment of a kill); the stream is the truth."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = defaultdict(list)
        self._changed = asyncio.Event()

    async def subscribe(self, nc: Client) -> None:
        async def record(msg: Any) -> None:
            event = json.loads(msg.data)
            self.seen[event.get("triggeredid", "")].append(event["type"].rsplit(".", 1)[1])
            self._changed.set()

        await nc.subscribe("sh.keptn.event.*.started", cb=record)
        await nc.subscribe("sh.keptn.event.*.finished", cb=record)
        await nc.flush()

    async def wait_for(self, triggered_id: str, kind: str, timeout: float = SAFETY) -> None:
        async def wait() -> None:
            while kind not in self.seen[triggered_id]:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def consumer_pending(nc: Client) -> tuple[int, int]:
    """``(num_pending, num_ack_pending)`` of the service's durable consumer."""
    info = await nc.jetstream().consumer_info(KEPTN_STREAM, CONSUMER)
    return int(info.num_pending or 0), int(info.num_ack_pending or 0)


# ------------------------------------------------------------------------------------------------ git


HOOK = """#!{python}
# Test remote hook: while {ctl}/block-{name} exists, say so in {ctl}/in-{name} and hold the push there.
import pathlib, sys, time
ctl = pathlib.Path({ctl!r})
sys.stdin.read()
if (ctl / "block-{name}").exists():
    (ctl / "in-{name}").touch()
    deadline = time.monotonic() + 120
    while (ctl / "block-{name}").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
"""


class Remote:
    """The bare GitOps remote, optionally with hooks that can hold a push before (``pre-receive``) or after
    (``post-receive``) the branch moved — the moments "committed but not pushed" and "pushed but not recorded"."""

    def __init__(self, tmp: Path, *, hooks: bool = False) -> None:
        files = dict(content.REPOSITORY_FILES)
        for rel, text in content.REPOSITORY_FILES.items():
            if rel.startswith("apps/dev/carts/"):
                files[rel.replace("/carts/", "/orders/")] = text.replace("carts", "orders")
        self.path = make_remote(tmp, files)
        self.ctl = tmp / "hook-control"
        self.ctl.mkdir()
        if hooks:
            for name in ("pre-receive", "post-receive"):
                hook = self.path / "hooks" / name
                hook.write_text(HOOK.format(python=sys.executable, ctl=str(self.ctl), name=name))
                hook.chmod(0o755)

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def block(self, hook: str) -> None:
        (self.ctl / f"in-{hook}").unlink(missing_ok=True)
        (self.ctl / f"block-{hook}").touch()

    def unblock(self, hook: str) -> None:
        (self.ctl / f"block-{hook}").unlink(missing_ok=True)

    def entered(self, hook: str) -> bool:
        return (self.ctl / f"in-{hook}").exists()

    def commits_for(self, triggered_id: str) -> list[str]:
        out = git(
            "log", "main", "--fixed-strings", f"--grep=Keptn-Triggered-Id: {triggered_id}", "--format=%H", cwd=self.path
        )
        return out.split()

    def commits_by_trigger(self) -> dict[str, list[str]]:
        """For every ``Keptn-Triggered-Id`` on the branch, the commits carrying it (one git log for all)."""
        found: dict[str, list[str]] = defaultdict(list)
        out = git("log", "main", "--format=%H%x00%B%x00", cwd=self.path)
        fields = out.split("\0")
        for sha, body in zip(fields[0::2], fields[1::2], strict=False):
            for line in body.splitlines():
                key, _, value = line.strip().partition(": ")
                if key == "Keptn-Triggered-Id":
                    found[value.strip()].append(sha.strip())
        return found

    def commit_count(self) -> int:
        return int(git("rev-list", "--count", "main", cwd=self.path).strip())


# ------------------------------------------------------------------------------------------------ cluster


def simulated_cluster(remote: Remote) -> SimulatedCluster:
    """The SIMULATED cluster around ``remote``, on a fixed port: the API can go away and come back."""
    return SimulatedCluster(remote.path, url=remote.url, port=free_port())


# ------------------------------------------------------------------------------------------------ the service

SERVICE_RULES = (
    ConfigRule(match="{project: sockshop, stage: dev, service: orders}", wait=WAIT_NONE, deployment_uris=False),
    ConfigRule(match='{project: sockshop, stage: "*", service: "*"}', deployment_uris=False),
)
"""``orders`` finishes right after the push (``none``); ``carts`` waits for the SIMULATED Flux."""


def write_config(path: Path, remote_url: str, *, timeout: str = "2m") -> Path:
    orders, others = SERVICE_RULES
    path.write_text(service_config(remote_url, orders, replace(others, timeout=timeout)))
    return path


class ServiceProcess:
    """``python -m keptn_gitops_service run`` in its own process group (so ``kill -9`` of the group is a pod
    kill: the service and every git child it had running die together)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "service-0.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.generation += 1
        self.log_path = self.root / f"service-{self.generation}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "keptn_gitops_service", "run"],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + SAFETY
        while '"keptn-gitops-service is running"' not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.02)

    async def kill9(self) -> None:
        """``kill -9`` of the pod: the service and every process it started (git runs in process groups of its own,
        so this freezes the tree, then kills all of it); assert that nothing of it survives."""
        proc = self.proc
        assert proc is not None
        tree = freeze_tree(proc.pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self._reap(proc)
        for _ in range(500):
            if not [pid for pid in tree if alive(pid)]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"processes of the killed service survive: {[pid for pid in tree if alive(pid)]}")

    def sigterm(self) -> None:
        """What Kubernetes sends first when it stops a pod."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def exited(self) -> int:
        """Wait for the exit; return the exit code."""
        assert self.proc is not None
        return await self._reap(self.proc)

    async def _reap(self, proc: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + SAFETY
        while (code := proc.poll()) is None:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("the service did not exit")
            await asyncio.sleep(0.01)
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line of every generation of the process."""
        records: list[dict[str, Any]] = []
        for generation in range(1, self.generation + 1):
            for line in (self.root / f"service-{generation}.log").read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    def stop_now(self) -> None:
        """Cleanup: whatever state it is in, the service and its children are gone afterwards."""
        if self.proc is not None and self.proc.poll() is None:
            for pid in freeze_tree(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()


def _parents() -> dict[int, int]:
    """pid → parent pid of every live (non-zombie) process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent == frontier[-1]]
        frontier.pop()
        found += kids
        frontier += kids
    return found


def freeze_tree(pid: int) -> list[int]:
    """SIGSTOP ``pid`` and its descendants (until no new one appears); return them all, ``pid`` first."""
    frozen: list[int] = []
    pending = [pid]
    while pending:
        for each in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGSTOP)
            frozen.append(each)
        pending = [d for d in descendants(pid) if d not in frozen]
    return frozen


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


class StateFile:
    """The SQLite state file, opened read-only: only for choosing the moment of a kill and for reporting."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def phase(self, triggered_id: str) -> str | None:
        if not self.path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1)) as db:
                row = db.execute("SELECT phase FROM triggers WHERE triggered_id = ?", (triggered_id,)).fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None


# ------------------------------------------------------------------------------------------------ the rig


@dataclass
class Rig:
    """Everything around one service process."""

    tmp: Path
    nats: NatsServer
    remote: Remote
    cluster: SimulatedCluster
    service: ServiceProcess
    state: StateFile
    nc: Client
    live: LiveReplies
    store: str
    published: list[str] = field(default_factory=list)
    sequence: dict[str, int] = field(default_factory=dict)

    async def publish(self, service: str, tag: str, *, timeout: str | None = None) -> str:
        """A deployment.triggered for ``service`` (``timeout``: the shipyard task property overriding the wait's)."""
        event = shipyard_trigger(f"docker.io/keptnexamples/{service}:{tag}")
        event["data"]["service"] = service
        if timeout is not None:
            event["data"]["deployment"]["timeout"] = timeout
        self.sequence[event["id"]] = await publish_to_stream(self.nc, event)
        self.published.append(event["id"])
        return str(event["id"])

    async def recorded(self, triggered_id: str) -> bool:
        """Whether the service acknowledged the trigger to JetStream — it does once the trigger is in its store."""
        info = await self.nc.jetstream().consumer_info(KEPTN_STREAM, CONSUMER)
        return int(info.ack_floor.stream_seq or 0) >= self.sequence[triggered_id]

    async def until_recorded(self, triggered_id: str) -> None:
        deadline = time.monotonic() + SAFETY
        while not await self.recorded(triggered_id):
            if time.monotonic() > deadline or not self.service.alive():
                raise AssertionError(f"{triggered_id} was not recorded\n{self.service.log_tail()}")
            await asyncio.sleep(0.002)

    def reconcile_requests(self) -> int:
        """PATCHes the service sent to the Kubernetes API: a wait starts with one (after it recorded the commit)."""
        return int(self.cluster.kube.request_count["patch"])

    async def until(self, predicate: Any, what: str, timeout: float = SAFETY, *, service: bool = True) -> None:
        """Wait (cooperatively: Flux and the Kubernetes API run in this loop) until ``predicate()``; with
        ``service``, the service must stay alive meanwhile."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {timeout:.0f}s: {what}\n{self.service.log_tail()}")
            if service and not self.service.alive():
                raise AssertionError(f"the service died while waiting for: {what}\n{self.service.log_tail()}")
            await asyncio.sleep(0.002)

    async def all_finished(self, ids: list[str], timeout: float = SAFETY) -> Replies:
        """Wait until every id has a ``.finished`` in the stream, and nothing is left unacknowledged."""
        deadline = time.monotonic() + timeout
        missing: list[str] = list(ids)
        pending: tuple[int, int] | str = "unknown"
        while True:
            try:
                replies = await read_replies(self.nc)
                missing = [i for i in ids if replies.finished(i) is None]
                pending = await consumer_pending(self.nc)
                if not missing and pending == (0, 0):
                    return replies
            except (NatsError, TimeoutError) as exc:  # JetStream recovering after a restart of the server
                pending = f"unknown ({exc.__class__.__name__})"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(missing)} of {len(ids)} triggers never finished (consumer pending, unacked: {pending}): "
                    f"{missing[:5]}\n{self.service.log_tail()}"
                )
            await asyncio.sleep(0.05)


async def publish_to_stream(nc: Client, event: dict[str, Any]) -> int:
    """Publish a trigger until Keptn's stream acknowledges it (the test's own NATS client lives through the same
    outages as the service; the event id deduplicates a repeat); return its sequence in the stream."""
    deadline = time.monotonic() + SAFETY
    while True:
        try:
            ack = await nc.jetstream().publish(
                TRIGGER_SUBJECT, json.dumps(event).encode(), headers={"Nats-Msg-Id": event["id"]}, timeout=5
            )
            return int(ack.seq)
        except (NatsError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def service_env(tmp: Path, nats_url: str, config: Path, kubeconfig: Path) -> dict[str, str]:
    """The service's whole environment (nothing inherited but PATH)."""
    (tmp / "home").mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "NATS_URL": nats_url,
        "KEPTN_GITOPS_CONFIG": str(config),
        "KEPTN_GITOPS_STATE_DIR": str(tmp / "state"),
        "KUBECONFIG": str(kubeconfig),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HTTP_PORT": "0",
    }


@contextlib.asynccontextmanager
async def rig(
    tmp: Path,
    server: NatsServer,
    *,
    hooks: bool = False,
    timeout: str = "2m",
    store: str = "sqlite",
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """On the running JetStream ``server`` (the ``nats_server`` fixture): create Keptn's stream, start the remote,
    the SIMULATED cluster and the service (with its ``store``: ``sqlite`` or ``jetstream``,
    ``KEPTN_GITOPS_STATE_STORE``); stop them all (the server: the fixture, after the test)."""
    cluster: SimulatedCluster | None = None
    service: ServiceProcess | None = None
    nc: Client | None = None
    try:
        await create_keptn_stream(server.url)
        remote = Remote(tmp, hooks=hooks)
        cluster = simulated_cluster(remote)
        kubeconfig = tmp / "kubeconfig"
        await cluster.start(kubeconfig)
        config = write_config(tmp / "gitops.yaml", remote.url, timeout=timeout)
        env = {
            **service_env(tmp, server.url, config, kubeconfig),
            "KEPTN_GITOPS_STATE_STORE": store,
            **(extra_env or {}),
        }
        if store == "jetstream":
            # A restarted process is a new replica (<hostname>-<pid>): it takes the dead one's deployments over when
            # their lease expires. A short lease keeps the trials short.
            env["KEPTN_GITOPS_STATE_LEASE"] = str(JETSTREAM_LEASE)
        service = ServiceProcess(tmp, env)
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        live = LiveReplies()
        await live.subscribe(nc)
        await service.start()
        yield Rig(tmp, server, remote, cluster, service, StateFile(tmp / "state" / "state.sqlite3"), nc, live, store)
    finally:
        if service is not None:
            service.stop_now()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        if cluster is not None:
            await cluster.stop()


@contextlib.contextmanager
def all_hooks_released(remote: Remote) -> Iterator[None]:
    try:
        yield
    finally:
        remote.unblock("pre-receive")
        remote.unblock("post-receive")
