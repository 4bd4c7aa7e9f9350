"""The Kubernetes edge: one shared LIST+WATCH per (resource kind, namespace), feeding every waiter.

Waiters never poll. A :class:`SharedWatch` keeps the current objects of one kind in one namespace, and wakes
waiters on every change. It re-lists after a disconnect, a ``410 Gone`` or an API error, with bounded
exponential backoff. lightkube is used only here; its exceptions become :class:`KubernetesAccessError`.

A hint (a webhook saying an object changed) makes the watch GET that one object at once
(:meth:`KubeHub.nudge`), so its waiters need not wait for the watch stream; what is read is the status as the
API server has it, never what the hint claims.
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
from keptn_gitops_service.errors import KubernetesAccessDeniedError, KubernetesAccessError
from keptn_gitops_service.reconcile.following import ObjectCache

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
HELM_RELEASE = Kind("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases")
APPLICATION = Kind("argoproj.io", "v1alpha1", "Application", "applications")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def load_client(kubeconfig: str | None = None, *, context: str | None = None, in_cluster: bool = False) -> AsyncClient:
    """A client from ``kubeconfig`` if given, else ``KUBECONFIG``/``~/.kube/config``/the service account; its
    ``context`` when given, else the current one. ``in_cluster``: the service account only."""
    try:
        if in_cluster:
            config = KubeConfig.from_service_account()
        else:
            config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        chosen = config.get(context_name=context) if context else config
    except Exception as exc:  # lightkube raises several unrelated types here
        where = (
            "the in-cluster service account"
            if in_cluster
            else kubeconfig or "KUBECONFIG, ~/.kube/config or the in-cluster service account"
        )
        which = f" (context {context})" if context else ""
        raise KubernetesAccessError(
            f"cannot load the Kubernetes configuration from {where}{which}: {_describe_error(exc)}"
        ) from None
    return AsyncClient(config=chosen, field_manager="keptn-gitops-service")


async def check_kubeconfig(
    kubeconfig: str | None = None, *, context: str | None = None, in_cluster: bool = False
) -> None:
    """Load the Kubernetes configuration the waits will use (:func:`load_client`); raise
    :class:`KubernetesAccessError` when it cannot be loaded."""
    await load_client(kubeconfig, context=context, in_cluster=in_cluster).close()


class SharedWatch(ObjectCache):
    """The live objects of one kind in one namespace."""

    def __init__(self, client: AsyncClient, kind: Kind, namespace: str, *, max_backoff: float = 30.0) -> None:
        super().__init__()
        self._client = client
        self._res = create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        self.kind = kind
        self.namespace = namespace
        self._synced = asyncio.Event()
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.fatal: KubernetesAccessError | None = None
        self.last_error: str = ""
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._read_again: set[str] = set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch {self.kind.plural}/{self.namespace}")

    async def stop(self) -> None:
        for read in list(self._reads.values()):
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def nudge(self, name: str) -> bool:
        """Read object ``name`` now and wake its waiters; a no-op (``False``) unless a waiter follows it.

        Bursts coalesce: while a read is in flight, any number of nudges for the same object make one more read
        after it (the in-flight read may have started before the change the later hints announce)."""
        if name not in self._interest or self._task is None or self.fatal is not None:
            return False
        running = self._reads.get(name)
        if running is not None and not running.done():
            self._read_again.add(name)
            return True
        self._reads[name] = asyncio.create_task(self._read(name), name=f"read {self.kind.plural}/{name}")
        return True

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _store(self, body: Object, *, deleted: bool = False) -> None:
        """Keep ``body`` (or forget the object when ``deleted``) unless what we hold is newer; wake its waiters.

        A nudged GET can overtake the watch stream; without this check, the stream's older events arriving
        after it would move the object back in time."""
        name = str(body["metadata"]["name"])
        current = self._objects.get(name)
        if current is not None and _older(body, current):
            return
        if deleted:
            self._objects.pop(name, None)
        else:
            self._objects[name] = body
        self._notify(name)

    async def _read(self, name: str) -> None:
        try:
            while True:
                self._read_again.discard(name)
                try:
                    obj = await self._client.get(self._res, name, namespace=self.namespace)
                except Exception as exc:  # not there (yet), refused, unreachable: the watch stays the source
                    log.info(
                        "could not read a hinted object; the watch will deliver it",
                        resource=self.kind.plural,
                        namespace=self.namespace,
                        name=name,
                        error=_describe_error(exc),
                    )
                else:
                    self._store(_as_dict(obj))
                if name not in self._read_again:
                    return
        finally:
            if self._reads.get(name) is asyncio.current_task():
                del self._reads[name]

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                version = await self._list()
                await self._watch(version)
                failures = 0
            except KubernetesAccessError as exc:
                self.fatal = exc
                self._synced.set()
                self._notify()
                return
            except Exception as exc:  # any interruption: re-list after a bounded backoff, never die silently
                # The backoff grows while LIST or WATCH keep failing (a LIST that works does not reset it: a
                # WATCH failing right after it must not re-list five times a second); a watch that ran a while
                # starts over.
                failures = 1 if loop.time() - started > self._max_backoff else failures + 1
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
        try:
            listing = self._client.list(self._res, namespace=self.namespace)
            objects: dict[str, Object] = {}
            async for obj in listing:
                body = _as_dict(obj)
                objects[str(body["metadata"]["name"])] = body
        except ApiError as exc:
            self._raise_if_denied(exc, "list")
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
        try:
            async for event, obj in stream:
                self._store(_as_dict(obj), deleted=event == "DELETED")
        except ApiError as exc:
            self._raise_if_denied(exc, "watch")
            raise
        except httpx2.HTTPStatusError as exc:  # lightkube raises the plain HTTP error for a refused WATCH request
            if exc.response.status_code in (401, 403):
                raise KubernetesAccessDeniedError(
                    f"the Kubernetes API refused to watch {self.kind.plural} in namespace {self.namespace}: "
                    f"{exc.response.status_code} {exc.response.reason_phrase}"
                ) from None
            raise

    def _raise_if_denied(self, exc: ApiError, verb: str) -> None:
        """401/403 end the watch for good: retrying with the same credentials would only hammer the API."""
        if exc.status.code in (401, 403):
            raise KubernetesAccessDeniedError(
                f"the Kubernetes API refused to {verb} {self.kind.plural} in namespace {self.namespace}: "
                f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
            ) from None


class KubeHub:
    """Shared watches and the few writes we make (reconcile requests)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._watches: dict[tuple[Kind, str], SharedWatch] = {}

    def watch(self, kind: Kind, namespace: str) -> SharedWatch:
        key = (kind, namespace)
        # A watch that ended on a 401/403 is replaced: a wait that starts after RBAC was fixed needs no restart.
        if key not in self._watches or self._watches[key].fatal is not None:
            self._watches[key] = SharedWatch(self._client, kind, namespace)
            self._watches[key].start()
        return self._watches[key]

    def nudge(self, kind: str, namespace: str | None, name: str, *, group: str = "") -> bool:
        """A hint that object ``name`` of ``kind`` changed: each watch of that kind (in ``namespace``, or in every
        namespace when ``None``; of API ``group`` when given) reads it now and wakes its waiters.

        Works for every kind the hub watches. Returns whether some waiter follows the object; a hint for an
        object nobody waits for costs no API request."""
        woke = False
        for (watched, watched_namespace), watch in list(self._watches.items()):
            if watched.kind != kind or (group and watched.group != group):
                continue
            if namespace is None or watched_namespace == namespace:
                woke = watch.nudge(name) or woke
        return woke

    async def request_reconcile(self, kind: Kind, namespace: str, name: str, now: datetime | None = None) -> Object:
        """Annotate an object with ``reconcile.fluxcd.io/requestedAt`` like ``flux reconcile`` does; returns the
        annotated object (read after the write, so it is at least as new as anything applied before)."""
        patch = {"metadata": {"annotations": {REQUESTED_AT: request_token(now)}}}
        doing = f"cannot request a reconcile of {kind.kind} {namespace}/{name}"
        patched = await self.patch(kind, namespace, name, patch, doing=doing)
        if patched is None:
            raise KubernetesAccessError(f"{doing}: not found")
        return patched

    async def patch(self, kind: Kind, namespace: str, name: str, patch: Object, *, doing: str = "") -> Object | None:
        """A JSON merge patch; the patched object, or ``None`` when there is no such object. A
        ``metadata.resourceVersion`` in ``patch`` makes it conditional (a 409 error when the object changed)."""
        res = create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        try:
            patched = await self._client.patch(res, name, dict(patch), namespace=namespace, patch_type=PatchType.MERGE)
        except (ApiError, httpx2.HTTPError) as exc:
            if isinstance(exc, ApiError) and exc.status.code == 404:
                return None
            raise _access_error(exc, doing or f"cannot patch {kind.kind} {namespace}/{name}") from None
        return _as_dict(patched)

    async def get(self, kind: Kind, namespace: str, name: str) -> Object | None:
        """One object as the API server has it now (not from a watch), or ``None`` when there is no such object."""
        res = create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)
        try:
            return _as_dict(await self._client.get(res, name, namespace=namespace))
        except (ApiError, httpx2.HTTPError) as exc:
            if isinstance(exc, ApiError) and exc.status.code == 404:
                return None
            raise _access_error(exc, f"cannot read {kind.kind} {namespace}/{name}") from None

    async def close(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
        await self._client.close()


def request_token(now: datetime | None = None) -> str:
    """A ``reconcile.fluxcd.io/requestedAt`` value: the time in RFC 3339 with fractions, as ``flux`` writes it."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _access_error(exc: Exception, doing: str) -> KubernetesAccessError:
    if isinstance(exc, ApiError) and exc.status.code in (401, 403):
        return KubernetesAccessDeniedError(f"{doing}: {_describe_error(exc)}")
    return KubernetesAccessError(f"{doing}: {_describe_error(exc)}")


def _as_dict(obj: Any) -> dict[str, Any]:
    """A generic resource as a plain dict (lightkube's ``to_dict`` is untyped)."""
    return dict(obj.to_dict())


def _older(new: Object, current: Object) -> bool:
    """Whether ``new`` is an older version of the object than ``current``.

    Kubernetes calls resourceVersions opaque, but etcd-backed API servers issue increasing integers, and the
    watch delivers them in that order; when either is not an integer, nothing is treated as older."""
    new_version = str((new.get("metadata") or {}).get("resourceVersion") or "")
    current_version = str((current.get("metadata") or {}).get("resourceVersion") or "")
    if not (new_version.isdigit() and current_version.isdigit()):
        return False
    return int(new_version) < int(current_version)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}: {exc.status.message}"
    return f"{exc.__class__.__name__}: {exc}"
