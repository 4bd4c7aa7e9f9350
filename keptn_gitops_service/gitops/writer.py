"""Commit changes to a GitOps repository and push them, resolving races by replaying or re-applying on the new tip.

One :class:`GitWriter` serves the whole process: one clone per repository (no work tree: files are read from and
commits written as git objects, :mod:`~keptn_gitops_service.gitops.objects`), one lock per (repository, branch) so
our own deployments never race each other, and a bounded, jittered retry when someone else pushed first: the
round's commits are made again on the new tip, from the same blobs when none of their files changed there, else by
applying the edits again (which re-validates them against what is now there).

Concurrent :meth:`GitWriter.write` calls for one (repository, branch) are batched: while one push is under
way the next changes queue up, and the next round applies all of them and pushes them with one push (on the tip
last seen; the push is a compare-and-swap on it). Changes that touch different files share one commit; a change
touching a file an earlier change of the round touched starts a new commit, so every commit stays attributable (a
rollback reverts only its own deployment's files, see :data:`BATCH_TRAILER`). Batching adds no waiting: a lone
change is written at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

import structlog

from keptn_gitops_service import metrics
from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.editing.paths import checked_parts
from keptn_gitops_service.editing.revert import scalar_changes
from keptn_gitops_service.editing.trailers import parse_line, parse_trailers
from keptn_gitops_service.editing.yamledit import get_scalar
from keptn_gitops_service.editing.yamllimits import YamlLimits, check_size, limited
from keptn_gitops_service.errors import (
    EditConflictError,
    EditError,
    EditTimeoutError,
    GitError,
    GitOpsServiceError,
    UnsafePathError,
    YamlLimitError,
)
from keptn_gitops_service.gitops.clone import PushOutcome, WorkingClone
from keptn_gitops_service.gitops.git import DEFAULT_TIMEOUT, Git, repository_label
from keptn_gitops_service.gitops.objects import BLOB_MODE, FILE_MODES, SYMLINK_MODE, TREE_MODE

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_EDIT_TIMEOUT = 30.0
"""Seconds the edits of one change (reading, parsing, editing, verifying its files) may take."""


FileVersions = tuple[str, str | None, str | None]
"""``(path, text before, text after)`` of one file in one commit."""

_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,200}")

BATCH_TRAILER = "Batch-Change"
"""In a commit that carries several changes, one line per change: a JSON object of that change's trailers
plus ``files``, the paths it changed. :meth:`GitWriter.history` uses it to attribute files to a change."""


@dataclass(frozen=True)
class FileEdit:
    """A pure text transformation of one file (it raises :class:`EditError` when it cannot apply).

    With ``create`` a missing file is created from the transformation of an empty text (argocd-image-updater's
    ``.argocd-source-<app>.yaml`` write-back files appear on the first update); otherwise it is an error."""

    path: str
    transform: Callable[[str], str]
    create: bool = False


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
    unchanged: bool = False
    """The branch already held every edit: no commit was made and ``commit`` is the tip it was found at."""


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
    git_timeout: float = DEFAULT_TIMEOUT
    """Seconds any one git command may take (a remote that accepts connections but never answers)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    max_batch: int = 200
    """The most changes one round (one fetch and one push) takes; the rest wait for the next round."""
    yaml_limits: YamlLimits = field(default_factory=YamlLimits)
    """The bounds on every file an edit reads (size, documents, alias expansion, nesting)."""
    edit_timeout: float = DEFAULT_EDIT_TIMEOUT
    """Seconds the edits of one change may take; they run in a worker thread, off the event loop."""
    _clones: dict[tuple[str, str], WorkingClone] = field(default_factory=dict, init=False)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict, init=False)
    _queues: dict[tuple[str, str], list[tuple[Change, asyncio.Future[WriteResult]]]] = field(
        default_factory=dict, init=False
    )
    _leaders: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict, init=False)

    def clone(self, repository: Repository) -> WorkingClone:
        """The (reused) working clone of ``repository``."""
        key = (repository.url, repository.branch)
        if key not in self._clones:
            git = Git(
                auth=repository.auth,
                author=repository.author,
                helper_dir=self.state_dir / "git-home",
                timeout=self.git_timeout,
                label=repository_label(repository),
            )
            self._clones[key] = WorkingClone(repository, self.state_dir / "clones", git)
        return self._clones[key]

    def lock(self, repository: Repository) -> asyncio.Lock:
        return self._locks.setdefault((repository.url, repository.branch), asyncio.Lock())

    async def is_ancestor(self, repository: Repository, ancestor: str, descendant: str) -> bool:
        """Whether ``descendant`` contains ``ancestor`` (under the repository's lock: it may fetch)."""
        async with self.lock(repository):
            return await self.clone(repository).is_ancestor(ancestor, descendant)

    async def history(
        self,
        repository: Repository,
        *messages: str,
        match: Mapping[str, str] | None = None,
        squashed: Sequence[str] = (),
    ) -> list[tuple[str, list[FileVersions]]]:
        """The commits whose trailers include every one of ``messages`` (whole ``Key: value`` trailer lines, exact
        values; see :meth:`WorkingClone.find_commits`), newest first, each with its file versions.

        In a batched commit only the files of the change whose trailers include ``match`` (by default the
        ``messages`` themselves) count; a batched commit with no such change is left out. ``squashed`` are commits
        known otherwise to belong to the same history (a pull request squash-merged by a forge keeps none of the
        trailers): each counts when it is on the branch and has one parent (a merge commit brings commits that
        carry the trailers themselves)."""
        wanted = dict(match) if match is not None else dict(p for m in messages if (p := parse_line(m)) is not None)
        async with self.lock(repository):
            clone = self.clone(repository)
            await clone.fetch()
            found = []
            for sha in await clone.find_commits(*messages):
                own = batch_files(await clone.message(sha), wanted)
                versions = await clone.file_versions(sha)
                if own is not None:
                    if not own:
                        continue
                    versions = [v for v in versions if v[0] in own]
                found.append((sha, versions))
            known = {sha for sha, _ in found}
            for sha in squashed:
                if sha in known or not await clone.is_ancestor(sha, clone.tip):
                    continue
                if len((await clone.run("rev-list", "--parents", "-n", "1", sha)).split()) != 2:
                    continue
                known.add(sha)
                found.append((sha, await clone.file_versions(sha)))
            return await _newest_first(clone, found) if squashed else found

    async def offload(self, work: Callable[[list[str]], T]) -> T:
        """Run CPU-heavy YAML ``work`` in a worker thread under the YAML limits and the edit deadline.

        ``work`` gets a one-item list in which it keeps the file it is working on, so a change that overruns
        the deadline fails naming that file. The limits and the deadline are checked inside the thread as it
        composes YAML, so a thread nobody waits for anymore stops by itself moments later."""
        current = ["the repository's files"]

        def run() -> T:
            with limited(self.yaml_limits, seconds=self.edit_timeout):
                return work(current)

        try:
            # a little slack, so the thread's own deadline (which names the file it was on) usually answers
            return await asyncio.wait_for(asyncio.to_thread(run), self.edit_timeout + 2.0)
        except TimeoutError:
            raise EditTimeoutError(
                f"{current[0]}: editing took longer than {self.edit_timeout:g} s; the file is too slow to process "
                "(limit KEPTN_GITOPS_EDIT_TIMEOUT)"
            ) from None

    async def write(self, change: Change) -> WriteResult:
        """Commit and push ``change``; return the commit that carries it.

        The change joins the next round of its (repository, branch); cancelling the caller does not cancel the
        round, so changes batched with it are never affected."""
        key = (change.repository.url, change.repository.branch)
        result: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append((change, result))
        leader = self._leaders.get(key)
        if leader is None or leader.done():
            self._leaders[key] = asyncio.create_task(self._drain(key), name=f"git-writer {change.repository.name}")
        return await asyncio.shield(result)

    async def propose(self, change: Change, branch: str) -> WriteResult:
        """Commit ``change`` on the freshly fetched tip of the repository's branch and push it to ``branch`` (the head
        of a pull request into the repository's branch, which itself is not touched).

        ``unchanged``: the branch already holds every edit, so there is nothing to propose (``commit`` is its tip);
        ``created`` false with a commit: the branch already carries the change's trailer (a merged proposal)."""
        if not _BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise GitError(f"{branch!r} is not a branch name this service pushes")
        repository = change.repository
        clone = self.clone(repository)
        async with self.lock(repository):
            if not await clone.ensure():
                await clone.fetch()
            tip = clone.tip
            outcomes = await self._existing(clone, [change], 1)
            built = await self._commit_round(clone, tip, [change], outcomes, {}) if not outcomes else []
            outcome = outcomes.get(0)
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None:
                return outcome
            if not built:
                return WriteResult(tip, created=False, attempts=1, unchanged=True)
            await clone.push_branch(built[-1].sha, branch)
            return WriteResult(built[-1].sha, created=True, attempts=1)

    async def close(self) -> None:
        """Stop the rounds under way (their callers get :class:`asyncio.CancelledError`)."""
        leaders = [task for task in self._leaders.values() if not task.done()]
        for task in leaders:
            task.cancel()
        await asyncio.gather(*leaders, return_exceptions=True)
        self._leaders.clear()
        for clone in self._clones.values():
            await clone.close()  # its object reader

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            await self._rounds(key)
        finally:
            clone = self._clones.get(key)
            if clone is not None:
                clone.objects.close_when_idle(READER_IDLE)

    async def _rounds(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        while queue:
            batch, queue[: self.max_batch] = queue[: self.max_batch], []
            try:
                outcomes = await self._write_round([change for change, _ in batch])
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled: so is every change waiting for this writer
                    for _, future in [*batch, *queue]:
                        future.cancel()
                    queue.clear()
                    raise
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, WriteResult):
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)

    async def _write_round(self, changes: Sequence[Change]) -> list[WriteResult | Exception]:
        """Apply ``changes`` on the branch tip, commit and push them together; retry the round on a lost race.

        The first attempt builds on the tip as last seen (the one our previous push made, usually), without a
        fetch: the push is a compare-and-swap on that tip, so a stale tip only costs a rejection, a fetch and a
        second attempt at once (no back-off; the edits are applied again, and only what they find on the fetched
        tip counts as their first application). A round that would push nothing (every change
        already there, or failed) is confirmed on a freshly fetched tip before it answers.

        A retry after a lost race first replays our commits onto the new tip when none of the files they change
        changed there (one fetch, no re-reading: the shortest window against a busy pusher); otherwise the edits
        are re-applied from scratch, which re-validates them against what is there now."""
        repository = changes[0].repository
        clone = self.clone(repository)
        async with self.lock(repository):
            fresh = await clone.ensure()
            outcomes: dict[int, WriteResult | Exception] = {}
            first_seen: dict[tuple[int, str], tuple[str, str]] = {}
            built: list[_Built] = []
            base, stale_first = "", False
            attempt = 0
            while attempt < self.retry.max_attempts:
                attempt += 1
                tip = clone.tip
                replayed = await _replay(clone, built, base, tip) if built else None
                if replayed is None:
                    if stale_first:  # the first application was on a stale tip: the one on this tip counts
                        first_seen.clear()
                    outcomes = await self._existing(clone, changes, attempt)
                    built = await self._commit_round(clone, tip, changes, outcomes, first_seen)
                else:
                    built = replayed
                base, stale_first = tip, False
                if not built and not fresh:  # confirm "nothing to push" on the remote's tip
                    await clone.fetch()
                    fresh, attempt = True, attempt - 1
                    first_seen.clear()
                    continue
                already = WriteResult(tip, created=False, attempts=attempt, unchanged=True)
                if not built:
                    return [outcomes.get(i, already) for i in range(len(changes))]
                if await clone.push(built[-1].sha, tip) is PushOutcome.PUSHED:
                    for commit in built:
                        clone.learn(commit.sha, commit.message)
                        for index in commit.members:
                            outcomes[index] = WriteResult(commit.sha, created=True, attempts=attempt)
                    if clone.objects.written >= _PACK_EVERY:
                        await clone.pack()
                    return [outcomes.get(i, already) for i in range(len(changes))]
                metrics.PUSH_RETRIES.inc()
                if not fresh:  # built on a tip seen earlier: at once onto the tip fetched now
                    log.info(
                        "push rejected: the branch moved since it was last seen; writing again on its new tip",
                        repository=repository.name,
                        attempt=attempt,
                        changes=len(changes),
                    )
                    await clone.fetch()
                    fresh, stale_first = True, True
                    if outcomes or await self._existing(clone, changes, attempt):
                        # an answer other than a commit was found on the old tip: it must be found again on the new
                        built = []
                        first_seen.clear()
                    # else the commits are replayed when their files are the same on the new tip (then applying
                    # the edits there would give the same texts), or re-applied
                    continue
                delay = self.retry.delay(attempt, self.rng)
                log.info(
                    "push rejected, retrying on the new tip",
                    repository=repository.name,
                    attempt=attempt,
                    changes=len(changes),
                    delay=round(delay, 3),
                )
                await self.sleep(delay)
                await clone.fetch()  # after the pause: the tip to build on is the newest
        error = GitError(
            f"push to {repository_label(repository)} was rejected "
            f"{self.retry.max_attempts} times because others kept pushing; giving up"
        )
        return [error for _ in changes]

    @staticmethod
    async def _existing(
        clone: WorkingClone, changes: Sequence[Change], attempt: int
    ) -> dict[int, WriteResult | Exception]:
        """The changes a previous delivery already committed (found by their identifying trailer)."""
        found = await clone.find_trailers([change.trailer for change in changes])
        return {
            i: WriteResult(found[change.trailer], created=False, attempts=attempt)
            for i, change in enumerate(changes)
            if change.trailer in found
        }

    async def _commit_round(
        self,
        clone: WorkingClone,
        tip: str,
        changes: Sequence[Change],
        outcomes: dict[int, WriteResult | Exception],
        first_seen: dict[tuple[int, str], tuple[str, str]],
    ) -> list[_Built]:
        """Apply the pending changes on ``tip``, committing whenever the next change touches a file of the current
        commit; return the commits made, in order. Failed edits are recorded in ``outcomes``.

        ``first_seen`` keeps, per (change, file), the texts before and after the change's first application: when a
        retry finds a scalar it set changed by someone else to a third value, that change fails as a conflict."""
        objects = clone.objects
        built: list[_Built] = []
        root, parent = await objects.commit_tree(tip), tip
        group: dict[int, tuple[str, ...]] = {}
        files: dict[tuple[str, ...], tuple[bytes, str]] = {}
        pending: dict[str, str] = {}  # the group's new texts, not yet in ``root``

        async def commit_group() -> None:
            nonlocal root, parent
            if group:
                message = batch_message([changes[i] for i in group], list(group.values()))
                root = await objects.write_tree(root, files)
                objects.flush()  # a signed commit is made by git, which reads the tree
                parent = await clone.make_commit(root, parent, message)
                built.append(_Built(parent, tuple(group), dict(files), message))
                group.clear()
                files.clear()
                pending.clear()

        paths = [_safe_parts(edit.path) for i, c in enumerate(changes) if i not in outcomes for edit in c.edits]
        try:  # together, not one by one
            blobs = await objects.prefetch(root, [p for p in paths if p], max_bytes=self.yaml_limits.max_file_bytes)
        except GitError:
            blobs = {}  # each change's own reads say what is wrong
        jobs: list[_Job] = []
        for index, change in enumerate(changes):
            if index in outcomes:
                continue
            try:
                found = await self._read(clone, root, change, blobs)
            except Exception as exc:  # this change fails alone; the others of the round go on
                outcomes[index] = exc if isinstance(exc, GitOpsServiceError) else _internal(exc)
                continue
            seen = {path: first for (i, path), first in first_seen.items() if i == index}
            jobs.append(_Job(index, change, found, seen))
        edited = await self._edit_all(jobs)
        with objects.batched():  # the round's blobs and trees: one pack
            for job in jobs:
                result = edited[job.index]
                if isinstance(result, Exception):
                    outcomes[job.index] = result if isinstance(result, GitOpsServiceError) else _internal(result)
                    continue
                for path, texts in result.items():
                    first_seen.setdefault((job.index, path), texts)
                if not result:
                    continue  # already in the tree: the tip carries it
                if pending.keys() & result.keys():
                    await commit_group()
                for path, (_, new) in result.items():
                    was = job.found.get(path)
                    mode = was.mode if was is not None else BLOB_MODE
                    files[tuple(path.split("/"))] = (mode, objects.write("blob", new.encode("utf-8")))
                    pending[path] = new
                group[job.index] = tuple(result)
            await commit_group()
        return built

    async def _edit_all(self, jobs: Sequence[_Job]) -> dict[int, dict[str, tuple[str, str]] | Exception]:
        """Apply the edits of every job in order, in one worker thread (one hand-over per round, not per change),
        each change under the YAML limits and its own edit deadline: per change, its files' texts before and
        after, or why it failed. A later change of the round sees the texts the earlier ones made."""
        working = ["the repository's files"]
        results: dict[int, dict[str, tuple[str, str]] | Exception] = {}
        stop = threading.Event()

        def run() -> None:
            made: dict[str, str] = {}
            for job in jobs:
                if stop.is_set():
                    return
                files = {path: _made(made[path]) if path in made else found for path, found in job.found.items()}
                try:
                    with limited(self.yaml_limits, seconds=self.edit_timeout):
                        texts = _prepare(job.change, files, job.seen, working)
                except Exception as exc:
                    results[job.index] = exc
                    continue
                made.update((path, new) for path, (_, new) in texts.items())
                results[job.index] = texts

        if not jobs:
            return results
        try:
            # a little slack, so the thread's own deadline (which names the file it was on) usually answers
            await asyncio.wait_for(asyncio.to_thread(run), self.edit_timeout * len(jobs) + 2.0)
        except TimeoutError:
            stop.set()
            late = EditTimeoutError(
                f"{working[0]}: editing took longer than {self.edit_timeout:g} s; the file is too slow to process "
                "(limit KEPTN_GITOPS_EDIT_TIMEOUT)"
            )
            for job in jobs:
                results.setdefault(job.index, late)
        return results

    async def _read(
        self, clone: WorkingClone, root: str, change: Change, blobs: Mapping[str, tuple[str, int, bytes | None]]
    ) -> dict[str, _File | None]:
        """The current content of every file ``change`` edits (``None``: missing), by normalised path, read from
        the tree ``root`` (a file among ``blobs``, read beforehand, is not read again). A path that is
        unsafe or goes through a symlink is refused here, and so is one through a file or naming a directory; a
        file larger than the size limit is not read (its size alone fails the edit)."""
        found: dict[str, _File | None] = {}
        for edit in change.edits:
            parts = checked_parts(edit.path)  # symlinks are looked for in the tree
            path = "/".join(parts)
            if path in found:
                continue
            entry = await clone.objects.entry(root, parts)
            if entry is not None and entry[0] == SYMLINK_MODE:
                where = "/".join(parts[: entry[2]])
                raise UnsafePathError(f"file path '{edit.path}' goes through the symlink '{where}'")
            if entry is None or (entry[2] < len(parts) and entry[0] == TREE_MODE):
                found[path] = None  # missing (created when the edit may create it)
                continue
            mode, sha, depth = entry
            if depth < len(parts) or mode not in FILE_MODES:  # a file on the way, a directory, a submodule
                raise EditError(f"{edit.path}: no such file in repository {change.repository.name}")
            known = blobs.get(sha)
            if known is None or known[0] != "blob":
                known = await clone.objects.read(sha, max_bytes=self.yaml_limits.max_file_bytes)
            _, size, data = known
            found[path] = _File(mode, size, data)
        return found


@dataclass(frozen=True)
class _Built:
    """A commit made in a round: its id, the changes it carries, the files it sets and its message."""

    sha: str
    members: tuple[int, ...]
    files: dict[tuple[str, ...], tuple[bytes, str]]
    message: str


@dataclass(frozen=True)
class _Job:
    """A change of a round to edit: its index, the files it edits as found, its first application's texts."""

    index: int
    change: Change
    found: dict[str, _File | None]
    seen: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class _File:
    """A file as found in the tree: its mode, size and content (``None`` when too large to be read)."""

    mode: bytes
    size: int
    data: bytes | None


def _made(text: str) -> _File:
    data = text.encode("utf-8")
    return _File(BLOB_MODE, len(data), data)


READER_IDLE = 1.0
"""Seconds without a write after which a clone's object reader (``git cat-file --batch``) is stopped."""

_PACK_EVERY = 2000
"""Loose objects written after which git is asked to pack them (``git gc --auto``)."""


async def _replay(clone: WorkingClone, built: Sequence[_Built], base: str, tip: str) -> list[_Built] | None:
    """``built`` (made on ``base``) made again on ``tip``, when no file they set changed between the two trees;
    ``None`` otherwise (someone else changed one of our files: re-apply the edits)."""
    objects = clone.objects
    before, after = await objects.commit_tree(base), await objects.commit_tree(tip)
    for parts in {parts for commit in built for parts in commit.files}:
        if await objects.entry(before, parts) != await objects.entry(after, parts):
            return None
    replayed: list[_Built] = []
    root, parent = after, tip
    for commit in built:
        root = await objects.write_tree(root, commit.files)
        parent = await clone.make_commit(root, parent, commit.message)
        replayed.append(_Built(parent, commit.members, commit.files, commit.message))
    return replayed


def _safe_parts(relative: str) -> tuple[str, ...] | None:
    """The components of a path to read ahead; ``None`` when it fails the checks (reading it reports that)."""
    try:
        return checked_parts(relative)
    except UnsafePathError:
        return None


Scalars = dict[tuple[int, str], tuple[str, str]]


def _prepare(
    change: Change, current: Mapping[str, _File | None], seen: Mapping[str, tuple[str, str]], working: list[str]
) -> dict[str, tuple[str, str]]:
    """A change's new file texts (by path: before, after); raises when re-applying would overwrite someone
    else's change to a scalar it set on its first application (``seen``: that application's texts). The scalars
    are only compared when re-applying, so a first application costs the edit alone. Runs in a worker thread
    (:meth:`GitWriter.offload`): parsing, editing and verifying are CPU-bound."""
    texts = _render(change, current, working)
    for path, (old, _) in texts.items():
        if path not in seen:
            continue
        working[0] = path
        try:
            conflict = _overwritten(path, _scalars_changed(*seen[path]), old)
        except YamlLimitError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        if conflict:
            raise EditConflictError(conflict)
    return texts


def _render(change: Change, current: Mapping[str, _File | None], working: list[str]) -> dict[str, tuple[str, str]]:
    """``(text now, new text)`` of every file ``change`` changes, by normalised path, computed from ``current``
    (:meth:`GitWriter._read`); the file being worked on is kept in ``working``. A file larger than the size
    limit fails before it is decoded."""
    texts: dict[str, tuple[str, str]] = {}
    for edit in change.edits:
        working[0] = edit.path
        path = "/".join(p for p in PurePosixPath(edit.path).parts if p not in ("", "."))
        if path in texts:
            original, text = texts[path]
        else:
            found = current[path]
            if found is None:
                if not edit.create:
                    raise EditError(f"{edit.path}: no such file in repository {change.repository.name}")
                original = text = ""
            else:
                try:
                    check_size(found.size)
                    original = text = (found.data or b"").decode("utf-8")
                except YamlLimitError as exc:
                    raise type(exc)(f"{edit.path}: {exc}") from None
                except UnicodeDecodeError:
                    raise EditError(f"{edit.path}: the file is not UTF-8 text") from None
        try:
            texts[path] = (original, edit.transform(text))
        except GitOpsServiceError as exc:
            raise type(exc)(f"{edit.path}: {exc}") from None
    return {p: (old, new) for p, (old, new) in texts.items() if old != new}


def _scalars_changed(old: str, new: str) -> Scalars:
    """``(document, path) → (before, after)`` of the scalars an edit changed (empty when not plain YAML)."""
    try:
        return {(c.document, c.path): (c.before, c.after) for c in scalar_changes(old, new)}
    except YamlLimitError:
        raise
    except GitOpsServiceError:
        return {}


def _overwritten(path: str, first: dict[tuple[int, str], tuple[str, str]], now: str) -> str | None:
    """Why re-applying over ``now`` would overwrite someone else's change to a scalar we change, if it would."""
    for (document, where), (before, ours) in first.items():
        try:
            current = get_scalar(now, where, document=document)
        except YamlLimitError:
            raise
        except GitOpsServiceError:
            continue
        if current not in (before, ours):
            return (
                f"{path}: {where} was changed from {before!r} to {current!r} by someone else while we were setting"
                f" it to {ours!r}; not overwriting their change"
            )
    return None


async def _newest_first(
    clone: WorkingClone, commits: list[tuple[str, list[FileVersions]]]
) -> list[tuple[str, list[FileVersions]]]:
    """Commits of one branch's history, each after those that descend from it (a handful: insertion)."""
    ordered: list[tuple[str, list[FileVersions]]] = []
    for item in commits:
        at = len(ordered)
        for i, (other, _) in enumerate(ordered):
            if await clone.is_ancestor(other, item[0]):
                at = i
                break
        ordered.insert(at, item)
    return ordered


def batch_message(changes: Sequence[Change], files: Sequence[Sequence[str]]) -> str:
    """A lone change's own message; for several, their subjects and every trailer, plus one
    :data:`BATCH_TRAILER` line per change naming its trailers and files."""
    if len(changes) == 1:
        return changes[0].message
    subjects = "\n".join(f"- {change.message.splitlines()[0]}" for change in changes)
    trailer_lines: list[str] = []
    batch_lines = []
    for change, paths in zip(changes, files, strict=True):
        pairs = trailers(change.message)
        trailer_lines.extend(f"{k}: {v}" for k, v in pairs if f"{k}: {v}" not in trailer_lines)
        entry = {**dict(pairs), "files": sorted(paths)}
        batch_lines.append(f"{BATCH_TRAILER}: {json.dumps(entry, separators=(',', ':'), sort_keys=True)}")
    return f"{len(changes)} changes in one commit\n\n{subjects}\n\n" + "\n".join([*trailer_lines, *batch_lines]) + "\n"


def trailers(message: str) -> list[tuple[str, str]]:
    """The ``Key: value`` lines of a message's last paragraph (:func:`~.trailers.parse_trailers`)."""
    return parse_trailers(message)


def batch_files(message: str, match: Mapping[str, str]) -> set[str] | None:
    """The files the change identified by ``match`` (trailer values, compared exactly) changed in a batched
    commit; ``None`` when ``message`` is not a batch (every file of the commit is the change's own). An empty
    ``match`` identifies no change of a batch."""
    entries = [v for k, v in trailers(message) if k == BATCH_TRAILER]
    if not entries:
        return None
    files: set[str] = set()
    for raw in entries:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not match:
            continue
        if all(isinstance(entry.get(k), str) and entry[k] == v for k, v in match.items()):
            listed = entry.get("files")
            if isinstance(listed, list):
                files.update(f for f in listed if isinstance(f, str))
    return files


def _internal(exc: Exception) -> GitOpsServiceError:
    return EditError(f"internal error: {exc.__class__.__name__}: {exc}")
