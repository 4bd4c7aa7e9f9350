"""Argo CD's REST API (``server/application/application.proto``): for a Keptn cluster that is not the Argo CD cluster.

One :class:`ArgoCdClient` per server holds one connection pool and, per application namespace, one
:class:`ApplicationStream` — ``GET /api/v1/stream/applications`` (newline-delimited
``{"result": {"type": …, "application": {…}}}``), the API server's own watch — shared by every waiter. A wait adds
one refresh (``GET /api/v1/applications/{name}?refresh=normal``, which answers once the controller has refreshed)
and, when configured, one sync (``POST /api/v1/applications/{name}/sync``): the load per deployment is constant.

The token is read from its environment variable or file at every request (so a rotated Secret is picked up), sent
only as ``Authorization: Bearer``, and never logged or put into a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from keptn_gitops_service import metrics
from keptn_gitops_service.errors import ArgoCdAccessDeniedError, ArgoCdAccessError, ReconcileError
from keptn_gitops_service.reconcile.argocd import SyncRequest
from keptn_gitops_service.reconcile.following import Object, ObjectCache, ObjectFeed

log = structlog.get_logger(__name__)

_MAX_LINE = 64 * 1024 * 1024  # one Application as JSON; a bigger line means a broken stream


@dataclass(frozen=True)
class ArgoCdServer:
    """Where Argo CD's API is and how we authenticate (the token itself is never stored here)."""

    url: str
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None


class ArgoCdClient:
    """Argo CD's API on one server."""

    def __init__(self, server: ArgoCdServer, *, max_backoff: float = 30.0) -> None:
        self.server = server
        self._base = server.url.rstrip("/")
        self._max_backoff = max_backoff
        self._session: aiohttp.ClientSession | None = None
        self._streams: dict[str, ApplicationStream] = {}

    def stream(self, app_namespace: str | None) -> ApplicationStream:
        """The shared stream of the Applications in ``app_namespace`` (``None``: Argo CD's own namespace); one
        that ended on a 401/403 is replaced, so a corrected token is used without a restart."""
        key = app_namespace or ""
        if key not in self._streams or self._streams[key].fatal is not None:
            self._streams[key] = ApplicationStream(self, app_namespace, max_backoff=self._max_backoff)
            self._streams[key].start()
        return self._streams[key]

    async def application(
        self, name: str, *, app_namespace: str | None, project: str | None, refresh: bool = False
    ) -> Object | None:
        """``GET /api/v1/applications/{name}`` (with ``refresh=normal``: once the controller has refreshed).

        ``None`` when Argo CD does not show it to us: 404, or 403 without ``project`` — Argo CD answers "permission
        denied" for an Application that does not exist, so as not to leak which ones do. With ``project`` a 403 is
        a real refusal and raises :class:`ArgoCdAccessDeniedError`.
        """
        query = _query(appNamespace=app_namespace, project=project, refresh="normal" if refresh else None)
        status, body = await self._request("GET", f"/api/v1/applications/{quote(name, safe='')}", query)
        if status == 404 or (status == 403 and not project):
            return None
        self._raise_for(status, body, f"read Application {name}")
        if not isinstance(body, dict):
            raise ArgoCdAccessError(f"Argo CD at {self._base} answered a non-object for Application {name}")
        return body

    async def sync(self, name: str, body: Mapping[str, Any]) -> None:
        """``POST /api/v1/applications/{name}/sync``."""
        status, answer = await self._request("POST", f"/api/v1/applications/{quote(name, safe='')}/sync", {}, body)
        if status == 404:
            raise ArgoCdAccessError(f"cannot sync Application {name}: Argo CD does not show it (404)")
        self._raise_for(status, answer, f"sync Application {name}")

    async def close(self) -> None:
        for stream in self._streams.values():
            await stream.stop()
        self._streams.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_token(self) -> None:
        """Raise :class:`ArgoCdAccessDeniedError` when the configured token cannot be read (the start-up check)."""
        self._token()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            context: ssl.SSLContext | bool = True
            if self.server.ca_file:
                try:
                    context = ssl.create_default_context(cafile=self.server.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise ArgoCdAccessError(f"cannot use the CA file {self.server.ca_file}: {exc}") from None
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        return self._session

    def url(self, path: str, query: Mapping[str, str]) -> str:
        suffix = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return f"{self._base}{path}?{suffix}" if suffix else f"{self._base}{path}"

    def _token(self) -> str:
        env, file = self.server.token_env, self.server.token_file
        if env:
            value = os.environ.get(env, "").strip()
            if not value:
                raise ArgoCdAccessDeniedError(f"the Argo CD token environment variable {env} is not set")
            return value
        if file:
            try:
                with open(file, encoding="utf-8") as handle:
                    value = handle.read().strip()
            except OSError as exc:
                raise ArgoCdAccessDeniedError(f"cannot read the Argo CD token file {file}: {exc.strerror}") from None
            if not value:
                raise ArgoCdAccessDeniedError(f"the Argo CD token file {file} is empty")
            return value
        raise ArgoCdAccessDeniedError("no Argo CD token is configured (tokenEnv or tokenFile)")

    async def _request(
        self, method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        url = self.url(path, query)
        try:
            async with self.session().request(
                method, url, headers=self.headers(), json=body, timeout=aiohttp.ClientTimeout(sock_connect=10)
            ) as response:
                text = await response.text()
                return response.status, _json(text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ArgoCdAccessError(f"cannot reach Argo CD at {self._base}: {_describe(exc)}") from None

    def _raise_for(self, status: int, body: Any, doing: str) -> None:
        if 200 <= status < 300:
            return
        message = f"Argo CD at {self._base} refused to {doing}: {status} {_message(body)}"
        if status in (401, 403):
            raise ArgoCdAccessDeniedError(message)
        raise ArgoCdAccessError(message)


class ApplicationStream(ObjectCache):
    """The live Applications of one namespace, from Argo CD's application stream (an :class:`ObjectFeed`).

    A (re)connected stream starts with an ``ADDED`` event per visible Application, so a reconnect re-syncs; drops,
    5xx and timeouts reconnect with bounded exponential backoff, 401/403 end the stream (:attr:`fatal`)."""

    def __init__(self, client: ArgoCdClient, app_namespace: str | None, *, max_backoff: float = 30.0) -> None:
        super().__init__()
        self._client = client
        self.app_namespace = app_namespace
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.fatal: ReconcileError | None = None
        self.last_error = ""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"argocd stream {self.app_namespace or '-'}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._consume()
                failures = 0
            except ArgoCdAccessDeniedError as exc:
                self.fatal = exc
                self._notify(None)
                return
            except Exception as exc:  # any interruption: reconnect after a bounded backoff, never die silently
                failures += 1
                metrics.WATCH_RECONNECTS.inc()
                self.last_error = _describe(exc)
                delay = min(self._max_backoff, 0.1 * 2 ** min(failures, 10))
                log.warning(
                    "Argo CD application stream interrupted; reconnecting",
                    server=self._client.server.url,
                    namespace=self.app_namespace,
                    error=self.last_error,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)

    async def _consume(self) -> None:
        url = self._client.url("/api/v1/stream/applications", _query(appNamespace=self.app_namespace))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
        async with self._client.session().get(url, headers=self._client.headers(), timeout=timeout) as response:
            if response.status != 200:
                body = _json(await response.text())
                message = f"Argo CD at {self._client.server.url} refused the application stream: "
                message += f"{response.status} {_message(body)}"
                if response.status in (401, 403):
                    raise ArgoCdAccessDeniedError(message)
                raise ArgoCdAccessError(message)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._receive(line)
                if len(buffer) > _MAX_LINE:
                    raise ArgoCdAccessError("the application stream sent a line longer than 64 MiB")
        raise ArgoCdAccessError("the application stream ended")

    def _receive(self, line: bytes) -> None:
        if not line.strip():
            return
        event = _json(line.decode("utf-8", "replace"))
        if not isinstance(event, dict):
            raise ArgoCdAccessError("the application stream sent something that is not a JSON object")
        if "error" in event:
            error = event["error"] if isinstance(event["error"], dict) else {"message": event["error"]}
            code = error.get("http_code") or error.get("code")
            message = f"the application stream reported an error: {_message(error)}"
            if code in (401, 403, 16):  # 16: gRPC UNAUTHENTICATED
                raise ArgoCdAccessDeniedError(message)
            raise ArgoCdAccessError(message)
        result = event.get("result") or {}
        app = result.get("application") if isinstance(result, dict) else None
        name = ((app or {}).get("metadata") or {}).get("name") if isinstance(app, dict) else None
        if not isinstance(app, dict) or not name:
            return
        if result.get("type") == "DELETED":
            self._objects.pop(str(name), None)
        else:
            self._objects[str(name)] = app
        self._notify(str(name))


class RestArgoApi:
    """The :class:`~.argocd.ArgoApi` of one application namespace on one Argo CD server."""

    def __init__(self, client: ArgoCdClient, app_namespace: str | None, project: str | None) -> None:
        self._client = client
        self._app_namespace = app_namespace
        self._project = project

    def feed(self) -> ObjectFeed:
        return self._client.stream(self._app_namespace)

    async def refresh(self, name: str) -> Object | None:
        return await self._client.application(
            name, app_namespace=self._app_namespace, project=self._project, refresh=True
        )

    async def sync(self, app: Object, request: SyncRequest) -> None:
        """Argo CD's own sync: it adds the Application's sync options and retry policy itself."""
        name = str((app.get("metadata") or {}).get("name"))
        body: dict[str, Any] = {
            "name": name,
            "infos": [
                {"name": "shkeptncontext", "value": request.shkeptncontext},
                {"name": "triggeredid", "value": request.triggeredid},
            ],
        }
        if request.source_index is None:
            body["revision"] = request.revision
        else:
            body["revisions"] = [request.revision]
            body["sourcePositions"] = [request.source_index + 1]
        for key, value in (("appNamespace", self._app_namespace), ("project", self._project)):
            if value:
                body[key] = value
        await self._client.sync(name, body)


def _query(**params: str | None) -> dict[str, str]:
    return {key: value for key, value in params.items() if value}


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text[:200]


def _message(body: Any) -> str:
    """The human part of a grpc-gateway error body (``{"error", "code", "message"}``)."""
    if isinstance(body, dict):
        return " ".join(str(body.get("message") or body.get("error") or "no message").split())
    return " ".join(str(body or "no message").split())[:200]


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
