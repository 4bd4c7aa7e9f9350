"""One clone per repository, reused across deployments, without a work tree.

Nothing is checked out: a deployment reads the files it edits from the objects of the branch tip, writes the new
blobs and the trees along their paths, and a commit on the tip (:mod:`~keptn_gitops_service.gitops.objects`), then
pushes it with a compare-and-swap on the tip it was built on. A crashed or failed attempt leaves at most
unreachable objects behind, never a half-edited file, and the remote is only changed by a complete commit. The
clone's ``HEAD`` follows the remote-tracking ref of the branch.

Big repositories can be cloned shallow (``--depth``) and/or partial (``--filter``). A shallow clone keeps
every commit fetched after the initial clone, so its history only grows from the newest ``depth`` commits.
What reads history copes with the boundary: the trailer lookup of a redelivered trigger searches only the
fetched history (the commit it looks for was pushed moments before), a rollback's search and an ancestry
check deepen the clone on demand (``git fetch --deepen``) until they can answer for sure, and a commit whose
parent lies beyond the boundary gets it fetched before its file versions are read.
"""

from __future__ import annotations

import enum
import hashlib
import re
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.editing.trailers import carries, parse_line, parse_trailers
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.git import Git, last_lines, repository_label, signing_options
from keptn_gitops_service.gitops.objects import ObjectStore, cleanup_message

# Kargo's classification of a rejected push (pkg/controller/git/work_tree.go).
_NON_FAST_FORWARD = re.compile(
    r"(?m)^\s*!\s+\[(?:remote )?rejected\].+\((?:non-fast-forward|fetch first|cannot lock ref.*"
    r"|incorrect old value provided)\)\s*$"
)
_REF_RACE = re.compile(r"cannot lock ref|failed to update ref|is at [0-9a-f]+ but expected [0-9a-f]+")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_FIRST_DEEPEN = 64  # commits fetched by the first on-demand deepening; every further one doubles
TRAILER_WINDOW = 2000
"""Commits of the branch whose trailers the idempotency index reads when a clone is first used."""
TRAILER_INDEX_SIZE = 20_000
"""The most ``(trailer, value)`` pairs the idempotency index keeps (the newest)."""
IDENTIFYING_TRAILERS = frozenset({"Keptn-Triggered-Id"})
"""The trailer keys the index holds from the start (others are added when first asked for)."""


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
        self.objects = ObjectStore(git, self.path, repository_label(repository))
        self.tip = ""
        """The remote branch tip as last seen (fetched, or pushed by us)."""
        self.pushes = 0
        self._indexed = False
        self._keys: set[str] = set(IDENTIFYING_TRAILERS)
        self._trailers: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.repository.branch}"

    async def close(self) -> None:
        """Stop the clone's object reader."""
        await self.objects.close()

    async def run(self, *args: str, check: bool = True) -> str:
        """Run git in the clone, returning stdout."""
        return (await self._git.run(*args, cwd=self.path, check=check)).stdout

    async def sync(self) -> str:
        """Bring the remote-tracking ref to the remote branch tip; return the tip's sha. Nothing is checked out:
        commits are written from objects (:mod:`~keptn_gitops_service.gitops.objects`), never from a work tree."""
        await self.fetch()
        return self.tip

    async def ensure(self) -> bool:
        """Make the clone ready; whether that fetched (a new clone, or the first use in this process)."""
        if self._ready:
            return False
        await self._open()
        return True

    async def fetch(self) -> None:
        """Update the remote-tracking ref of our branch, and learn the trailers of the commits it brought."""
        if not self._ready:
            await self._open()
        branch = self.repository.branch
        before = self.tip
        await self.run(
            "fetch", "--update-head-ok", "--prune", "--no-tags", "origin", f"+refs/heads/{branch}:{self.remote_ref}"
        )
        await self._load_tip(since=before)

    async def _load_tip(self, since: str = "") -> None:
        """Read the remote-tracking ref and index the trailers of the commits new since ``since`` (the newest
        :data:`TRAILER_WINDOW` when it is not an ancestor, e.g. after a rewrite of the branch)."""
        tip = (await self.run("rev-parse", "--verify", "--quiet", self.remote_ref, check=False)).strip()
        if not tip:
            where = repository_label(self.repository)
            raise GitError(f"the clone of {where} has no {self.remote_ref}; the branch may have been deleted")
        if tip == self.tip and self._indexed:
            return
        if since and self._indexed and await self._merge_base_is_ancestor(since, tip) == 0:
            await self._index(f"{since}..{tip}")
        else:
            self._trailers.clear()
            await self._index(tip)
            self._indexed = True
        self.tip = tip

    async def _index(self, revisions: str) -> None:
        for sha, body in reversed(await self._log(f"--max-count={TRAILER_WINDOW}", revisions)):
            self.learn(sha, body)

    def learn(self, sha: str, message: str) -> None:
        """Remember the trailers of ``sha`` (a commit on the branch, newer than every one learnt before)."""
        for pair in parse_trailers(message):
            if pair[0] in self._keys:
                self._trailers[pair] = sha
                self._trailers.move_to_end(pair)
        while len(self._trailers) > TRAILER_INDEX_SIZE:
            self._trailers.popitem(last=False)

    async def head(self) -> str:
        return (await self.run("rev-parse", self.remote_ref)).strip()

    async def make_commit(self, tree: str, parent: str, message: str) -> str:
        """A commit of ``tree`` on ``parent`` with ``message``: written directly, or by ``git commit-tree -S``
        when the repository signs its commits."""
        message = cleanup_message(message)
        if self.repository.signing is None:
            return self.objects.write_commit(tree, parent, message, self.repository.author)
        config, env = signing_options(self.repository.signing)
        args = ("commit-tree", tree, "-p", parent, "-S", "-F", "-")
        run = self._git.run(*args, cwd=self.path, stdin=message.encode(), config=config, env=env, name="commit")
        return (await run).stdout.strip()

    async def push(self, commit: str, expected: str) -> PushOutcome:
        """Push ``commit`` to the branch if the branch is still at ``expected`` (compare-and-swap: a rewound or
        advanced branch rejects it); a rejection is an outcome, anything else an error."""
        branch = self.repository.branch
        result = await self._git.run(
            "push",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{expected}",
            "origin",
            f"{commit}:refs/heads/{branch}",
            cwd=self.path,
            check=False,
        )
        if result.returncode == 0:
            self.tip = commit  # git moved the remote-tracking ref too
            self.pushes += 1
            return PushOutcome.PUSHED
        output = f"{result.stdout}\n{result.stderr}"
        # A concurrent push can also surface as the remote failing to lock or update the ref ("cannot lock ref
        # 'refs/heads/main': is at X but expected Y"): the same race, resolved the same way.
        if _NON_FAST_FORWARD.search(output) or "[rejected]" in output or _REF_RACE.search(output):
            return PushOutcome.REJECTED
        raise GitError(f"git push to {repository_label(self.repository)} failed: {last_lines(output)}")

    async def push_branch(self, commit: str, branch: str) -> None:
        """Push ``commit`` to ``branch`` — a pull request's head, which belongs to one trigger alone, so it is
        replaced when it exists (a retry after a restart pushes the change again)."""
        result = await self._git.run(
            "push", "--porcelain", "--force", "origin", f"{commit}:refs/heads/{branch}", cwd=self.path, check=False
        )
        if result.returncode != 0:
            output = f"{result.stdout}\n{result.stderr}"
            raise GitError(
                f"git push of branch {branch} to {repository_label(self.repository)} failed: {last_lines(output)}"
            )

    async def pack(self) -> None:
        """Let git pack the loose objects the writer wrote (``git gc --auto``: nothing when there are few)."""
        await self.run("gc", "--auto", "--quiet", check=False)
        self.objects.written = 0

    async def find_trailers(self, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For each ``(trailer, value)`` carried by a commit on the remote branch, the newest such commit. A commit
        carries it when its trailer block has exactly that key and value
        (:mod:`~keptn_gitops_service.editing.trailers`); an empty value is carried by no commit.

        The answer comes from an index, so it costs the same whatever the history's length: it holds the trailers
        of the newest :data:`TRAILER_WINDOW` commits of the branch when the clone was first used (or when a key is
        first asked for), of every commit fetched or pushed since, at most :data:`TRAILER_INDEX_SIZE` of them. A
        redelivered trigger whose commit is older than that is not recognised (the state store, which records every
        commit, answers first; this is the fallback after its state was lost)."""
        pairs = {(key, value) for key, value in wanted if value}
        if not pairs:
            return {}
        if not self._ready:
            await self.fetch()
        keys = {key for key, _ in pairs}
        if not keys <= self._keys:
            self._keys |= keys
            self._trailers.clear()
            await self._index(self.tip)
        return {pair: self._trailers[pair] for pair in pairs if pair in self._trailers}

    async def message(self, commit: str) -> str:
        """The full message of ``commit``."""
        return await self.run("log", "-1", "--format=%B", commit)

    async def find_commits(self, *lines: str) -> list[str]:
        """Commits on the remote branch whose trailers include every one of ``lines`` (``Key: value``, matched
        as whole trailer lines with exact values, never as substrings), newest first. No line, or a line with an
        empty value, matches no commit.

        ``git log --grep`` only narrows the candidates down; each one's trailer block decides. A shallow clone is
        deepened until at least one commit matches or the whole history is there."""
        wanted = [parse_line(line) for line in lines]
        pairs = [pair for pair in wanted if pair is not None]
        if not pairs or len(pairs) != len(wanted) or not all(value for _, value in pairs):
            return []
        greps = [f"--grep={line}" for line in lines]
        step = self._first_deepen()
        while True:
            candidates = await self._log(self.remote_ref, "--fixed-strings", "--all-match", *greps)
            found = [sha for sha, body in candidates if carries(body, pairs)]
            if found or not await self.deepen(step):
                return found
            step *= 2

    async def _log(self, *args: str) -> list[tuple[str, str]]:
        """``(sha, full message)`` of the commits ``git log`` lists for ``args``, newest first."""
        out = await self.run("log", *args, "--format=%H%x00%B%x00")
        fields = out.split("\0")
        return [(sha.strip(), body) for sha, body in zip(fields[0::2], fields[1::2], strict=False)]

    async def file_versions(self, commit: str) -> list[tuple[str, str | None, str | None]]:
        """``(path, before, after)`` of every file ``commit`` changed (``None`` where the file did not exist)."""
        while commit in self._shallow_commits() and await self.deepen(1):  # fetch the parent beyond the boundary
            pass
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
        """Whether ``ancestor`` is ``descendant`` or one of its ancestors.

        An unknown commit is fetched once; in a shallow clone an answer the boundary could hide (an unknown
        commit, or "no" while history beyond the boundary is reachable from ``descendant``) deepens the clone
        until the answer is certain."""
        if not (_SHA.match(ancestor) and _SHA.match(descendant)):
            return False
        if ancestor == descendant:
            return True
        if not self._ready:
            await self._open()
        fetched, step = False, self._first_deepen()
        while True:
            code = await self._merge_base_is_ancestor(ancestor, descendant)
            if code == 0:
                return True
            if code == 1 and not await self._boundary_may_hide(ancestor, descendant):
                return False
            if not fetched:
                await self.fetch()
                fetched = True
            elif await self.deepen(step):
                step *= 2
            else:
                return False

    async def is_shallow(self) -> bool:
        return (await self.run("rev-parse", "--is-shallow-repository")).strip() == "true"

    async def deepen(self, commits: int) -> bool:
        """Fetch ``commits`` more commits of history beyond a shallow boundary; ``False`` when there is none."""
        if not await self.is_shallow():
            return False
        branch = self.repository.branch
        refspec = f"+refs/heads/{branch}:{self.remote_ref}"
        await self.run("fetch", "--update-head-ok", "--no-tags", f"--deepen={commits}", "origin", refspec)
        return True

    def _first_deepen(self) -> int:
        return max(_FIRST_DEEPEN, self.repository.clone.depth or 0)

    def _shallow_commits(self) -> set[str]:
        shallow = self.path / ".git" / "shallow"
        return set(shallow.read_text().split()) if shallow.is_file() else set()

    async def _merge_base_is_ancestor(self, ancestor: str, descendant: str) -> int:
        """``merge-base --is-ancestor``'s exit code: 0 yes, 1 no, anything else an unknown commit."""
        args = ("merge-base", "--is-ancestor", ancestor, descendant)
        return (await self._git.run(*args, cwd=self.path, check=False)).returncode

    async def _boundary_may_hide(self, ancestor: str, descendant: str) -> bool:
        """Whether a "no" from ``merge-base`` could be wrong because history is cut off by a shallow boundary.

        It is certain when ``descendant`` is itself an ancestor of ``ancestor`` (an older commit of the same
        line, the usual case while a controller catches up), or when no boundary is reachable from it."""
        boundary = self._shallow_commits()
        if not boundary or await self._merge_base_is_ancestor(descendant, ancestor) == 0:
            return False
        reachable = await self.run("rev-list", descendant)
        return not boundary.isdisjoint(reachable.split())

    async def _open(self) -> None:
        """Make the clone ready and read its tip: a clone is never ready without the tip a write builds on."""
        await self._ensure()
        await self._load_tip()

    async def _ensure(self) -> None:
        options = self.repository.clone
        if (self.path / ".git").is_dir():
            _remove_stale_locks(self.path / ".git")
            url = (await self.run("config", "--get", "remote.origin.url", check=False)).strip()
            clone_filter = (await self.run("config", "--get", "remote.origin.partialclonefilter", check=False)).strip()
            if url == self.repository.url and clone_filter == (options.filter or ""):
                self._ready = True
                if options.depth is None and await self.is_shallow():  # no longer wanted shallow
                    await self.run("fetch", "--update-head-ok", "--no-tags", "--unshallow", "origin")
                await self._follow_remote()
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
            "--no-checkout",
            "--branch",
            self.repository.branch,
            *([f"--depth={options.depth}"] if options.depth else []),
            *([f"--filter={options.filter}"] if options.filter else []),
            "--",
            self.repository.url,
            str(tmp),
        )
        tmp.rename(self.path)
        self._ready = True
        await self._follow_remote()

    async def _follow_remote(self) -> None:
        """Point ``HEAD`` at the remote-tracking ref (which fetches and our pushes move) and drop the local branch
        (which nothing moves any more)."""
        if (await self.run("symbolic-ref", "--quiet", "HEAD", check=False)).strip() != self.remote_ref:
            await self.run("symbolic-ref", "HEAD", self.remote_ref)
            await self.run("update-ref", "-d", f"refs/heads/{self.repository.branch}", check=False)


def _remove_stale_locks(git_dir: Path) -> None:
    """Remove the lock files of a git that was killed mid-command (``index.lock``, ``refs/remotes/origin/main.lock``
    …): while one exists, every later command that needs it fails until someone deletes it by hand. Called before
    this process's first command in the clone, the clone's only user, so no git of ours can hold them."""
    for lock in [*git_dir.glob("*.lock"), *(git_dir / "refs").rglob("*.lock")]:
        lock.unlink(missing_ok=True)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "repo"
