"""The SIMULATED Kubernetes API server, exercised through the real lightkube AsyncClient (and raw HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType, on_error_retry

from keptn_gitops_sim.kubeapi import KubeApiServer

TOKEN = "s3cr3t-simulated-token"
NS = "flux-system"
KS_GROUP, KS_VERSION, KS_PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"

Kustomization = create_namespaced_resource(KS_GROUP, KS_VERSION, "Kustomization", KS_PLURAL)
GitRepository = create_namespaced_resource("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories")
Widget = create_namespaced_resource("example.invalid", "v1", "Widget", "widgets")


def ks(name: str, namespace: str = NS, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    body = {
        "interval": "5m",
        "path": "./apps/dev/carts",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "fleet"},
    }
    return {
        "apiVersion": f"{KS_GROUP}/{KS_VERSION}",
        "kind": "Kustomization",
        "metadata": meta,
        "spec": body | spec,
    }


@pytest.fixture
async def server() -> AsyncIterator[KubeApiServer]:
    srv = KubeApiServer(token=TOKEN)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def kubeconfig(server: KubeApiServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture
async def client(kubeconfig: Path) -> AsyncIterator[AsyncClient]:
    kube = AsyncClient(config=KubeConfig.from_file(kubeconfig), trust_env=False)
    yield kube
    await kube.close()


@pytest.fixture
async def raw(server: KubeApiServer) -> AsyncIterator[httpx2.AsyncClient]:
    """Plain HTTP to check wire details that lightkube hides."""
    async with httpx2.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
    ) as http:
        yield http


@asynccontextmanager
async def watching(client: AsyncClient, res: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """A lightkube watch generator that is always closed (which closes its HTTP stream)."""
    gen = client.watch(res, **kwargs)
    try:
        yield gen
    finally:
        await gen.aclose()


async def take(gen: Any, count: int, timeout: float = 5.0) -> list[tuple[str, Any]]:
    """The next ``count`` watch events; the timeout is only a safety bound."""
    return [await asyncio.wait_for(anext(gen), timeout) for _ in range(count)]


# ------------------------------------------------------------------------------------ basics


async def test_the_written_kubeconfig_is_what_lightkube_expects(server: KubeApiServer, kubeconfig: Path) -> None:
    config = KubeConfig.from_file(kubeconfig).get()
    assert config.cluster.server == server.url and server.url.startswith("http://127.0.0.1:")
    assert config.user is not None and config.user.token == TOKEN
    assert config.namespace == NS
    assert kubeconfig.stat().st_mode & 0o777 == 0o600


async def test_get_returns_the_object_with_server_managed_metadata(server: KubeApiServer, client: AsyncClient) -> None:
    stored = server.put_object(ks("carts"))
    obj = await client.get(Kustomization, "carts")
    assert obj.metadata.name == "carts" and obj.metadata.namespace == NS
    assert obj.metadata.generation == 1 and obj.metadata.uid == stored["metadata"]["uid"]
    assert obj.metadata.resourceVersion == stored["metadata"]["resourceVersion"] == server.resource_version
    assert obj["spec"]["path"] == "./apps/dev/carts"
    assert obj.apiVersion == "kustomize.toolkit.fluxcd.io/v1" and obj.kind == "Kustomization"
    assert stored["metadata"]["creationTimestamp"].endswith("Z")


async def test_list_is_a_kind_list_with_a_resource_version(
    server: KubeApiServer, client: AsyncClient, raw: httpx2.AsyncClient
) -> None:
    server.put_object(ks("carts", labels={"app": "carts"}))
    server.put_object(ks("orders", labels={"app": "orders"}))
    server.put_object(ks("other", namespace="default"))
    listing = client.list(Kustomization)
    assert [o.metadata.name async for o in listing] == ["carts", "orders"]
    assert listing.resourceVersion == server.resource_version
    assert [o.metadata.name async for o in client.list(Kustomization, labels={"app": "orders"})] == ["orders"]
    everywhere = [o.metadata.name async for o in client.list(Kustomization, namespace="*")]
    assert everywhere == ["other", "carts", "orders"]  # sorted by namespace, then name
    chunks = [o.metadata.name async for o in client.list(Kustomization, chunk_size=1)]
    assert chunks == ["carts", "orders"]

    response = await raw.get(f"/apis/{KS_GROUP}/{KS_VERSION}/namespaces/{NS}/{KS_PLURAL}")
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["kind"] == "KustomizationList" and body["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert body["metadata"] == {"resourceVersion": server.resource_version}
    assert [item["kind"] for item in body["items"]] == ["Kustomization", "Kustomization"]


async def test_unknown_kinds_and_objects_are_404_status_objects(client: AsyncClient, raw: httpx2.AsyncClient) -> None:
    response = await raw.get("/apis/example.invalid/v1/namespaces/default/widgets")
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
    with pytest.raises(ApiError) as unknown:
        await client.get(Widget, "w")
    assert unknown.value.status.code == 404 and unknown.value.status.reason == "NotFound"
    with pytest.raises(ApiError) as missing:
        await client.get(Kustomization, "nope")
    assert missing.value.status.message == 'kustomizations.kustomize.toolkit.fluxcd.io "nope" not found'
    assert missing.value.status.details.name == "nope" and missing.value.status.details.kind == KS_PLURAL


async def test_create_drops_status_and_rejects_duplicates(server: KubeApiServer, client: AsyncClient) -> None:
    created = await client.create(Kustomization(ks("carts") | {"status": {"observedGeneration": 7}}))
    assert created.metadata.generation == 1 and "status" not in created
    with pytest.raises(ApiError) as dup:
        await client.create(Kustomization(ks("carts")))
    assert dup.value.status.code == 409 and dup.value.status.reason == "AlreadyExists"
    assert server.get_object(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts") is not None


async def test_delete_removes_the_object(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    await client.delete(Kustomization, "carts")
    assert server.get_object(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts") is None
    with pytest.raises(ApiError) as missing:
        await client.delete(Kustomization, "carts")
    assert missing.value.status.code == 404


# ------------------------------------------------------------------------------------ writes


async def test_merge_patch_of_an_annotation_keeps_the_generation(server: KubeApiServer, client: AsyncClient) -> None:
    before = server.put_object(ks("carts"))
    annotated = await client.patch(
        Kustomization,
        "carts",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "2024-07-16T12:00:00Z"}}},
        patch_type=PatchType.MERGE,
    )
    assert annotated.metadata.annotations == {"reconcile.fluxcd.io/requestedAt": "2024-07-16T12:00:00Z"}
    assert annotated.metadata.generation == 1
    assert int(annotated.metadata.resourceVersion) > int(before["metadata"]["resourceVersion"])
    changed = await client.patch(Kustomization, "carts", {"spec": {"path": "./apps/prod"}}, patch_type=PatchType.MERGE)
    assert changed.metadata.generation == 2 and changed["spec"]["path"] == "./apps/prod"
    removed = await client.patch(Kustomization, "carts", {"spec": {"prune": None}}, patch_type=PatchType.MERGE)
    assert "prune" not in removed["spec"] and removed.metadata.generation == 3


async def test_json_patch_operations_and_a_failed_test(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts", labels={"a": "1"}))
    patched = await client.patch(
        Kustomization,
        "carts",
        [
            {"op": "test", "path": "/spec/path", "value": "./apps/dev/carts"},
            {"op": "add", "path": "/metadata/labels/team~1name", "value": "shop"},
            {"op": "replace", "path": "/spec/interval", "value": "1m"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/spec/components", "value": ["x"]},
            {"op": "add", "path": "/spec/components/-", "value": "y"},
        ],
        patch_type=PatchType.JSON,
    )
    assert patched.metadata.labels == {"team/name": "shop"}
    assert patched["spec"]["interval"] == "1m" and patched["spec"]["components"] == ["x", "y"]
    with pytest.raises(ApiError) as failed:
        await client.patch(
            Kustomization,
            "carts",
            [{"op": "test", "path": "/spec/interval", "value": "5m"}],
            patch_type=PatchType.JSON,
        )
    assert failed.value.status.code == 422 and failed.value.status.reason == "Invalid"
    with pytest.raises(ApiError) as bad:
        await client.patch(Kustomization, "carts", [{"path": "/spec"}], patch_type=PatchType.JSON)
    assert bad.value.status.code == 400


async def test_strategic_merge_patch_on_a_custom_resource_is_415(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    with pytest.raises(ApiError) as info:
        await client.patch(Kustomization, "carts", {"spec": {"suspend": True}})  # lightkube's default type
    assert info.value.status.code == 415 and info.value.status.reason == "UnsupportedMediaType"
    assert "application/merge-patch+json" in info.value.status.message


async def test_apply_patch_creates_then_merges(server: KubeApiServer, client: AsyncClient) -> None:
    created = await client.apply(Kustomization(ks("carts")), field_manager="keptn-gitops")
    assert created.metadata.generation == 1
    updated = await client.patch(
        Kustomization,
        "carts",
        {"apiVersion": f"{KS_GROUP}/{KS_VERSION}", "kind": "Kustomization", "spec": {"suspend": True}},
        patch_type=PatchType.APPLY,
        field_manager="keptn-gitops",
    )
    assert updated["spec"]["suspend"] is True and updated["spec"]["path"] == "./apps/dev/carts"
    assert updated.metadata.generation == 2
    with pytest.raises(ApiError) as info:
        await client._client.request(  # lightkube refuses to send an apply without a field manager itself
            "patch",
            res=Kustomization,
            name="carts",
            obj={"spec": {}},
            headers={"Content-Type": "application/json"},
        )
    assert info.value.status.code == 415


async def test_status_is_only_written_through_the_status_subresource(
    server: KubeApiServer, client: AsyncClient
) -> None:
    server.put_object(ks("carts"))
    ignored = await client.patch(
        Kustomization, "carts", {"status": {"lastAppliedRevision": "x"}}, patch_type=PatchType.MERGE
    )
    assert "status" not in ignored
    status = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    written = await client.patch(
        Kustomization.Status,
        "carts",
        {"status": status, "spec": {"path": "./ignored"}},
        patch_type=PatchType.MERGE,
    )
    assert written["status"] == status and written["spec"]["path"] == "./apps/dev/carts"
    assert written.metadata.generation == 1
    fetched = await client.get(Kustomization.Status, "carts")
    assert fetched["status"] == status
    replaced = await client.replace(Kustomization.Status(fetched | {"status": {"observedGeneration": 1}}), "carts")
    assert replaced["status"] == {"observedGeneration": 1} and replaced.metadata.generation == 1
    again = server.update_status(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts", {"observedGeneration": 1})
    assert again["metadata"]["resourceVersion"] == replaced.metadata.resourceVersion  # no-op write


async def test_put_honours_resource_version_preconditions(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    current = await client.get(Kustomization, "carts")
    current["spec"]["path"] = "./apps/prod"
    replaced = await client.replace(current)
    assert replaced.metadata.generation == 2
    with pytest.raises(ApiError) as stale:
        await client.replace(current)  # still carries the old resourceVersion
    assert stale.value.status.code == 409 and stale.value.status.reason == "Conflict"
    assert "the object has been modified" in stale.value.status.message
    unconditional = Kustomization(ks("carts"))
    with pytest.raises(ApiError) as invalid:
        await client.replace(unconditional)
    assert invalid.value.status.code == 422


async def test_resource_versions_only_move_on_real_changes(server: KubeApiServer, client: AsyncClient) -> None:
    first = server.put_object(ks("carts"))
    same = await client.patch(Kustomization, "carts", {"spec": {"prune": True}}, patch_type=PatchType.MERGE)
    assert same.metadata.resourceVersion == first["metadata"]["resourceVersion"]
    other = server.put_object(ks("orders"))
    assert int(other["metadata"]["resourceVersion"]) == int(first["metadata"]["resourceVersion"]) + 1


# ------------------------------------------------------------------------------------ watch


async def test_watch_resumes_after_a_resource_version(server: KubeApiServer, client: AsyncClient) -> None:
    start = server.put_object(ks("carts"))["metadata"]["resourceVersion"]
    server.update_status(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts", {"observedGeneration": 1})
    server.put_object(ks("orders"))
    async with watching(client, Kustomization, namespace=NS, resource_version=start) as gen:
        events = await take(gen, 2)
        server.delete_object(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts")
        events += await take(gen, 1)
    assert [(kind, obj.metadata.name) for kind, obj in events] == [
        ("MODIFIED", "carts"),
        ("ADDED", "orders"),
        ("DELETED", "carts"),
    ]
    assert events[0][1]["status"] == {"observedGeneration": 1}
    versions = [int(obj.metadata.resourceVersion) for _, obj in events]
    assert versions == sorted(versions) and versions[-1] == int(server.resource_version)


async def test_watch_without_a_version_starts_with_synthetic_added_events(
    server: KubeApiServer, client: AsyncClient
) -> None:
    server.put_object(ks("carts"))
    server.put_object(ks("orders"))
    async with watching(client, Kustomization, namespace=NS) as gen:
        events = await take(gen, 2)
        server.put_object(ks("carts", suspend=True))
        events += await take(gen, 1)
    assert [(kind, obj.metadata.name) for kind, obj in events] == [
        ("ADDED", "carts"),
        ("ADDED", "orders"),
        ("MODIFIED", "carts"),
    ]
    assert events[-1][1].metadata.generation == 2


async def test_watch_filters_by_field_and_label_selectors(server: KubeApiServer, client: AsyncClient) -> None:
    start = server.put_object(ks("orders", labels={"tier": "web"}))["metadata"]["resourceVersion"]
    server.put_object(ks("carts", labels={"tier": "web"}))
    server.put_object(ks("carts", labels={"tier": "db"}))  # leaves the label selection
    server.put_object(ks("carts", labels={"tier": "web"}))  # and comes back
    server.put_object(ks("orders", labels={"tier": "db"}))
    by_name = {"metadata.name": "carts"}
    async with watching(client, Kustomization, namespace=NS, resource_version=start, fields=by_name) as gen:
        named = await take(gen, 3)
    assert [kind for kind, _ in named] == ["ADDED", "MODIFIED", "MODIFIED"]
    by_label = {"tier": "web"}
    async with watching(client, Kustomization, namespace=NS, resource_version=start, labels=by_label) as gen:
        labelled = await take(gen, 4)
    assert [(kind, obj.metadata.name) for kind, obj in labelled] == [
        ("ADDED", "carts"),
        ("DELETED", "carts"),
        ("ADDED", "carts"),
        ("DELETED", "orders"),
    ]
    assert labelled[1][1].metadata.labels == {"tier": "web"}  # the last state that matched


async def test_watch_of_an_expired_version_is_410_gone(server: KubeApiServer, client: AsyncClient) -> None:
    start = server.put_object(ks("carts"))["metadata"]["resourceVersion"]
    server.put_object(ks("orders"))
    server.expire_history()
    with pytest.raises(ApiError) as info:
        async with watching(client, Kustomization, namespace=NS, resource_version=start) as gen:
            await take(gen, 1)
    assert info.value.status.code == 410 and info.value.status.reason == "Expired"
    assert info.value.status.message == f"too old resource version: {start} ({server.resource_version})"
    # lightkube's on_error_retry drops the version after a 410 and restarts with the current state
    async with watching(client, Kustomization, namespace=NS, resource_version=start, on_error=on_error_retry) as gen:
        events = await take(gen, 2)
    assert [(kind, obj.metadata.name) for kind, obj in events] == [("ADDED", "carts"), ("ADDED", "orders")]


async def test_a_small_history_window_expires_old_versions() -> None:
    async with (
        KubeApiServer(history_size=2) as srv,
        httpx2.AsyncClient(base_url=srv.url, trust_env=False) as http,
    ):
        start = srv.put_object(ks("a"))["metadata"]["resourceVersion"]
        for name in ("b", "c", "d"):
            srv.put_object(ks(name))
        path = f"/apis/{KS_GROUP}/{KS_VERSION}/namespaces/{NS}/{KS_PLURAL}"
        response = await http.get(path, params={"watch": "1", "resourceVersion": start})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        lines = response.text.splitlines()
        assert len(lines) == 1
        event = json.loads(lines[0])
        assert event["type"] == "ERROR"
        assert event["object"] | {"message": None} == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": None,
            "reason": "Expired",
            "code": 410,
        }


async def test_watch_reconnects_and_resumes_after_drop_watches(server: KubeApiServer, client: AsyncClient) -> None:
    start = server.put_object(ks("carts"))["metadata"]["resourceVersion"]
    async with watching(client, Kustomization, namespace=NS, resource_version=start) as gen:
        pending = asyncio.ensure_future(take(gen, 2))
        await asyncio.wait_for(server.wait_for_watches(1), 5)
        server.put_object(ks("carts", suspend=True))
        assert server.drop_watches() == 1
        server.put_object(ks("carts", suspend=False))  # happens while the client is reconnecting
        events = await asyncio.wait_for(pending, 5)
    assert [obj["spec"]["suspend"] for _, obj in events] == [True, False]
    assert server.request_count["watch"] == 2


async def test_an_aborted_watch_is_an_error_unless_the_client_retries(
    server: KubeApiServer, client: AsyncClient
) -> None:
    start = server.put_object(ks("carts"))["metadata"]["resourceVersion"]
    with pytest.raises(httpx2.HTTPError):
        async with watching(client, Kustomization, namespace=NS, resource_version=start) as gen:
            pending = asyncio.ensure_future(take(gen, 1))
            await asyncio.wait_for(server.wait_for_watches(1), 5)
            server.drop_watches(abort=True)
            await pending
    async with watching(client, Kustomization, namespace=NS, resource_version=start, on_error=on_error_retry) as gen:
        pending = asyncio.ensure_future(take(gen, 1))
        await asyncio.wait_for(server.wait_for_watches(1), 5)
        server.drop_watches(abort=True)
        server.put_object(ks("carts", suspend=True))
        [(kind, obj)] = await asyncio.wait_for(pending, 5)
    assert kind == "MODIFIED" and obj["spec"]["suspend"] is True


async def test_watch_timeout_seconds_ends_the_stream(server: KubeApiServer, raw: httpx2.AsyncClient) -> None:
    path = f"/apis/{KS_GROUP}/{KS_VERSION}/{KS_PLURAL}"  # cluster-wide watch
    server.put_object(ks("carts"))
    response = await asyncio.wait_for(raw.get(path, params={"watch": "true", "timeoutSeconds": "1"}), 5)
    assert response.status_code == 200
    [line] = response.text.splitlines()
    assert json.loads(line)["type"] == "ADDED"
    assert server.open_watches == 0


# ------------------------------------------------------------------------------------ auth and faults


async def test_requests_without_the_token_are_401(server: KubeApiServer, raw: httpx2.AsyncClient) -> None:
    config = server.kubeconfig(NS)
    for token in (None, "wrong"):
        config["users"][0]["user"] = {"token": token} if token else {}
        async with AsyncClient(config=KubeConfig.from_dict(config), trust_env=False) as anonymous:
            with pytest.raises(ApiError) as info:
                await anonymous.get(Kustomization, "carts")
        assert info.value.status.code == 401 and info.value.status.reason == "Unauthorized"
    response = await raw.get("/apis/x/v1/y", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401 and response.json()["message"] == "Unauthorized"


async def test_the_deny_list_produces_rbac_403s(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    server.deny(KS_PLURAL, group=KS_GROUP, verbs={"patch"}, subresource="status")
    with pytest.raises(ApiError) as info:
        await client.patch(Kustomization.Status, "carts", {"status": {}}, patch_type=PatchType.MERGE)
    status = info.value.status
    assert status.code == 403 and status.reason == "Forbidden"
    assert status.message == (
        'kustomizations.kustomize.toolkit.fluxcd.io "carts" is forbidden: User '
        '"system:serviceaccount:keptn:keptn-gitops-service" cannot patch resource "kustomizations/status" '
        'in API group "kustomize.toolkit.fluxcd.io" in the namespace "flux-system"'
    )
    await client.patch(Kustomization, "carts", {"metadata": {"labels": {"a": "b"}}}, patch_type=PatchType.MERGE)
    server.deny("gitrepositories", verbs={"watch", "list"})
    with pytest.raises(ApiError) as listing:
        await anext(aiter(client.list(GitRepository, namespace="*")))
    assert listing.value.status.message.endswith("at the cluster scope")
    server.clear_denials()
    assert [o async for o in client.list(GitRepository)] == []


async def test_fail_next_injects_server_errors(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    server.fail_next(2)
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            await client.get(Kustomization, "carts")
        assert info.value.status.code == 500 and info.value.status.reason == "InternalError"
    assert (await client.get(Kustomization, "carts")).metadata.name == "carts"
    server.fail_next(1, status=503)
    with pytest.raises(httpx2.HTTPStatusError) as watch_error:  # lightkube does not map watch HTTP errors
        async with watching(client, Kustomization, namespace=NS) as gen:
            await take(gen, 1)
    assert watch_error.value.response.status_code == 503
    assert watch_error.value.response.headers["Retry-After"] == "1"


async def test_request_counts_by_verb(server: KubeApiServer, client: AsyncClient) -> None:
    server.put_object(ks("carts"))
    server.reset_request_count()
    await client.get(Kustomization, "carts")
    await client.get(Kustomization, "carts")
    _ = [o async for o in client.list(Kustomization)]
    await client.patch(Kustomization, "carts", {"spec": {"suspend": True}}, patch_type=PatchType.MERGE)
    async with watching(client, Kustomization, namespace=NS) as gen:
        await take(gen, 1)
    assert server.request_count == {"total": 5, "get": 2, "list": 1, "patch": 1, "watch": 1}
    await asyncio.wait_for(server.wait_for_watches(0, exactly=True), 5)  # closing the client side frees it


async def test_put_object_keeps_status_unless_given_and_computes_generations(server: KubeApiServer) -> None:
    server.put_object(ks("carts", labels={"a": "1"}) | {"status": {"observedGeneration": 1}})
    relabelled = server.put_object(ks("carts", labels={"a": "2"}))
    assert relabelled["status"] == {"observedGeneration": 1} and relabelled["metadata"]["generation"] == 1
    copied = server.get_object(KS_GROUP, KS_VERSION, KS_PLURAL, NS, "carts")
    assert copied is not None
    copied["spec"]["suspend"] = True
    assert server.put_object(copied)["metadata"]["generation"] == 2
    seeded = server.put_object(ks("orders") | {"metadata": {"name": "orders", "namespace": NS, "generation": 3}})
    assert seeded["metadata"]["generation"] == 3
    replaced = server.put_object(ks("carts") | {"status": {}})
    assert replaced["status"] == {} and replaced["metadata"]["generation"] == 3
