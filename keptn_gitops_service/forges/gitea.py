"""Gitea (and Forgejo): one repository's pull requests through the REST API (``/api/v1``), and its webhooks.

Gitea's JSON is mapped onto :mod:`.model` once, in :func:`_pull`. What is Gitea's own:

- the token goes in ``Authorization: token <t>``; :attr:`ForgeRepository.api_url` is the API root
  (``https://gitea.example/api/v1``);
- labels are set by id: names are looked up in the repository (and created when missing);
- Gitea handles a push asynchronously, so a pull request opened right after pushing its head can find no branch
  yet (404, or 422): opening is retried a few times with short pauses on the clock;
- a merge answers an empty 200; 405 (not mergeable yet, approvals missing, branch protection, already merged) and
  409 (conflicts, head out of date) mean "not now" and :meth:`GiteaForge.merge` returns ``False``;
- two pull requests opened at the same moment from the same head into the same base can both be created (Gitea's
  check for an existing one is not atomic): after creating, the adapter lists again and, when an older one exists,
  closes its own as a duplicate and returns the older;
- a pull request has no "closed by": for one closed without merge, :meth:`GiteaForge.get_pull_request` reads who
  closed it from the issue timeline (one more call); for a merged one it is ``merged_by``;
- ``mergeable`` is Gitea's own field: ``false`` while it is still checking, on conflicts, or when the merge check
  failed; it does not consider approvals (``merge`` does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import ForgeError, WebhookAuthError, WebhookError
from keptn_gitops_service.forges.http import Answer, ForgeHttp
from keptn_gitops_service.forges.model import (
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestEvent,
    PullRequestSpec,
    PullState,
)

log = structlog.get_logger(__name__)

PAGE = 50
"""Items per page (Gitea's default ``MAX_RESPONSE_ITEMS``)."""
MAX_PAGES = 40
"""At most this many pages of one list are read (2,000 open pull requests)."""
HEAD_ATTEMPTS = 5
HEAD_PAUSE = 1.0
"""Seconds between the attempts to open a pull request whose head branch Gitea does not know yet."""
LABEL_COLOR = "#ededed"
"""The color of a label this adapter creates because the repository lacks it."""
WEBHOOK_EVENTS = frozenset({"pull_request", "pull_request_approved", "pull_request_rejected"})
"""``X-Gitea-Event`` values that concern a pull request's state (opened, synchronized, closed/merged, reviewed);
other events are ignored."""


class GiteaForge:
    """One repository on a Gitea (or Forgejo) server."""

    def __init__(self, repository: ForgeRepository, token: str, clock: Clock) -> None:
        self.repository = repository
        self._clock = clock
        self._http = ForgeHttp("Gitea", repository.api_url, {"Authorization": f"token {token}"}, clock)
        owner, name = repository.path.split("/", 1)
        self._base = f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    async def open_pull_request(self, spec: PullRequestSpec) -> PullRequest:
        existing = await self._find_open(spec.head, spec.base)
        if existing is not None:
            return existing
        what = f"open a pull request from {spec.head} into {spec.base} in {self.repository.path}"
        body: dict[str, Any] = {"head": spec.head, "base": spec.base, "title": spec.title, "body": spec.body}
        if spec.labels:
            body["labels"] = await self._label_ids(spec.labels)
        for attempt in range(1, HEAD_ATTEMPTS + 1):
            answer = await self._http.request("POST", f"{self._base}/pulls", what, body=body, accept=_HEAD_UNKNOWN)
            if answer.status < 300:
                break
            if answer.status == 409:  # "pull request already exists for these targets": another opener won
                existing = await self._find_open(spec.head, spec.base)
                if existing is not None:
                    return existing
                raise ForgeError(f"Gitea: could not {what}: HTTP 409{_reason(answer)}")
            if attempt == HEAD_ATTEMPTS:
                raise ForgeError(
                    f"Gitea: could not {what}: HTTP {answer.status}{_reason(answer)} "
                    f"(after {HEAD_ATTEMPTS} attempts; does the branch {spec.head} exist?)"
                )
            log.info("gitea does not know the head branch yet, retrying", call=what, status=answer.status)
            await self._clock.sleep(HEAD_PAUSE)
        created = _pull(answer.body, what)
        # Gitea checks for an open pull request with the same head and base before it inserts one, but not
        # atomically: two openers at the same moment both succeed. The older one stays; a newer one is closed.
        first = await self._find_open(spec.head, spec.base)
        if first is not None and first.number < created.number:
            await self.close(created.number, f"Closed as a duplicate of #{first.number}, opened at the same time.")
            return first
        if spec.reviewers:
            await self._http.request(
                "POST",
                f"{self._base}/pulls/{created.number}/requested_reviewers",
                f"request reviews from {', '.join(spec.reviewers)} on pull request #{created.number} "
                f"in {self.repository.path}",
                body={"reviewers": list(spec.reviewers)},
            )
        return created

    async def get_pull_request(self, number: int) -> PullRequest:
        what = f"read pull request #{number} in {self.repository.path}"
        answer = await self._http.request("GET", f"{self._base}/pulls/{number}", what)
        pull = _pull(answer.body, what)
        if pull.state is PullState.CLOSED:
            closer = await self._closed_by(number)
            if closer is not None:
                pull = dataclasses.replace(pull, closed_by=closer)
        return pull

    async def open_pull_requests(self, head_prefix: str) -> list[PullRequest]:
        return [pull for pull in await self._list_open() if pull.head.startswith(head_prefix)]

    async def merge(self, number: int, method: MergeMethod) -> bool:
        what = f"merge pull request #{number} in {self.repository.path} ({method.value})"
        answer = await self._http.request(
            "POST", f"{self._base}/pulls/{number}/merge", what, body={"Do": method.value}, accept=_NOT_NOW
        )
        if answer.status < 300:
            return True
        reason = _reason(answer)
        if "merge style" in reason:  # the repository does not allow this method: waiting would never help
            raise ForgeError(f"Gitea: could not {what}: HTTP {answer.status}{reason}")
        log.info("gitea does not merge now", call=what, status=answer.status, reason=reason.strip(" ()"))
        return False

    async def close(self, number: int, comment: str) -> None:
        await self.comment(number, comment)
        await self._http.request(
            "PATCH",
            f"{self._base}/pulls/{number}",
            f"close pull request #{number} in {self.repository.path}",
            body={"state": "closed"},
        )

    async def comment(self, number: int, text: str) -> None:
        await self._http.request(
            "POST",
            f"{self._base}/issues/{number}/comments",
            f"comment on pull request #{number} in {self.repository.path}",
            body={"body": text},
        )

    async def close_session(self) -> None:
        await self._http.close()

    # -- helpers -----------------------------------------------------------------------------------------------

    async def _find_open(self, head: str, base: str) -> PullRequest | None:
        found = [pull for pull in await self._list_open() if pull.head == head and pull.base == base]
        return min(found, key=lambda pull: pull.number, default=None)

    async def _list_open(self) -> list[PullRequest]:
        what = f"list the open pull requests in {self.repository.path}"
        items = await self._pages(f"{self._base}/pulls", what, {"state": "open"})
        return [_pull(item, what) for item in items if _same_repository(item, self.repository.path)]

    async def _pages(self, path: str, what: str, params: Mapping[str, str]) -> list[Any]:
        found: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            answer = await self._http.request(
                "GET", path, what, params={**params, "limit": str(PAGE), "page": str(page)}
            )
            if not isinstance(answer.body, list):
                raise ForgeError(f"Gitea: could not {what}: the answer is not a list")
            found.extend(answer.body)
            if len(answer.body) < PAGE:
                break
        return found

    async def _label_ids(self, names: tuple[str, ...]) -> list[int]:
        what = f"list the labels of {self.repository.path}"
        known: dict[str, int] = {}
        for item in await self._pages(f"{self._base}/labels", what, {}):
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("id"), int):
                known.setdefault(item["name"], item["id"])
        ids = []
        for name in dict.fromkeys(names):
            if name not in known:
                answer = await self._http.request(
                    "POST",
                    f"{self._base}/labels",
                    f"create the label {name!r} in {self.repository.path}",
                    body={"name": name, "color": LABEL_COLOR},
                )
                if not isinstance(answer.body, dict) or not isinstance(answer.body.get("id"), int):
                    raise ForgeError(f"Gitea: the label {name!r} created in {self.repository.path} has no id")
                known[name] = answer.body["id"]
            ids.append(known[name])
        return ids

    async def _closed_by(self, number: int) -> str | None:
        """Who closed issue ``number`` last, from its timeline (``None`` when it does not say)."""
        what = f"read the timeline of pull request #{number} in {self.repository.path}"
        closer = None
        for item in await self._pages(f"{self._base}/issues/{number}/timeline", what, {}):
            if isinstance(item, dict) and item.get("type") == "close":
                user = item.get("user")
                if isinstance(user, dict) and isinstance(user.get("login"), str):
                    closer = user["login"]
        return closer


_HEAD_UNKNOWN = frozenset({404, 409, 422})
_NOT_NOW = frozenset({405, 409})


def _same_repository(item: Any, path: str) -> bool:
    """Whether a listed pull request's head is a branch of this repository (not of a fork)."""
    try:
        full_name = item["head"]["repo"]["full_name"]
    except (KeyError, TypeError):
        return True  # the head repository was deleted or is not reported: judge by the branch name alone
    return not isinstance(full_name, str) or full_name.lower() == path.lower()


def _pull(data: Any, what: str) -> PullRequest:
    """Gitea's pull request JSON as a :class:`PullRequest`."""
    try:
        merged = data.get("merged") is True
        state = PullState.MERGED if merged else PullState.OPEN if data["state"] == "open" else PullState.CLOSED
        merged_by = data.get("merged_by") or {}
        mergeable = data.get("mergeable")
        return PullRequest(
            number=int(data["number"]),
            url=str(data["html_url"]),
            state=state,
            head=str(data["head"]["ref"]),
            head_sha=str(data["head"]["sha"]),
            base=str(data["base"]["ref"]),
            merge_commit=str(data["merge_commit_sha"]) if merged and data.get("merge_commit_sha") else None,
            closed_by=str(merged_by["login"]) if merged and merged_by.get("login") else None,
            mergeable=mergeable if isinstance(mergeable, bool) and state is PullState.OPEN else None,
            labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ForgeError(f"Gitea: could not {what}: the pull request in the answer lacks {exc}") from None


def _reason(answer: Answer) -> str:
    body = answer.body
    text = body.get("message", "") if isinstance(body, dict) else body if isinstance(body, str) else ""
    text = " ".join(str(text).split())
    return f" ({text[:300]})" if text else ""


def parse_webhook(headers: Mapping[str, str], body: bytes, secret: str) -> PullRequestEvent | None:
    """The pull request a Gitea webhook delivery is about, after checking its signature; ``None`` for other events.

    ``X-Gitea-Signature`` is the hex HMAC-SHA256 of the body with the webhook's secret (Forgejo also sends it).
    A missing or wrong signature raises :class:`WebhookAuthError`, a body that is not a pull request event
    :class:`WebhookError`. The web layer bounds the body's size."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if not secret:
        raise WebhookAuthError("Gitea webhook refused: no webhook secret is configured to check its signature.")
    signature = lowered.get("x-gitea-signature", "").strip().lower()
    if not signature:
        raise WebhookAuthError("Gitea webhook refused: the X-Gitea-Signature header is missing.")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise WebhookAuthError(
            "Gitea webhook refused: X-Gitea-Signature does not match the body (is the webhook's secret the same?)."
        )
    event = lowered.get("x-gitea-event", "")
    if event not in WEBHOOK_EVENTS:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookError(f"Gitea webhook refused: the {event} event's body is not JSON.") from None
    try:
        number = payload["number"] if "number" in payload else payload["pull_request"]["number"]
        repository = payload["repository"]["full_name"]
        action = payload.get("action") or event
    except (KeyError, TypeError, AttributeError):
        raise WebhookError(
            f"Gitea webhook refused: the {event} event lacks the pull request's number or repository."
        ) from None
    if not isinstance(number, int) or isinstance(number, bool) or not isinstance(repository, str):
        raise WebhookError(f"Gitea webhook refused: the {event} event's number or repository is malformed.")
    return PullRequestEvent(repository=repository, number=number, action=str(action))
