"""The GitHub adapter against GitHub's published OpenAPI description (not a live GitHub).

Every request the adapter makes goes to :class:`forges.specforge.SpecForge`, which checks it against the pruned
description in test/fixtures/forges/github/ and answers with the description's own examples (adjusted per test),
checked against the response schemas before they are sent; a test passes only if both sides fit.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from forges.specforge import (
    FIXTURES,
    SHA_HEAD,
    SHA_MERGE,
    Call,
    Description,
    Reply,
    SpecForge,
    fix_github_example,
    github_pull,
    github_pull_simple,
    load_github,
)
from support import until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.errors import ForgeAccessDeniedError, ForgeError, WebhookAuthError, WebhookError
from keptn_gitops_service.forges.github import GitHubForge, parse_webhook
from keptn_gitops_service.forges.model import (
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestEvent,
    PullRequestSpec,
    PullState,
)

REPO = "acme/fleet"
TOKEN = "ghp_example-token-that-must-never-show"
SECRET = "webhook-secret-for-tests"
HEAD = "deploy/podtato-head-1"
SPEC = PullRequestSpec(head=HEAD, base="main", title="Deploy podtato-head 1", body="Keptn deployment")


@pytest.fixture(scope="module")
def description() -> Description:
    return load_github()


@pytest.fixture
async def fake(description: Description) -> AsyncIterator[SpecForge]:
    async with SpecForge(description) as forge:
        yield forge


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def github(fake: SpecForge, clock: ManualClock) -> AsyncIterator[GitHubForge]:
    forge = GitHubForge(ForgeRepository(fake.base_url, REPO), TOKEN, clock)
    try:
        yield forge
    finally:
        await forge.close_session()


def answer(status: int, body: Any = None) -> Any:
    return lambda call: Reply(status, body)


def labels_answer(description: Description) -> Any:
    def handler(call: Call) -> Reply:
        template = description.example("label-items")[0]
        return Reply(200, [{**template, "name": name} for name in call.body["labels"]])

    return handler


# -- opening ---------------------------------------------------------------------------------------------------------


async def test_open_creates_the_pull_request_labels_it_and_requests_reviews(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    fake.on("pulls/list", answer(200, []))
    fake.on("pulls/create", answer(201, github_pull(description, REPO, 7)))
    fake.on("issues/add-labels", labels_answer(description))
    fake.on(
        "pulls/request-reviewers", answer(201, fix_github_example(description.example("pull-request-review-request")))
    )
    spec = PullRequestSpec(**{**SPEC.__dict__, "labels": ("keptn", "podtato-head"), "reviewers": ("octocat",)})

    pull = await github.open_pull_request(spec)

    assert pull == PullRequest(
        number=7,
        url=f"https://github.com/{REPO}/pull/7",
        state=PullState.OPEN,
        head=HEAD,
        head_sha=SHA_HEAD,
        base="main",
        merge_commit=None,
        closed_by=None,
        mergeable=True,
        labels=("keptn", "podtato-head"),
    )
    assert [call.operation for call in fake.calls] == [
        "pulls/list",
        "pulls/create",
        "issues/add-labels",
        "pulls/request-reviewers",
    ]
    listed, created, labelled, reviewers = fake.calls
    assert listed.query == {"state": "open", "head": f"acme:{HEAD}", "base": "main", "per_page": "100", "page": "1"}
    assert listed.path_params == {"owner": "acme", "repo": "fleet"}
    assert created.body == {"title": spec.title, "head": HEAD, "base": "main", "body": spec.body}
    assert labelled.path_params["issue_number"] == "7"
    assert labelled.body == {"labels": ["keptn", "podtato-head"]}
    assert reviewers.body == {"reviewers": ["octocat"]}
    for call in fake.calls:
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["X-GitHub-Api-Version"] == "2022-11-28"
        assert call.headers["Accept"] == "application/vnd.github+json"


async def test_open_returns_the_open_pull_request_instead_of_a_second_one(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    fake.on("pulls/list", answer(200, [github_pull_simple(description, REPO, 5)]))

    pull = await github.open_pull_request(SPEC)

    assert (pull.number, pull.state, pull.head, pull.base) == (5, PullState.OPEN, HEAD, "main")
    assert [call.operation for call in fake.calls] == ["pulls/list"]


async def test_open_after_already_exists_returns_the_one_an_earlier_attempt_opened(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    listings = [[], [github_pull_simple(description, REPO, 9)]]
    fake.on("pulls/list", lambda call: Reply(200, listings.pop(0)))
    fake.on(
        "pulls/create",
        answer(
            422,
            {
                "message": "Validation Failed",
                "errors": [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for acme:{HEAD}.",
                    }
                ],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            },
        ),
    )

    pull = await github.open_pull_request(SPEC)

    assert pull.number == 9
    assert [call.operation for call in fake.calls] == ["pulls/list", "pulls/create", "pulls/list"]


async def test_open_refused_for_another_reason_says_why_without_the_token(github: GitHubForge, fake: SpecForge) -> None:
    fake.on("pulls/list", answer(200, []))
    fake.on(
        "pulls/create",
        answer(
            422,
            {
                "message": "Validation Failed",
                "errors": [
                    {"resource": "PullRequest", "code": "custom", "message": f"No commits between main and {HEAD}"}
                ],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            },
        ),
    )

    with pytest.raises(ForgeError) as caught:
        await github.open_pull_request(SPEC)

    assert f"No commits between main and {HEAD}" in str(caught.value)
    assert REPO in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_open_with_a_reviewer_github_refuses_says_so_and_leaves_the_pull_request_open(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    fake.on("pulls/list", answer(200, []))
    fake.on("pulls/create", answer(201, github_pull(description, REPO, 7)))
    fake.on("pulls/request-reviewers", answer(422, {"message": "Reviews may only be requested from collaborators."}))

    with pytest.raises(ForgeError) as caught:
        await github.open_pull_request(PullRequestSpec(**{**SPEC.__dict__, "reviewers": ("stranger",)}))

    assert "request reviews from stranger on pull request #7 in acme/fleet" in str(caught.value)
    assert "Reviews may only be requested from collaborators." in str(caught.value)
    assert [call.operation for call in fake.calls] == ["pulls/list", "pulls/create", "pulls/request-reviewers"]


# -- reading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            {"state": "open", "mergeable": True, "mergeable_state": "clean"},
            {"state": PullState.OPEN, "mergeable": True, "merge_commit": None, "closed_by": None},
        ),
        (
            {"state": "open", "mergeable": True, "mergeable_state": "has_hooks"},
            {"state": PullState.OPEN, "mergeable": True},
        ),
        (
            {"state": "open", "mergeable": True, "mergeable_state": "unstable"},
            {"state": PullState.OPEN, "mergeable": False},
        ),
        (
            {"state": "open", "mergeable": True, "mergeable_state": "blocked"},
            {"state": PullState.OPEN, "mergeable": False},
        ),
        (
            {"state": "open", "mergeable": False, "mergeable_state": "dirty"},
            {"state": PullState.OPEN, "mergeable": False},
        ),
        (
            {"state": "open", "mergeable": None, "mergeable_state": "unknown"},
            {"state": PullState.OPEN, "mergeable": None},
        ),
        (
            {"state": "closed", "merged": True, "mergeable": None, "mergeable_state": "unknown"},
            {"state": PullState.MERGED, "merge_commit": SHA_MERGE, "closed_by": "octocat", "mergeable": None},
        ),
        (
            {"state": "closed", "merged": False, "mergeable": None, "mergeable_state": "unknown"},
            {"state": PullState.CLOSED, "merge_commit": None, "closed_by": None, "mergeable": None},
        ),
    ],
)
async def test_get_maps_the_state(
    github: GitHubForge, fake: SpecForge, description: Description, shape: dict[str, Any], expected: dict[str, Any]
) -> None:
    fake.on("pulls/get", answer(200, github_pull(description, REPO, 12, labels=("keptn",), **shape)))

    pull = await github.get_pull_request(12)

    assert {name: getattr(pull, name) for name in expected} == expected
    assert (pull.number, pull.head, pull.head_sha, pull.base, pull.labels) == (12, HEAD, SHA_HEAD, "main", ("keptn",))
    assert fake.calls[0].path_params == {"owner": "acme", "repo": "fleet", "pull_number": "12"}


async def test_open_pull_requests_by_head_prefix_leave_out_others_and_forks(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    fake.on(
        "pulls/list",
        answer(
            200,
            [
                github_pull_simple(description, REPO, 1, head="deploy/a"),
                github_pull_simple(description, REPO, 2, head="feature/x"),
                github_pull_simple(description, REPO, 3, head="deploy/b", head_repository="mallory/fleet"),
                github_pull_simple(description, REPO, 4, head="deploy/c"),
            ],
        ),
    )

    pulls = await github.open_pull_requests("deploy/")

    assert [(pull.number, pull.head) for pull in pulls] == [(1, "deploy/a"), (4, "deploy/c")]
    assert fake.calls[0].query == {"state": "open", "per_page": "100", "page": "1"}


async def test_open_pull_requests_read_every_page(
    github: GitHubForge, fake: SpecForge, description: Description
) -> None:
    pages = {
        "1": [github_pull_simple(description, REPO, n, head=f"deploy/{n}") for n in range(1, 101)],
        "2": [github_pull_simple(description, REPO, 101, head="deploy/101")],
    }
    fake.on("pulls/list", lambda call: Reply(200, pages[call.query["page"]]))

    pulls = await github.open_pull_requests("deploy/")

    assert [pull.number for pull in pulls] == list(range(1, 102))
    assert [call.query["page"] for call in fake.calls] == ["1", "2"]


# -- merging and closing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(MergeMethod))
async def test_merge_asks_the_merge_api_with_the_method(
    github: GitHubForge, fake: SpecForge, description: Description, method: MergeMethod
) -> None:
    fake.on(
        "pulls/merge", answer(200, description.example("pull-request-merge-result-response-if-merge-was-successful"))
    )

    assert await github.merge(12, method) is True
    assert fake.calls[0].body == {"merge_method": method.value}
    assert fake.calls[0].path_params["pull_number"] == "12"


@pytest.mark.parametrize(
    ("status", "message"),
    [(405, "Pull Request is not mergeable"), (409, "Head branch was modified. Review and try the merge again.")],
)
async def test_merge_refused_because_not_mergeable_yet_is_false(
    github: GitHubForge, fake: SpecForge, status: int, message: str
) -> None:
    fake.on("pulls/merge", answer(status, {"message": message}))

    assert await github.merge(12, MergeMethod.MERGE) is False


async def test_merge_forbidden_raises_access_denied_without_the_token(github: GitHubForge, fake: SpecForge) -> None:
    fake.on("pulls/merge", answer(403, {"message": "Resource not accessible by personal access token"}))

    with pytest.raises(ForgeAccessDeniedError) as caught:
        await github.merge(12, MergeMethod.MERGE)

    assert "Resource not accessible by personal access token" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_close_comments_then_closes(github: GitHubForge, fake: SpecForge, description: Description) -> None:
    fake.on("issues/create-comment", answer(201, description.example("issue-comment")))
    fake.on("pulls/update", answer(200, github_pull(description, REPO, 12, state="closed", mergeable=None)))

    await github.close(12, "Superseded by a newer deployment.")

    comment, close = fake.calls
    assert (comment.operation, comment.body) == ("issues/create-comment", {"body": "Superseded by a newer deployment."})
    assert comment.path_params["issue_number"] == "12"
    assert (close.operation, close.body) == ("pulls/update", {"state": "closed"})


async def test_a_transient_502_is_retried_after_a_pause(
    github: GitHubForge, fake: SpecForge, description: Description, clock: ManualClock
) -> None:
    fake.fail("pulls/get", 502)
    fake.on("pulls/get", answer(200, github_pull(description, REPO, 12)))

    reading = asyncio.create_task(github.get_pull_request(12))
    await until(lambda: clock.sleepers == 1)
    assert len(fake.calls) == 1 and not reading.done()
    clock.advance(1)
    pull = await reading

    assert pull.number == 12
    assert len(fake.calls) == 2


async def test_github_enterprise_server_api_below_api_v3(description: Description) -> None:
    async with SpecForge(description, prefix="/api/v3") as fake:
        assert fake.base_url.endswith("/api/v3")
        fake.on("pulls/get", answer(200, github_pull(description, REPO, 3)))
        forge = GitHubForge(ForgeRepository(fake.base_url, REPO), TOKEN, ManualClock())
        try:
            assert (await forge.get_pull_request(3)).number == 3
        finally:
            await forge.close_session()
        assert fake.calls[0].raw_path == "/api/v3/repos/acme/fleet/pulls/3"


def test_a_repository_path_must_be_owner_and_name() -> None:
    with pytest.raises(ValueError, match="owner/name"):
        GitHubForge(ForgeRepository("https://api.github.com", "acme/sub/fleet"), TOKEN, ManualClock())


# -- the fake itself -------------------------------------------------------------------------------------------------


async def test_the_fake_reports_requests_and_answers_outside_the_description(
    fake: SpecForge, description: Description
) -> None:
    """What makes the tests above able to fail: a body, a query or an answer the description does not allow."""
    bad_pull = github_pull(description, REPO, 1)
    del bad_pull["head"]
    fake.on("pulls/create", answer(201, bad_pull))
    fake.on("pulls/list", answer(200, []))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.base_url}/repos/acme/fleet/pulls", json={"title": 1, "head": "x", "colour": 2}):
            pass
        async with session.get(f"{fake.base_url}/repos/acme/fleet/pulls", params={"state": "everything", "x": "1"}):
            pass
        async with session.delete(f"{fake.base_url}/repos/acme/fleet/pulls"):
            pass
    found = "\n".join(fake.problems)
    fake.problems.clear()
    assert "request body: title: 1 is not of type 'string'" in found
    assert "request body field colour is not described for pulls/create" in found
    assert "answer 201: (top): 'head' is a required property" in found
    assert "query state: (top): 'everything' is not one of ['open', 'closed', 'all']" in found
    assert "query parameter x is not described for pulls/list" in found
    assert "DELETE /repos/acme/fleet/pulls: no operation" in found


def test_the_descriptions_examples_fit_its_schemas_except_the_known_team_type(description: Description) -> None:
    """The answers are built from the description's examples; they disagree with its schemas in one known place
    (specforge.GITHUB_EXAMPLE_FIXES), which the answers repair."""
    pull = description.example("pull-request")
    schema = description.operations["pulls/get"].responses["200"]
    assert schema is not None
    errors = [error.message for error in description.validator(schema).iter_errors(pull)]
    assert errors == ["'type' is a required property"]
    assert not list(description.validator(schema).iter_errors(fix_github_example(pull)))


# -- the webhook -----------------------------------------------------------------------------------------------------


def examples() -> dict[str, Any]:
    path = FIXTURES / "github" / "webhook-examples.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["pull_request"]
    return loaded


def merged_example() -> dict[str, Any]:
    """The published ``closed`` example (closed without merging), as GitHub sends it after a merge."""
    payload = copy.deepcopy(examples()["closed"])
    pull = payload["pull_request"]
    pull["merged"] = True
    pull["merged_at"] = pull["closed_at"]
    pull["merged_by"] = copy.deepcopy(pull["user"])
    pull["merge_commit_sha"] = SHA_MERGE
    return payload


def signed(body: bytes, secret: str = SECRET, event: str = "pull_request") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


@pytest.mark.parametrize("action", ["closed", "opened", "merged"])
def test_webhook_examples_fit_the_descriptions_webhook_schemas(description: Description, action: str) -> None:
    payload = merged_example() if action == "merged" else examples()[action]
    if action == "opened":
        # the community example predates the required (nullable) auto_merge of the description's schema
        assert "auto_merge" not in payload["pull_request"]
        payload["pull_request"]["auto_merge"] = None
    hook = "closed" if action == "merged" else action
    schema = {"$ref": f"#/components/schemas/webhook-pull-request-{hook}"}
    assert [error.message for error in description.validator(schema).iter_errors(payload)] == []


@pytest.mark.parametrize(
    ("payload", "action"),
    [(merged_example(), "closed"), (examples()["closed"], "closed"), (examples()["opened"], "opened")],
    ids=["closed-merged", "closed", "opened"],
)
def test_webhook_signed_pull_request_event_is_read(payload: dict[str, Any], action: str) -> None:
    body = json.dumps(payload).encode()

    event = parse_webhook(signed(body), body, SECRET)

    assert event == PullRequestEvent(repository="Codertocat/Hello-World", number=payload["number"], action=action)


def test_webhook_headers_are_matched_without_regard_to_case() -> None:
    body = json.dumps(merged_example()).encode()
    headers = {name.lower(): value for name, value in signed(body).items()}

    assert parse_webhook(headers, body, SECRET) is not None


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(
            lambda headers, body: (headers, body.replace(b"Hello-World", b"Hello-Mallory")), id="tampered-body"
        ),
        pytest.param(lambda headers, body: ({**headers, "X-Hub-Signature-256": ""}, body), id="empty-signature"),
        pytest.param(
            lambda headers, body: ({k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}, body),
            id="unsigned",
        ),
        pytest.param(lambda headers, body: (signed(body, "another-secret"), body), id="other-secret"),
        pytest.param(
            lambda headers, body: ({**headers, "X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]}, body),
            id="no-sha256-prefix",
        ),
        pytest.param(
            lambda headers, body: (
                {**headers, "X-Hub-Signature-256": "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()},
                body,
            ),
            id="sha1-signature",
        ),
    ],
)
def test_webhook_without_a_valid_signature_is_refused(mangle: Any) -> None:
    body = json.dumps(merged_example()).encode()
    headers, sent = mangle(signed(body), body)

    with pytest.raises(WebhookAuthError) as caught:
        parse_webhook(headers, sent, SECRET)

    assert caught.value.status == 401
    assert SECRET not in str(caught.value)


def test_webhook_with_no_secret_configured_is_refused() -> None:
    body = json.dumps(merged_example()).encode()

    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        parse_webhook(signed(body, ""), body, "")


@pytest.mark.parametrize("event", ["ping", "push", "pull_request_review"])
def test_webhook_of_another_event_is_none(event: str) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

    assert parse_webhook(signed(body, event=event), body, SECRET) is None


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({**merged_example(), "number": "two"}).encode(), "no pull request number"),
        (json.dumps({k: v for k, v in merged_example().items() if k != "action"}).encode(), "no action"),
        (json.dumps({**merged_example(), "repository": {}}).encode(), "no repository.full_name"),
    ],
)
def test_webhook_malformed_pull_request_event_is_refused(body: bytes, complaint: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_webhook(signed(body), body, SECRET)

    assert not isinstance(caught.value, WebhookAuthError)
    assert complaint in str(caught.value)
