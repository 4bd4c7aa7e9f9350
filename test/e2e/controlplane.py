"""A Kubernetes control plane on loopback, the way controller-runtime's envtest runs one: etcd and kube-apiserver
as local processes, a CA and serving certificate made with ``openssl``, one generated bearer token.

There is no kubelet, scheduler or controller-manager: objects are stored and served, nothing runs them.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import yaml
from e2e.build import Toolchain
from e2e.kubeclient import KubeClient
from e2e.processes import Process, ProcessGroup
from support import free_port

START_TIMEOUT = 120  # seconds; kube-apiserver bootstraps its RBAC roles and priority levels on first start


class CertificateError(RuntimeError):
    """``openssl`` is missing or failed."""


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("openssl is needed to make the API server's certificate; install the openssl package")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_certificates(directory: Path) -> None:
    """``ca.crt``, ``apiserver.crt``/``.key`` for 127.0.0.1 signed by it, and ``sa.key`` for service accounts."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=keptn-gitops-e2e-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "apiserver.key", "-out", "apiserver.csr",
        "-subj", "/CN=kube-apiserver",
        cwd=directory,
    )  # fmt: skip
    (directory / "apiserver.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "2",
        "-days", "2", "-extfile", "apiserver.ext", "-out", "apiserver.crt",
        cwd=directory,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=directory)
    for key in ("ca.key", "apiserver.key", "sa.key"):
        (directory / key).chmod(0o600)


class ControlPlane(ProcessGroup):
    """etcd + kube-apiserver under ``workdir``; ``kubeconfig`` holds the server, its CA and the token."""

    def __init__(self, tools: Toolchain, workdir: Path) -> None:
        self.tools = tools
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.certs = workdir / "pki"
        self.kubeconfig = workdir / "kubeconfig"
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self._token = secrets.token_urlsafe(32)
        super().__init__()

    def start(self) -> KubeClient:
        with self._starting():
            make_certificates(self.certs)
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._write_kubeconfig()
            return self.client()

    def client(self) -> KubeClient:
        return KubeClient(self.server, self._token, str(self.certs / "ca.crt"))

    def _start_etcd(self) -> str:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        etcd = Process(
            "etcd",
            [
                str(self.tools.etcd),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--unsafe-no-fsync",  # a throw-away store: durability only costs time here
                "--log-level=warn",
            ],
            self.logs,
            env=_base_env(self.workdir),
        )
        self._processes.append(etcd)
        etcd.wait_http_ok(f"{client}/health", START_TIMEOUT)
        return client

    def _start_apiserver(self, etcd_url: str) -> None:
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self._token},e2e-admin,e2e-admin,"system:masters"\n')
        tokens.chmod(0o600)
        sa_key = str(self.certs / "sa.key")
        apiserver = Process(
            "kube-apiserver",
            [
                str(self.tools.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.certs}",
                f"--tls-cert-file={self.certs / 'apiserver.crt'}",
                f"--tls-private-key-file={self.certs / 'apiserver.key'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",  # the loopback address may not be a Service endpoint
            ],
            self.logs,
            env=_base_env(self.workdir),
        )
        self._processes.append(apiserver)
        client = self.client()

        def ready() -> bool:
            try:
                client.send("GET", "/readyz")
            except (OSError, RuntimeError):
                return False
            return True

        apiserver.wait_until(ready, f"ready at {self.server}/readyz", START_TIMEOUT)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode((self.certs / "ca.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "e2e-admin", "user": {"token": self._token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin", "namespace": "default"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)


def _base_env(workdir: Path) -> dict[str, str]:
    """A minimal environment: no proxy settings or kubeconfig of the developer's leak into the programs."""
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "TMPDIR": str(tmp)}
