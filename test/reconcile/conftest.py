"""The Kubernetes-API test server and a KubeHub on it, for the wait tests (modules may define their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keptn_gitops_service.reconcile.kube import KubeHub, load_client
from keptn_gitops_sim.kubeapi import KubeApiServer


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    server = KubeApiServer(token="s3cret")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def hub(kube: KubeApiServer, tmp_path: Path) -> AsyncIterator[KubeHub]:
    hub = KubeHub(load_client(str(kube.write_kubeconfig(tmp_path / "kubeconfig"))))
    try:
        yield hub
    finally:
        await hub.close()
