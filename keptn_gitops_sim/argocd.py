"""SIMULATED Argo CD (tests and benchmarks only): its REST API server and its application controller.

This is **not** Argo CD. Both parts work on the ``argoproj.io/v1alpha1`` Applications stored in a
:class:`~keptn_gitops_sim.kubeapi.KubeApiServer`, so a test can reach the same Applications through the
Kubernetes API and through Argo CD's API, and drive them either with :class:`SimulatedArgoCD` or by writing
statuses itself.

:class:`ArgoCdApiServer` speaks the wire protocol of Argo CD's API server (``server/application/application.go``)
 closely enough for our REST client: ``Authorization: Bearer``; ``GET
/api/v1/applications/{name}`` with ``appNamespace``, ``project`` and ``refresh`` (which sets the refresh annotation
and answers once the controller removed it); ``POST /api/v1/applications/{name}/sync`` (sets ``operation`` like
``SetAppOperation``, refuses a second operation and a revision other than ``targetRevision`` under auto-sync);
``GET /api/v1/stream/applications`` (newline-delimited ``{"result": {"type", "application"}}``, ``ADDED`` for every
visible Application first); grpc-gateway error bodies ``{"error", "code", "message", "details"}`` with Argo CD's
"permission denied" for Applications that do not exist unless ``project`` is given.

:class:`SimulatedArgoCD` plays the application controller: a refresh resolves ``targetRevision`` in a local bare
repository and compares it with what was last synced; auto-sync (or a requested ``operation``) runs a sync with
``operationState`` ``Running`` → ``Succeeded``/``Failed``, and health is assessed in a separate, later write
(``Progressing`` → ``Healthy``/``Degraded``), like the real controller's separate loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from keptn_gitops_sim.fluxsim import run_git
from keptn_gitops_sim.kubeapi import JSON, KubeApiServer, StoreEvent, now_rfc3339

__all__ = ["ArgoCdApiServer", "SimulatedArgoCD"]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
REFRESH: Final = "argocd.argoproj.io/refresh"
REFRESH_TIMESTAMP: Final = "argocd.argoproj.io/refresh-timestamp"
_GRPC_CODES: Final = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 2, 503: 14}


def _error(status: int, message: str) -> web.Response:
    body = {"error": message, "code": _GRPC_CODES.get(status, 2), "message": message, "details": []}
    return web.json_response(body, status=status)


def _application(event: StoreEvent) -> bool:
    return (event.rtype.group, event.rtype.plural) == (GROUP, PLURAL)


# ---------------------------------------------------------------------------------------------- the API server


class ArgoCdApiServer:
    """SIMULATED Argo CD API server (test/bench only) over the Applications of a :class:`KubeApiServer`.

    Knobs: :meth:`fail_next` (the next N requests answer ``status``), :meth:`deny` (403 for one Application, hidden
    from streams), :meth:`drop_streams` (an API server restart), :meth:`wait_for_streams`, :attr:`request_count`
    (``get``, ``refresh``, ``sync``, ``stream`` and ``total``).
    """

    def __init__(
        self,
        kube: KubeApiServer,
        *,
        token: str = "argocd-token",
        namespace: str = "argocd",
        refresh_timeout: float = 30,
    ) -> None:
        self._kube = kube
        self.token = token
        self.namespace = namespace
        self._refresh_timeout = refresh_timeout
        self.request_count: Counter[str] = Counter()
        self._fail: list[int] = []
        self._denied: set[str] = set()
        self._streams: set[asyncio.Queue[StoreEvent | None]] = set()
        self._aborting = False
        self._streams_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/v1/stream/applications", self._stream)
        app.router.add_get("/api/v1/applications/{name}", self._get)
        app.router.add_post("/api/v1/applications/{name}/sync", self._sync)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        log.info("SIMULATED Argo CD API server listening on %s", self._url)
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            self.drop_streams()
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("ArgoCdApiServer is not started")
        return self._url

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests (after authentication) with ``status``."""
        self._fail = [status] * count

    def deny(self, name: str) -> None:
        """The token may not see Application ``name``: 403 "permission denied", and no stream events for it."""
        self._denied.add(name)

    def allow(self, name: str) -> None:
        self._denied.discard(name)

    def drop_streams(self, *, abort: bool = False) -> int:
        """End every open application stream (``abort``: reset the connection, as a crashing server does)."""
        self._aborting = abort
        for queue in self._streams:
            queue.put_nowait(None)
        return len(self._streams)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def wait_for_streams(self, count: int = 1) -> None:
        """Return once at least ``count`` streams are open (bound it with ``asyncio.wait_for``)."""
        while len(self._streams) < count:
            self._streams_changed.clear()
            await self._streams_changed.wait()

    # ------------------------------------------------------------------ handlers

    def _check(self, request: web.Request, kind: str) -> web.Response | None:
        self.request_count["total"] += 1
        self.request_count[kind] += 1
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), self.token.encode()):
            return _error(401, "invalid session: token signature is invalid")
        if self._fail:
            return _error(self._fail.pop(0), "failure injected by SIMULATED ArgoCdApiServer.fail_next")
        return None

    def _lookup(self, name: str, params: Mapping[str, Any]) -> tuple[JSON | None, web.Response | None]:
        """The Application, or Argo CD's answer for one we may not see (403, or 404 when ``project`` is given)."""
        namespace = str(params.get("appNamespace") or self.namespace)
        project = params.get("project")
        app = self._kube.get_object(GROUP, VERSION, PLURAL, namespace, name)
        hidden = app is None or name in self._denied
        if project and not hidden and app is not None and (app.get("spec") or {}).get("project") != project:
            hidden = True
        if not hidden:
            return app, None
        if project and name not in self._denied:
            return None, _error(404, f'applications.argoproj.io "{name}" not found')
        return None, _error(403, "permission denied")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        refresh = request.query.get("refresh")
        refused = self._check(request, "refresh" if refresh else "get")
        if refused is not None:
            return refused
        app, missing = self._lookup(request.match_info["name"], request.query)
        if app is None:
            assert missing is not None
            return missing
        if not refresh:
            return web.json_response(app)
        return await self._refresh(app, refresh)

    async def _refresh(self, app: JSON, kind: str) -> web.StreamResponse:
        """Set the annotation like ``argo.RefreshApp``; answer with the first version without it."""
        meta = app["metadata"]
        refreshed = asyncio.get_running_loop().create_future()

        def done(event: StoreEvent) -> None:
            obj = event.object
            same = obj["metadata"].get("name") == meta["name"] and obj["metadata"].get("namespace") == meta["namespace"]
            annotations = obj["metadata"].get("annotations") or {}
            if _application(event) and same and REFRESH not in annotations and not refreshed.done():
                refreshed.set_result(copy.deepcopy(obj))

        annotated = copy.deepcopy(app)
        annotated["metadata"].setdefault("annotations", {})[REFRESH] = kind
        unsubscribe = self._kube.add_listener(done)
        try:
            self._kube.put_object(annotated)
            answer = await asyncio.wait_for(refreshed, self._refresh_timeout)
        except TimeoutError:
            return _error(500, "application refresh deadline exceeded")
        finally:
            unsubscribe()
        return web.json_response(answer)

    async def _sync(self, request: web.Request) -> web.StreamResponse:
        refused = self._check(request, "sync")
        if refused is not None:
            return refused
        body = await request.json()
        app, missing = self._lookup(request.match_info["name"], body)
        if app is None:
            assert missing is not None
            return missing
        if app.get("operation"):
            return _error(400, "another operation is already in progress")
        spec = app.get("spec") or {}
        target = (spec.get("source") or {}).get("targetRevision") or "HEAD"
        revision = str(body.get("revision") or "")
        if revision and revision != target and ((spec.get("syncPolicy") or {}).get("automated")):
            return _error(400, f"Cannot sync to {revision}: auto-sync currently set to {target}")
        sync: JSON = {"revision": revision} if revision else {}
        if body.get("revisions"):
            sync = {"revisions": list(body["revisions"]), "sourcePositions": list(body.get("sourcePositions") or [])}
        updated = copy.deepcopy(app)
        updated["operation"] = {"sync": sync, "initiatedBy": {"username": "keptn"}, "info": body.get("infos") or []}
        # The request's retryStrategy, else the Application's syncPolicy.retry; none at all without either.
        retry = body.get("retryStrategy") or (spec.get("syncPolicy") or {}).get("retry")
        if retry:
            updated["operation"]["retry"] = dict(retry)
        updated.setdefault("status", {}).pop("operationState", None)
        return web.json_response(self._kube.put_object(updated))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        refused = self._check(request, "stream")
        if refused is not None:
            return refused
        namespace = request.query.get("appNamespace") or self.namespace
        only = request.query.get("name")
        queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        unsubscribe = self._kube.add_listener(lambda event: queue.put_nowait(event) if _application(event) else None)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        self._streams.add(queue)
        self._streams_changed.set()
        try:
            await response.prepare(request)
            for app in self._kube.list_objects(GROUP, VERSION, PLURAL, namespace):
                if self._visible(app, only):
                    await _send(response, "ADDED", app)
            while (event := await queue.get()) is not None:
                obj = event.object
                if obj["metadata"].get("namespace") == namespace and self._visible(obj, only):
                    await _send(response, event.type, obj)
            if self._aborting and request.transport is not None:
                request.transport.abort()
                return response
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            unsubscribe()
            self._streams.discard(queue)
            self._streams_changed.set()
        return response

    def _visible(self, app: JSON, only: str | None) -> bool:
        name = app["metadata"].get("name")
        return name not in self._denied and (only is None or name == only)


async def _send(response: web.StreamResponse, kind: str, app: JSON) -> None:
    line = json.dumps({"result": {"type": kind, "application": app}})
    await response.write(line.encode() + b"\n")


# ------------------------------------------------------------------------------------- the application controller


@dataclass
class _Plan:
    """What the next sync of one Application does instead of succeeding and becoming Healthy."""

    sync_error: str | None = None
    degraded: str | None = None


#: Auto-sync's retry strategy when ``spec.syncPolicy.retry`` is not set (``controller/appcontroller.go``
#: ``autoSync``); a sync requested through the API carries none unless the request (or the policy) gives one.
AUTO_SYNC_RETRY: Final = {"limit": 5}


class SimulatedArgoCD:
    """SIMULATED Argo CD application-controller (test/bench only) acting on a :class:`KubeApiServer`.

    ``repos`` maps a ``spec.source.repoURL`` to a local bare repository. Every step is its own write, in the order
    Argo CD v2.14's controller makes them (checked against the real one in test/e2e/test_argocd.py):

    - refresh with auto-sync and a new revision: first the ``operation`` alone (``SetAppOperation``: the status
      still shows the old revision, ``operationState`` is cleared), then the status (``sync.revision`` = the
      resolved ``targetRevision``, ``OutOfSync``, ``reconciledAt``; the ``refresh`` annotation removed, the
      ``refresh-timestamp`` annotation left in place);
    - the operation: ``Running`` without ``syncResult`` (the revision is in ``operationState.operation``), then
      ``Succeeded`` with ``syncResult`` and ``operation`` cleared while ``sync`` still says ``OutOfSync``, then
      ``Synced`` with the new health but the old ``reconciledAt``, then ``reconciledAt``;
    - health is the Application's ``health.status`` without a message; a ``Degraded`` resource carries it
      (``status.resources[].health``);
    - a failed attempt with retries left (auto-sync: 5 unless ``syncPolicy.retry`` says otherwise) stays
      ``Running`` with ``retryCount``, ``finishedAt`` and "… Retrying attempt #N at <time>."; the next attempt
      clears ``finishedAt`` and ``syncResult``. After the last one: ``Failed`` ("… (retried N times)."), and one
      write later a ``SyncError`` condition ("Failed sync attempt to <sha>: <message>") while auto-sync skips
      that revision.

    ``retry_delay`` stands for Argo CD's backoff (5 s, doubling, capped at 3 minutes): the seconds between two
    attempts, the same for each (0: at once).
    """

    def __init__(
        self,
        kube: KubeApiServer,
        repos: Mapping[str, Path] | Callable[[str], Path | None],
        *,
        retry_delay: float = 0.0,
    ) -> None:
        self._kube = kube
        self._repos = repos
        self._retry_delay = retry_delay
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._failing: dict[tuple[str, str], _Plan] = {}  # the plan of the operation running now
        self._deployed: dict[tuple[str, str], str] = {}  # the revision last synced successfully
        self._failed: dict[tuple[str, str], tuple[str, str]] = {}  # revision whose sync failed, and the message
        self._timers: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.syncs = 0

    def fail_next_sync(self, namespace: str, name: str, message: str) -> None:
        """Every attempt of the next sync operation fails with ``message`` (as a manifest the API server rejects)."""
        self._plans.setdefault((namespace, name), _Plan()).sync_error = message

    def degrade_next_sync(self, namespace: str, name: str, message: str) -> None:
        self._plans.setdefault((namespace, name), _Plan()).degraded = message

    def start(self) -> None:
        if self._task is None:
            self._unsubscribe = self._kube.add_listener(self._on_change)
            self._task = asyncio.create_task(self._run(), name="simulated-argocd")

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_change(self, event: StoreEvent) -> None:
        if _application(event) and event.type != "DELETED":
            meta = event.object["metadata"]
            self._queue.put_nowait((str(meta.get("namespace")), str(meta["name"])))

    async def _run(self) -> None:
        while True:
            namespace, name = await self._queue.get()
            try:
                await self._process(namespace, name)
            except Exception:
                log.exception("SIMULATED Argo CD: processing %s/%s failed", namespace, name)

    async def _process(self, namespace: str, name: str) -> None:
        app = self._kube.get_object(GROUP, VERSION, PLURAL, namespace, name)
        if app is None:
            return
        if app.get("operation"):
            ops = (app.get("status") or {}).get("operationState") or {}
            if ops.get("phase") == "Running" and ops.get("finishedAt"):
                return  # between two attempts: the timer started in _sync brings the next one
            await self._sync(app)
        elif REFRESH in ((app["metadata"].get("annotations")) or {}):
            await self._refresh(app)

    async def _resolve(self, app: JSON) -> str:
        source = (app.get("spec") or {}).get("source") or {}
        url = str(source.get("repoURL"))
        path = self._repos(url) if callable(self._repos) else self._repos.get(url)
        if path is None:
            raise LookupError(f"SIMULATED Argo CD: no repository for {url}")
        target = str(source.get("targetRevision") or "HEAD")
        ref = "HEAD" if target == "HEAD" else f"refs/heads/{target}"
        return (await run_git(Path(path), "rev-parse", ref)).decode().strip()

    def _put(self, app: JSON) -> JSON:
        return self._kube.put_object(app)

    def _fresh(self, key: tuple[str, str], fallback: JSON) -> JSON:
        return self._kube.get_object(GROUP, VERSION, PLURAL, *key) or fallback

    async def _refresh(self, app: JSON) -> None:
        """Compare with the resolved ``targetRevision``; auto-sync writes its operation first, then the status."""
        key = (app["metadata"]["namespace"], app["metadata"]["name"])
        tip = await self._resolve(app)
        deployed = self._deployed.get(key)
        policy = (app.get("spec") or {}).get("syncPolicy") or {}
        conditions = [c for c in (app.get("status") or {}).get("conditions") or [] if c.get("type") != "SyncError"]
        if policy.get("automated") and deployed != tip and not app.get("operation"):
            failed = self._failed.get(key)
            if failed is not None and failed[0] == tip:  # alreadyAttemptedSync: never again, say why instead
                message = f"Failed sync attempt to {tip}: {failed[1]}"
                conditions.append({"type": "SyncError", "message": message, "lastTransitionTime": now_rfc3339()})
            else:
                app["operation"] = {
                    "sync": {"revision": tip, "prune": bool(policy["automated"].get("prune"))},
                    "initiatedBy": {"automated": True},
                    "retry": dict(policy.get("retry") or AUTO_SYNC_RETRY),
                }
                app.setdefault("status", {}).pop("operationState", None)
                app = self._put(app)
                await asyncio.sleep(0)
                app = self._fresh(key, app)
        status = app.setdefault("status", {})
        status["sync"] = {"status": "Synced" if deployed == tip else "OutOfSync", "revision": tip}
        status["reconciledAt"] = now_rfc3339()
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        (app["metadata"].get("annotations") or {}).pop(REFRESH, None)  # v2.14 leaves REFRESH_TIMESTAMP
        self._put(app)

    async def _sync(self, app: JSON) -> None:
        key = (app["metadata"]["namespace"], app["metadata"]["name"])
        operation = app["operation"]
        status = app.setdefault("status", {})
        ops = status.get("operationState") or {}
        if ops.get("phase") != "Running":  # a new operation: Running before anything is resolved
            ops = {"operation": operation, "phase": "Running", "startedAt": now_rfc3339()}
            status["operationState"] = ops
            app = self._put(app)
            await asyncio.sleep(0)
            app = self._fresh(key, app)
            status, ops = app["status"], app["status"]["operationState"]
            self._failing[key] = self._plans.pop(key, _Plan())
        else:  # the next attempt of a retried operation
            ops.pop("finishedAt", None)
            ops.pop("syncResult", None)
        sync = operation.get("sync") or {}
        revision = sync.get("revision") or (sync.get("revisions") or [""])[0] or await self._resolve(app)
        ops.update(message="one or more tasks are running", syncResult={"revision": revision})
        app = self._put(app)
        await asyncio.sleep(0)
        self.syncs += 1
        plan = self._failing.get(key, _Plan())
        app = self._fresh(key, app)
        status, ops = app["status"], app["status"]["operationState"]
        ops["finishedAt"] = now_rfc3339()
        if plan.sync_error:
            retries = int(ops.get("retryCount") or 0)
            limit = int((operation.get("retry") or {}).get("limit") or 0)
            if retries < limit or limit < 0:
                ops["retryCount"] = retries + 1
                ops["message"] = (
                    f"{plan.sync_error} due to application controller sync timeout. "
                    f"Retrying attempt #{retries + 1} at {time.strftime('%I:%M%p').lstrip('0')}."
                )
                self._put(app)
                self._schedule(key)
                return
            message = f"{plan.sync_error} (retried {retries} times)." if retries else plan.sync_error
            ops.update(phase="Failed", message=message)
            self._failed[key] = (revision, message)
        else:
            ops.update(phase="Succeeded", message="successfully synced (all tasks run)")
            self._deployed[key] = revision
            history = status.setdefault("history", [])
            history.append({"id": len(history), "revision": revision, "deployedAt": ops["finishedAt"]})
        self._failing.pop(key, None)
        app.pop("operation", None)
        app = self._put(app)  # sync still OutOfSync, reconciledAt from before the operation
        await asyncio.sleep(0)
        await self._after_operation(key, app, plan)

    async def _after_operation(self, key: tuple[str, str], app: JSON, plan: _Plan) -> None:
        """The refreshes a finished operation causes: the changed resources' (sync status and health, the old
        ``reconciledAt``), then the one the controller requests (``reconciledAt``, and ``SyncError`` after a
        failure under auto-sync)."""
        app = self._fresh(key, app)
        tip = str(((app.get("status") or {}).get("sync") or {}).get("revision") or "")
        status = app.setdefault("status", {})
        deployed = self._deployed.get(key)
        if deployed is not None and not plan.sync_error:
            status["sync"] = {
                "status": "Synced" if deployed == tip or not tip else "OutOfSync",
                "revision": tip or deployed,
            }
            # v2.14 writes no message into the Application's health: it is on the resource (status.resources).
            status["health"] = {"status": "Degraded" if plan.degraded else "Healthy"}
            resource_health: JSON = {"status": "Healthy"}
            if plan.degraded:
                resource_health = {"status": "Degraded", "message": plan.degraded}
            name = app["metadata"]["name"]
            status["resources"] = [{"kind": "Deployment", "group": "apps", "name": name, "health": resource_health}]
            app = self._put(app)
            await asyncio.sleep(0)
            app = self._fresh(key, app)
        await self._refresh(app)

    def _schedule(self, key: tuple[str, str]) -> None:
        """The next attempt of a retried operation, after ``retry_delay``."""
        loop = asyncio.get_running_loop()

        def due() -> None:
            self._timers.discard(handle)
            app = self._kube.get_object(GROUP, VERSION, PLURAL, *key)
            if app is not None and app.get("operation"):
                ops = (app.get("status") or {}).get("operationState") or {}
                ops.pop("finishedAt", None)  # the controller clears it before the attempt: a write of its own
                self._kube.put_object(app)

        handle = loop.call_later(self._retry_delay, due)
        self._timers.add(handle)
