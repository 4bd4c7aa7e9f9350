"""One working clone per repository, reused across deployments (PRODUCT.md §2.5).

Every write starts from the remote tip (``fetch`` + ``reset --hard`` + ``clean``), so a crashed or failed
attempt can never leak into the next commit, and the remote is only changed by a complete commit.
"""

from __future__ import annotations

import enum
import hashlib
import re
import shutil
from pathlib import Path

from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.git import Git, last_lines

# Kargo's classification of a rejected push (pkg/controller/git/work_tree.go), see reference/gitops.md §4.3.
_NON_FAST_FORWARD = re.compile(
    r"(?m)^\s*!\s+\[(?:remote )?rejected\].+\((?:non-fast-forward|fetch first|cannot lock ref.*"
    r"|incorrect old value provided)\)\s*$"
)
_SHA = re.compile(r"^[0-9a-f]{40}$")


class PushOutcome(enum.Enum):
    PUSHED = "pushed"
    REJECTED = "rejected"  # someone else pushed first: fetch, re-apply, retry


class WorkingClone:
    """A local clone of ``repository``'s branch under ``root``."""

    def __init__(self, repository: Repository, root: Path, git: Git) -> None:
        self.repository = repository
        digest = hashlib.sha256(f"{repository.url}#{repository.branch}".encode()).hexdigest()[:12]
        self.path = root / f"{_safe_name(repository.name)}-{digest}"
        self._git = git
        self._ready = False

    @property
    def remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.repository.branch}"

    async def run(self, *args: str, check: bool = True) -> str:
        """Run git in the clone, returning stdout."""
        return (await self._git.run(*args, cwd=self.path, check=check)).stdout

    async def sync(self) -> str:
        """Bring the clone to the remote branch tip, discarding local state; return the tip's sha."""
        if not self._ready:
            await self._ensure()
        branch = self.repository.branch
        await self.fetch()
        await self.run("checkout", "--force", "-B", branch, self.remote_ref)  # resets index and work tree too
        await self.run("clean", "-fdx")
        return await self.head()

    async def fetch(self) -> None:
        """Update the remote-tracking ref of our branch (the work tree is untouched)."""
        if not self._ready:
            await self._ensure()
        branch = self.repository.branch
        await self.run("fetch", "--prune", "--no-tags", "origin", f"+refs/heads/{branch}:{self.remote_ref}")

    async def head(self) -> str:
        return (await self.run("rev-parse", "HEAD")).strip()

    async def commit(self, message: str) -> str | None:
        """Commit every change in the work tree; ``None`` when there is nothing to commit."""
        await self.run("add", "--all")
        if not (await self.run("status", "--porcelain")).strip():
            return None
        await self._git.run("commit", "--quiet", "--no-verify", "--file", "-", cwd=self.path, stdin=message.encode())
        return await self.head()

    async def push(self) -> PushOutcome:
        """Push HEAD to the branch; a non-fast-forward rejection is an outcome, anything else an error."""
        result = await self._git.run(
            "push",
            "--porcelain",
            "origin",
            f"HEAD:refs/heads/{self.repository.branch}",
            cwd=self.path,
            check=False,
        )
        if result.returncode == 0:
            return PushOutcome.PUSHED
        output = f"{result.stdout}\n{result.stderr}"
        if _NON_FAST_FORWARD.search(output) or "[rejected]" in output:
            return PushOutcome.REJECTED
        raise GitError(f"git push to {self.repository.name} failed: {last_lines(output)}")

    async def find_commit(self, trailer: str, value: str) -> str | None:
        """The newest commit on the remote branch carrying ``<trailer>: <value>``, if any."""
        out = await self.run(
            "log", self.remote_ref, "--fixed-strings", f"--grep={trailer}: {value}", "--format=%H", "-n", "1"
        )
        sha = out.strip()
        return sha or None

    async def find_commits(self, *messages: str) -> list[str]:
        """Commits on the remote branch whose message contains every one of ``messages``, newest first."""
        greps = [f"--grep={m}" for m in messages]
        out = await self.run("log", self.remote_ref, "--fixed-strings", "--all-match", *greps, "--format=%H")
        return out.split()

    async def file_versions(self, commit: str) -> list[tuple[str, str | None, str | None]]:
        """``(path, before, after)`` of every file ``commit`` changed (``None`` where the file did not exist)."""
        names = await self.run("diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", commit)
        versions = []
        for path in (n for n in names.split("\0") if n):
            versions.append((path, await self.show(f"{commit}^", path), await self.show(commit, path)))
        return versions

    async def show(self, revision: str, path: str) -> str | None:
        """A file's text at ``revision``, or ``None`` if it does not exist there."""
        result = await self._git.run("show", f"{revision}:{path}", cwd=self.path, check=False)
        return result.stdout if result.returncode == 0 else None

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is ``descendant`` or one of its ancestors (fetching once if unknown)."""
        if not (_SHA.match(ancestor) and _SHA.match(descendant)):
            return False
        if ancestor == descendant:
            return True
        for attempt in range(2):
            result = await self._git.run(
                "merge-base", "--is-ancestor", ancestor, descendant, cwd=self.path, check=False
            )
            if result.returncode in (0, 1):
                return result.returncode == 0
            if attempt == 0:
                await self.fetch()
        return False

    async def _ensure(self) -> None:
        if (self.path / ".git").is_dir():
            url = (await self.run("config", "--get", "remote.origin.url", check=False)).strip()
            if url == self.repository.url:
                self._ready = True
                return
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        await self._git.run(
            "clone",
            "--quiet",
            "--no-tags",
            "--single-branch",
            "--branch",
            self.repository.branch,
            "--",
            self.repository.url,
            str(tmp),
        )
        tmp.rename(self.path)
        self._ready = True


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "repo"
