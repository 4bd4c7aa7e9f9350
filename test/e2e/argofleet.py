"""A GitOps repository per Argo CD test: plain manifests that Argo CD applies from the e2e's Git HTTP server.

``argo/dev/<service>/configmap.yaml`` holds one ConfigMap per service. The service's rule for ``carts`` writes
the image into ``data.image`` (a ConfigMap is Healthy as soon as it exists, so no kubelet is needed); the rule
for ``orders`` writes it into the label ``metadata.labels.image``, which the API server rejects (a label value
has no ``/`` or ``:``), so Argo CD's sync of that commit fails. The seed commit is valid for both.

``argo/dev/<web|stuck>/deployment.yaml`` are Deployments for the tests with running pods (pods.py); the rule for
them sets the container image. ``stuck`` asks for a host port (one of its own): the one node has it only once, so
the pod of a new version cannot be scheduled next to the old one (surge 1, none unavailable): the rollout never
completes, and ``progressDeadlineSeconds: 10`` turns that into ``ProgressDeadlineExceeded``, as in a full cluster.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from e2e.kubeclient import KubeClient
from support import GitHttpServer, free_port, git, make_remote

STAGE = "dev"
SERVICES = ("carts", "orders")
DEPLOYMENTS = ("web", "stuck")


def repository_files() -> dict[str, str]:
    files = {"README.md": "# fleet\n\nApplied by Argo CD; images updated by keptn-gitops-service.\n"}
    for service in SERVICES:
        files[f"argo/{STAGE}/{service}/configmap.yaml"] = (
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            f"  name: {service}\n"
            "  labels:\n"
            f"    app: {service}\n"
            "    image: seed\n"
            "data:\n"
            f"  image: docker.io/keptnexamples/{service}:0.13.0\n"
        )
    for service in DEPLOYMENTS:
        host_port = free_port() if service == "stuck" else None
        files[f"argo/{STAGE}/{service}/deployment.yaml"] = deployment(service, host_port)
    return files


def deployment(service: str, host_port: int | None = None) -> str:
    """A Deployment of one replica, rolled out one new pod before an old one goes; with ``host_port``, its pod
    holds that port of the node, so a second one (the next version's) finds no node."""
    ports = f"          ports: [{{containerPort: 8080, hostPort: {host_port}}}]\n" if host_port else ""
    return (
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        "metadata:\n"
        f"  name: {service}\n"
        "spec:\n"
        "  replicas: 1\n"
        "  progressDeadlineSeconds: 10\n"
        "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n"
        f"  selector: {{matchLabels: {{app: {service}}}}}\n"
        "  template:\n"
        f"    metadata: {{labels: {{app: {service}}}}}\n"
        "    spec:\n"
        "      containers:\n"
        f"        - name: {service}\n"
        f"          image: docker.io/keptnexamples/{service}:0.13.0\n"
        "          resources: {requests: {cpu: 100m}}\n"
        f"{ports}"
    )


def seed_repository(git_http: GitHttpServer, project: str, files: dict[str, str]) -> tuple[Path, str]:
    """A bare repository ``<project>`` served by ``git_http``, its first commit holding ``files``; and its URL."""
    (git_http.root / project).mkdir(parents=True)
    bare = make_remote(git_http.root / project, files)
    return bare, git_http.url(bare)


@dataclass(frozen=True)
class Repository:
    """One test's repository (``bare``, served at ``url``) and its namespace ``<project>-dev``."""

    project: str
    bare: Path
    url: str
    kube: KubeClient

    @property
    def namespace(self) -> str:
        return f"{self.project}-{STAGE}"

    def head(self) -> str:
        return git("rev-parse", "main", cwd=self.bare).strip()


@dataclass(frozen=True)
class ArgoFleet(Repository):
    """A :class:`Repository` of plain manifests that Argo CD Applications deploy into its namespace."""

    def app_name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def parent(self, commit: str) -> str:
        return git("rev-parse", f"{commit}^", cwd=self.bare).strip()

    def config_map(self, service: str) -> dict[str, object]:
        return self.kube.get("v1", "ConfigMap", service, self.namespace)

    def foreign_commit_after_next_push(self) -> None:
        """Someone else pushes right after the service: a server-side hook adds a commit of an unrelated file on
        top of the next push, before the service can ask Argo CD to refresh."""
        hook = self.bare / "hooks" / "post-receive"
        hook.write_text(_FOREIGN_HOOK.format(python=sys.executable, done=str(self.bare / "foreign-done")))
        hook.chmod(0o755)


_FOREIGN_HOOK = """#!{python}
# Installed by test/e2e/argofleet.py: once, right after a push, another bot commits an unrelated file on top.
import os, pathlib, subprocess, sys
sys.stdin.read()
done = pathlib.Path({done!r})
if not done.exists():
    done.write_text("1")
    env = {{k: v for k, v in os.environ.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}}
    def git(*args, data=None):
        return subprocess.run(["git", *args], env=env, input=data, check=True, capture_output=True,
                              text=True).stdout.strip()
    blob = git("hash-object", "-w", "--stdin", data="written by another bot\\n")
    base = git("rev-parse", "refs/heads/main^{{tree}}")
    index = pathlib.Path(os.getcwd()) / "foreign-index"
    env["GIT_INDEX_FILE"] = str(index)
    git("read-tree", base)
    git("update-index", "--add", "--cacheinfo", f"100644,{{blob}},other/notes.txt")
    tree = git("write-tree")
    new = git("-c", "user.name=other-bot", "-c", "user.email=bot@other.invalid",
              "commit-tree", "-p", "refs/heads/main", "-m", "other bot: notes", tree)
    git("update-ref", "refs/heads/main", new)
"""


def create_argo_fleet(kube: KubeClient, git_http: GitHttpServer, project: str) -> ArgoFleet:
    """Seed the repository and create the namespace the Applications deploy into."""
    fleet = ArgoFleet(project, *seed_repository(git_http, project, repository_files()), kube)
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": fleet.namespace}})
    return fleet
