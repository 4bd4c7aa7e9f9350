"""What the workflow knows of a forge: one repository's pull requests, through a small interface.

Every adapter (:mod:`.gitea`, :mod:`.github`, :mod:`.gitlab`) maps its forge's own shapes onto these frozen types
once, at the edge; nothing above this package sees a forge's JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class PullState(enum.Enum):
    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"
    """Closed without being merged."""


class MergeMethod(enum.Enum):
    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"


@dataclass(frozen=True)
class ForgeRepository:
    """Where a repository lives on its forge: the API's base URL and the repository's path there.

    ``path`` is ``owner/name`` (GitLab: the full ``group/subgroup/project`` path)."""

    api_url: str
    path: str

    def __post_init__(self) -> None:
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"a forge API URL must be http(s): {self.api_url!r}")
        parts = self.path.split("/")
        if len(parts) < 2 or any(not part or part in (".", "..") for part in parts):
            raise ValueError(f"a forge repository path must be owner/name: {self.path!r}")


@dataclass(frozen=True)
class PullRequestSpec:
    """A pull request to open: ``head`` branch into ``base``."""

    head: str
    base: str
    title: str
    body: str
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRequest:
    """A pull request as the forge reports it now."""

    number: int
    """The number the forge shows (GitLab: the merge request's ``iid``)."""
    url: str
    """Its page for people (``html_url`` / ``web_url``)."""
    state: PullState
    head: str
    """The head branch's name."""
    head_sha: str
    base: str
    merge_commit: str | None = None
    """The commit that brought it into ``base``: the merge commit, or the squashed/last rebased one."""
    closed_by: str | None = None
    """Who merged or closed it, when the forge says."""
    mergeable: bool | None = None
    """Whether the forge would merge it now (checks green, approvals present); ``None``: not known (yet)."""
    labels: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class PullRequestEvent:
    """What a forge's webhook says about one pull request: enough to wake its wait (which then asks the API)."""

    repository: str
    """The repository's path on the forge (``owner/name``)."""
    number: int
    action: str
    """The forge's own action word (``closed``, ``merged``, ``opened``, ``synchronized`` …), for the log."""


class Forge(Protocol):
    """One repository's pull requests on one forge. Calls are retried on transient errors (5xx, rate limits
    with the forge's reset headers) inside the adapter; what still fails raises :class:`~errors.ForgeError`."""

    repository: ForgeRepository

    async def open_pull_request(self, spec: PullRequestSpec) -> PullRequest:
        """Open ``spec`` — or return the pull request already open from ``spec.head`` into ``spec.base`` (a
        redelivered trigger, a restart), so there is never a second one."""
        ...

    async def get_pull_request(self, number: int) -> PullRequest: ...

    async def open_pull_requests(self, head_prefix: str) -> list[PullRequest]:
        """The open pull requests whose head branch starts with ``head_prefix``."""
        ...

    async def merge(self, number: int, method: MergeMethod) -> bool:
        """Ask the forge to merge through its merge API (never around branch protection). ``False``: the forge
        refused because it is not mergeable yet (checks, approvals, conflicts); other failures raise."""
        ...

    async def close(self, number: int, comment: str) -> None:
        """Comment, then close without merging."""
        ...

    async def comment(self, number: int, text: str) -> None: ...

    async def close_session(self) -> None: ...
