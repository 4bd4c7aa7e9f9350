"""GitHub (github.com and GitHub Enterprise Server): pull requests through the REST API, and the ``pull_request``
webhook.

The API is ``https://api.github.com`` or, for GitHub Enterprise Server, ``https://HOST/api/v3``
(:attr:`ForgeRepository.api_url`). Requests carry ``Authorization: Bearer TOKEN`` and
``X-GitHub-Api-Version: 2022-11-28``; the calls and their bodies follow GitHub's published OpenAPI description
(github/rest-api-description), against which the tests check every request and answer.

``mergeable`` is true only when GitHub reports ``mergeable: true`` with ``mergeable_state`` ``clean`` (mergeable,
its commit statuses pass) or ``has_hooks`` (the same, with pre-receive hooks on GitHub Enterprise Server).
``unstable`` (mergeable, but a non-required check failed), ``blocked`` (a required check or review missing),
``behind``, ``dirty`` (conflicts) and ``draft`` are false; ``unknown`` — GitHub is still computing it — is ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

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

API_VERSION = "2022-11-28"
PAGE_SIZE = 100
MAX_PAGES = 50
"""A bound on listing (5000 open pull requests); a repository beyond it is not one this service should scan."""

_MERGEABLE_STATES = frozenset({"clean", "has_hooks"})
_NOT_MERGEABLE_STATES = frozenset({"unstable", "blocked", "behind", "dirty", "draft"})
_NOT_MERGEABLE_YET = frozenset({405, 409})
_ALREADY_EXISTS = "a pull request already exists"


class GitHubForge:
    """One repository's pull requests on GitHub (see the module's description)."""

    def __init__(self, repository: ForgeRepository, token: str, clock: Clock) -> None:
        if len(repository.path.split("/")) != 2:
            raise ValueError(f"a GitHub repository path is owner/name: {repository.path!r}")
        self.repository = repository
        self._owner, self._name = repository.path.split("/")
        self._http = ForgeHttp(
            "GitHub",
            repository.api_url,
            {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": API_VERSION,
            },
            clock,
        )

    # -- the Forge interface ---------------------------------------------------------------------------------------

    async def open_pull_request(self, spec: PullRequestSpec) -> PullRequest:
        existing = await self._open_from(spec.head, spec.base)
        if existing is not None:
            return existing
        answer = await self._http.request(
            "POST",
            f"{self._repo_path}/pulls",
            f"open a pull request from {spec.head} into {spec.base} in {self.repository.path}",
            body={"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body},
            accept=frozenset({422}),
        )
        if answer.status == 422:
            if _ALREADY_EXISTS not in json.dumps(answer.body).lower():
                raise ForgeError(
                    f"GitHub: could not open a pull request from {spec.head} into {spec.base} in "
                    f"{self.repository.path}: HTTP 422 ({_validation_message(answer.body)})"
                )
            # opened by an earlier attempt between our look and our create (a redelivered trigger, a restart)
            existing = await self._open_from(spec.head, spec.base)
            if existing is None:
                raise ForgeError(
                    f"GitHub: could not open a pull request from {spec.head} into {spec.base} in "
                    f"{self.repository.path}: GitHub says one already exists, but none is open"
                )
            return existing
        pull = _pull_request(answer.body, self.repository.path)
        labels = pull.labels
        if spec.labels:
            labels = await self._add_labels(pull.number, spec.labels)
        if spec.reviewers:
            await self._http.request(
                "POST",
                f"{self._repo_path}/pulls/{pull.number}/requested_reviewers",
                f"request reviews from {', '.join(spec.reviewers)} on pull request #{pull.number} in "
                f"{self.repository.path}",
                body={"reviewers": list(spec.reviewers)},
            )
        return _replace_labels(pull, labels)

    async def get_pull_request(self, number: int) -> PullRequest:
        answer = await self._http.request(
            "GET", f"{self._repo_path}/pulls/{number}", f"read pull request #{number} in {self.repository.path}"
        )
        return _pull_request(answer.body, self.repository.path)

    async def open_pull_requests(self, head_prefix: str) -> list[PullRequest]:
        found: list[PullRequest] = []
        for raw in await self._list({"state": "open"}, f"list the open pull requests in {self.repository.path}"):
            head = raw.get("head") if isinstance(raw, dict) else None
            if not isinstance(head, dict) or not str(head.get("ref", "")).startswith(head_prefix):
                continue
            repo = head.get("repo")
            if not isinstance(repo, dict) or str(repo.get("full_name", "")).lower() != self.repository.path.lower():
                continue  # a fork's branch of the same name is not ours
            found.append(_pull_request(raw, self.repository.path))
        return found

    async def merge(self, number: int, method: MergeMethod) -> bool:
        answer = await self._http.request(
            "PUT",
            f"{self._repo_path}/pulls/{number}/merge",
            f"merge pull request #{number} in {self.repository.path}",
            body={"merge_method": method.value},
            accept=_NOT_MERGEABLE_YET,
        )
        if answer.status in _NOT_MERGEABLE_YET:
            log.info(
                "forge refused to merge",
                forge="GitHub",
                repository=self.repository.path,
                number=number,
                status=answer.status,
                reason=_validation_message(answer.body),
            )
            return False
        body = answer.body if isinstance(answer.body, dict) else {}
        return body.get("merged") is True

    async def close(self, number: int, comment: str) -> None:
        if comment:
            await self.comment(number, comment)
        await self._http.request(
            "PATCH",
            f"{self._repo_path}/pulls/{number}",
            f"close pull request #{number} in {self.repository.path}",
            body={"state": "closed"},
        )

    async def comment(self, number: int, text: str) -> None:
        await self._http.request(
            "POST",
            f"{self._repo_path}/issues/{number}/comments",
            f"comment on pull request #{number} in {self.repository.path}",
            body={"body": text},
        )

    async def close_session(self) -> None:
        await self._http.close()

    # -- helpers ---------------------------------------------------------------------------------------------------

    @property
    def _repo_path(self) -> str:
        return f"repos/{self._owner}/{self._name}"

    async def _open_from(self, head: str, base: str) -> PullRequest | None:
        """The open pull request from ``head`` (of this repository) into ``base``, if there is one."""
        pulls = await self._list(
            {"state": "open", "head": f"{self._owner}:{head}", "base": base},
            f"look for an open pull request from {head} into {base} in {self.repository.path}",
        )
        for raw in pulls:
            pull = _pull_request(raw, self.repository.path)
            if pull.head == head and pull.base == base:
                return pull
        return None

    async def _list(self, query: Mapping[str, str], what: str) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            params = {**query, "per_page": str(PAGE_SIZE), "page": str(page)}
            answer = await self._http.request("GET", f"{self._repo_path}/pulls", what, params=params)
            if not isinstance(answer.body, list):
                raise ForgeError(f"GitHub: could not {what}: the answer is not a list of pull requests")
            items.extend(answer.body)
            if len(answer.body) < PAGE_SIZE:
                return items
        raise ForgeError(f"GitHub: could not {what}: more than {MAX_PAGES * PAGE_SIZE} pull requests")

    async def _add_labels(self, number: int, labels: tuple[str, ...]) -> tuple[str, ...]:
        answer = await self._http.request(
            "POST",
            f"{self._repo_path}/issues/{number}/labels",
            f"label pull request #{number} in {self.repository.path}",
            body={"labels": list(labels)},
        )
        if isinstance(answer.body, list):
            return tuple(str(label["name"]) for label in answer.body if isinstance(label, dict) and "name" in label)
        return labels


def _pull_request(raw: Any, repository: str) -> PullRequest:
    """Map GitHub's ``pull-request`` / ``pull-request-simple`` object."""
    try:
        head, base = raw["head"], raw["base"]
        merged = raw.get("merged") is True or bool(raw.get("merged_at"))
        if merged:
            state = PullState.MERGED
        elif raw["state"] == "closed":
            state = PullState.CLOSED
        else:
            state = PullState.OPEN
        merged_by = raw.get("merged_by")
        return PullRequest(
            number=int(raw["number"]),
            url=str(raw["html_url"]),
            state=state,
            head=str(head["ref"]),
            head_sha=str(head["sha"]),
            base=str(base["ref"]),
            merge_commit=str(raw["merge_commit_sha"]) if merged and raw.get("merge_commit_sha") else None,
            closed_by=str(merged_by["login"]) if merged and isinstance(merged_by, dict) else None,
            mergeable=_mergeable(raw) if state is PullState.OPEN else None,
            labels=tuple(str(label["name"]) for label in raw.get("labels") or () if isinstance(label, dict)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(
            f"GitHub answered with a pull request of {repository} that lacks a field this service reads ({exc!r})"
        ) from exc


def _mergeable(raw: Mapping[str, Any]) -> bool | None:
    state = raw.get("mergeable_state")
    if raw.get("mergeable") is False or state in _NOT_MERGEABLE_STATES:
        return False
    if raw.get("mergeable") is True and state in _MERGEABLE_STATES:
        return True
    return None


def _replace_labels(pull: PullRequest, labels: tuple[str, ...]) -> PullRequest:
    if labels == pull.labels:
        return pull
    return PullRequest(
        number=pull.number,
        url=pull.url,
        state=pull.state,
        head=pull.head,
        head_sha=pull.head_sha,
        base=pull.base,
        merge_commit=pull.merge_commit,
        closed_by=pull.closed_by,
        mergeable=pull.mergeable,
        labels=labels,
    )


def _validation_message(body: Any) -> str:
    """GitHub's ``message`` and its ``errors[].message``s, shortened."""
    if not isinstance(body, dict):
        return "no explanation"
    parts = [str(body.get("message", "")).strip()]
    for error in body.get("errors") or ():
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]).strip())
        elif isinstance(error, str):
            parts.append(error.strip())
    text = "; ".join(part for part in parts if part)
    return text[:300] or "no explanation"


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
    """Check a GitHub webhook delivery's ``X-Hub-Signature-256`` (HMAC-SHA256 of the body with ``secret``) and
    read a ``pull_request`` event; ``None`` for every other event (``ping``, ``push`` …).

    Raises :class:`WebhookAuthError` for a missing or wrong signature (or no secret to check it with), and
    :class:`WebhookError` for a malformed ``pull_request`` payload."""
    if not secret:
        raise WebhookAuthError("GitHub webhook refused: no webhook secret is configured to check its signature.")
    signature = _header(headers, "X-Hub-Signature-256")
    if not signature:
        raise WebhookAuthError("GitHub webhook refused: the request has no X-Hub-Signature-256 header.")
    if not signature.startswith("sha256="):
        raise WebhookAuthError("GitHub webhook refused: X-Hub-Signature-256 is not of the form sha256=HEX.")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature[len("sha256=") :].strip().lower().encode(), expected.encode()):
        raise WebhookAuthError(
            "GitHub webhook refused: the X-Hub-Signature-256 signature does not match the body "
            "(a different secret, or a changed body)."
        )
    event = _header(headers, "X-GitHub-Event")
    if event != "pull_request":
        return None
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookError("GitHub webhook refused: the pull_request event's body is not JSON.") from exc
    if not isinstance(payload, dict):
        raise WebhookError("GitHub webhook refused: the pull_request event's body is not a JSON object.")
    action = payload.get("action")
    pull = payload.get("pull_request")
    repository = payload.get("repository")
    number = payload.get("number", pull.get("number") if isinstance(pull, dict) else None)
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(action, str) or not action:
        raise WebhookError("GitHub webhook refused: the pull_request event has no action.")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise WebhookError("GitHub webhook refused: the pull_request event has no pull request number.")
    if not isinstance(full_name, str) or "/" not in full_name:
        raise WebhookError("GitHub webhook refused: the pull_request event has no repository.full_name.")
    return PullRequestEvent(repository=full_name, number=number, action=action)
