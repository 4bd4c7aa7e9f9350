"""The SIMULATED Flux controllers against the SIMULATED API server and a real bare git repository."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType
from support import git

from keptn_gitops_sim.fluxsim import SimulatedFlux
from keptn_gitops_sim.kubeapi import KubeApiServer

NS = "flux-system"
URL = "https://git.example.invalid/org/fleet.git"
SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
KS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CARTS = {
    "apps/dev/carts/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n"
    ),
    "apps/dev/carts/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: carts\n",
}

Kustomization = create_namespaced_resource(*KS[:2], "Kustomization", KS[2])
GitRepository = create_namespaced_resource(*SOURCE[:2], "GitRepository", SOURCE[2])


@dataclass
class Fleet:
    """A bare "remote" plus a working clone that commits and pushes to it."""

    bare: Path
    work: Path

    def commit(self, files: Mapping[str, str | None], message: str = "update") -> str:
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    bare, work = tmp_path / "fleet.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("clone", "--quiet", str(bare), str(work))
    git("checkout", "--quiet", "-B", "main", cwd=work)
    return Fleet(bare, work)


@pytest.fixture
async def server() -> AsyncIterator[KubeApiServer]:
    srv = KubeApiServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def flux(server: KubeApiServer, fleet: Fleet) -> AsyncIterator[SimulatedFlux]:
    sim = SimulatedFlux(server, {URL: fleet.bare})
    yield sim
    await sim.aclose()


@pytest.fixture
async def client(server: KubeApiServer, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    config = KubeConfig.from_file(server.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS))
    kube = AsyncClient(config=config, trust_env=False)
    yield kube
    await kube.close()


def gitrepository(name: str = "fleet", /, **ref: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"interval": "1m", "url": URL, "ref": ref or {"branch": "main"}},
    }


def kustomization(name: str = "carts", path: str = "./apps/dev/carts", **spec: Any) -> dict[str, Any]:
    body = {
        "interval": "5m",
        "path": path,
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "fleet"},
    }
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NS},
        "spec": body | spec,
    }


def source_of(server: KubeApiServer, name: str = "fleet") -> dict[str, Any]:
    obj = server.get_object(*SOURCE, NS, name)
    assert obj is not None
    return obj


def ks_of(server: KubeApiServer, name: str = "carts") -> dict[str, Any]:
    obj = server.get_object(*KS, NS, name)
    assert obj is not None
    return obj


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def brief(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(obj).items()}


async def until(
    server: KubeApiServer, read: Callable[[], dict[str, Any]], ok: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Wait for a store change that makes ``ok(read())`` true (woken by change notifications, no polling)."""
    changed = asyncio.Event()
    unsubscribe = server.add_listener(lambda _event: changed.set())
    try:
        async with asyncio.timeout(10):
            while not ok(obj := read()):
                changed.clear()
                await changed.wait()
            return obj
    finally:
        unsubscribe()


# ------------------------------------------------------------------------------------ source-controller


async def test_a_gitrepository_gets_an_artifact_for_the_branch_head(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet
) -> None:
    sha = fleet.commit(CARTS)
    server.put_object(
        gitrepository()
        | {
            "metadata": {
                "name": "fleet",
                "namespace": NS,
                "annotations": {"reconcile.fluxcd.io/requestedAt": "2024-07-16T12:00:00.123Z"},
            }
        }
    )
    await flux.reconcile_once()
    status = source_of(server)["status"]
    revision = f"main@sha1:{sha}"
    artifact = status["artifact"]
    assert artifact["revision"] == revision
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", artifact["digest"]) and artifact["size"] > 0
    assert artifact["path"] == f"gitrepository/{NS}/fleet/{sha}.tar.gz"
    assert artifact["url"].endswith(artifact["path"]) and RFC3339.match(artifact["lastUpdateTime"])
    assert status["observedGeneration"] == 1
    assert status["lastHandledReconcileAt"] == "2024-07-16T12:00:00.123Z"
    ready = conditions(source_of(server))["Ready"]
    assert ready | {"lastTransitionTime": "T"} == {
        "lastTransitionTime": "T",
        "message": f"stored artifact for revision '{revision}'",
        "observedGeneration": 1,
        "reason": "Succeeded",
        "status": "True",
        "type": "Ready",
    }
    assert RFC3339.match(ready["lastTransitionTime"])
    assert brief(source_of(server)) == {
        "Ready": ("True", "Succeeded"),
        "ArtifactInStorage": ("True", "Succeeded"),
    }
    before = server.resource_version
    await flux.reconcile_once()  # nothing changed upstream: no writes at all
    assert server.resource_version == before


async def test_legacy_revision_strings(server: KubeApiServer, fleet: Fleet) -> None:
    sha = fleet.commit(CARTS)
    server.put_object(gitrepository())
    server.put_object(gitrepository("pinned", commit=sha))
    server.put_object(kustomization())
    await SimulatedFlux(server, {URL: fleet.bare}, legacy_revisions=True).reconcile_once()
    assert source_of(server)["status"]["artifact"]["revision"] == f"main/{sha}"
    assert source_of(server, "pinned")["status"]["artifact"]["revision"] == f"HEAD/{sha}"
    status = ks_of(server)["status"]
    assert status["lastAppliedRevision"] == status["lastAttemptedRevision"] == f"main/{sha}"
    assert conditions(ks_of(server))["Ready"]["message"] == f"Applied revision: main/{sha}"


async def test_tag_commit_and_name_references(server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet) -> None:
    sha = fleet.commit(CARTS)
    git("tag", "v1.2.3", cwd=fleet.work)
    git("push", "--quiet", "origin", "refs/tags/v1.2.3", cwd=fleet.work)
    server.put_object(gitrepository("tag", tag="v1.2.3"))
    server.put_object(gitrepository("commit", commit=sha))
    server.put_object(gitrepository("branch-commit", branch="main", commit=sha))
    server.put_object(gitrepository("name", name="refs/heads/main"))
    await flux.reconcile_once()
    revisions = {
        name: source_of(server, name)["status"]["artifact"]["revision"]
        for name in ("tag", "commit", "branch-commit", "name")
    }
    assert revisions == {
        "tag": f"v1.2.3@sha1:{sha}",
        "commit": f"sha1:{sha}",
        "branch-commit": f"main@sha1:{sha}",
        "name": f"refs/heads/main@sha1:{sha}",
    }


async def test_a_missing_branch_is_a_git_operation_failure(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet
) -> None:
    fleet.commit(CARTS)
    server.put_object(gitrepository(branch="invalid"))
    server.put_object(gitrepository("unknown") | {"spec": {"url": "https://elsewhere.invalid/x.git"}})
    await flux.reconcile_once()
    failed = source_of(server)
    assert brief(failed) == {
        "Reconciling": ("True", "ProgressingWithRetry"),
        "Ready": ("False", "GitOperationFailed"),
        "FetchFailed": ("True", "GitOperationFailed"),
    }
    assert conditions(failed)["Ready"]["message"] == (
        f"failed to checkout and determine revision: unable to clone '{URL}': "
        'couldn\'t find remote ref "refs/heads/invalid"'
    )
    assert "artifact" not in failed["status"] and "observedGeneration" not in failed["status"]
    assert conditions(source_of(server, "unknown"))["Ready"]["message"].endswith("repository not found")


# ------------------------------------------------------------------------------------ kustomize-controller


async def test_the_reconcile_sequence_is_visible_through_a_watch(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet, client: AsyncClient
) -> None:
    sha = fleet.commit(CARTS)
    server.put_object(gitrepository())
    start = server.put_object(kustomization())["metadata"]["resourceVersion"]
    revision = f"main@sha1:{sha}"

    async def observe() -> list[dict[str, Any]]:
        seen = []
        events = client.watch(Kustomization, namespace=NS, resource_version=start)
        try:
            async for kind, obj in events:
                assert kind == "MODIFIED"
                seen.append(dict(obj))
                if conditions(obj).get("Ready", {}).get("status") == "True":
                    return seen
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        raise AssertionError("watch ended")

    watcher = asyncio.ensure_future(observe())
    await flux.reconcile_once()
    progress, attempted, done = await asyncio.wait_for(watcher, 10)

    assert brief(progress) == {"Reconciling": ("True", "Progressing"), "Ready": ("Unknown", "Progressing")}
    assert conditions(progress)["Ready"]["message"] == "Reconciliation in progress"
    assert conditions(progress)["Reconciling"]["message"] == (
        f"Fetching manifests for revision {revision} with a timeout of 4m30s"
    )
    assert progress["status"]["observedGeneration"] == -1 and "lastAttemptedRevision" not in progress["status"]

    assert attempted["status"]["lastAttemptedRevision"] == revision
    assert conditions(attempted)["Reconciling"]["message"] == (
        f"Building manifests for revision {revision} with a timeout of 4m30s"
    )
    assert "lastAppliedRevision" not in attempted["status"]

    assert brief(done) == {"Ready": ("True", "ReconciliationSucceeded")}
    ready = conditions(done)["Ready"]
    assert ready["message"] == f"Applied revision: {revision}" and RFC3339.match(ready["lastTransitionTime"])
    assert ready["observedGeneration"] == done["metadata"]["generation"] == done["status"]["observedGeneration"] == 1
    assert done["status"]["lastAppliedRevision"] == done["status"]["lastAttemptedRevision"] == revision


async def test_broken_yaml_is_build_failed_and_keeps_the_last_applied_revision(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet
) -> None:
    good = fleet.commit(CARTS)
    server.put_object(gitrepository())
    server.put_object(kustomization())
    await flux.reconcile_once()
    bad = fleet.commit({"apps/dev/carts/kustomization.yaml": "resources:\n  - a\n b: [\n"})
    await flux.reconcile_once()
    obj = ks_of(server)
    status = obj["status"]
    assert status["lastAppliedRevision"] == f"main@sha1:{good}"
    assert status["lastAttemptedRevision"] == f"main@sha1:{bad}"
    assert status["observedGeneration"] == 1
    assert brief(obj) == {"Reconciling": ("True", "ProgressingWithRetry"), "Ready": ("False", "BuildFailed")}
    message = conditions(obj)["Ready"]["message"]
    assert message.startswith("kustomize build failed: MalformedYAMLError: yaml: line ")
    assert message.endswith("in File: apps/dev/carts/kustomization.yaml")
    assert conditions(obj)["Reconciling"]["message"].startswith(f"Building manifests for revision main@sha1:{bad}")

    fixed = fleet.commit(CARTS | {"apps/dev/carts/extra.yaml": "x: 1\n"})
    await flux.reconcile_once()
    assert ks_of(server)["status"]["lastAppliedRevision"] == f"main@sha1:{fixed}"
    assert brief(ks_of(server)) == {"Ready": ("True", "ReconciliationSucceeded")}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("- just\n- a list\n", "json: cannot unmarshal array into Go value of type types.Kustomization"),
        ("", "kustomization file is empty"),
        ("resources:\n  - missing.yaml\n", "open /tmp/kustomization-"),
    ],
)
async def test_other_build_failures(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet, content: str, expected: str
) -> None:
    fleet.commit(CARTS | {"apps/dev/carts/kustomization.yaml": content})
    server.put_object(gitrepository())
    server.put_object(kustomization())
    await flux.reconcile_once()
    ready = conditions(ks_of(server))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed") and expected in ready["message"]
    assert "lastAppliedRevision" not in ks_of(server)["status"]


async def test_a_missing_path_is_artifact_failed(server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet) -> None:
    sha = fleet.commit(CARTS | {"apps/dev/orders/readme.md": "no kustomization here\n"})
    server.put_object(gitrepository())
    server.put_object(kustomization("carts"))
    server.put_object(kustomization("nowhere", path="./apps/dev/nowhere"))
    server.put_object(kustomization("orders", path="./apps/dev/orders"))
    await flux.reconcile_once()
    fleet.commit({"apps/dev/carts/kustomization.yaml": None, "apps/dev/carts/deployment.yaml": None})
    await flux.reconcile_once()
    for name, missing in (
        ("nowhere", "apps/dev/nowhere"),
        ("orders", "apps/dev/orders/kustomization.yaml"),
        ("carts", "apps/dev/carts"),
    ):
        obj = ks_of(server, name)
        assert brief(obj) == {
            "Reconciling": ("True", "ProgressingWithRetry"),
            "Ready": ("False", "ArtifactFailed"),
        }
        message = conditions(obj)["Ready"]["message"]
        assert re.fullmatch(
            rf"kustomization path not found: stat /tmp/kustomization-\d+/{missing}: "
            "no such file or directory",
            message,
        ), message
        assert conditions(obj)["Reconciling"]["message"].startswith("Fetching manifests for revision")
    assert "lastAttemptedRevision" not in ks_of(server, "nowhere")["status"]
    carts = ks_of(server, "carts")["status"]  # the path vanished in a later commit
    assert carts["lastAppliedRevision"] == carts["lastAttemptedRevision"] == f"main@sha1:{sha}"


async def test_missing_sources_and_dependencies(server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet) -> None:
    sha = fleet.commit(CARTS)
    server.put_object(
        kustomization("orphan") | {"spec": {"path": "./", "sourceRef": {"kind": "GitRepository", "name": "gone"}}}
    )
    server.put_object(gitrepository())
    server.put_object(kustomization("apps", dependsOn=[{"name": "infra"}]))
    server.put_object(kustomization("infra"))
    await flux.reconcile_once()
    orphan = conditions(ks_of(server, "orphan"))["Ready"]
    assert (orphan["reason"], orphan["message"]) == (
        "ArtifactFailed",
        'GitRepository.source.toolkit.fluxcd.io "gone" not found',
    )
    blocked = conditions(ks_of(server, "apps"))["Ready"]  # "apps" is reconciled before "infra"
    assert (blocked["status"], blocked["reason"], blocked["message"]) == (
        "False",
        "DependencyNotReady",
        f"dependency '{NS}/infra' is not ready",
    )
    assert "lastAttemptedRevision" not in ks_of(server, "apps")["status"]
    await flux.reconcile_once()
    assert ks_of(server, "apps")["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"


async def test_suspended_objects_are_left_alone(server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet) -> None:
    fleet.commit(CARTS)
    server.put_object(gitrepository())
    server.put_object(kustomization(suspend=True))
    await flux.reconcile_once()
    before = server.resource_version
    assert "status" not in ks_of(server)
    await flux.reconcile_once()
    assert server.resource_version == before


async def test_forced_health_check_failure(server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet) -> None:
    sha = fleet.commit(CARTS)
    server.put_object(gitrepository())
    server.put_object(kustomization(wait=True))
    flux.fail_with(
        NS, "carts", "HealthCheckFailed", "timeout waiting for: [Deployment/apps/carts status: 'InProgress']"
    )
    await flux.reconcile_once()
    obj = ks_of(server)
    assert brief(obj) == {
        "Reconciling": ("True", "ProgressingWithRetry"),
        "Ready": ("False", "HealthCheckFailed"),
        "Healthy": ("False", "HealthCheckFailed"),
    }
    assert obj["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}" and "lastAppliedRevision" not in obj["status"]
    assert conditions(obj)["Reconciling"]["message"].startswith("Running health checks for revision")
    flux.clear_failure(NS, "carts")
    await flux.reconcile_once()
    assert brief(ks_of(server)) == {
        "Ready": ("True", "ReconciliationSucceeded"),
        "Healthy": ("True", "Succeeded"),
    }


async def test_run_reacts_to_requested_at_instead_of_waiting_for_the_interval(
    server: KubeApiServer, flux: SimulatedFlux, fleet: Fleet, client: AsyncClient
) -> None:
    first = fleet.commit(CARTS)
    server.put_object(gitrepository())
    server.put_object(kustomization())
    flux.start(interval=3600)

    def applied(sha: str) -> Callable[[dict[str, Any]], bool]:
        return lambda obj: obj.get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}"

    await until(server, lambda: ks_of(server), applied(first))
    second = fleet.commit({"apps/dev/carts/deployment.yaml": CARTS["apps/dev/carts/deployment.yaml"] + "# v2\n"})
    token = "2024-07-16T12:34:56.789Z"
    await client.patch(
        GitRepository,
        "fleet",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}},
        patch_type=PatchType.MERGE,
    )
    done = await until(server, lambda: ks_of(server), applied(second))
    assert source_of(server)["status"]["lastHandledReconcileAt"] == token
    assert done["status"]["observedGeneration"] == 1
    await flux.aclose()
    assert flux.reconcile_count == 2
