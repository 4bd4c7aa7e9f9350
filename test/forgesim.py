"""A forge in memory over a bare git remote, for the workflow's pull-request tests: pull requests are records, a
merge is a real ``git merge --no-ff`` pushed to the remote's main branch. What it models is also shown against a
real Gitea (test/forges/test_gitea.py, test/workflow/test_pullrequests_gitea.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from support import git

from keptn_gitops_service.errors import ForgeError
from keptn_gitops_service.forges.model import (
    ForgeRepository,
    MergeMethod,
    PullRequest,
    PullRequestSpec,
    PullState,
)


@dataclass
class MemoryForge:
    remote: Path
    work: Path
    repository: ForgeRepository = field(
        default_factory=lambda: ForgeRepository("http://forge.invalid/api/v1", "acme/fleet")
    )
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    specs: dict[int, PullRequestSpec] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    mergeable: bool = False
    failures: int = 0
    """The next reads of a pull request that fail (a forge outage)."""
    opened: int = 0

    async def open_pull_request(self, spec: PullRequestSpec) -> PullRequest:
        for pr in self.pulls.values():
            if pr.state is PullState.OPEN and pr.head == spec.head and pr.base == spec.base:
                return pr
        self.opened += 1
        number = len(self.pulls) + 1
        sha = git("rev-parse", spec.head, cwd=self.remote).strip()
        pr = PullRequest(
            number, f"http://forge.invalid/acme/fleet/pulls/{number}", PullState.OPEN, spec.head, sha, spec.base
        )
        self.pulls[number], self.specs[number] = pr, spec
        return pr

    async def get_pull_request(self, number: int) -> PullRequest:
        if self.failures:
            self.failures -= 1
            raise ForgeError("Gitea: could not read pull request: HTTP 502 (after 6 attempts)")
        return replace(
            self.pulls[number], mergeable=self.mergeable if self.pulls[number].state is PullState.OPEN else None
        )

    async def open_pull_requests(self, head_prefix: str) -> list[PullRequest]:
        return [pr for pr in self.pulls.values() if pr.state is PullState.OPEN and pr.head.startswith(head_prefix)]

    async def merge(self, number: int, method: MergeMethod) -> bool:
        if not self.mergeable:
            return False
        self.merge_now(number, by="keptn-bot")
        return True

    async def close(self, number: int, comment: str) -> None:
        self.comments.setdefault(number, []).append(comment)
        self.close_now(number, by="keptn-bot")

    async def comment(self, number: int, text: str) -> None:
        self.comments.setdefault(number, []).append(text)

    async def close_session(self) -> None:
        pass

    def merge_now(self, number: int, by: str = "alice") -> str:
        """Merge as a person would on the forge: a merge commit on the base branch."""
        pr = self.pulls[number]
        if not self.work.exists():
            git("clone", "--quiet", str(self.remote), str(self.work))
        git("fetch", "--quiet", "origin", cwd=self.work)
        git("checkout", "--quiet", "-B", pr.base, f"origin/{pr.base}", cwd=self.work)
        git(
            "-c",
            "user.name=alice",
            "-c",
            "user.email=alice@example.invalid",
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            f"Merge pull request #{number}",
            f"origin/{pr.head}",
            cwd=self.work,
        )
        git("push", "--quiet", "origin", pr.base, cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work).strip()
        self.pulls[number] = replace(pr, state=PullState.MERGED, merge_commit=sha, closed_by=by)
        return sha

    def close_now(self, number: int, by: str = "alice") -> None:
        self.pulls[number] = replace(self.pulls[number], state=PullState.CLOSED, closed_by=by)
