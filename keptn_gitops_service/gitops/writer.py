"""Commit changes to a GitOps repository and push them, resolving races by re-applying on the new tip.

One :class:`GitWriter` serves the whole process: one working clone per repository, one lock per
(repository, branch) so our own deployments never race each other, and a bounded, jittered retry when
someone else pushed first (fetch → re-apply → commit → push beats rebase for
single-scalar edits, because re-applying re-validates the edit against what is now there).

Concurrent :meth:`GitWriter.write` calls for one (repository, branch) are batched: while one push is under
way the next changes queue up, and the next round applies all of them after one fetch and pushes them with
one push. Changes that touch different files share one commit; a change touching a file an earlier change of
the round touched starts a new commit, so every commit stays attributable (a rollback reverts only its own
deployment's files, see :data:`BATCH_TRAILER`). Batching adds no waiting: a lone change is written at once.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import structlog

from keptn_gitops_service import metrics
from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.editing.paths import resolve_in_repo
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
    YamlLimitError,
)
from keptn_gitops_service.gitops.clone import PushOutcome, WorkingClone
from keptn_gitops_service.gitops.git import DEFAULT_TIMEOUT, Git, repository_label

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_EDIT_TIMEOUT = 30.0
"""Seconds the edits of one change (reading, parsing, editing, verifying its files) may take."""


FileVersions = tuple[str, str | None, str | None]
"""``(path, text before, text after)`` of one file in one commit."""

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
        self, repository: Repository, *messages: str, match: Mapping[str, str] | None = None
    ) -> list[tuple[str, list[FileVersions]]]:
        """The commits whose trailers include every one of ``messages`` (whole ``Key: value`` trailer lines, exact
        values; see :meth:`WorkingClone.find_commits`), newest first, each with its file versions.

        In a batched commit only the files of the change whose trailers include ``match`` (by default the
        ``messages`` themselves) count; a batched commit with no such change is left out."""
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
            return found

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

    async def close(self) -> None:
        """Stop the rounds under way (their callers get :class:`asyncio.CancelledError`)."""
        leaders = [task for task in self._leaders.values() if not task.done()]
        for task in leaders:
            task.cancel()
        await asyncio.gather(*leaders, return_exceptions=True)
        self._leaders.clear()

    async def _drain(self, key: tuple[str, str]) -> None:
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
        """Apply ``changes`` on the remote tip, commit and push them together; retry the round on a lost race.

        A retry first replays our commits onto the new tip with a rebase (one fetch, one rebase: the shortest
        window against a busy pusher); when that does not apply cleanly the edits are re-applied from scratch,
        which re-validates them against what is there now."""
        repository = changes[0].repository
        clone = self.clone(repository)
        async with self.lock(repository):
            commits: dict[int, str] = {}
            outcomes: dict[int, WriteResult | Exception] = {}
            first_seen: dict[tuple[int, str], dict[tuple[int, str], tuple[str, str]]] = {}
            tip = ""
            for attempt in range(1, self.retry.max_attempts + 1):
                replayed = await clone.replay_on_remote() if commits else None
                if replayed is None:
                    tip = await clone.sync()
                    outcomes = await self._existing(clone, changes, attempt)
                    commits = await self._commit_round(clone, changes, outcomes, first_seen)
                else:
                    commits = {index: replayed[sha] for index, sha in commits.items()}
                already = WriteResult(tip, created=False, attempts=attempt, unchanged=True)
                if not commits:
                    return [outcomes.get(i, already) for i in range(len(changes))]
                if await clone.push() is PushOutcome.PUSHED:
                    for index, sha in commits.items():
                        outcomes[index] = WriteResult(sha, created=True, attempts=attempt)
                    return [outcomes.get(i, already) for i in range(len(changes))]
                metrics.PUSH_RETRIES.inc()
                delay = self.retry.delay(attempt, self.rng)
                log.info(
                    "push rejected, retrying on the new tip",
                    repository=repository.name,
                    attempt=attempt,
                    replayed=replayed is not None,
                    changes=len(changes),
                    delay=round(delay, 3),
                )
                await self.sleep(delay)
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
        changes: Sequence[Change],
        outcomes: dict[int, WriteResult | Exception],
        first_seen: dict[tuple[int, str], dict[tuple[int, str], tuple[str, str]]],
    ) -> dict[int, str]:
        """Apply the pending changes, committing whenever the next change touches a file of the current commit;
        return the commit of each change that made one. Failed edits are recorded in ``outcomes``.

        ``first_seen`` keeps, per (change, file), the scalars the change set on its first application: when a
        retry finds one of them changed by someone else to a third value, that change fails as a conflict."""
        commits: dict[int, str] = {}
        group: dict[int, tuple[str, ...]] = {}
        touched: set[str] = set()

        async def commit_group() -> None:
            if group:
                message = batch_message([changes[i] for i in group], list(group.values()))
                sha = await clone.commit(message, sorted(touched))
                if sha is None:  # pragma: no cover - every member changed a file
                    raise GitError("a batched commit unexpectedly had nothing to commit")
                commits.update(dict.fromkeys(group, sha))
                group.clear()
                touched.clear()

        for index, change in enumerate(changes):
            if index in outcomes:
                continue
            try:
                seen = {path: first for (i, path), first in first_seen.items() if i == index}
                texts, firsts = await self.offload(partial(_prepare, clone.path, change, seen))
                for path, first in firsts.items():
                    first_seen.setdefault((index, path), first)
            except Exception as exc:  # this change fails alone; the others of the round go on
                outcomes[index] = exc if isinstance(exc, GitOpsServiceError) else _internal(exc)
                continue
            if not texts:
                continue  # already in the tree: the synced tip carries it
            if touched.intersection(texts):
                await commit_group()
            for path, (_, new) in texts.items():
                target = resolve_in_repo(clone.path, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(new.encode("utf-8"))
            group[index] = tuple(texts)
            touched.update(texts)
        await commit_group()
        return commits

    @staticmethod
    def _render(root: Path, change: Change, current: list[str] | None = None) -> dict[str, tuple[str, str]]:
        """``(text now, new text)`` of every file ``change`` changes (computed against the work tree); the file
        being worked on is kept in ``current``. A file larger than the size limit is refused before it is read."""
        texts: dict[str, tuple[str, str]] = {}
        for edit in change.edits:
            if current is not None:
                current[0] = edit.path
            path = resolve_in_repo(root, edit.path)
            if edit.path in texts:
                original, text = texts[edit.path]
            else:
                if edit.create and not path.exists():
                    original = text = ""
                elif not path.is_file():
                    raise EditError(f"{edit.path}: no such file in repository {change.repository.name}")
                else:
                    try:
                        check_size(path.stat().st_size)
                        original = text = path.read_bytes().decode("utf-8")
                    except YamlLimitError as exc:
                        raise type(exc)(f"{edit.path}: {exc}") from None
                    except UnicodeDecodeError:
                        raise EditError(f"{edit.path}: the file is not UTF-8 text") from None
            try:
                texts[edit.path] = (original, edit.transform(text))
            except GitOpsServiceError as exc:
                raise type(exc)(f"{edit.path}: {exc}") from None
        return {p: (old, new) for p, (old, new) in texts.items() if old != new}


Scalars = dict[tuple[int, str], tuple[str, str]]


def _prepare(
    root: Path, change: Change, seen: Mapping[str, Scalars], current: list[str]
) -> tuple[dict[str, tuple[str, str]], dict[str, Scalars]]:
    """A change's new file texts and, per file, the scalars it sets (its first application's, from ``seen``,
    when there was one); raises when re-applying would overwrite someone else's change. Runs in a worker
    thread (:meth:`GitWriter.offload`): reading, parsing, editing and verifying are CPU-bound."""
    texts = GitWriter._render(root, change, current)
    firsts: dict[str, Scalars] = {}
    for path, (old, new) in texts.items():
        current[0] = path
        try:
            first = seen[path] if path in seen else _scalars_changed(old, new)
            conflict = _overwritten(path, first, old)
        except YamlLimitError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        if conflict:
            raise EditConflictError(conflict)
        firsts[path] = first
    return texts, firsts


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
