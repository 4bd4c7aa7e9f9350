"""A GitOps repository per test and the Flux objects that follow it, in a namespace of the test's own.

Two services live in the repository: ``carts`` builds and applies, ``orders`` names a resource file that does
not exist, so ``kustomize build`` fails and Flux reports it (``BuildFailed``) for every revision. Neither
Kustomization has health checks: without a kubelet nothing would ever become healthy, so ``Ready=True`` means
"applied".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e2e.argofleet import Repository, deployment, seed_repository
from e2e.kubeclient import JSON, KubeClient, condition
from support import GitHttpServer, free_port, git

STAGE = "dev"
SERVICES = ("carts", "orders")
FLUX_TIMEOUT = 120  # seconds for Flux to apply (or reject) the seed commit


def repository_files(project: str, stages: tuple[str, ...] = (STAGE,)) -> dict[str, str]:
    files = {"README.md": "# fleet\n\nApplied by Flux; image tags updated by keptn-gitops-service.\n"}
    for stage in stages:
        files |= _stage_files(stage, f"{project}-{stage}")
    return files


def _stage_files(stage: str, namespace: str) -> dict[str, str]:
    files = {}
    for service in SERVICES:
        resources = "  - deployment.yaml\n"
        if service == "orders":
            resources += "  - service.yaml  # missing: this overlay does not build\n"
        files[f"apps/{stage}/{service}/kustomization.yaml"] = (
            f"# {service} in {stage}\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"namespace: {namespace}\n"
            f"resources:\n{resources}\n"
            "images:\n"
            f"  - name: docker.io/keptnexamples/{service}\n"
            f'    newTag: 0.13.0 # {{"$imagepolicy": "flux-system:{service}:tag"}}\n'
        )
        files[f"apps/{stage}/{service}/deployment.yaml"] = (
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata:\n"
            f"  name: {service}\n"
            "spec:\n"
            "  replicas: 1\n"
            f"  selector: {{matchLabels: {{app: {service}}}}}\n"
            "  template:\n"
            f"    metadata: {{labels: {{app: {service}}}}}\n"
            "    spec:\n"
            "      containers:\n"
            f"        - name: {service}\n"
            f"          image: docker.io/keptnexamples/{service}  # the tag comes from kustomization.yaml\n"
        )
    return files


@dataclass(frozen=True)
class Fleet(Repository):
    """One test's :class:`Repository` (served to Flux) and a namespace ``<project>-<stage>`` per stage (``dev``
    unless told otherwise)."""

    stages: tuple[str, ...] = (STAGE,)

    def namespace_of(self, stage: str) -> str:
        return f"{self.project}-{stage}"

    def kustomization(self, service: str, stage: str = STAGE) -> JSON:
        return self.kube.get("kustomize.toolkit.fluxcd.io/v1", "Kustomization", service, self.namespace_of(stage))

    def git_repository(self, stage: str = STAGE) -> JSON:
        return self.kube.get("source.toolkit.fluxcd.io/v1", "GitRepository", "fleet", self.namespace_of(stage))

    def deployment_image(self, service: str, stage: str = STAGE) -> str:
        deployment = self.kube.get("apps/v1", "Deployment", service, self.namespace_of(stage))
        image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def wait_kustomization(
        self, service: str, *, ready: str, revision: str, attempted: bool = False, stage: str = STAGE
    ) -> JSON:
        """Wait until Flux reports ``Ready=<ready>`` for ``main@sha1:<revision>`` (applied, or only attempted)."""
        field = "lastAttemptedRevision" if attempted else "lastAppliedRevision"
        expected = f"main@sha1:{revision}"

        def reached(ks: JSON) -> bool:
            cond = condition(ks, "Ready")
            fresh = cond.get("observedGeneration") == ks["metadata"]["generation"]
            return fresh and cond.get("status") == ready and (ks.get("status") or {}).get(field) == expected

        return self.kube.wait_for(
            "kustomize.toolkit.fluxcd.io/v1",
            "Kustomization",
            service,
            self.namespace_of(stage),
            reached,
            what=f"Ready={ready} with {field} {expected}",
            timeout=FLUX_TIMEOUT,
        )


def add_waiting_service(fleet: Fleet, service: str, *, stuck: bool = False, timeout: str = "30s") -> str:
    """Someone adds ``apps/dev/<service>`` (a kustomized Deployment; ``stuck``: holding a host port, so that its
    next version cannot roll out, see argofleet.py) and a Kustomization that
    waits for it (``wait: true``, health checked for ``timeout``); returns once Flux reports it Ready at that
    commit, i.e. the Deployment is Available (pods.py must run)."""

    work = fleet.bare.parent / f"work-{service}"
    git("clone", "--quiet", "--branch", "main", str(fleet.bare), str(work))
    folder = work / "apps" / STAGE / service
    folder.mkdir(parents=True)
    # the same Deployment the Argo CD tests roll out
    (folder / "deployment.yaml").write_text(deployment(service, free_port() if stuck else None))
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"namespace: {fleet.namespace}\n"
        "resources:\n  - deployment.yaml\n"
        f"images:\n  - name: docker.io/keptnexamples/{service}\n    newTag: 0.13.0\n"
    )
    return _publish(fleet, work, f"add {service}", service, f"./apps/{STAGE}/{service}", timeout=timeout, wait=True)


CHART = {
    "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    "charts/app/values.yaml": "image: {repository: docker.io/keptnexamples/app, tag: 0.13.0}\nhostPort: 0\n",
    "charts/app/templates/deployment.yaml": (
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}\n"
        "spec:\n"
        "  replicas: 1\n"
        "  progressDeadlineSeconds: 10\n"
        "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n"
        "  selector: {matchLabels: {app: {{ .Release.Name }}}}\n"
        "  template:\n"
        "    metadata: {labels: {app: {{ .Release.Name }}}}\n"
        "    spec:\n"
        "      containers:\n"
        "        - name: app\n"
        "          image: {{ .Values.image.repository }}:{{ .Values.image.tag }}\n"
        "          resources: {requests: {cpu: 100m}}\n"
        "          {{- if .Values.hostPort }}\n"
        "          ports: [{containerPort: 8080, hostPort: {{ .Values.hostPort }}}]\n"
        "          {{- end }}\n"
    ),
}


def add_helm_service(fleet: Fleet, service: str, *, stuck: bool = False) -> str:
    """Someone adds a chart (``charts/app``, from the repository itself) and ``helm/dev/<service>/helmrelease.yaml``
    with a Kustomization ``helm-<service>`` that applies it; returns once helm-controller released it (helm waits
    for the Deployment to be Available, 20 s at most, so pods.py must run)."""
    work = fleet.bare.parent / f"work-helm-{service}"
    git("clone", "--quiet", "--branch", "main", str(fleet.bare), str(work))
    files = dict(CHART)
    files[f"helm/{STAGE}/{service}/helmrelease.yaml"] = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\n"
        "kind: HelmRelease\n"
        "metadata:\n"
        f"  name: {service}\n"
        f"  namespace: {fleet.namespace}\n"
        "spec:\n"
        "  interval: 10m\n"
        "  timeout: 20s\n"
        "  chart:\n"
        "    spec:\n"
        "      chart: ./charts/app\n"
        "      reconcileStrategy: Revision\n"
        "      sourceRef: {kind: GitRepository, name: fleet}\n"
        "  values:\n"
        "    image:\n"
        f"      repository: docker.io/keptnexamples/{service}\n"
        "      tag: 0.13.0\n"
        f"    hostPort: {free_port() if stuck else 0}\n"
    )
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    commit = _publish(
        fleet, work, f"add the HelmRelease {service}", f"helm-{service}", f"./helm/{STAGE}/{service}", timeout="1m"
    )
    fleet.kube.wait_for(
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        service,
        fleet.namespace,
        lambda hr: condition(hr, "Ready").get("status") == "True",
        what="released",
        timeout=FLUX_TIMEOUT,
    )
    return commit


def _publish(fleet: Fleet, work: Path, message: str, name: str, path: str, *, timeout: str, wait: bool = False) -> str:
    """Commit everything in ``work`` and push it, have Flux fetch it now, add a Kustomization ``name`` that applies
    ``path`` (``wait``: with health checks, for ``timeout``); returns the commit once Flux reports it Ready there."""
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    commit = fleet.head()
    fleet.kube.merge_patch(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "fleet",
        fleet.namespace,
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": commit}}},
    )
    fleet.kube.create(kustomization(name, fleet.namespace, path, timeout=timeout, wait=wait))
    fleet.wait_kustomization(name, ready="True", revision=commit)
    return commit


def kustomization(name: str, namespace: str, path: str, *, timeout: str = "1m", wait: bool = False) -> JSON:
    """A Kustomization that applies ``path`` of the GitRepository ``fleet``; retried only when asked to reconcile
    (long intervals); ``wait``: health checks, for ``timeout``."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "interval": "10m",
            "retryInterval": "10m",
            "timeout": timeout,
            "path": path,
            "prune": True,
            "wait": wait,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
        },
    }


def create_fleet(kube: KubeClient, git_http: GitHttpServer, project: str, stages: tuple[str, ...] = (STAGE,)) -> Fleet:
    """Seed the repository and let Flux follow it (:func:`follow`)."""
    return follow(Fleet(project, *seed_repository(git_http, project, repository_files(project, stages)), kube, stages))


def follow(fleet: Fleet) -> Fleet:
    """Create per stage the namespace, the GitRepository of ``fleet.url`` and one Kustomization per service, and wait
    until Flux has reconciled the seed commit (``carts`` applied, ``orders`` failing to build)."""
    kube, stages = fleet.kube, fleet.stages
    for stage in stages:
        namespace = fleet.namespace_of(stage)
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        kube.create(
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": "fleet", "namespace": namespace},
                # A long interval: a new commit is fetched at once only because the service asks Flux to reconcile.
                "spec": {"interval": "10m", "timeout": "60s", "url": fleet.url, "ref": {"branch": "main"}},
            }
        )
        for service in SERVICES:
            kube.create(kustomization(service, namespace, f"./apps/{stage}/{service}"))
    seed = fleet.head()
    for stage in stages:
        fleet.wait_kustomization("carts", ready="True", revision=seed, stage=stage)
        fleet.wait_kustomization("orders", ready="False", revision=seed, attempted=True, stage=stage)
    return fleet
