"""The SIMULATED Kubernetes API server's slow-watch switch: ``pause_watches`` holds watch events back (nothing lost,
order kept) while GET answers with the current state; a watch dropped while paused ends at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource

from keptn_gitops_sim.kubeapi import KubeApiServer

NS = "flux-system"
Kustomization = create_namespaced_resource("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations")
PATH = f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{NS}/kustomizations"


def ks(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "carts", "namespace": NS},
        "spec": {"interval": "5m", "path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "x"}} | spec,
    }


@pytest.fixture
async def server() -> AsyncIterator[KubeApiServer]:
    srv = KubeApiServer()
    await srv.start()
    yield srv
    srv.resume_watches()
    await srv.stop()


@pytest.fixture
async def client(server: KubeApiServer, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    kube = AsyncClient(config=KubeConfig.from_file(server.write_kubeconfig(tmp_path / "kubeconfig")), trust_env=False)
    yield kube
    await kube.close()


async def test_paused_events_are_held_and_then_delivered_in_order(server: KubeApiServer, client: AsyncClient) -> None:
    start = server.put_object(ks())["metadata"]["resourceVersion"]
    gen = client.watch(Kustomization, namespace=NS, resource_version=start)
    try:
        first = asyncio.ensure_future(anext(gen))
        await asyncio.wait_for(server.wait_for_watches(1), 5)
        server.pause_watches()
        server.put_object(ks(suspend=True))
        server.put_object(ks(suspend=False))
        current = await client.get(Kustomization, "carts", namespace=NS)
        assert current.to_dict()["spec"]["suspend"] is False  # GET is not held back
        done, _ = await asyncio.wait([first], timeout=0.2)
        assert not done  # the watch is
        server.resume_watches()
        events = [await asyncio.wait_for(first, 5), await asyncio.wait_for(anext(gen), 5)]
    finally:
        await gen.aclose()
    assert [obj.to_dict()["spec"]["suspend"] for _, obj in events] == [True, False]


async def test_a_watch_dropped_while_paused_ends(server: KubeApiServer) -> None:
    start = server.put_object(ks())["metadata"]["resourceVersion"]
    server.pause_watches()
    server.put_object(ks(suspend=True))
    async with httpx2.AsyncClient(base_url=server.url, trust_env=False) as http:
        params = {"watch": "1", "resourceVersion": start}
        async with http.stream("GET", PATH, params=params) as response:
            await asyncio.wait_for(server.wait_for_watches(1), 5)
            assert server.drop_watches() == 1
            body = await asyncio.wait_for(response.aread(), 5)
    assert body == b""  # the held event was never sent; the stream ended
    server.resume_watches()
    async with (
        httpx2.AsyncClient(base_url=server.url, trust_env=False) as http,
        http.stream("GET", PATH, params={**params, "timeoutSeconds": "1"}) as response,
    ):
        lines = [json.loads(line) for line in (await asyncio.wait_for(response.aread(), 5)).splitlines()]
    assert [(e["type"], e["object"]["spec"].get("suspend")) for e in lines] == [("MODIFIED", True)]
