"""Fixtures of the end-to-end suite: one real control plane with Flux for the session, and per test a GitOps
repository with its namespace, a nats-server (``nats_url`` from test/conftest.py) and the service's process.

Run by ``./scripts/e2e`` (``KEPTN_GITOPS_E2E=1``); the unit suite leaves this directory out. test_keptn.py needs
Keptn 1.4.5's programs, which this project does not build: it is collected only when ``KEPTN_GITOPS_KEPTN_BIN``
names a directory holding them (keptnbin.py).
"""

from __future__ import annotations

import base64
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from e2e.argofleet import ArgoFleet, create_argo_fleet
from e2e.argoplane import ArgoPlane
from e2e.build import ArgoTools, PodTools, Toolchain, argocd_tools, helm_tools, pod_tools, toolchain
from e2e.environment import Cluster, running_cluster
from e2e.fleet import Fleet, create_fleet
from e2e.fluxcontrollers import FluxControllers, install_crds
from e2e.keptnbin import ENV, KeptnTools, keptn_binaries
from e2e.keptnplane import KeptnPlane, running_keptn
from e2e.keptnside import KeptnBus, start_service
from e2e.pods import PodPlane
from e2e.processes import Process
from forges.giteaserver import GiteaMissingError, GiteaServer, running_gitea

from keptn_gitops_sim.natsd import NatsServer

_projects = itertools.count(1)

# Without Keptn's programs the Keptn scenarios are not collected at all (./scripts/e2e says they did not run).
collect_ignore = [] if os.environ.get(ENV, "").strip() else ["test_keptn.py"]


def _report(config: pytest.Config, line: str) -> None:
    """Show ``line`` on the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


_T = TypeVar("_T")


def _built(config: pytest.Config, prefix: str, build: Callable[[list[str]], _T]) -> _T:
    """``build(lines)``, then each line it reported shown as ``<prefix>: <line>``."""
    lines: list[str] = []
    built = build(lines)
    for line in lines:
        _report(config, f"{prefix}: {line}")
    return built


@pytest.fixture(scope="session")
def tools(pytestconfig: pytest.Config) -> Toolchain:
    """etcd, kube-apiserver and the Flux controllers, built from their modules on first use, then cached."""
    return _built(pytestconfig, "e2e build", toolchain)


@pytest.fixture(scope="session")
def cluster(
    pytestconfig: pytest.Config, tools: Toolchain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("e2e-cluster")
    with running_cluster(tools, workdir) as running:
        _report(
            pytestconfig,
            f"e2e cluster: Kubernetes {tools.kubernetes_version}, Flux {tools.flux_versions}, "
            f"up in {running.started_in:.0f}s; logs in {running.logs}",
        )
        yield running


@pytest.fixture
def fleet(cluster: Cluster) -> Fleet:
    """A fresh repository and namespace ``e2e<n>-dev`` whose seed commit Flux has already reconciled."""
    cluster.flux.check_running()
    return create_fleet(cluster.kube, cluster.git_http, f"e2e{next(_projects)}")


@pytest.fixture(scope="session")
def gitea(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GiteaServer]:
    """A real Gitea (built from its Go module, cached) for the pull-request scenario."""
    try:
        with running_gitea(tmp_path_factory.mktemp("e2e-gitea")) as server:
            _report(pytestconfig, f"e2e gitea: {server.tools.version} up in {server.started_in:.1f}s at {server.url}")
            yield server
    except GiteaMissingError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def service(fleet: Fleet, cluster: Cluster, nats_url: str, tmp_path: Path) -> Iterator[Process]:
    process = start_service(fleet, nats_url, cluster.kubeconfig, tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def keptn(service: Process, nats_url: str) -> AsyncIterator[KeptnBus]:
    """The shipyard-controller's side of NATS, with the service already subscribed."""
    bus = await KeptnBus().connect(nats_url)
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def keptn_bus(nats_url: str) -> AsyncIterator[KeptnBus]:
    """The shipyard-controller's side of NATS, for tests that start the service themselves."""
    bus = await KeptnBus().connect(nats_url)
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture(scope="session")
def argo_tools(pytestconfig: pytest.Config) -> ArgoTools:
    """Argo CD's binary and CRDs, built from its module on first use (``build.py argocd``), then cached."""
    return _built(pytestconfig, "e2e build", argocd_tools)


@pytest.fixture(scope="session")
def argo(
    pytestconfig: pytest.Config, argo_tools: ArgoTools, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArgoPlane]:
    """Redis, Argo CD's repo-server, application-controller and argocd-server on the e2e API server."""
    workdir = tmp_path_factory.mktemp("e2e-argocd")
    plane = ArgoPlane(argo_tools, cluster.kube, cluster.kubeconfig, workdir)
    started = time.monotonic()
    plane.start()
    try:
        _report(
            pytestconfig,
            f"e2e argo cd: {argo_tools.version} up in {time.monotonic() - started:.0f}s; logs in {plane.logs}",
        )
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def pods(pytestconfig: pytest.Config, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodPlane]:
    """kube-controller-manager, kube-scheduler and kwok with one fake node: Deployments become Available."""
    tools: PodTools = _built(pytestconfig, "e2e build", pod_tools)
    workdir = tmp_path_factory.mktemp("e2e-pods")
    plane = PodPlane(tools, cluster.kube, cluster.kubeconfig, workdir)
    started = time.monotonic()
    plane.start()
    try:
        _report(pytestconfig, f"e2e pods: kwok {tools.kwok_version} up in {time.monotonic() - started:.0f}s")
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def helm(
    pytestconfig: pytest.Config, tools: Toolchain, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FluxControllers]:
    """Flux's helm-controller (built on first use) and its CRD, next to the session's Flux controllers."""
    built = _built(pytestconfig, "e2e build", helm_tools)
    install_crds(cluster.kube, built.crds)
    controllers = FluxControllers(tools, cluster.kubeconfig, tmp_path_factory.mktemp("e2e-helm"))
    controllers.start_helm_controller(built.helm_controller)
    try:
        _report(pytestconfig, f"e2e helm-controller: {built.version} up")
        yield controllers
    finally:
        controllers.stop()


@pytest.fixture
def argo_fleet(argo: ArgoPlane, cluster: Cluster) -> ArgoFleet:
    """A fresh repository of plain manifests and the namespace ``argo<n>-dev`` its Applications deploy into."""
    argo.check_running()
    return create_argo_fleet(cluster.kube, cluster.git_http, f"argo{next(_projects)}")


@pytest.fixture(scope="session")
def keptn_bin(pytestconfig: pytest.Config) -> KeptnTools:
    """Keptn 1.4.5's shipyard-controller, resource-service, api-service, distributor and CLI from
    ``KEPTN_GITOPS_KEPTN_BIN``, checked (keptnbin.py), and FerretDB, built on first use, then cached."""
    return _built(pytestconfig, "e2e keptn", keptn_binaries)


@pytest.fixture(scope="session")
def keptn_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Keptn's NATS: JetStream on, for the control plane's ``keptn`` stream (one server for the session)."""
    with NatsServer(jetstream=True, store_dir=tmp_path_factory.mktemp("keptn-nats")) as url:
        yield url


@pytest.fixture(scope="session")
def keptn_plane(
    pytestconfig: pytest.Config,
    keptn_bin: KeptnTools,
    cluster: Cluster,
    keptn_nats: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KeptnPlane]:
    """The Keptn control plane (keptnplane.py) on the e2e API server and ``keptn_nats``, for the session."""
    workdir = tmp_path_factory.mktemp("e2e-keptn")
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = workdir / "kube-ca.crt"
    ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    token = config["users"][0]["user"]["token"]
    with running_keptn(keptn_bin, workdir, keptn_nats, cluster.kube, cluster.kube.server, ca, token) as plane:
        _report(pytestconfig, f"e2e keptn: Keptn {keptn_bin.version} up; logs in {plane.logs}")
        yield plane
