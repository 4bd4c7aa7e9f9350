"""GitLab (gitlab.com and self-managed): merge requests through the REST API v4, and the Merge Request Hook.

The API is ``https://gitlab.com/api/v4`` or ``https://HOST[/RELATIVE_ROOT]/api/v4`` for a self-managed instance
(:attr:`ForgeRepository.api_url`); the repository is the project's full path (``group/subgroup/project``), sent
URL-encoded (``group%2Fsubgroup%2Fproject``) as GitLab's ``:id``. Requests carry ``PRIVATE-TOKEN: TOKEN``.
A merge request's :attr:`PullRequest.number` is its ``iid`` (the ``!N`` people see), never its global ``id``.

``mergeable`` follows ``detailed_merge_status``: ``mergeable`` is true; ``unchecked``, ``checking``,
``preparing`` and ``approvals_syncing`` (GitLab is still working it out) are ``None``; every other status
(``ci_must_pass``, ``not_approved``, ``conflict``, ``draft_status``, ``discussions_not_resolved``,
``need_rebase`` …) is false.

GitLab has no per-merge choice between merge commit and rebase: :attr:`MergeMethod.MERGE` and
:attr:`MergeMethod.REBASE` merge with the project's own merge method (set the project to fast-forward merges for
a linear history); :attr:`MergeMethod.SQUASH` asks for ``squash: true``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import ForgeError, WebhookAuthError, WebhookError
from keptn_gitops_service.forges.http import ForgeHttp
from keptn_gitops_service.forges.model import (
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestEvent,
    PullRequestSpec,
    PullState,
)

log = structlog.get_logger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 50
_NOT_MERGEABLE_YET = frozenset({405, 406, 409, 422})
"""GitLab's answers to ``PUT …/merge`` when it will not merge now: 405 (not mergeable: pipeline, approvals, draft,
conflicts), 406 (a branch cannot be merged), 409 (the ``sha`` does not match the head), 422 (a merge that failed)."""
_STILL_CHECKING = frozenset({"unchecked", "checking", "preparing", "approvals_syncing"})
_STATES = {"opened": PullState.OPEN, "locked": PullState.OPEN, "merged": PullState.MERGED, "closed": PullState.CLOSED}


class GitLabForge:
    """One project's merge requests on GitLab (see the module's description)."""

    def __init__(self, repository: ForgeRepository, token: str, clock: Clock) -> None:
        self.repository = repository
        self._project = f"projects/{quote(repository.path, safe='')}"
        self._http = ForgeHttp("GitLab", repository.api_url, {"PRIVATE-TOKEN": token}, clock)

    # -- the Forge interface ---------------------------------------------------------------------------------------

    async def open_pull_request(self, spec: PullRequestSpec) -> PullRequest:
        existing = await self._open_from(spec.head, spec.base)
        if existing is not None:
            return existing
        body: dict[str, Any] = {
            "source_branch": spec.head,
            "target_branch": spec.base,
            "title": spec.title,
            "description": spec.body,
        }
        if spec.labels:
            body["labels"] = list(spec.labels)
        if spec.reviewers:
            body["reviewer_ids"] = [await self._user_id(name) for name in spec.reviewers]
        answer = await self._http.request(
            "POST",
            f"{self._project}/merge_requests",
            f"open a merge request from {spec.head} into {spec.base} in {self.repository.path}",
            body=body,
            accept=frozenset({409}),
        )
        if answer.status == 409:
            # "Another open merge request already exists for this source branch": an earlier attempt's
            existing = await self._open_from(spec.head, spec.base)
            if existing is None:
                raise ForgeError(
                    f"GitLab: could not open a merge request from {spec.head} into {spec.base} in "
                    f"{self.repository.path}: HTTP 409 ({_message(answer.body)}), and none is open into {spec.base}"
                )
            return existing
        return _merge_request(answer.body, self.repository.path)

    async def get_pull_request(self, number: int) -> PullRequest:
        answer = await self._http.request(
            "GET",
            f"{self._project}/merge_requests/{number}",
            f"read merge request !{number} in {self.repository.path}",
        )
        return _merge_request(answer.body, self.repository.path)

    async def open_pull_requests(self, head_prefix: str) -> list[PullRequest]:
        found: list[PullRequest] = []
        for raw in await self._list({"state": "opened"}, f"list the open merge requests in {self.repository.path}"):
            if not isinstance(raw, dict) or not str(raw.get("source_branch", "")).startswith(head_prefix):
                continue
            source, target = raw.get("source_project_id"), raw.get("target_project_id")
            if source is not None and target is not None and source != target:
                continue  # a fork's branch of the same name is not ours
            found.append(_merge_request(raw, self.repository.path))
        return found

    async def merge(self, number: int, method: MergeMethod) -> bool:
        body: dict[str, Any] = {"squash": True} if method is MergeMethod.SQUASH else {}
        answer = await self._http.request(
            "PUT",
            f"{self._project}/merge_requests/{number}/merge",
            f"merge merge request !{number} in {self.repository.path}",
            body=body,
            accept=_NOT_MERGEABLE_YET,
        )
        if answer.status in _NOT_MERGEABLE_YET:
            log.info(
                "forge refused to merge",
                forge="GitLab",
                repository=self.repository.path,
                number=number,
                status=answer.status,
                reason=_message(answer.body),
            )
            return False
        return isinstance(answer.body, dict) and answer.body.get("state") == "merged"

    async def close(self, number: int, comment: str) -> None:
        if comment:
            await self.comment(number, comment)
        await self._http.request(
            "PUT",
            f"{self._project}/merge_requests/{number}",
            f"close merge request !{number} in {self.repository.path}",
            body={"state_event": "close"},
        )

    async def comment(self, number: int, text: str) -> None:
        await self._http.request(
            "POST",
            f"{self._project}/merge_requests/{number}/notes",
            f"comment on merge request !{number} in {self.repository.path}",
            body={"body": text},
        )

    async def close_session(self) -> None:
        await self._http.close()

    # -- helpers ---------------------------------------------------------------------------------------------------

    async def _open_from(self, head: str, base: str) -> PullRequest | None:
        raws = await self._list(
            {"state": "opened", "source_branch": head, "target_branch": base},
            f"look for an open merge request from {head} into {base} in {self.repository.path}",
        )
        for raw in raws:
            pull = _merge_request(raw, self.repository.path)
            if pull.head == head and pull.base == base:
                return pull
        return None

    async def _list(self, query: Mapping[str, str], what: str) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            params = {**query, "per_page": str(PAGE_SIZE), "page": str(page)}
            answer = await self._http.request("GET", f"{self._project}/merge_requests", what, params=params)
            if not isinstance(answer.body, list):
                raise ForgeError(f"GitLab: could not {what}: the answer is not a list of merge requests")
            items.extend(answer.body)
            if len(answer.body) < PAGE_SIZE:
                return items
        raise ForgeError(f"GitLab: could not {what}: more than {MAX_PAGES * PAGE_SIZE} merge requests")

    async def _user_id(self, username: str) -> int:
        """GitLab wants reviewers as user ids: look the username up."""
        answer = await self._http.request(
            "GET", "users", f"look up the GitLab user {username}", params={"username": username}
        )
        for user in answer.body if isinstance(answer.body, list) else ():
            if isinstance(user, dict) and str(user.get("username", "")).lower() == username.lower():
                user_id = user.get("id")
                if isinstance(user_id, int):
                    return user_id
        raise ForgeError(f"GitLab: could not request a review from {username} in {self.repository.path}: no such user")


def _username(user: Any) -> str | None:
    if isinstance(user, dict) and isinstance(user.get("username"), str):
        return str(user["username"])
    return None


def _merge_request(raw: Any, repository: str) -> PullRequest:
    """Map GitLab's merge request object (``API_Entities_MergeRequest`` / ``…Basic``)."""
    try:
        state = _STATES.get(str(raw["state"]))
        if state is None:
            raise ValueError(f"state {raw['state']!r}")
        merge_commit: str | None = None
        closed_by: str | None = None
        if state is PullState.MERGED:
            # a fast-forward merge without squash leaves both empty: the head itself is then on the target
            merge_commit = raw.get("merge_commit_sha") or raw.get("squash_commit_sha") or raw.get("sha")
            closed_by = _username(raw.get("merged_by")) or _username(raw.get("merge_user"))
        elif state is PullState.CLOSED:
            closed_by = _username(raw.get("closed_by"))
        head_sha = raw.get("sha") or (raw.get("diff_refs") or {}).get("head_sha")
        detailed = raw.get("detailed_merge_status")
        mergeable: bool | None = None
        if state is PullState.OPEN and isinstance(detailed, str) and detailed not in _STILL_CHECKING:
            mergeable = detailed == "mergeable"
        labels = raw.get("labels") or ()
        return PullRequest(
            number=int(raw["iid"]),
            url=str(raw["web_url"]),
            state=state,
            head=str(raw["source_branch"]),
            head_sha=str(head_sha or ""),
            base=str(raw["target_branch"]),
            merge_commit=str(merge_commit) if merge_commit else None,
            closed_by=closed_by,
            mergeable=mergeable,
            labels=tuple(str(label["name"]) if isinstance(label, dict) else str(label) for label in labels),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(
            f"GitLab answered with a merge request of {repository} that lacks a field this service reads ({exc!r})"
        ) from exc


def _message(body: Any) -> str:
    if isinstance(body, dict):
        found = body.get("message") or body.get("error") or ""
        text = found if isinstance(found, str) else json.dumps(found)
    else:
        text = str(body or "")
    return " ".join(text.split())[:300] or "no explanation"


# -- webhook -------------------------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, found in headers.items():
        if key.lower() == wanted:
            return found
    return None


def parse_webhook(headers: Mapping[str, str], body: bytes, secret: str) -> PullRequestEvent | None:
    """Check a GitLab webhook delivery's ``X-Gitlab-Token`` against ``secret`` and read a Merge Request Hook;
    ``None`` for every other event (push, note, pipeline …).

    Raises :class:`WebhookAuthError` for a missing or wrong token (or no secret to compare it with), and
    :class:`WebhookError` for a malformed merge request payload."""
    if not secret:
        raise WebhookAuthError("GitLab webhook refused: no webhook secret is configured to check its token.")
    token = _header(headers, "X-Gitlab-Token")
    if token is None:
        raise WebhookAuthError("GitLab webhook refused: the request has no X-Gitlab-Token header.")
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise WebhookAuthError("GitLab webhook refused: X-Gitlab-Token does not match the configured secret.")
    if _header(headers, "X-Gitlab-Event") != "Merge Request Hook":
        return None
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookError("GitLab webhook refused: the Merge Request Hook's body is not JSON.") from exc
    if not isinstance(payload, dict) or payload.get("object_kind") != "merge_request":
        raise WebhookError("GitLab webhook refused: the Merge Request Hook's body is not a merge_request object.")
    attributes = payload.get("object_attributes")
    project = payload.get("project")
    if not isinstance(attributes, dict):
        raise WebhookError("GitLab webhook refused: the Merge Request Hook has no object_attributes.")
    number = attributes.get("iid")
    path = project.get("path_with_namespace") if isinstance(project, dict) else None
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise WebhookError("GitLab webhook refused: the Merge Request Hook has no object_attributes.iid.")
    if not isinstance(path, str) or "/" not in path:
        raise WebhookError("GitLab webhook refused: the Merge Request Hook has no project.path_with_namespace.")
    action = attributes.get("action") or attributes.get("state") or "update"
    return PullRequestEvent(repository=path, number=number, action=str(action))
