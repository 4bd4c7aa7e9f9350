"""Production through a pull request, with nothing simulated: the service pushes a branch to a real Gitea and opens a
pull request there; a person merges it in Gitea; the real Flux controllers fetch the fleet from Gitea and apply the
merge commit on a real API server; the service reads that status and answers Keptn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.environment import Cluster
from e2e.fleet import Fleet, follow, repository_files
from e2e.keptnside import FLUX_WAIT, KeptnBus, deployment_triggered, start_service
from e2e.processes import Process
from forges.giteaserver import GiteaServer, Repo
from support import ConfigRule, service_config

ANSWER_TIMEOUT = 240  # seconds: above the service's own wait timeout


@pytest.fixture
def gitea_fleet(gitea: GiteaServer, cluster: Cluster) -> tuple[Fleet, Repo]:
    """A fleet repository on Gitea, followed by Flux over HTTP (anonymously: the repository is public)."""
    cluster.flux.check_running()
    repo = gitea.create_repo("pr")
    project = repo.name.replace("-", "")
    for name, text in repository_files(project).items():
        (repo.clone / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.clone / name).write_text(text, encoding="utf-8")
    gitea.git(repo, "add", "--all")
    gitea.git(repo, "commit", "--quiet", "-m", "the fleet")
    gitea.wait_branch(repo, "main", gitea.push(repo, "main"))
    bare = gitea.workdir / "repositories" / "owner" / f"{repo.name.lower()}.git"
    return follow(Fleet(project, bare, f"{gitea.url}/owner/{repo.name}.git", cluster.kube)), repo


@pytest.fixture
def pr_service(
    gitea: GiteaServer, gitea_fleet: tuple[Fleet, Repo], cluster: Cluster, nats_url: str, tmp_path: Path
) -> Iterator[Process]:
    fleet, _ = gitea_fleet
    rule = ConfigRule(
        match=f'{{project: {fleet.project}, stage: "*", service: "*"}}',
        timeout=FLUX_WAIT,
        extra=("mode: pullRequest", "pullRequest: {labels: [keptn]}"),
    )
    config = service_config(fleet.url, rule, forge="{type: gitea, tokenEnv: GITEA_TOKEN}").replace(
        "    branch: main\n", "    branch: main\n    auth: {type: token, tokenEnv: GITEA_TOKEN, username: owner}\n"
    )
    process = start_service(
        fleet, nats_url, cluster.kubeconfig, tmp_path, extra_env={"GITEA_TOKEN": gitea.owner.token}, config_text=config
    )
    try:
        yield process
    finally:
        process.stop()


async def test_a_deployment_through_a_gitea_pull_request_passes_once_flux_applied_the_merge(
    gitea: GiteaServer, gitea_fleet: tuple[Fleet, Repo], pr_service: Process, keptn_bus: KeptnBus
) -> None:
    fleet, repo = gitea_fleet
    seed = fleet.head()
    event = deployment_triggered(fleet, "carts", "docker.io/keptnexamples/carts:0.13.1")
    await keptn_bus.publish(event)
    started = await replied(keptn_bus, event["id"])
    pulls: list[dict[str, Any]] = await asyncio.to_thread(gitea.api, "GET", f"/repos/{repo.path}/pulls")
    [pull] = pulls
    assert started["data"]["message"].startswith(f"waiting for pull request {pull['html_url']} (keptn/")
    assert [label["name"] for label in pull["labels"]] == ["keptn"]
    assert fleet.head() == seed  # nothing reaches main, nor the cluster, before the merge
    merge = await asyncio.to_thread(gitea.merge_as, "reviewer", repo, pull["number"])
    assert fleet.head() == merge
    finished = await keptn_bus.finished(event["id"], ANSWER_TIMEOUT)
    data = finished["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    assert data["deployment"]["gitCommit"] == merge != seed
    assert data["message"].startswith(f"pull request {pull['html_url']} merged as {merge[:12]}.")
    # what the service reported is what Flux did: Gitea's merge commit applied, the new image in the cluster
    assert fleet.kustomization("carts")["status"]["lastAppliedRevision"] == f"main@sha1:{merge}"
    assert fleet.deployment_image("carts") == "docker.io/keptnexamples/carts:0.13.1"


async def replied(keptn: KeptnBus, triggered_id: str) -> dict[str, Any]:
    """The first reply (``.started``); the deadline only bounds a hung service."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while not keptn.replies_to(triggered_id):
        assert time.monotonic() < deadline, "no .started"
        await asyncio.sleep(0.05)
    reply = keptn.replies_to(triggered_id)[0]
    assert reply["type"] == "sh.keptn.event.deployment.started", reply
    return reply
