"""Shared fixtures. Sub-package fixtures live in each test/<subsystem>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Loop, start_cluster, start_loop, stop_loop

from keptn_gitops_sim.cluster import SimulatedCluster
from keptn_gitops_sim.natsd import NatsServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"

# test/e2e builds and runs a real control plane with the Flux controllers: ./scripts/e2e runs it, with this set.
collect_ignore = [] if os.environ.get("KEPTN_GITOPS_E2E") == "1" else ["e2e"]


@pytest.fixture(scope="session")
def upstream_fixtures() -> Path:
    """``test/fixtures/upstream``: verbatim upstream samples (Keptn, Flux, Argo CD, Kargo), each folder with its
    sources and licence; read-only."""
    return FIXTURES


@pytest.fixture
def nats_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server on a free loopback port, running when the test starts and stopped (by its PID) after it.
    A test marked ``@pytest.mark.jetstream`` gets JetStream, with its store in ``tmp_path / "jetstream"``; such a
    server can be stopped and started again on the same port with the same store."""
    jetstream = request.node.get_closest_marker("jetstream") is not None
    server = NatsServer(jetstream=jetstream, store_dir=tmp_path / "jetstream" if jetstream else None)
    with server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL of the test's nats-server (see ``nats_server``)."""
    return nats_server.url


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SimulatedCluster]:
    """The SIMULATED cluster (keptn_gitops_sim.cluster: Kubernetes API + Flux, running) over the fleet remote in
    ``tmp_path / "remote.git"``, its kubeconfig at ``tmp_path / "kubeconfig"``; stopped after the test."""
    simulated = await start_cluster(tmp_path)
    try:
        yield simulated
    finally:
        await simulated.stop()


@pytest.fixture
async def loop(tmp_path: Path, nats_url: str, cluster: SimulatedCluster) -> AsyncIterator[Loop]:
    """The whole loop, running (see harness.py)."""
    running = await start_loop(tmp_path, nats_url, cluster=cluster)
    try:
        yield running
    finally:
        await stop_loop(running)
