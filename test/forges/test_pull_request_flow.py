"""The whole pull-request flow against a real Gitea: the service (over real NATS) pushes its branch to Gitea over
HTTP with a token, opens the pull request through Gitea's API, is woken by Gitea's own signed webhook when a person
merges or closes it, and waits for the (simulated) Flux to apply Gitea's merge commit. What test/forgesim.py models
for the workflow tests, shown here against the real program."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from forges.giteaserver import GiteaServer, Repo
from harness import Loop, rollback_of, start_loop, stop_loop, triggered
from support import ConfigRule, git, service_config, until

from keptn_gitops_service import metrics
from keptn_gitops_sim import content
from keptn_gitops_sim.cluster import SimulatedCluster

SECRET = "gitea-webhook-secret"
KS = "apps/dev/carts/kustomization.yaml"


@dataclass
class Setup:
    gitea: GiteaServer
    repo: Repo
    cluster: SimulatedCluster
    tmp: Path
    nats_url: str

    @property
    def bare(self) -> Path:
        """Gitea's own copy of the repository (what the simulated Flux reads)."""
        return self.gitea.workdir / "repositories" / "owner" / f"{self.repo.name.lower()}.git"

    def config(self, options: str = "{}") -> str:
        url = f"{self.gitea.url}/owner/{self.repo.name}.git"
        forge = "{type: gitea, tokenEnv: GITEA_TOKEN, webhookSecretEnv: GITEA_WEBHOOK_SECRET}"
        text = service_config(url, ConfigRule(extra=("mode: pullRequest", f"pullRequest: {options}")), forge=forge)
        return text.replace(
            "    branch: main\n", "    branch: main\n    auth: {type: token, tokenEnv: GITEA_TOKEN, username: owner}\n"
        )

    async def start(self, options: str = "{}") -> Loop:
        loop = await start_loop(self.tmp, self.nats_url, cluster=self.cluster, config=self.config(options))
        probes = loop.service.probes
        assert probes is not None
        # Gitea's own webhook, signed with the secret, to the service's endpoint for repository "fleet"
        for hook in await self.api("GET", "/hooks") or []:
            await self.api("DELETE", f"/hooks/{hook['id']}")
        await self.api(
            "POST",
            "/hooks",
            {
                "type": "gitea",
                "active": True,
                "events": ["pull_request", "pull_request_review_approved"],
                "config": {
                    "url": f"http://127.0.0.1:{probes.port}/webhooks/forges/fleet",
                    "content_type": "json",
                    "secret": SECRET,
                },
            },
        )
        return loop

    async def api(self, method: str, path: str, body: Any = None, *, user: str = "owner") -> Any:
        """Gitea's API as a person uses it, off the event loop the service runs on."""
        return await asyncio.to_thread(self.gitea.api, method, f"/repos/{self.repo.path}{path}", body, user=user)

    async def pulls(self, state: str = "all") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.api("GET", f"/pulls?state={state}")
        return found

    async def merge_as_reviewer(self, number: int, how: str = "merge") -> str:
        """A person merges it in Gitea; returns the merge commit."""
        return await asyncio.to_thread(self.gitea.merge_as, "reviewer", self.repo, number, how)

    async def pulls_until(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while len(found := await self.pulls()) < count:
            assert time.monotonic() < deadline, f"Gitea shows {len(found)} pull requests, not {count}"
            await asyncio.sleep(0.1)
        return found


@pytest.fixture
async def setup(
    gitea: GiteaServer, repo: Repo, tmp_path: Path, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Setup]:
    for name, text in content.REPOSITORY_FILES.items():
        (repo.clone / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.clone / name).write_text(text, encoding="utf-8")
    gitea.git(repo, "add", "--all")
    gitea.git(repo, "commit", "--quiet", "-m", "the fleet")
    gitea.wait_branch(repo, "main", gitea.push(repo, "main"))
    monkeypatch.setenv("GITEA_TOKEN", gitea.owner.token)
    monkeypatch.setenv("GITEA_WEBHOOK_SECRET", SECRET)
    bare = gitea.workdir / "repositories" / "owner" / f"{repo.name.lower()}.git"
    cluster = SimulatedCluster(bare, url=f"{gitea.url}/owner/{repo.name}.git")
    await cluster.start(tmp_path / "kubeconfig")
    try:
        yield Setup(gitea, repo, cluster, tmp_path, nats_url)
    finally:
        await cluster.stop()


def webhooks_accepted() -> float:
    return metrics.WEBHOOK_REQUESTS.labels(endpoint="forge", code="202")._value.get()  # type: ignore[attr-defined,no-any-return]


async def started_message(loop: Loop, triggered_id: str) -> str:
    await until(lambda: loop.replies_to(triggered_id), timeout=60)
    reply = loop.replies_to(triggered_id)[0]
    assert reply["type"] == "sh.keptn.event.deployment.started"
    message: str = reply["data"].get("message", "")
    return message


async def test_a_person_merges_in_gitea_and_the_merge_commit_is_what_passes(setup: Setup) -> None:
    loop = await setup.start()
    try:
        main_before = await asyncio.to_thread(setup.gitea.branch_sha, setup.repo, "main")
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        message = await started_message(loop, event["id"])
        [pull] = await setup.pulls()
        assert message.startswith(f"waiting for pull request {pull['html_url']} (keptn/sockshop/dev/carts/")
        assert pull["title"] == "deploy sockshop/dev/carts to docker.io/keptnexamples/carts:0.13.1"
        assert pull["base"]["ref"] == "main" and pull["head"]["ref"].startswith("keptn/sockshop/dev/carts/")
        assert await asyncio.to_thread(setup.gitea.branch_sha, setup.repo, "main") == main_before  # not yet on main
        hooks = webhooks_accepted()
        merge = await setup.merge_as_reviewer(pull["number"])
        finished = await loop.finished(event["id"], timeout=60)
        await until(lambda: webhooks_accepted() > hooks)  # Gitea's own signed webhook reached the service
        data = finished["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert data["deployment"]["gitCommit"] == merge
        assert data["message"].startswith(f"pull request {pull['html_url']} merged as {merge[:12]}.")
        assert f"Flux applied commit {merge[:12]}" in data["message"]
    finally:
        await stop_loop(loop)


async def test_closed_in_gitea_fails_naming_who_closed_it_and_a_newer_deployment_supersedes(setup: Setup) -> None:
    loop = await setup.start()
    try:
        first = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(first)
        await started_message(loop, first["id"])
        [pull] = await setup.pulls()
        await setup.api("PATCH", f"/pulls/{pull['number']}", {"state": "closed"}, user="reviewer")
        data = (await loop.finished(first["id"], timeout=60))["data"]
        assert data["message"] == f"pull request {pull['html_url']} was closed by reviewer without being merged"
        assert data["result"] == "fail"
        # two deployments of one service: the newer closes the older pull request with a link in Gitea
        older, newer = (
            triggered("docker.io/keptnexamples/carts:0.13.2"),
            triggered("docker.io/keptnexamples/carts:0.13.3"),
        )
        await loop.publish(older)
        await started_message(loop, older["id"])
        await loop.publish(newer)
        await started_message(loop, newer["id"])
        data = (await loop.finished(older["id"], timeout=60))["data"]
        [open_pull] = await setup.pulls("open")
        assert data["result"] == "fail"
        assert data["message"].endswith(f"was superseded by {open_pull['html_url']} and closed")
        closed = await setup.pulls("closed")
        [closed_older] = [p for p in closed if p["number"] not in (pull["number"], open_pull["number"])]
        comments = await setup.api("GET", f"/issues/{closed_older['number']}/comments")
        assert comments[-1]["body"].startswith(f"Superseded by {open_pull['html_url']}")
        await setup.merge_as_reviewer(open_pull["number"])
        assert (await loop.finished(newer["id"], timeout=60))["data"]["result"] == "pass"
    finally:
        await stop_loop(loop)


async def test_auto_merge_waits_for_the_required_approval_and_a_restart_opens_no_second_pull_request(
    setup: Setup,
) -> None:
    await setup.api(
        "POST",
        "/branch_protections",
        {"rule_name": "main", "required_approvals": 1, "enable_approvals_whitelist": False},
    )
    loop = await setup.start("{autoMerge: true}")
    event = triggered("docker.io/keptnexamples/carts:0.13.1")
    try:
        await loop.publish(event)
        await started_message(loop, event["id"])
    finally:
        await loop.service.stop()  # the process ends while it waits for an approval
        await loop._nc.close()
    loop = await setup.start("{autoMerge: true}")
    try:
        [pull] = await setup.pulls()
        assert pull["state"] == "open" and not pull["merged"]  # no approval: not merged by the service
        await setup.api("POST", f"/pulls/{pull['number']}/reviews", {"event": "APPROVED"}, user="reviewer")
        data = (await loop.finished(event["id"], timeout=60))["data"]
        assert data["result"] == "pass", data["message"]
        assert [p["number"] for p in await setup.pulls()] == [pull["number"]]  # the restart waited on the same one
        merged = await setup.api("GET", f"/pulls/{pull['number']}")
        assert merged["merged"] and merged["merged_by"]["login"] == "owner"  # the service's token merged it
    finally:
        await stop_loop(loop)


async def test_a_rollback_opens_a_revert_pull_request_in_gitea(setup: Setup) -> None:
    loop = await setup.start()
    try:
        event = triggered("docker.io/keptnexamples/carts:0.13.1")
        await loop.publish(event)
        await started_message(loop, event["id"])
        [deployed] = await setup.pulls()
        await setup.merge_as_reviewer(deployed["number"], "squash")  # found by the rollback all the same
        assert (await loop.finished(event["id"], timeout=60))["data"]["result"] == "pass"
        squash = git("log", "-1", "--format=%B", "main", cwd=setup.bare)
        assert "Keptn-Context" not in squash  # Gitea's squash message keeps none of the proposed commit's trailers
        rollback = rollback_of(event)
        await loop.publish(rollback)
        revert = next(p for p in await setup.pulls_until(2) if p["state"] == "open")
        await until(lambda: loop.replies_to(rollback["id"]), timeout=60)
        assert loop.replies_to(rollback["id"])[0]["data"]["message"].startswith(
            f"waiting for pull request {revert['html_url']} ("
        )
        assert revert["title"] == "rollback sockshop/dev/carts"
        merge = await setup.merge_as_reviewer(revert["number"])
        data = (await loop.finished(rollback["id"], timeout=60))["data"]
        assert f"with commit {merge[:12]}" in data["message"], data["message"]
        restored = git("show", f"{merge}:{KS}", cwd=setup.bare)
        assert restored == content.REPOSITORY_FILES[KS]
    finally:
        await stop_loop(loop)
