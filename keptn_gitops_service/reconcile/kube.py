"""The Kubernetes edge: one shared LIST+WATCH per (resource kind, namespace), feeding every waiter.

Waiters never poll. A :class:`SharedWatch` keeps the current objects of one kind in one namespace, and wakes
waiters on every change. It re-lists after a disconnect, a ``410 Gone`` or an API error, with bounded
exponential backoff. lightkube is used only here; its exceptions become :class:`KubernetesAccessError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
import structlog
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from keptn_gitops_service import metrics
from keptn_gitops_service.errors import KubernetesAccessError

log = structlog.get_logger(__name__)

Object = Mapping[str, Any]


@dataclass(frozen=True)
class Kind:
    """A namespaced custom resource kind."""

    group: str
    version: str
    kind: str
    plural: str


KUSTOMIZATION = Kind("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations")
GIT_REPOSITORY = Kind("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def load_client(kubeconfig: str | None = None) -> AsyncClient:
    """A client from ``kubeconfig`` if given, else ``KUBECONFIG``/``~/.kube/config``/the service account."""
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except Exception as exc:  # lightkube raises several unrelated types here
        raise KubernetesAccessError(f"cannot load the Kubernetes configuration: {exc}") from None
    return AsyncClient(config=config, field_manager="keptn-gitops-service")


class SharedWatch:
    """The live objects of one kind in one namespace."""

    def __init__(self, client: AsyncClient, kind: Kind, namespace: str, *, max_backoff: float = 30.0) -> None:
        self._client = client
        self._res = create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        self.kind = kind
        self.namespace = namespace
        self._objects: dict[str, Object] = {}
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.fatal: KubernetesAccessError | None = None
        self.last_error: str = ""
        self.relists = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch {self.kind.plural}/{self.namespace}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def get(self, name: str) -> Object | None:
        return self._objects.get(name)

    def next_change(self) -> asyncio.Event:
        """An event set at the next change. Take it *before* reading objects, so no change slips between."""
        return self._changed

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                await self._watch(version)
            except KubernetesAccessError as exc:
                self.fatal = exc
                self._synced.set()
                self._notify()
                return
            except Exception as exc:  # any interruption: re-list after a bounded backoff, never die silently
                failures += 1
                metrics.WATCH_RECONNECTS.inc()
                self.last_error = _describe_error(exc)
                delay = min(self._max_backoff, 0.1 * 2 ** min(failures, 10))
                log.warning(
                    "kubernetes watch interrupted; re-listing",
                    resource=self.kind.plural,
                    namespace=self.namespace,
                    error=self.last_error,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        self.relists += 1
        try:
            listing = self._client.list(self._res, namespace=self.namespace)
            objects: dict[str, Object] = {}
            async for obj in listing:
                body = _as_dict(obj)
                objects[str(body["metadata"]["name"])] = body
        except ApiError as exc:
            if exc.status.code in (401, 403):
                raise KubernetesAccessError(
                    f"the Kubernetes API refused to list {self.kind.plural} in namespace {self.namespace}: "
                    f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
                ) from None
            raise
        self._objects = objects
        self._synced.set()
        self._notify()
        try:
            return str(listing.resourceVersion)
        except Exception:  # an empty list gives no version in old lightkube releases
            return ""

    async def _watch(self, version: str) -> None:
        stream = self._client.watch(
            self._res, namespace=self.namespace, resource_version=version or None, server_timeout=300
        )
        async for event, obj in stream:
            body = _as_dict(obj)
            name = str(body["metadata"]["name"])
            if event == "DELETED":
                self._objects.pop(name, None)
            else:
                self._objects[name] = body
            self._notify()


class KubeHub:
    """Shared watches and the few writes we make (reconcile requests)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._watches: dict[tuple[Kind, str], SharedWatch] = {}

    def watch(self, kind: Kind, namespace: str) -> SharedWatch:
        key = (kind, namespace)
        if key not in self._watches:
            self._watches[key] = SharedWatch(self._client, kind, namespace)
            self._watches[key].start()
        return self._watches[key]

    async def request_reconcile(self, kind: Kind, namespace: str, name: str, now: datetime | None = None) -> None:
        """Annotate an object with ``reconcile.fluxcd.io/requestedAt`` like ``flux reconcile`` does."""
        token = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        res = create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        patch = {"metadata": {"annotations": {REQUESTED_AT: token}}}
        try:
            await self._client.patch(res, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
        except (ApiError, httpx2.HTTPError) as exc:
            raise KubernetesAccessError(
                f"cannot request a reconcile of {kind.kind} {namespace}/{name}: {_describe_error(exc)}"
            ) from None

    async def close(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
        await self._client.close()


def _as_dict(obj: Any) -> dict[str, Any]:
    """A generic resource as a plain dict (lightkube's ``to_dict`` is untyped)."""
    return dict(obj.to_dict())


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
    return f"{exc.__class__.__name__}: {exc}"
