"""GiteaForge and parse_webhook against a real Gitea (conftest.py: one server per session, a new repository per test).

``owner`` opens the pull requests; ``reviewer``, a collaborator with write access, approves and merges.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from forges.giteaserver import GiteaServer, Repo
from support import until

from keptn_gitops_service.clock import Clock, ManualClock, SystemClock
from keptn_gitops_service.errors import ForgeError, WebhookAuthError, WebhookError
from keptn_gitops_service.forges.gitea import GiteaForge, parse_webhook
from keptn_gitops_service.forges.model import (
    Forge,
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestSpec,
    PullState,
)

SAFETY = 60.0  # seconds: only a bound on waits for Gitea's background work (merge checks, webhook deliveries)


@pytest.fixture
async def forges(gitea: GiteaServer, repo: Repo) -> AsyncIterator[Callable[..., GiteaForge]]:
    """Makes a GiteaForge on the test's repository acting as ``owner`` (default) or ``reviewer``; all closed after."""
    made: list[GiteaForge] = []

    def make(user: str = "owner", clock: Clock | None = None) -> GiteaForge:
        forge = GiteaForge(ForgeRepository(gitea.api_url, repo.path), gitea.user(user).token, clock or SystemClock())
        made.append(forge)
        return forge

    yield make
    for forge in made:
        await forge.close_session()


def spec(head: str, **extra: Any) -> PullRequestSpec:
    return PullRequestSpec(head=head, base="main", title=f"Deploy {head}", body="Promote the new version.", **extra)


async def until_mergeable(forge: GiteaForge, number: int) -> PullRequest:
    """Gitea checks a new pull request for conflicts in the background; until then it is not ``mergeable``."""
    deadline = time.monotonic() + SAFETY
    while True:
        pull = await forge.get_pull_request(number)
        if pull.mergeable:
            return pull
        assert time.monotonic() < deadline, f"pull request #{number} did not become mergeable: {pull}"
        await asyncio.sleep(0.1)


def test_the_adapter_has_every_method_of_the_forge_interface_with_its_signature() -> None:
    methods = [name for name, member in vars(Forge).items() if inspect.iscoroutinefunction(member)]
    assert "open_pull_request" in methods and "close_session" in methods
    for name in methods:
        mine = getattr(GiteaForge, name)
        assert inspect.iscoroutinefunction(mine), name
        assert inspect.signature(mine) == inspect.signature(getattr(Forge, name)), name
    forge = GiteaForge(ForgeRepository("http://127.0.0.1:1/api/v1", "acme/fleet"), "t", SystemClock())
    assert forge.repository.path == "acme/fleet"


async def test_opening_again_returns_the_same_pull_request_with_labels_and_reviewers(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    forge = forges()
    sha = gitea.push_branch(repo, "keptn/podtato-head/dev/1")
    wanted = spec("keptn/podtato-head/dev/1", labels=("keptn-gitops", "stage:dev"), reviewers=("reviewer",))
    gitea.api("POST", f"/repos/{repo.path}/labels", {"name": "stage:dev", "color": "#00aa00"})  # one exists already

    opened = await forge.open_pull_request(wanted)
    again = await forge.open_pull_request(wanted)

    assert again.number == opened.number
    assert opened.state is PullState.OPEN and opened.head == "keptn/podtato-head/dev/1" and opened.base == "main"
    assert opened.head_sha == sha and opened.merge_commit is None and opened.closed_by is None
    assert opened.url == f"{gitea.url}/{repo.path}/pulls/{opened.number}"
    assert sorted(opened.labels) == ["keptn-gitops", "stage:dev"] and sorted(again.labels) == sorted(opened.labels)
    seen = gitea.api("GET", f"/repos/{repo.path}/pulls/{opened.number}")
    assert [user["login"] for user in seen["requested_reviewers"]] == ["reviewer"]
    assert len(gitea.api("GET", f"/repos/{repo.path}/pulls?state=all")) == 1
    labels = gitea.api("GET", f"/repos/{repo.path}/labels")
    assert sorted(label["name"] for label in labels) == ["keptn-gitops", "stage:dev"]  # created once, reused


async def test_two_openers_at_once_end_with_one_open_pull_request(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    gitea.push_branch(repo, "keptn/race/1")
    first, second = await asyncio.gather(
        forges().open_pull_request(spec("keptn/race/1")), forges().open_pull_request(spec("keptn/race/1"))
    )
    assert first.number == second.number
    assert [p["number"] for p in gitea.api("GET", f"/repos/{repo.path}/pulls?state=open")] == [first.number]


class LateForge(GiteaForge):
    """Does not see, when it first looks, the pull request another opener creates in the meantime."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.looked = 0

    async def _find_open(self, head: str, base: str) -> PullRequest | None:
        self.looked += 1
        return None if self.looked == 1 else await super()._find_open(head, base)


async def test_a_pull_request_another_opener_created_meanwhile_is_returned(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    gitea.push_branch(repo, "keptn/meanwhile/1")
    other = await forges().open_pull_request(spec("keptn/meanwhile/1"))
    late = LateForge(ForgeRepository(gitea.api_url, repo.path), gitea.owner.token, SystemClock())
    try:
        found = await late.open_pull_request(spec("keptn/meanwhile/1"))  # Gitea answers 409: it exists
    finally:
        await late.close_session()
    assert found.number == other.number and late.looked == 2
    assert len(gitea.api("GET", f"/repos/{repo.path}/pulls?state=all")) == 1


async def test_a_head_pushed_while_opening_waits_is_found_on_the_next_attempt(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    clock = ManualClock()
    opening = asyncio.create_task(forges(clock=clock).open_pull_request(spec("keptn/late/1")))
    await until(lambda: clock.sleepers == 1 or opening.done(), timeout=SAFETY)  # Gitea said 404: no such branch
    assert not opening.done()
    sha = gitea.push_branch(repo, "keptn/late/1")
    clock.advance(1.0)
    opened = await opening
    assert opened.head_sha == sha and opened.state is PullState.OPEN


async def test_opening_from_a_branch_that_never_appears_fails_naming_it(
    repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    clock = ManualClock()
    opening = asyncio.create_task(forges(clock=clock).open_pull_request(spec("keptn/missing/1")))
    for attempt in range(1, 5):
        await until(lambda: clock.sleepers == 1 or opening.done(), timeout=SAFETY)
        assert not opening.done(), f"gave up after {attempt} attempts"
        clock.advance(1.0)
    with pytest.raises(ForgeError) as caught:
        await opening
    message = str(caught.value)
    assert message.startswith(f"Gitea: could not open a pull request from keptn/missing/1 into main in {repo.path}")
    assert "after 5 attempts; does the branch keptn/missing/1 exist?" in message


async def test_a_merge_by_the_reviewer_shows_as_merged_with_its_commit_and_merger(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    owner, reviewer = forges(), forges("reviewer")
    head = gitea.push_branch(repo, "keptn/app/prod/2")
    opened = await owner.open_pull_request(spec("keptn/app/prod/2"))
    await until_mergeable(reviewer, opened.number)

    assert await reviewer.merge(opened.number, MergeMethod.MERGE) is True

    merged = await owner.get_pull_request(opened.number)
    assert merged.state is PullState.MERGED and merged.closed_by == "reviewer" and merged.mergeable is None
    assert merged.merge_commit == gitea.branch_sha(repo, "main")
    assert head in gitea.commits_on(repo, "main") and merged.merge_commit != head  # a real merge commit
    assert await owner.open_pull_requests("keptn/") == []
    assert await reviewer.merge(opened.number, MergeMethod.MERGE) is False  # "The PR is already merged"


async def test_a_squash_merge_reports_the_squashed_commit_on_main(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    forge = forges()
    head = gitea.push_branch(repo, "keptn/app/dev/3")
    opened = await forge.open_pull_request(spec("keptn/app/dev/3"))
    await until_mergeable(forge, opened.number)

    assert await forge.merge(opened.number, MergeMethod.SQUASH) is True

    merged = await forge.get_pull_request(opened.number)
    on_main = gitea.commits_on(repo, "main")
    assert merged.state is PullState.MERGED and merged.merge_commit == on_main[0]
    assert head not in on_main  # squashed: the branch's own commit is not on main


async def test_a_merge_style_the_repository_forbids_is_an_error_not_a_wait(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    gitea.api("PATCH", f"/repos/{repo.path}", {"allow_rebase": False, "allow_rebase_explicit": False})
    forge = forges()
    gitea.push_branch(repo, "keptn/app/dev/6")
    opened = await forge.open_pull_request(spec("keptn/app/dev/6"))
    await until_mergeable(forge, opened.number)

    with pytest.raises(ForgeError) as caught:
        await forge.merge(opened.number, MergeMethod.REBASE)
    assert str(caught.value).startswith(f"Gitea: could not merge pull request #{opened.number} in {repo.path} (rebase)")
    assert "merge style" in str(caught.value)
    assert await forge.merge(opened.number, MergeMethod.MERGE) is True


async def test_closing_with_a_comment_leaves_it_closed_by_its_closer(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    forge = forges()
    gitea.push_branch(repo, "keptn/app/dev/4")
    opened = await forge.open_pull_request(spec("keptn/app/dev/4"))

    await forge.close(opened.number, "Superseded by version 5.")

    closed = await forge.get_pull_request(opened.number)
    assert closed.state is PullState.CLOSED and closed.closed_by == "owner" and closed.merge_commit is None
    comments = gitea.api("GET", f"/repos/{repo.path}/issues/{opened.number}/comments")
    assert [comment["body"] for comment in comments] == ["Superseded by version 5."]
    assert await forge.open_pull_requests("keptn/") == []


async def test_a_protected_branch_merges_only_after_the_required_approval(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    gitea.api("POST", f"/repos/{repo.path}/branch_protections", {"rule_name": "main", "required_approvals": 1})
    owner = forges()
    gitea.push_branch(repo, "keptn/app/prod/5")
    opened = await owner.open_pull_request(spec("keptn/app/prod/5", reviewers=("reviewer",)))
    await until_mergeable(owner, opened.number)  # so that a refusal below is the protection's, not the checker's

    assert await owner.merge(opened.number, MergeMethod.MERGE) is False
    assert (await owner.get_pull_request(opened.number)).state is PullState.OPEN

    gitea.api(
        "POST",
        f"/repos/{repo.path}/pulls/{opened.number}/reviews",
        {"event": "APPROVED", "body": "ok"},
        user="reviewer",
    )
    assert await owner.merge(opened.number, MergeMethod.MERGE) is True
    assert (await owner.get_pull_request(opened.number)).state is PullState.MERGED


async def test_open_pull_requests_are_filtered_by_head_prefix(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge]
) -> None:
    forge = forges()
    for head in ("keptn/a/dev/1", "keptn/b/dev/1", "renovate/lib-1"):
        gitea.push_branch(repo, head)
        await forge.open_pull_request(spec(head))

    assert sorted(p.head for p in await forge.open_pull_requests("keptn/")) == ["keptn/a/dev/1", "keptn/b/dev/1"]
    assert [p.head for p in await forge.open_pull_requests("keptn/a/")] == ["keptn/a/dev/1"]
    assert await forge.open_pull_requests("keptn/c/") == []


class Receiver:
    """A local HTTP endpoint that keeps every webhook delivery (headers and body) Gitea sends it."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/gitea", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hooks/gitea"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    def of(self, action: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.deliveries if json.loads(b).get("action") == action]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_a_real_webhook_is_accepted_and_a_tampered_one_refused(
    gitea: GiteaServer, repo: Repo, forges: Callable[..., GiteaForge], receiver: Receiver
) -> None:
    secret = "webhook-secret-for-this-test"
    gitea.api(
        "POST",
        f"/repos/{repo.path}/hooks",
        {
            "type": "gitea",
            "active": True,
            "events": ["pull_request", "pull_request_review"],
            "config": {"url": receiver.url, "content_type": "json", "secret": secret},
        },
    )
    forge = forges()
    gitea.push_branch(repo, "keptn/hooked/1")
    opened = await forge.open_pull_request(spec("keptn/hooked/1"))
    await until(lambda: receiver.of("opened"), timeout=SAFETY)

    headers, body = receiver.of("opened")[0]
    assert headers["X-Gitea-Event"] == "pull_request"
    event = parse_webhook(headers, body, secret)
    assert event is not None and (event.repository, event.number, event.action) == (repo.path, opened.number, "opened")

    gitea.api("POST", f"/repos/{repo.path}/pulls/{opened.number}/reviews", {"event": "APPROVED"}, user="reviewer")
    await until(lambda: receiver.of("reviewed"), timeout=SAFETY)
    headers, body = receiver.of("reviewed")[0]
    assert headers["X-Gitea-Event"] == "pull_request_approved"  # an approval can make it mergeable: it wakes a wait
    approved = parse_webhook(headers, body, secret)
    assert approved is not None and approved.number == opened.number

    await until_mergeable(forge, opened.number)
    assert await forge.merge(opened.number, MergeMethod.MERGE)
    await until(lambda: receiver.of("closed"), timeout=SAFETY)
    headers, body = receiver.of("closed")[0]
    merged = parse_webhook(headers, body, secret)
    assert merged is not None and merged.number == opened.number and merged.action == "closed"
    assert json.loads(body)["pull_request"]["merged"] is True  # Gitea's merge: "closed" with merged true

    tampered = body.replace(b'"merged": true', b'"merged": false')
    assert tampered != body
    with pytest.raises(WebhookAuthError, match="does not match the body"):
        parse_webhook(headers, tampered, secret)
    with pytest.raises(WebhookAuthError, match="does not match the body"):
        parse_webhook(headers, body, "another-secret")
    unsigned = {k: v for k, v in headers.items() if k.lower() != "x-gitea-signature"}
    with pytest.raises(WebhookAuthError, match="header is missing") as caught:
        parse_webhook(unsigned, body, secret)
    assert secret not in str(caught.value)


def signed(body: bytes, secret: str, event: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Gitea-Event": event, "X-Gitea-Signature": digest, "Content-Type": "application/json"}


def test_other_events_are_ignored_after_their_signature_is_checked() -> None:
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "acme/fleet"}}).encode()
    assert parse_webhook(signed(body, "s", "push"), body, "s") is None
    with pytest.raises(WebhookAuthError):
        parse_webhook(signed(body, "s", "push"), body, "other")


def test_a_signed_body_that_is_no_pull_request_event_is_refused() -> None:
    for body, message in (
        (b"not json", "body is not JSON"),
        (b'{"action": "opened", "repository": {"full_name": "acme/fleet"}}', "lacks the pull request's number"),
        (b'{"action": "opened", "number": "7", "repository": {"full_name": "acme/fleet"}}', "malformed"),
    ):
        with pytest.raises(WebhookError, match=message) as caught:
            parse_webhook(signed(body, "s", "pull_request"), body, "s")
        assert not isinstance(caught.value, WebhookAuthError) and caught.value.status == 400


def test_a_webhook_without_a_configured_secret_is_refused() -> None:
    body = b"{}"
    with pytest.raises(WebhookAuthError, match="no webhook secret is configured"):
        parse_webhook(signed(body, "", "pull_request"), body, "")
