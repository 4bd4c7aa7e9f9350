"""Argo CD as local processes against the end-to-end API server: Redis (Debian's ``redis-server``), the
repo-server, the application-controller, the API server (argocd-server, for the REST mode) and the
notifications controller (its webhook to the service's ``/webhooks/argocd``).

All three Argo CD components are one binary (build.py, module ``argocd``), told which one to be by
``ARGOCD_BINARY_NAME``. Its CRDs come from the same module version; the config maps, the secret and the
``default`` AppProject are the ones ``manifests/install.yaml`` creates, cut down to what these tests need:

- ``argocd-cm`` declares a local account ``keptn`` that can only have API keys (``accounts.keptn: apiKey``);
  ``argocd-rbac-cm`` lets it get and sync Applications of the ``default`` project, nothing else;
- ``argocd-secret`` holds the server's signing key and an admin password (bcrypt, made by ``argocd account
  bcrypt``), used once to log in and ask argocd-server for the ``keptn`` account's token, as an operator would
  with ``argocd account generate-token``.

The application-controller manages the API server it runs against as the in-cluster cluster
(``https://kubernetes.default.svc``): ``ARGOCD_FAKE_IN_CLUSTER=true`` makes that cluster use ``KUBECONFIG``.
There is no kubelet or garbage collector: Applications prune with background propagation (a foreground-deleted
object would keep its finalizer forever).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from e2e.build import ArgoTools
from e2e.fluxcontrollers import install_crds
from e2e.kubeclient import JSON, KubeClient
from e2e.processes import Process, ProcessError, ProcessGroup
from support import free_port

NAMESPACE = "argocd"
ACCOUNT = "keptn"
START_TIMEOUT = 120
IN_CLUSTER = "https://kubernetes.default.svc"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}  # Argo CD only reads config maps and secrets labelled so


class ArgoPlane(ProcessGroup):
    """Argo CD under ``workdir`` until :meth:`stop`; ``server_url`` and :meth:`token` once argocd-server runs."""

    def __init__(self, tools: ArgoTools, kube: KubeClient, kubeconfig: Path, workdir: Path) -> None:
        self.tools = tools
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.server_url = ""
        self._admin_password = secrets.token_urlsafe(18)
        super().__init__()
        self._redis = ""
        self._repo_server = ""

    def start(self, *, server: bool = True) -> None:
        with self._starting():
            self._configure()
            self._start_redis()
            self._start_repo_server()
            self._start_controller()
            if server:
                self._start_server()
            self._start_notifications()

    # ------------------------------------------------------------------ configuration

    def _configure(self) -> None:
        kube = self.kube
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        install_crds(kube, self.tools.crds)
        kube.create(_config_map("argocd-cm", {f"accounts.{ACCOUNT}": "apiKey", "admin.enabled": "true"}))
        policy = (
            f"p, role:{ACCOUNT}, applications, get, default/*, allow\n"
            f"p, role:{ACCOUNT}, applications, sync, default/*, allow\n"
            f"g, {ACCOUNT}, role:{ACCOUNT}\n"
        )
        kube.create(_config_map("argocd-rbac-cm", {"policy.csv": policy, "policy.default": ""}))
        kube.create(_config_map("argocd-cmd-params-cm", {}))
        secret = {
            "server.secretkey": secrets.token_urlsafe(32),
            "admin.password": self._bcrypt(self._admin_password),
            "admin.passwordMtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": PART_OF},
                "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()},
            }
        )
        kube.create(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AppProject",
                "metadata": {"name": "default", "namespace": NAMESPACE},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"server": "*", "namespace": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            }
        )

    def _bcrypt(self, password: str) -> str:
        proc = subprocess.run(
            [str(self.tools.argocd), "account", "bcrypt", "--password", password],
            env=self._env("argocd", self.workdir / "tmp" / "cli"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.strip().startswith("$2"):
            raise ProcessError(f"argocd account bcrypt failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.strip()

    # ------------------------------------------------------------------ processes

    def _env(self, component: str, home: Path, **extra: str) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": "/usr/bin:/bin",  # git, for the repo-server
            "HOME": str(home),
            "TMPDIR": str(home),
            "ARGOCD_BINARY_NAME": component,
            "ARGOCD_GPG_ENABLED": "false",  # no gpg agent here; nothing is signed
            "KUBECONFIG": str(self.kubeconfig),
            **extra,
        }

    def _run(self, component: str, args: list[str], **extra: str) -> Process:
        process = Process(
            component,
            [str(self.tools.argocd), *args],
            self.logs,
            env=self._env(component, self.workdir / "tmp" / component, **extra),
        )
        self._processes.append(process)
        return process

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).is_file():
            raise ProcessError("redis-server is missing: install Debian's redis-server package (./scripts/e2e does)")
        port = free_port()
        redis = Process(
            "redis",
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            self.logs,
            env={"PATH": "/usr/bin:/bin"},
        )
        self._processes.append(redis)
        redis.wait_until(lambda: _redis_pong(port), f"answering PING on 127.0.0.1:{port}", START_TIMEOUT)
        self._redis = f"127.0.0.1:{port}"

    def _start_repo_server(self) -> None:
        port, metrics = free_port(), free_port()
        repo = self._run(
            "argocd-repo-server",
            [
                "--disable-tls",
                f"--redis={self._redis}",
                "--address=127.0.0.1",
                f"--port={port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={metrics}",
            ],
        )
        repo.wait_http_ok(f"http://127.0.0.1:{metrics}/healthz", START_TIMEOUT)
        self._repo_server = f"127.0.0.1:{port}"

    def _start_controller(self) -> None:
        metrics = free_port()
        controller = self._run(
            "argocd-application-controller",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={NAMESPACE}",
                f"--repo-server={self._repo_server}",
                "--repo-server-plaintext",
                f"--redis={self._redis}",
                f"--metrics-port={metrics}",
                "--status-processors=4",
                "--operation-processors=2",
            ],
            ARGOCD_FAKE_IN_CLUSTER="true",
        )
        controller.wait_http_ok(f"http://127.0.0.1:{metrics}/healthz", START_TIMEOUT)

    def _start_server(self) -> None:
        port, metrics = free_port(), free_port()
        assets = self.workdir / "static"
        assets.mkdir(exist_ok=True)
        server = self._run(
            "argocd-server",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={NAMESPACE}",
                "--insecure",  # plain HTTP on loopback
                "--address=127.0.0.1",
                f"--port={port}",
                f"--metrics-port={metrics}",
                f"--repo-server={self._repo_server}",
                "--repo-server-plaintext",
                f"--redis={self._redis}",
                "--dex-server=http://127.0.0.1:1",  # no SSO configured: never called
                f"--staticassets={assets}",
            ],
        )
        self.server_url = f"http://127.0.0.1:{port}"
        server.wait_http_ok(f"{self.server_url}/healthz", START_TIMEOUT)

    def _start_notifications(self) -> None:
        """The notifications controller; what it sends is set per test with :meth:`notify`."""
        self.kube.create(_config_map("argocd-notifications-cm", {}))
        self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "argocd-notifications-secret", "namespace": NAMESPACE, "labels": PART_OF},
                "type": "Opaque",
                "data": {},
            }
        )
        # Its --namespace is shadowed by the kubeconfig's own flags: give it a kubeconfig whose context is argocd.
        config = yaml.safe_load(self.kubeconfig.read_text())
        for context in config["contexts"]:
            context["context"]["namespace"] = NAMESPACE
        kubeconfig = self.workdir / "kubeconfig-argocd"
        kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        kubeconfig.chmod(0o600)
        metrics = free_port()
        notifications = self._run(
            "argocd-notifications",
            [
                f"--kubeconfig={kubeconfig}",
                f"--namespace={NAMESPACE}",
                f"--metrics-port={metrics}",
                f"--argocd-repo-server={self._repo_server}",
                "--argocd-repo-server-plaintext",
            ],
        )
        notifications.wait_http_ok(f"http://127.0.0.1:{metrics}/metrics", START_TIMEOUT)

    def notify(self, url: str, secret: str) -> str:
        """Send the webhook docs/webhooks.md configures to ``url`` (``/webhooks/argocd`` appended), with
        ``secret`` in ``X-Webhook-Secret``; returns the annotation that subscribes an Application to it."""
        encoded = base64.b64encode(secret.encode()).decode()
        self.kube.merge_patch("v1", "Secret", "argocd-notifications-secret", NAMESPACE, {"data": {"hint": encoded}})
        template = (
            "webhook:\n"
            "  keptn-gitops:\n"
            "    method: POST\n"
            "    path: /webhooks/argocd\n"
            "    body: |\n"
            '      {"app": "{{.app.metadata.name}}", "namespace": "{{.app.metadata.namespace}}",\n'
            '       "revision": "{{.app.status.sync.revision}}", "phase": "{{.app.status.operationState.phase}}",\n'
            '       "health": "{{.app.status.health.status}}"}\n'
        )
        trigger = (
            "- when: app.status.operationState != nil and app.status.operationState.phase in "
            "['Succeeded', 'Error', 'Failed']\n"
            "  send: [keptn-gitops-hint]\n"
            "- when: app.status.health.status in ['Healthy', 'Degraded']\n"
            "  send: [keptn-gitops-hint]\n"
        )
        data = {
            "service.webhook.keptn-gitops": f"url: {url}\nheaders:\n  - name: X-Webhook-Secret\n    value: $hint\n",
            "template.keptn-gitops-hint": template,
            "trigger.on-keptn-gitops-hint": trigger,
        }
        self.kube.merge_patch("v1", "ConfigMap", "argocd-notifications-cm", NAMESPACE, {"data": data})
        return "notifications.argoproj.io/subscribe.on-keptn-gitops-hint.keptn-gitops"

    # ------------------------------------------------------------------ the REST API

    def token(self) -> str:
        """An API key of the ``keptn`` account, issued by argocd-server after an admin login."""
        session = _post(f"{self.server_url}/api/v1/session", {"username": "admin", "password": self._admin_password})
        issued = _post(
            f"{self.server_url}/api/v1/account/{ACCOUNT}/token", {"name": ACCOUNT, "id": "e2e"}, session["token"]
        )
        return str(issued["token"])

    def application(self, name: str) -> JSON:
        return self.kube.get("argoproj.io/v1alpha1", "Application", name, NAMESPACE)


def application(
    name: str,
    *,
    repo_url: str,
    path: str,
    namespace: str,
    automated: bool,
    retry: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> JSON:
    """An Application of the plain manifests at ``path`` on ``main``, deployed into ``namespace``."""
    policy: dict[str, Any] = {"syncOptions": ["PrunePropagationPolicy=background"]}
    if automated:
        policy["automated"] = {"prune": True}
    if retry is not None:
        policy["retry"] = retry
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "main"},
            "destination": {"server": IN_CLUSTER, "namespace": namespace},
            "syncPolicy": policy,
        },
    }


def _config_map(name: str, data: dict[str, str]) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": PART_OF},
        "data": data,
    }


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _post(url: str, body: dict[str, Any], token: str = "") -> JSON:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: JSON = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise ProcessError(f"POST {url}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None


def dump(app: JSON) -> str:
    """The parts of an Application worth reading in a failed assertion."""
    return yaml.safe_dump({"operation": app.get("operation"), "status": app.get("status")}, sort_keys=False)
