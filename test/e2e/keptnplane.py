"""A real Keptn 1.4.5 control plane on loopback, next to the end-to-end Kubernetes API server and Flux.

- **FerretDB** v1.24.2 (SQLite backend) is shipyard-controller's MongoDB.
- **resource-service** keeps each project's configuration in a git clone (``CONFIG_DIR``) and pushes it to the
  project's upstream, a bare repository served by ``git http-backend`` that accepts pushes.
- **shipyard-controller** runs the sequences, keeps the uniform registrations and serves the control-plane API.
- **api-service** takes the CLI's events (``POST /v1/event``, published to NATS) and checks the API token.
- **gateway**: the routing of Keptn's ``api-gateway-nginx`` (``/api/controlPlane/`` → shipyard-controller,
  ``/api/resource-service/`` → resource-service, both after ``/api/v1/auth`` on api-service; ``/api/`` →
  api-service), as a small reverse proxy here instead of nginx.

shipyard-controller and resource-service both listen on the fixed port 8080: each runs in a network namespace of
its own (``netns.py``), reached through a free loopback port and reaching NATS, FerretDB and the API server
through forwarders. Both read in-cluster Kubernetes config, written into their private mount namespace.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from e2e.keptnbin import KeptnTools
from e2e.kubeclient import KubeClient
from e2e.processes import Process
from support import GitHttpServer, free_port, git

NAMESPACE = "keptn"
START_TIMEOUT = 180  # seconds; FerretDB and shipyard-controller create their collections on first start
NETNS = Path(__file__).resolve().parent / "netns.py"
# The gateway refuses these resource-service paths (api-gateway-nginx: "deny all"); projects, stages and
# services are created through shipyard-controller.
BLOCKED_RESOURCE_PATHS = (
    re.compile(r"^/v1/project(/[^/]*(/stage(/[^/]*(/service(/[^/]*)?)?)?)?)?$"),
    re.compile(r"^/v1/project/[^/]*/service/[^/]*/resource(/[^/]*)?$"),
)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"}


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class KeptnPlane:
    """The running control plane: ``api_url`` is what ``keptn auth --endpoint`` takes."""

    tools: KeptnTools
    workdir: Path
    nats_url: str
    kube: KubeClient
    kube_server: str
    kube_ca: Path
    kube_token: str
    token: str = "e2e-keptn-api-token"
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    upstream: GitHttpServer | None = None
    _gateway: ThreadingHTTPServer | None = None

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}/api"

    @property
    def nats_port(self) -> int:
        return int(urlsplit(self.nats_url).port or 4222)

    # --- start and stop -------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            upstreams = self.workdir / "upstreams"
            upstreams.mkdir(parents=True, exist_ok=True)
            self.upstream = GitHttpServer(upstreams, push=True).start()
            self._start_ferretdb()
            self._start_resource_service()
            self._start_shipyard_controller()
            self._start_api_service()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._gateway is not None:
            self._gateway.shutdown()
            self._gateway.server_close()
            self._gateway = None
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.upstream is not None:
            self.upstream.stop()
            self.upstream = None

    def _base_env(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "TMPDIR": str(tmp),
            "LOG_LEVEL": "debug",
        }

    def _in_netns(self, name: str, argv: list[str], env: dict[str, str], outbound: list[int]) -> Process:
        """``argv`` in a network namespace of its own, its port 8080 on a free loopback port ``ports[name]``."""
        self.ports[name] = free_port()
        kube_port = int(urlsplit(self.kube_server).port or 443)
        spec = {
            "inbound": [[self.ports[name], 8080]],
            "outbound": sorted({*outbound, kube_port}),
            "serviceaccount": {"token": self.kube_token, "ca": str(self.kube_ca), "namespace": NAMESPACE},
            "argv": argv,
            "env": env
            | {
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(kube_port),
                "POD_NAMESPACE": NAMESPACE,
            },
            "cwd": str(self.workdir),
        }
        spec_file = self.workdir / f"{name}.netns.json"
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)  # it holds the API server token
        process = Process(
            name,
            ["unshare", "--mount", "--", sys.executable, str(NETNS), str(spec_file)],
            self.logs,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self.processes.append(process)
        return process

    def _start_ferretdb(self) -> None:
        self.ports["ferretdb"] = free_port()
        data = self.workdir / "ferretdb"
        data.mkdir(parents=True, exist_ok=True)
        process = Process(
            "ferretdb",
            [
                str(self.tools["ferretdb"]),
                "--handler=sqlite",
                f"--sqlite-url=file:{data}/",
                f"--state-dir={data}",
                f"--listen-addr=127.0.0.1:{self.ports['ferretdb']}",
                f"--debug-addr=127.0.0.1:{free_port()}",
                "--telemetry=disable",
                "--log-level=warn",
            ],
            self.logs,
            env=self._base_env(),
        )
        self.processes.append(process)
        process.wait_until(lambda: _port_open(self.ports["ferretdb"]), "accepting connections", START_TIMEOUT)

    def _start_resource_service(self) -> None:
        config_dir = self.workdir / "resource-service"
        config_dir.mkdir(parents=True, exist_ok=True)
        env = self._base_env() | {"CONFIG_DIR": str(config_dir), "DEFAULT_REMOTE_GIT_BRANCH": "main"}
        assert self.upstream is not None
        outbound = [self.upstream.port]  # it clones from and pushes to the upstream repositories
        process = self._in_netns("resource-service", [str(self.tools["resource-service"])], env, outbound)
        process.wait_http_ok(f"http://127.0.0.1:{self.ports['resource-service']}/health", START_TIMEOUT)

    def _start_shipyard_controller(self) -> None:
        env = self._base_env() | {
            "MONGODB_EXTERNAL_CONNECTION_STRING": f"mongodb://127.0.0.1:{self.ports['ferretdb']}/keptn",
            "MONGODB_DATABASE": "keptn",
            "RESOURCE_SERVICE": f"http://127.0.0.1:{self.ports['resource-service']}",
            "NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "DISABLE_LEADER_ELECTION": "true",
            "SEQUENCE_DISPATCH_INTERVAL_SEC": "1s",
            "EVENT_DISPATCH_INTERVAL_SEC": "1",
            "UNIFORM_INTEGRATION_TTL": "1m",
            "MONGO_CONFIG_DIR": str(self.workdir / "no-mongodb-credentials"),
        }
        outbound = [self.ports["ferretdb"], self.ports["resource-service"], self.nats_port]
        process = self._in_netns("shipyard-controller", [str(self.tools["shipyard-controller"])], env, outbound)
        process.wait_http_ok(f"http://127.0.0.1:{self.ports['shipyard-controller']}/health", START_TIMEOUT)

    def _start_api_service(self) -> None:
        self.ports["api-service"] = free_port()
        env = self._base_env() | {
            "SECRET_TOKEN": self.token,
            "NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "MAX_AUTH_ENABLED": "false",
            "POD_NAMESPACE": NAMESPACE,
        }
        process = Process(
            "api-service",
            [str(self.tools["api-service"]), "--host=127.0.0.1", f"--port={self.ports['api-service']}"],
            self.logs,
            env=env,
        )
        self.processes.append(process)
        process.wait_http_ok(f"http://127.0.0.1:{self.ports['api-service']}/health", START_TIMEOUT)

    def _start_gateway(self) -> None:
        self._gateway = ThreadingHTTPServer(("127.0.0.1", 0), _gateway_handler(self))
        self._gateway.daemon_threads = True
        self.ports["gateway"] = int(self._gateway.server_address[1])
        threading.Thread(target=self._gateway.serve_forever, name="keptn-gateway", daemon=True).start()

    # --- using it -------------------------------------------------------------------------------------------

    def create_upstream(self, project: str) -> str:
        """An empty bare repository for ``project``'s configuration; returns its HTTP URL."""
        assert self.upstream is not None
        bare = self.upstream.root / f"{project}.git"
        git("init", "-q", "--bare", "-b", "main", str(bare))
        return self.upstream.url(bare)

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run the ``keptn`` CLI as a user would (its config in its own HOME); returns its output."""
        home = self.workdir / "cli-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home)}
        proc = subprocess.run(
            [str(self.tools["keptn"]), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output = proc.stdout + proc.stderr
        with (self.logs / "keptn-cli.log").open("a", encoding="utf-8") as log:
            log.write(f"$ keptn {' '.join(args)}\n{output}\n")
        if proc.returncode != 0:
            raise RuntimeError(f"`keptn {' '.join(args)}` failed ({proc.returncode}):\n{output}")
        return output

    def auth(self) -> str:
        # No kubeconfig on the CLI's side (it only talks to the API), and no version check against the internet.
        self.cli("set", "config", "KubeContextCheck", "false")
        self.cli("set", "config", "AutomaticVersionCheck", "false")
        return self.cli("auth", f"--endpoint={self.api_url}", f"--api-token={self.token}")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API through the gateway, as the CLI does (``path`` below ``/api``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["gateway"], timeout=30)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"x-token": self.token, "Content-Type": "application/json"}
            conn.request(method, f"/api{path}", body=payload, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        finally:
            conn.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} /api{path} answered {response.status}: {text[:2000]}")
        return json.loads(text) if text else None

    def wait_for(self, what: str, probe: Any, timeout: float) -> Any:
        """Poll ``probe`` until it returns something truthy; fail with the shipyard-controller's log."""
        deadline = time.monotonic() + timeout
        while True:
            for process in self.processes:
                process.check_running()
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} after {timeout:.0f}s; shipyard-controller log:\n"
                                     f"{self.processes[2].tail(60) if len(self.processes) > 2 else ''}")  # fmt: skip
            time.sleep(0.5)


def _gateway_handler(plane: KeptnPlane) -> type[BaseHTTPRequestHandler]:
    """Keptn's api-gateway-nginx routes: which upstream, which path, and whether ``/v1/auth`` must pass first."""

    def route(path: str) -> tuple[str, str, bool] | None:
        if path.startswith("/api/controlPlane/"):
            return "shipyard-controller", path.removeprefix("/api/controlPlane"), True
        if path.startswith("/api/resource-service/"):
            rest = path.removeprefix("/api/resource-service")
            if any(blocked.match(rest.split("?")[0]) for blocked in BLOCKED_RESOURCE_PATHS):
                return "", "", False  # nginx: deny all
            return "resource-service", rest, True
        if path.startswith("/api/"):
            return "api-service", path.removeprefix("/api"), False
        return None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _forward(
            self, port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
        ) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            finally:
                conn.close()

        def _handle(self) -> None:
            target = route(self.path)
            if target is None:
                self.send_error(404)
                return
            name, path, auth = target
            if not name:
                self.send_error(403)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS | {"host"}}
            try:
                if auth:  # nginx's auth_request: the request's headers, without its body
                    token = {k: v for k, v in headers.items() if k.lower() in ("x-token", "authorization")}
                    status, _, _ = self._forward(plane.ports["api-service"], "POST", "/v1/auth", b"", token)
                    if status >= 300:
                        self.send_error(401)
                        return
                target_port = plane.ports[name]
                status, answer_headers, payload = self._forward(target_port, self.command, path or "/", body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self.send_error(502, f"{name}: {exc}")
                return
            self.send_response(status)
            for key, value in answer_headers:
                if key.lower() not in HOP_HEADERS | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client went away
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@contextmanager
def running_keptn(
    tools: KeptnTools, workdir: Path, nats_url: str, kube: KubeClient, server: str, ca: Path, token: str
) -> Iterator[KeptnPlane]:
    plane = KeptnPlane(tools, workdir, nats_url, kube, server, ca, token)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
