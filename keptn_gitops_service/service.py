"""The running service: transport in, workflows, transport out. Wires the edges together and nothing more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from keptn_gitops_service import SERVICE_NAME, __version__
from keptn_gitops_service.cdevents.outbox import CDEventsEmitter, OutboxWorker
from keptn_gitops_service.cdevents.senders import HttpSender, NatsSender, Sender
from keptn_gitops_service.clock import Clock, SystemClock
from keptn_gitops_service.config.model import GitOpsConfig
from keptn_gitops_service.editing.yamllimits import YamlLimits
from keptn_gitops_service.errors import ForgeError, StateError, WebhookError, describe_error, stop_if_cancelled
from keptn_gitops_service.forges.registry import Forges
from keptn_gitops_service.gitops.writer import GitWriter
from keptn_gitops_service.keptn.data import Status
from keptn_gitops_service.keptn.distributor import DistributorTransport
from keptn_gitops_service.keptn.nats import NatsTransport
from keptn_gitops_service.keptn.transport import HandlerTasks, Transport
from keptn_gitops_service.keptn.uniform import PING_INTERVAL, Identity, Subscription, UniformClient
from keptn_gitops_service.reconcile.dispatch import Reconciler
from keptn_gitops_service.reconcile.kube import KubeHub, load_client
from keptn_gitops_service.settings import Settings
from keptn_gitops_service.state.jetstream import JetStreamStateStore
from keptn_gitops_service.state.store import SqliteStateStore, StateStore
from keptn_gitops_service.tasks import cancel_and_wait
from keptn_gitops_service.web.probes import ProbeServer, Route
from keptn_gitops_service.web.webhooks import Hint, webhook_routes
from keptn_gitops_service.workflow.deployment import DeploymentBody
from keptn_gitops_service.workflow.lifecycle import Finished, Lifecycle, Trigger
from keptn_gitops_service.workflow.observed import CDEventsObserver
from keptn_gitops_service.workflow.preflight import startup_problems
from keptn_gitops_service.workflow.pullrequests import ForgeFactory, PullRequestGate
from keptn_gitops_service.workflow.release import ReleaseBody
from keptn_gitops_service.workflow.rollback import RollbackBody

log = structlog.get_logger(__name__)

#: Seconds until the start-up checks run again after a failure; each further failure doubles it, up to the maximum.
STARTUP_RECHECK, STARTUP_RECHECK_MAX = 30.0, 240.0


def _uniform_client(settings: Settings, interval: float) -> UniformClient | None:
    """A registration client when the Keptn API is configured (in NATS mode; the distributor registers itself)."""
    if not (settings.keptn_api_endpoint and settings.keptn_api_token) or settings.transport != "nats":
        return None
    identity = Identity(
        name=SERVICE_NAME,
        namespace=settings.k8s_namespace,
        node=settings.k8s_node_name,
        pod=settings.k8s_pod_name,
        version=__version__,
        deployment=settings.k8s_deployment_name,
    )
    return UniformClient(
        settings.keptn_api_endpoint, settings.keptn_api_token, identity, settings.topics, interval=interval
    )


def _forge_hooks(config: GitOpsConfig) -> bool:
    """Whether any repository's forge has a webhook secret (only then is the endpoint served)."""
    return any(r.forge is not None and r.forge.webhook_secret_env for r in config.repositories)


def new_writer(settings: Settings) -> GitWriter:
    """The process's :class:`GitWriter`, with the git timeout, the YAML limits and the edit deadline set."""
    limits = YamlLimits(
        max_file_bytes=settings.max_file_bytes,
        max_documents=settings.yaml_max_documents,
        max_alias_nodes=settings.yaml_max_nodes,
        max_depth=settings.yaml_max_depth,
    )
    return GitWriter(
        settings.state_dir,
        git_timeout=settings.git_timeout_seconds,
        yaml_limits=limits,
        edit_timeout=settings.edit_timeout_seconds,
    )


class Service:
    """keptn-gitops-service over NATS."""

    def __init__(
        self,
        settings: Settings,
        config: GitOpsConfig,
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        ping_interval: float = PING_INTERVAL,
        forges: ForgeFactory | None = None,
    ) -> None:
        """``forges``: the forge of a repository (default: the adapters of :mod:`.forges`, tokens from the
        environment)."""
        self.settings = settings
        self.config = config
        self.clock = clock or SystemClock()
        self.transport: Transport
        routes: list[tuple[str, str, Route]] = []
        if settings.transport == "distributor":
            distributor = DistributorTransport(settings.distributor_event_url)
            routes.append(("POST", "/", distributor.receive))
            self.transport = distributor
        else:
            self.transport = NatsTransport(
                settings.nats_url,
                settings.topics,
                settings.queue_group,
                name=SERVICE_NAME,
                ack_wait=settings.state_lease_seconds,  # a killed process's unrecorded triggers return within a lease
            )
        self.store: StateStore = _state_store(settings, self.clock)
        self.writer = new_writer(settings)
        self._hub: KubeHub | None = None
        self.reconciler = Reconciler(self._new_hub, self.clock, progress_interval=settings.progress_interval_seconds)
        self.startup_problems: list[str] | None = None
        """What the start-up checks found (``None``: not done yet); ``/readyz`` is not ready until it is empty."""
        self.startup_checked = asyncio.Event()
        """Set once the start-up checks have run (whatever they found); tests and embedders wait on it."""
        self._startup_task: asyncio.Task[None] | None = None
        self._forges = Forges(self.clock)
        self.pull_requests = PullRequestGate(
            self.writer,
            forges or self._forges,
            self.store,
            self.clock,
            bridge_url=settings.keptn_bridge_url,
            progress_interval=settings.progress_interval_seconds,
        )
        routes += webhook_routes(
            self._hint,
            on_forge_hook=self._forge_hook if _forge_hooks(config) else None,
            flux_secret=(settings.flux_webhook_secret or "").encode(),
            argocd_secret=(settings.argocd_webhook_secret or "").encode(),
            argocd_header=settings.argocd_webhook_header,
        )
        ids = new_id or (lambda: str(uuid.uuid4()))
        self._resumed = HandlerTasks()
        self.uniform = _uniform_client(settings, ping_interval)
        self._uniform_task: asyncio.Task[None] | None = None
        self._adopter: asyncio.Task[None] | None = None
        self.probes = (
            ProbeServer(self._readiness, port=settings.http_port, routes=routes)
            if settings.http_port is not None
            else None
        )
        self.cdevents = _cdevents_worker(settings, self.store, self.clock)
        self.lifecycle = Lifecycle(
            config,
            self.store,
            self.transport,
            self.clock,
            tasks={  # THE routing by task, for live messages and resumed records alike
                "deployment": DeploymentBody(
                    config, self.writer, self.reconciler, self.clock, pull_requests=self.pull_requests
                ),
                "release": ReleaseBody(),
                "rollback": RollbackBody(config, self.writer, self.reconciler, pull_requests=self.pull_requests),
            },
            new_id=ids,
        )
        if self.uniform is not None:
            self.lifecycle.observers.append(self._report_errored)
        if self.cdevents is not None:
            emitter = CDEventsEmitter(self.store, self.cdevents, source=settings.cdevents_source)
            self.lifecycle.observers.append(CDEventsObserver(config, emitter))

    async def _report_errored(self, trigger: Trigger, finished: Finished) -> None:
        """An errored task goes to the control plane's ``/v1/log`` too (go-utils' sdk does the same), so Keptn's
        Bridge shows why it failed."""
        if self.uniform is not None and finished.status is Status.ERRORED:
            event = trigger.event
            await self.uniform.log_error(
                trigger.task, event.shkeptncontext, event.id, finished.message, self.clock.now()
            )

    def _forge_hook(self, name: str, headers: Mapping[str, str], body: bytes) -> bool:
        """A forge webhook for repository ``name``: wakes the waits of the pull request it names."""
        repository = next((r for r in self.config.repositories if r.name == name and r.forge is not None), None)
        if repository is None:
            raise WebhookError(f"no repository named {name[:64]!r} has a forge")
        try:
            event = self._forges.webhook(repository, headers, body)
        except ForgeError as exc:
            raise WebhookError(str(exc)) from None
        if event is None:
            return False
        log.info("pull request event", repository=event.repository, number=event.number, action=event.action)
        return self.pull_requests.wakeups.wake(event.repository, event.number)

    def _new_hub(self) -> KubeHub:
        self._hub = KubeHub(load_client(self.settings.kubeconfig))
        return self._hub

    def _hint(self, hint: Hint) -> bool:
        """A webhook hint: the hub's watches of that kind read the object now. No hub yet means nobody waits."""
        return self._hub is not None and self._hub.nudge(hint.kind, hint.namespace, hint.name, group=hint.group)

    async def start(self) -> None:
        """Connect, subscribe, and resume whatever a previous process left unfinished."""
        if self.probes is not None:
            await self.probes.start()
        # Snapshot the work left by a previous process *before* subscribing: a trigger claimed by this process
        # a moment later is already being handled and must not be resumed as well.
        await self.store.open()
        if self.cdevents is not None:
            self.cdevents.start()  # re-sends what a previous process left in the outbox
        leftovers = await self.store.unfinished()
        await self.transport.connect()
        await self.transport.subscribe(self.lifecycle.receive)
        for record in leftovers:
            self._resumed.spawn(self.lifecycle.resume(record))
        self._startup_task = asyncio.create_task(self._check_startup(), name="start-up checks")
        if isinstance(self.store, JetStreamStateStore):
            self._adopter = asyncio.create_task(self._adopt_orphans(self.store.lease / 2), name="orphan adoption")
        if self.uniform is not None:
            self._uniform_task = asyncio.create_task(self.uniform.run(self._follow), name="uniform registration")

    async def _follow(self, subscriptions: tuple[Subscription, ...]) -> None:
        """Receive what the control plane's subscriptions (edited in Keptn's Bridge) ask for."""
        self.lifecycle.subscriptions = subscriptions
        subjects = sorted({s.event for s in subscriptions})
        log.info("following the control plane's subscriptions", subjects=subjects)
        if isinstance(self.transport, NatsTransport):
            await self.transport.resubscribe(subjects)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop taking events, give running work ``grace`` seconds, then leave the rest in the state store
        (it is resumed on the next start)."""
        await cancel_and_wait([t for t in (self._uniform_task, self._adopter, self._startup_task) if t is not None])
        await asyncio.gather(self.transport.close(grace=grace), self._resumed.drain(grace))
        if self.uniform is not None:
            await self.uniform.close()
        await self.writer.close()
        await self._forges.close()
        await self.reconciler.close()
        if self.cdevents is not None:
            await self.cdevents.stop()
        await self.store.close()
        if self.probes is not None:
            await self.probes.stop()

    async def _adopt_orphans(self, every: float) -> None:
        """Resume the deployments of replicas that died (their leases expired), periodically."""
        while True:
            await self.clock.sleep(every)
            try:
                orphans = await self.store.orphans()
            except StateError as exc:
                stop_if_cancelled()
                log.warning("could not look for orphaned deployments", error=describe_error(exc))
                continue
            for record in orphans:
                self._resumed.spawn(self.lifecycle.resume(record))

    async def _check_startup(self) -> None:
        """Reach every repository with its credentials, load the kubeconfig when a rule waits through Kubernetes;
        until that works, say what is wrong (log lines, ``/readyz``) and try again, spaced out."""
        delay = STARTUP_RECHECK
        while True:
            try:
                problems = await startup_problems(
                    self.config,
                    helper_dir=self.settings.state_dir / "git-home",
                    kubeconfig=self.settings.kubeconfig,
                    git_timeout=self.settings.git_timeout_seconds,
                )
            except Exception as exc:  # a check that cannot run at all must not leave /readyz "still running"
                log.exception("the start-up checks failed")
                problems = [f"the start-up checks could not run: {exc.__class__.__name__}: {exc}"]
            self.startup_problems = problems
            self.startup_checked.set()
            if not problems:
                log.info("start-up checks passed", repositories=len(self.config.repositories))
                return
            for problem in problems:
                log.error("start-up check failed; not ready", problem=problem, retry_in=delay)
            await self.clock.sleep(delay)
            delay = min(delay * 2, STARTUP_RECHECK_MAX)

    async def _readiness(self) -> dict[str, dict[str, Any]]:
        try:
            await self.store.get("readiness-probe")
            store: dict[str, Any] = {"ok": True}
        except StateError as exc:
            store = {"ok": False, "error": str(exc)}
        transport = {"ok": self.transport.connected, "mode": self.transport.mode}
        if self.transport.mode == "core":
            transport["note"] = "Keptn's JetStream stream is not available: triggers sent while down are lost"
        if self.startup_problems is None:
            startup: dict[str, Any] = {"ok": False, "problems": ["the start-up checks are still running"]}
        else:
            startup = {"ok": not self.startup_problems, "problems": list(self.startup_problems)}
        return {
            "nats" if isinstance(self.transport, NatsTransport) else "distributor": transport,
            "stateStore": store,
            "startupChecks": startup,
        }

    async def wait_idle(self) -> None:
        """Return when no event and no resumed deployment is being handled (tests, the demo)."""
        await self._resumed.wait_idle()
        await self.transport.wait_idle()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        log.info("keptn-gitops-service is running", nats=self.settings.nats_url, topics=list(self.settings.topics))
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await self.stop()


def _cdevents_worker(settings: Settings, store: StateStore, clock: Clock) -> OutboxWorker | None:
    """The CDEvents outbox worker when a sink or subject is configured (``None``: no CDEvents)."""
    senders: list[Sender] = []
    if settings.cdevents_sink:
        structured = settings.cdevents_mode == "structured"
        senders.append(HttpSender(settings.cdevents_sink, mode="structured" if structured else "binary"))
    if settings.cdevents_subject:
        senders.append(NatsSender(settings.nats_url, settings.cdevents_subject))
    return OutboxWorker(store, senders, clock) if senders else None


def _state_store(settings: Settings, clock: Clock) -> StateStore:
    if settings.state_store == "jetstream":
        return JetStreamStateStore(
            owner=settings.replica_id, clock=clock, lease=settings.state_lease_seconds, nats_url=settings.nats_url
        )
    return SqliteStateStore(settings.state_dir / "state.sqlite3")
