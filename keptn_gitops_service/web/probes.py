"""Kubernetes-style probes, ``/metrics`` (and the distributor's event receiver) on one embedded aiohttp server.

The shape follows kopf's probing.py. ``/healthz``: the process and its event loop answer. ``/readyz``: the
service can do its job right now — the transport connected and the state store readable; 503 with the reasons
otherwise. The body is JSON either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Readiness = Callable[[], Awaitable[Mapping[str, Any]]]
"""Returns the checks as ``{name: {"ok": bool, ...details}}``."""
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProbeServer:
    """Serves the probes on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        routes: Sequence[tuple[str, str, Route]] = (),
    ) -> None:
        """``routes``: more ``(method, path, handler)`` on the same port (the distributor's event receiver)."""
        self._readiness = readiness
        self._routes = tuple(routes)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, _: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = dict(await self._readiness())
        ready = all(bool(check.get("ok")) for check in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)
