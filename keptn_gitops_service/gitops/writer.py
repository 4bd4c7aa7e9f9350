"""Commit a change to a GitOps repository and push it, resolving races by re-applying on the new tip.

One :class:`GitWriter` serves the whole process: one working clone per repository, one lock per
(repository, branch) so our own deployments never race each other, and a bounded, jittered retry when
someone else pushed first (reference/gitops.md §4.4: fetch → re-apply → commit → push beats rebase for
single-scalar edits, because re-applying re-validates the edit against what is now there).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from keptn_gitops_service import metrics
from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.errors import EditError, GitError, GitOpsServiceError
from keptn_gitops_service.gitops.clone import PushOutcome, WorkingClone
from keptn_gitops_service.gitops.git import Git
from keptn_gitops_service.gitops.paths import resolve_in_repo

log = structlog.get_logger(__name__)


FileVersions = tuple[str, str | None, str | None]
"""``(path, text before, text after)`` of one file in one commit."""


@dataclass(frozen=True)
class FileEdit:
    """A pure text transformation of one file (it raises :class:`EditError` when it cannot apply)."""

    path: str
    transform: Callable[[str], str]


@dataclass(frozen=True)
class Change:
    """Everything one commit carries. ``trailer`` identifies it, so a redelivery finds the existing commit."""

    repository: Repository
    edits: tuple[FileEdit, ...]
    message: str
    trailer: tuple[str, str]


@dataclass(frozen=True)
class WriteResult:
    """The commit that carries the change (HEAD when nothing had to change)."""

    commit: str
    created: bool
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a push that lost a race.

    Kargo's git-push uses 10 attempts starting at 1 s, growing by 1.5, capped at 30 s, with jitter.
    """

    max_attempts: int = 8
    base_delay: float = 0.2
    factor: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        raw = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        return raw * (1 - self.jitter + 2 * self.jitter * rng.random())


@dataclass
class GitWriter:
    """Writes :class:`Change` s into their repositories."""

    state_dir: Path
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    _clones: dict[tuple[str, str], WorkingClone] = field(default_factory=dict, init=False)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict, init=False)

    def clone(self, repository: Repository) -> WorkingClone:
        """The (reused) working clone of ``repository``."""
        key = (repository.url, repository.branch)
        if key not in self._clones:
            git = Git(auth=repository.auth, author=repository.author, helper_dir=self.state_dir / "git-home")
            self._clones[key] = WorkingClone(repository, self.state_dir / "clones", git)
        return self._clones[key]

    def lock(self, repository: Repository) -> asyncio.Lock:
        return self._locks.setdefault((repository.url, repository.branch), asyncio.Lock())

    async def is_ancestor(self, repository: Repository, ancestor: str, descendant: str) -> bool:
        """Whether ``descendant`` contains ``ancestor`` (under the repository's lock: it may fetch)."""
        async with self.lock(repository):
            return await self.clone(repository).is_ancestor(ancestor, descendant)

    async def history(self, repository: Repository, *messages: str) -> list[tuple[str, list[FileVersions]]]:
        """The commits whose message contains all ``messages`` (newest first), each with its file versions."""
        async with self.lock(repository):
            clone = self.clone(repository)
            await clone.fetch()
            return [(sha, await clone.file_versions(sha)) for sha in await clone.find_commits(*messages)]

    async def write(self, change: Change) -> WriteResult:
        """Commit and push ``change``; return the commit that carries it."""
        clone = self.clone(change.repository)
        async with self.lock(change.repository):
            for attempt in range(1, self.retry.max_attempts + 1):
                tip = await clone.sync()
                existing = await clone.find_commit(*change.trailer)
                if existing:
                    return WriteResult(existing, created=False, attempts=attempt)
                self._apply(clone.path, change)
                commit = await clone.commit(change.message)
                if commit is None:
                    return WriteResult(tip, created=False, attempts=attempt)
                if await clone.push() is PushOutcome.PUSHED:
                    return WriteResult(commit, created=True, attempts=attempt)
                metrics.PUSH_RETRIES.inc()
                delay = self.retry.delay(attempt, self.rng)
                log.info(
                    "push rejected, retrying on the new tip",
                    repository=change.repository.name,
                    attempt=attempt,
                    delay=round(delay, 3),
                )
                await self.sleep(delay)
        raise GitError(
            f"push to {change.repository.name} ({change.repository.branch}) was rejected "
            f"{self.retry.max_attempts} times because others kept pushing; giving up"
        )

    @staticmethod
    def _apply(root: Path, change: Change) -> None:
        for edit in change.edits:
            path = resolve_in_repo(root, edit.path)
            if not path.is_file():
                raise EditError(f"{edit.path}: no such file in repository {change.repository.name}")
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise EditError(f"{edit.path}: the file is not UTF-8 text") from None
            try:
                new = edit.transform(text)
            except GitOpsServiceError as exc:
                raise type(exc)(f"{edit.path}: {exc}") from None
            if new != text:
                path.write_bytes(new.encode("utf-8"))
