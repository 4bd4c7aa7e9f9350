"""What the wait will read is checked before the commit: a wrong object name, a 403, an unusable kubeconfig or an
unreachable Argo CD end the deployment errored/fail at once — with the object and the reason — and nothing is
pushed. ``wait.flux.mayAppear`` lets a commit create the object it is waited for."""

from __future__ import annotations

import copy
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Loop, start_loop, stop_loop, triggered
from structlog.testing import capture_logs
from support import WAIT_FLUX, ConfigRule, git, service_config, until

from keptn_gitops_sim import content

CHECKED = "; nothing was committed (rules[0].wait is checked before the commit)"


def head(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


async def deploy_refused(loop: Loop) -> dict[str, Any]:
    """Trigger a deployment that must end errored/fail without a commit; its finished data."""
    before = head(loop.remote)
    event = triggered("docker.io/keptnexamples/carts:0.14.0")
    with capture_logs() as logs:
        await loop.publish(event)
        finished = await loop.finished(event["id"], timeout=20)  # the rule's wait.timeout is 2m
    data: dict[str, Any] = finished["data"]
    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    assert head(loop.remote) == before, "nothing may be pushed"
    assert "gitCommit" not in data["deployment"]
    assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
    lines = [e for e in logs if e["event"] == "deployment finished"]
    assert [(e["log_level"], e["status"]) for e in lines] == [("error", "errored")]
    return data


@pytest.fixture
async def wrong_name(tmp_path: Path, nats_url: str) -> AsyncIterator[Loop]:
    loop = await start_loop(
        tmp_path,
        nats_url,
        config=service_config(tmp_path / "remote.git", ConfigRule(wait=WAIT_FLUX.replace('"{service}"', "cart"))),
    )
    try:
        yield loop
    finally:
        await stop_loop(loop)


async def test_a_wrong_kustomization_name_fails_at_once_without_a_commit(wrong_name: Loop) -> None:
    data = await deploy_refused(wrong_name)
    assert data["message"] == (
        "Flux Kustomization sockshop-dev/cart does not exist in the cluster "
        f"(if the commit creates it, set wait.flux.mayAppear: true){CHECKED}"
    )


async def test_a_403_on_the_kustomization_fails_at_once_without_a_commit(loop: Loop) -> None:
    loop.kube.deny("kustomizations", verbs={"get"}, namespace="sockshop-dev")
    data = await deploy_refused(loop)
    assert data["message"].startswith("cannot read Kustomization sockshop-dev/carts: 403 Forbidden: ")
    assert data["message"].endswith(CHECKED)


async def test_an_unreadable_kubeconfig_fails_at_once_without_a_commit(loop: Loop) -> None:
    kubeconfig = loop.tmp / "kubeconfig"  # the harness's; the service loads it on its first Kubernetes request
    kubeconfig.write_text("clusters: [not a kubeconfig\n")
    data = await deploy_refused(loop)
    assert data["message"].startswith(f"cannot load the Kubernetes configuration from {kubeconfig}: ")
    assert data["message"].endswith(CHECKED)


async def test_an_unreachable_argocd_fails_at_once_without_a_commit(
    tmp_path: Path, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRECHECK_ARGOCD_TOKEN", "argocd-token-9c1d")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wait = f'argocd: {{application: "{{project}}-{{stage}}-{{service}}", api: rest, server: "{server}", '
    wait += "tokenEnv: PRECHECK_ARGOCD_TOKEN}"
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    try:
        data = await deploy_refused(loop)
        assert data["message"].startswith(f"cannot reach Argo CD at {server}: ")
        assert data["message"].endswith(CHECKED)
        assert "argocd-token-9c1d" not in data["message"]
    finally:
        await stop_loop(loop)


async def test_may_appear_commits_and_waits_for_the_object(tmp_path: Path, nats_url: str) -> None:
    wait = 'flux: {kind: Kustomization, name: "{service}-v2", namespace: "{project}-{stage}", mayAppear: true}'
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", ConfigRule(wait=wait)))
    try:
        before = head(loop.remote)
        event = triggered("docker.io/keptnexamples/carts:0.14.1")
        await loop.publish(event)
        await until(lambda: head(loop.remote) != before)  # committed although carts-v2 does not exist
        assert loop.replies_to(event["id"])[-1]["type"].endswith(".started")
        created = copy.deepcopy(content.KUSTOMIZATION)
        created["metadata"]["name"] = "carts-v2"
        loop.kube.put_object(created)  # the simulated Flux reconciles a new Kustomization at once
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert data["deployment"]["gitCommit"] == head(loop.remote)
    finally:
        await stop_loop(loop)


async def test_a_rollback_checks_the_wait_target_before_its_commit(loop: Loop) -> None:
    deployment = triggered("docker.io/keptnexamples/carts:0.13.1")
    await loop.publish(deployment)
    assert (await loop.finished(deployment["id"]))["data"]["result"] == "pass"
    deployed = head(loop.remote)
    loop.kube.deny("kustomizations", verbs={"get"}, namespace="sockshop-dev")
    rollback = triggered()
    rollback["type"] = "sh.keptn.event.rollback.triggered"
    rollback["shkeptncontext"] = deployment["shkeptncontext"]
    rollback["data"] = {"project": "sockshop", "stage": "dev", "service": "carts", "result": "fail"}
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"], timeout=20))["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert data["message"].startswith("cannot read Kustomization sockshop-dev/carts: 403 Forbidden: ")
    assert data["message"].endswith(CHECKED)
    assert head(loop.remote) == deployed
