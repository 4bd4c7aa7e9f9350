"""The GitLab adapter against GitLab's published Swagger description of API v4 (not a live GitLab).

Every request goes to :class:`forges.specforge.SpecForge`, which checks it against the excerpt of GitLab's
``openapi_v2.yaml`` in test/fixtures/forges/gitlab/ and answers with merge requests built from the description's
property examples, checked against its schemas (with the named corrections in ``specforge.GITLAB_CORRECTIONS``)
before they are sent. Two operations the excerpt lacks (user lookup, notes) are checked against hand-written
shapes and marked so (``Call.verified``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from forges.specforge import (
    FIXTURES,
    SHA_HEAD,
    SHA_MERGE,
    SHA_SQUASH,
    Description,
    Reply,
    SpecForge,
    gitlab_merge_request,
    load_gitlab,
)
from support import until

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.errors import ForgeAccessDeniedError, ForgeError, WebhookAuthError, WebhookError
from keptn_gitops_service.forges.gitlab import GitLabForge, parse_webhook
from keptn_gitops_service.forges.model import (
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestEvent,
    PullRequestSpec,
    PullState,
)

PROJECT = "platform/fleet/podtato"
ENCODED = "platform%2Ffleet%2Fpodtato"
TOKEN = "glpat-example-token-that-must-never-show"
SECRET = "gitlab-webhook-secret"
HEAD = "deploy/podtato-head-1"
SPEC = PullRequestSpec(head=HEAD, base="main", title="Deploy podtato-head 1", body="Keptn deployment")

LIST = "getApiV4ProjectsIdMergeRequests"
CREATE = "postApiV4ProjectsIdMergeRequests"
GET = "getApiV4ProjectsIdMergeRequestsMergeRequestIid"
UPDATE = "putApiV4ProjectsIdMergeRequestsMergeRequestIid"
MERGE = "putApiV4ProjectsIdMergeRequestsMergeRequestIidMerge"
NOTE = "postApiV4ProjectsIdMergeRequestsNoteableIdNotes"
USERS = "getApiV4Users"


@pytest.fixture(scope="module")
def description() -> Description:
    return load_gitlab()


@pytest.fixture
async def fake(description: Description) -> AsyncIterator[SpecForge]:
    async with SpecForge(description) as forge:
        yield forge


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def gitlab(fake: SpecForge, clock: ManualClock) -> AsyncIterator[GitLabForge]:
    forge = GitLabForge(ForgeRepository(f"{fake.base_url}/api/v4", PROJECT), TOKEN, clock)
    try:
        yield forge
    finally:
        await forge.close_session()


def answer(status: int, body: Any = None) -> Any:
    return lambda call: Reply(status, body)


def mr(description: Description, iid: int, **changes: Any) -> dict[str, Any]:
    return gitlab_merge_request(description, PROJECT, iid, **changes)


def user(description: Description, user_id: int, username: str) -> dict[str, Any]:
    found = mr(description, 1)["author"]
    return {**found, "id": user_id, "username": username}


# -- opening ---------------------------------------------------------------------------------------------------------


async def test_open_creates_the_merge_request_with_labels_and_reviewer_ids(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    fake.on(LIST, answer(200, []))
    fake.on(USERS, lambda call: Reply(200, [user(description, 42, call.query["username"])]))
    fake.on(CREATE, answer(201, mr(description, 3, labels=("keptn", "podtato-head"))))
    spec = PullRequestSpec(**{**SPEC.__dict__, "labels": ("keptn", "podtato-head"), "reviewers": ("alice",)})

    pull = await gitlab.open_pull_request(spec)

    assert pull == PullRequest(
        number=3,
        url=f"https://gitlab.com/{PROJECT}/-/merge_requests/3",
        state=PullState.OPEN,
        head=HEAD,
        head_sha=SHA_HEAD,
        base="main",
        merge_commit=None,
        closed_by=None,
        mergeable=True,
        labels=("keptn", "podtato-head"),
    )
    assert [call.operation for call in fake.calls] == [LIST, USERS, CREATE]
    listed, looked_up, created = fake.calls
    assert listed.raw_path == f"/api/v4/projects/{ENCODED}/merge_requests"
    assert listed.path_params == {"id": PROJECT}
    assert listed.query == {
        "state": "opened",
        "source_branch": HEAD,
        "target_branch": "main",
        "per_page": "100",
        "page": "1",
    }
    assert (looked_up.raw_path, looked_up.query) == ("/api/v4/users", {"username": "alice"})
    assert created.body == {
        "source_branch": HEAD,
        "target_branch": "main",
        "title": spec.title,
        "description": spec.body,
        "labels": ["keptn", "podtato-head"],
        "reviewer_ids": [42],
    }
    for call in fake.calls:
        assert call.headers["PRIVATE-TOKEN"] == TOKEN
    assert [call.verified for call in fake.calls] == [True, False, True]


async def test_open_returns_the_open_merge_request_instead_of_a_second_one(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    fake.on(LIST, answer(200, [mr(description, 5)]))

    pull = await gitlab.open_pull_request(SPEC)

    assert (pull.number, pull.state, pull.head, pull.base) == (5, PullState.OPEN, HEAD, "main")
    assert [call.operation for call in fake.calls] == [LIST]


async def test_open_after_a_conflict_returns_the_one_an_earlier_attempt_opened(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    listings: list[list[Any]] = [[], [mr(description, 8)]]
    fake.on(LIST, lambda call: Reply(200, listings.pop(0)))
    fake.on(CREATE, answer(409, {"message": ["Another open merge request already exists for this source branch: !8"]}))

    pull = await gitlab.open_pull_request(SPEC)

    assert pull.number == 8
    assert [call.operation for call in fake.calls] == [LIST, CREATE, LIST]


async def test_open_with_an_unknown_reviewer_says_so_and_opens_nothing(gitlab: GitLabForge, fake: SpecForge) -> None:
    fake.on(LIST, answer(200, []))
    fake.on(USERS, answer(200, []))

    with pytest.raises(ForgeError) as caught:
        await gitlab.open_pull_request(PullRequestSpec(**{**SPEC.__dict__, "reviewers": ("nobody",)}))

    assert "nobody" in str(caught.value) and PROJECT in str(caught.value)
    assert [call.operation for call in fake.calls] == [LIST, USERS]


async def test_open_refused_says_why_without_the_token(gitlab: GitLabForge, fake: SpecForge) -> None:
    fake.on(LIST, answer(200, []))
    fake.on(CREATE, answer(422, {"message": ["Validation failed: Source branch does not exist"]}))

    with pytest.raises(ForgeError) as caught:
        await gitlab.open_pull_request(SPEC)

    assert "Source branch does not exist" in str(caught.value)
    assert TOKEN not in str(caught.value)


# -- reading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"detailed_merge_status": "mergeable"}, {"state": PullState.OPEN, "mergeable": True}),
        ({"detailed_merge_status": "ci_must_pass"}, {"state": PullState.OPEN, "mergeable": False}),
        ({"detailed_merge_status": "not_approved"}, {"state": PullState.OPEN, "mergeable": False}),
        ({"detailed_merge_status": "conflict"}, {"state": PullState.OPEN, "mergeable": False}),
        ({"detailed_merge_status": "checking"}, {"state": PullState.OPEN, "mergeable": None}),
        ({"detailed_merge_status": "unchecked"}, {"state": PullState.OPEN, "mergeable": None}),
        (
            {"state": "merged", "merge_commit_sha": SHA_MERGE, "merged_by": "maria", "detailed_merge_status": "merged"},
            {"state": PullState.MERGED, "merge_commit": SHA_MERGE, "closed_by": "maria", "mergeable": None},
        ),
        (
            {"state": "merged", "squash_commit_sha": SHA_SQUASH, "merged_by": "maria"},
            {"state": PullState.MERGED, "merge_commit": SHA_SQUASH, "closed_by": "maria"},
        ),
        (
            {"state": "merged", "merged_by": "maria"},
            {"state": PullState.MERGED, "merge_commit": SHA_HEAD, "closed_by": "maria"},
        ),
        (
            {"state": "closed", "closed_by": "ops", "detailed_merge_status": "not_open"},
            {"state": PullState.CLOSED, "merge_commit": None, "closed_by": "ops", "mergeable": None},
        ),
    ],
    ids=[
        "mergeable",
        "ci-must-pass",
        "not-approved",
        "conflict",
        "checking",
        "unchecked",
        "merged-merge-commit",
        "merged-squash",
        "merged-fast-forward",
        "closed",
    ],
)
async def test_get_maps_the_state(
    gitlab: GitLabForge, fake: SpecForge, description: Description, shape: dict[str, Any], expected: dict[str, Any]
) -> None:
    fake.on(GET, answer(200, mr(description, 14, labels=("keptn",), **shape)))

    pull = await gitlab.get_pull_request(14)

    assert {name: getattr(pull, name) for name in expected} == expected
    assert (pull.number, pull.head, pull.head_sha, pull.base, pull.labels) == (14, HEAD, SHA_HEAD, "main", ("keptn",))
    assert fake.calls[0].raw_path == f"/api/v4/projects/{ENCODED}/merge_requests/14"
    assert fake.calls[0].path_params == {"id": PROJECT, "merge_request_iid": "14"}


async def test_open_merge_requests_by_source_branch_prefix_leave_out_others_and_forks(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    fake.on(
        LIST,
        answer(
            200,
            [
                mr(description, 1, source="deploy/a"),
                mr(description, 2, source="feature/x"),
                mr(description, 3, source="deploy/b", source_project_id=99),
                mr(description, 4, source="deploy/c"),
            ],
        ),
    )

    pulls = await gitlab.open_pull_requests("deploy/")

    assert [(pull.number, pull.head) for pull in pulls] == [(1, "deploy/a"), (4, "deploy/c")]
    assert fake.calls[0].query == {"state": "opened", "per_page": "100", "page": "1"}


async def test_open_merge_requests_read_every_page(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    pages = {
        "1": [mr(description, n, source=f"deploy/{n}") for n in range(1, 101)],
        "2": [mr(description, 101, source="deploy/101")],
    }
    fake.on(LIST, lambda call: Reply(200, pages[call.query["page"]]))

    pulls = await gitlab.open_pull_requests("deploy/")

    assert [pull.number for pull in pulls] == list(range(1, 102))


# -- merging and closing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [(MergeMethod.MERGE, {}), (MergeMethod.SQUASH, {"squash": True}), (MergeMethod.REBASE, {})],
)
async def test_merge_accepts_the_merge_request(
    gitlab: GitLabForge, fake: SpecForge, description: Description, method: MergeMethod, body: dict[str, Any]
) -> None:
    fake.on(MERGE, answer(200, mr(description, 14, state="merged", merge_commit_sha=SHA_MERGE, merged_by="bot")))

    assert await gitlab.merge(14, method) is True
    assert fake.calls[0].raw_path == f"/api/v4/projects/{ENCODED}/merge_requests/14/merge"
    assert fake.calls[0].body == body


@pytest.mark.parametrize(
    ("status", "message", "described"),
    [
        (405, "405 Method Not Allowed", True),
        (409, "SHA does not match HEAD of source branch", True),
        (422, "Branch cannot be merged", True),
        # not in the description's list for this operation; GitLab's API answers it for an unmergeable branch
        (406, "Branch cannot be merged", False),
    ],
)
async def test_merge_refused_because_not_mergeable_yet_is_false(
    gitlab: GitLabForge, fake: SpecForge, status: int, message: str, described: bool
) -> None:
    fake.on(MERGE, lambda call: Reply(status, {"message": message}, undescribed=not described))

    assert await gitlab.merge(14, MergeMethod.MERGE) is False


async def test_merge_with_a_rejected_token_raises_access_denied_without_the_token(
    gitlab: GitLabForge, fake: SpecForge
) -> None:
    fake.on(MERGE, answer(401, {"message": "401 Unauthorized"}))

    with pytest.raises(ForgeAccessDeniedError) as caught:
        await gitlab.merge(14, MergeMethod.MERGE)

    assert "401" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_close_adds_a_note_then_closes(gitlab: GitLabForge, fake: SpecForge, description: Description) -> None:
    fake.on(NOTE, answer(201, {"id": 301, "body": "Superseded by a newer deployment."}))
    fake.on(UPDATE, answer(200, mr(description, 14, state="closed", closed_by="bot")))

    await gitlab.close(14, "Superseded by a newer deployment.")

    note, close = fake.calls
    assert (note.raw_path, note.body) == (
        f"/api/v4/projects/{ENCODED}/merge_requests/14/notes",
        {"body": "Superseded by a newer deployment."},
    )
    assert not note.verified  # the notes operation is not in the copied description
    assert (close.operation, close.body) == (UPDATE, {"state_event": "close"})


async def test_a_transient_502_is_retried_after_a_pause(
    gitlab: GitLabForge, fake: SpecForge, description: Description, clock: ManualClock
) -> None:
    fake.fail(GET, 502)
    fake.on(GET, answer(200, mr(description, 14)))

    reading = asyncio.create_task(gitlab.get_pull_request(14))
    await until(lambda: clock.sleepers == 1)
    assert len(fake.calls) == 1 and not reading.done()
    clock.advance(1)
    pull = await reading

    assert pull.number == 14
    assert len(fake.calls) == 2


async def test_self_managed_gitlab_below_a_relative_url_root(description: Description) -> None:
    async with SpecForge(description, prefix="/gitlab") as fake:
        fake.on(GET, answer(200, mr(description, 2, web_root="https://git.example.com/gitlab")))
        forge = GitLabForge(ForgeRepository(f"{fake.base_url}/api/v4", "team/app"), TOKEN, ManualClock())
        try:
            pull = await forge.get_pull_request(2)
        finally:
            await forge.close_session()
        assert pull.url == f"https://git.example.com/gitlab/{PROJECT}/-/merge_requests/2"
        assert fake.calls[0].raw_path == "/gitlab/api/v4/projects/team%2Fapp/merge_requests/2"


# -- the fake itself -------------------------------------------------------------------------------------------------


async def test_the_fake_reports_a_body_outside_the_description(
    gitlab: GitLabForge, fake: SpecForge, description: Description
) -> None:
    """What makes the tests above able to fail: a comma-separated ``labels`` string, for one, is not what the
    description says the create operation takes (an array)."""
    fake.on(CREATE, answer(201, mr(description, 3)))

    await gitlab._http.request(  # a request the adapter does not make: labels as one string
        "POST",
        f"projects/{ENCODED}/merge_requests",
        "open a merge request",
        body={"source_branch": HEAD, "target_branch": "main", "title": "t", "labels": "a,b"},
    )
    found = "\n".join(fake.problems)
    fake.problems.clear()

    assert "request body: labels: 'a,b' is not of type 'array'" in found


def test_the_corrections_are_needed_the_description_alone_refuses_a_real_answer(description: Description) -> None:
    """specforge.GITLAB_CORRECTIONS exist because the generated description types these as strings or as one
    object that cannot be null: checked against the description alone, a merge request as GitLab sends it fails."""
    uncorrected = json.loads((FIXTURES / "gitlab" / "openapi_v2.merge_requests.json").read_text(encoding="utf-8"))
    properties = uncorrected["definitions"]["API_Entities_MergeRequest"]["properties"]
    assert properties["labels"] == {"type": "string"}
    assert properties["draft"] == {"type": "string"}
    assert properties["merged_by"] == {"$ref": "#/definitions/API_Entities_UserBasic"}
    alone = Description(uncorrected, "uncorrected")
    schema = {"$ref": "#/definitions/API_Entities_MergeRequest"}
    real = mr(description, 3, labels=("keptn",))
    complaints = {".".join(map(str, e.absolute_path)) for e in alone.validator(schema).iter_errors(real)}
    assert {"labels", "draft", "merged_by", "source_project_id"} <= complaints
    assert not list(description.validator(schema).iter_errors(real))


# -- the webhook -----------------------------------------------------------------------------------------------------


def hook_example() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "gitlab" / "merge-request-hook.json").read_text(encoding="utf-8"))
    return loaded


def merged_hook() -> dict[str, Any]:
    payload = hook_example()
    payload["object_attributes"].update(action="merge", state="merged", detailed_merge_status="not_open")
    return payload


def headers(token: str = SECRET, event: str = "Merge Request Hook") -> dict[str, str]:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("payload", "action"), [(hook_example(), "open"), (merged_hook(), "merge")], ids=["published-open", "merge"]
)
def test_webhook_merge_request_hook_is_read(payload: dict[str, Any], action: str) -> None:
    body = json.dumps(payload).encode()

    event = parse_webhook(headers(), body, SECRET)

    assert event == PullRequestEvent(repository="gitlabhq/gitlab-test", number=1, action=action)


def test_webhook_headers_are_matched_without_regard_to_case() -> None:
    body = json.dumps(hook_example()).encode()

    assert parse_webhook({k.lower(): v for k, v in headers().items()}, body, SECRET) is not None


@pytest.mark.parametrize(
    ("sent_headers", "secret"),
    [
        (headers(token="not-the-secret"), SECRET),
        (headers(token=""), SECRET),
        ({"X-Gitlab-Event": "Merge Request Hook"}, SECRET),
        (headers(token=SECRET + " "), SECRET),
        (headers(token=""), ""),
    ],
    ids=["wrong-token", "empty-token", "no-token", "token-with-space", "no-secret-configured"],
)
def test_webhook_without_the_right_token_is_refused(sent_headers: dict[str, str], secret: str) -> None:
    body = json.dumps(hook_example()).encode()

    with pytest.raises(WebhookAuthError) as caught:
        parse_webhook(sent_headers, body, secret)

    assert caught.value.status == 401
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("event", ["Push Hook", "Note Hook", "Pipeline Hook"])
def test_webhook_of_another_event_is_none(event: str) -> None:
    body = json.dumps({"object_kind": "push"}).encode()

    assert parse_webhook(headers(event=event), body, SECRET) is None


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({**hook_example(), "object_kind": "note"}).encode(), "not a merge_request object"),
        (
            json.dumps({k: v for k, v in hook_example().items() if k != "object_attributes"}).encode(),
            "object_attributes",
        ),
        (json.dumps({**hook_example(), "project": {"id": 1}}).encode(), "path_with_namespace"),
    ],
)
def test_webhook_malformed_merge_request_hook_is_refused(body: bytes, complaint: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_webhook(headers(), body, SECRET)

    assert not isinstance(caught.value, WebhookAuthError)
    assert complaint in str(caught.value)


def test_webhook_without_an_iid_is_refused() -> None:
    payload = hook_example()
    del payload["object_attributes"]["iid"]
    body = json.dumps(payload).encode()

    with pytest.raises(WebhookError, match="iid"):
        parse_webhook(headers(), body, SECRET)


def test_the_pruned_description_is_what_extract_py_makes_of_the_excerpt() -> None:
    """The committed JSON is the script's output for the committed excerpt (no hand edits, no drift)."""
    spec = importlib.util.spec_from_file_location("forges_extract", FIXTURES / "extract.py")
    assert spec is not None and spec.loader is not None
    extract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract)
    excerpt = yaml.safe_load((FIXTURES / "gitlab" / "openapi_v2.excerpt.yaml").read_text(encoding="utf-8"))
    pruned = {
        "swagger": excerpt["swagger"],
        "info": excerpt["info"],
        "host": excerpt["host"],
        "securityDefinitions": excerpt["securityDefinitions"],
        "paths": extract._select_operations(excerpt["paths"], extract.GITLAB_OPERATIONS),
    }
    made = extract._with_reachable(excerpt, pruned)
    committed = json.loads((FIXTURES / "gitlab" / "openapi_v2.merge_requests.json").read_text(encoding="utf-8"))

    assert made == committed
    assert sorted(committed["paths"]) == [
        "/api/v4/projects/{id}/merge_requests",
        "/api/v4/projects/{id}/merge_requests/{merge_request_iid}",
        "/api/v4/projects/{id}/merge_requests/{merge_request_iid}/merge",
    ]
