"""Shallow and partial clones of a real bare remote with a long history: writing, history lookups, ancestry."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from support import git, push_unrelated, racing_remote, read_remote

from keptn_gitops_service.config.model import Author, CloneOptions, Repository
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

COMMITS = 300
FILES = 40


def long_history_remote(tmp: Path, commits: int = COMMITS) -> Path:
    """A bare remote whose ``main`` has ``commits`` commits; commit ``i`` sets ``apps/svc<i % FILES>.yaml`` to
    ``tag: v<i>`` and carries the trailer ``Keptn-Context: ctx-<i>.``; partial clones are allowed."""
    bare = tmp / "remote.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    stream = []
    for i in range(1, commits + 1):
        message = f"deploy {i}\n\nKeptn-Context: ctx-{i}.\n"
        data = f"image:\n  tag: v{i}\n"
        stream.append(f"commit refs/heads/main\nmark :{i}\ncommitter Bot <bot@x.invalid> {1_700_000_000 + i} +0000\n")
        stream.append(f"data {len(message)}\n{message}" + (f"from :{i - 1}\n" if i > 1 else ""))
        stream.append(f"M 100644 inline apps/svc{i % FILES}.yaml\ndata {len(data)}\n{data}\n")
    git("fast-import", "--quiet", cwd=bare, input="".join(stream))
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    return bare


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return long_history_remote(tmp_path_factory.mktemp("history"))


@pytest.fixture
def remote(template: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git("clone", "--quiet", "--bare", "--no-local", str(template), str(bare))
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    return bare


def repository(remote: Path, depth: int | None = 5, clone_filter: str | None = "blob:none") -> Repository:
    options = CloneOptions(depth=depth, filter=clone_filter)
    return Repository(name="big", url=f"file://{remote}", author=Author("bot", "bot@keptn.invalid"), clone=options)


@pytest.fixture
def writer(tmp_path: Path) -> GitWriter:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    return GitWriter(tmp_path / "state", sleep=no_sleep, rng=random.Random(3))


def set_tag(tag: str) -> FileEdit:
    return FileEdit("apps/svc1.yaml", lambda text: text.replace(text.split("tag: ")[1].strip(), tag))


def change(repo: Repository, triggered_id: str, *edits: FileEdit) -> Change:
    message = f"deploy\n\nKeptn-Context: ctx-new\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, edits, message, ("Keptn-Triggered-Id", triggered_id))


def in_clone(writer: GitWriter, repo: Repository, *args: str) -> str:
    return git(*args, cwd=writer.clone(repo).path).strip()


async def test_a_shallow_partial_clone_holds_little_and_writes_like_a_full_one(writer: GitWriter, remote: Path) -> None:
    repo = repository(remote)
    tip = git("rev-parse", "main", cwd=remote).strip()
    result = await writer.write(change(repo, "id-1", set_tag("v999")))
    assert result.created
    assert in_clone(writer, repo, "rev-parse", "--is-shallow-repository") == "true"
    assert int(in_clone(writer, repo, "rev-list", "--count", "HEAD")) == 6  # depth 5 plus our commit
    assert in_clone(writer, repo, "config", "remote.origin.partialclonefilter") == "blob:none"
    missing = in_clone(writer, repo, "rev-list", "--objects", "--missing=print", "HEAD").splitlines()
    assert any(line.startswith("?") for line in missing), "old blobs stay on the server"
    assert git("rev-parse", "main", cwd=remote).strip() == result.commit
    assert git("rev-parse", f"{result.commit}^", cwd=remote).strip() == tip
    assert read_remote(remote, "apps/svc1.yaml") == "image:\n  tag: v999\n"
    git("fsck", "--strict", cwd=remote)


async def test_a_shallow_clone_fetches_others_commits_and_resolves_races(writer: GitWriter, remote: Path) -> None:
    repo = repository(remote)
    await writer.write(change(repo, "id-1", set_tag("v1000")))
    racing_remote(remote, 2)  # the next two pushes lose against another pusher
    result = await writer.write(change(repo, "id-2", set_tag("v1001")))
    assert result.created and result.attempts == 3
    assert read_remote(remote, "apps/svc1.yaml") == "image:\n  tag: v1001\n"
    assert int(git("rev-list", "--count", "main", cwd=remote)) == COMMITS + 4
    # the clone grew by exactly what was fetched since: its history starts at the same boundary
    assert int(in_clone(writer, repo, "rev-list", "--count", "HEAD")) == 5 + 4


async def test_a_redelivery_is_recognised_within_the_fetched_history_only(writer: GitWriter, remote: Path) -> None:
    """The documented bound: the trailer lookup of a redelivered trigger never deepens the clone."""
    repo = repository(remote)
    first = await writer.write(change(repo, "id-1", set_tag("v2000")))
    again = await writer.write(change(repo, "id-1", set_tag("v2000")))
    assert (again.commit, again.created) == (first.commit, False)
    clone = writer.clone(repo)
    found = await clone.find_trailers([("Keptn-Context", f"ctx-{COMMITS}."), ("Keptn-Context", "ctx-3.")])
    assert list(found) == [("Keptn-Context", f"ctx-{COMMITS}.")]
    assert int(in_clone(writer, repo, "rev-list", "--count", "HEAD")) == 6


async def test_a_rollback_search_deepens_until_it_finds_the_commit_and_reads_its_parent(
    writer: GitWriter, remote: Path
) -> None:
    repo = repository(remote)
    await writer.write(change(repo, "id-1", set_tag("v3000")))
    old = 120
    history = await writer.history(repo, f"Keptn-Context: ctx-{old}.")
    assert [sha for sha, _ in history] == [git("rev-parse", f"main~{COMMITS - old + 1}", cwd=remote).strip()]
    assert history[0][1] == [
        (f"apps/svc{old % FILES}.yaml", f"image:\n  tag: v{old - FILES}\n", f"image:\n  tag: v{old}\n")
    ]
    assert in_clone(writer, repo, "rev-parse", "--is-shallow-repository") == "true", "only as deep as needed"
    assert int(in_clone(writer, repo, "rev-list", "--count", "HEAD")) < COMMITS


async def test_file_versions_of_the_boundary_commit_fetch_its_parent(writer: GitWriter, remote: Path) -> None:
    repo = repository(remote, depth=1)
    await writer.write(change(repo, "id-1", set_tag("v4000")))
    boundary = git("rev-parse", "main~1", cwd=remote).strip()
    assert in_clone(writer, repo, "cat-file", "-t", f"{boundary}") == "commit"
    versions = await writer.clone(repo).file_versions(boundary)
    assert versions == [
        (f"apps/svc{COMMITS % FILES}.yaml", f"image:\n  tag: v{COMMITS - FILES}\n", f"image:\n  tag: v{COMMITS}\n")
    ]


async def test_nothing_to_find_reads_the_whole_history_once(writer: GitWriter, remote: Path) -> None:
    repo = repository(remote)
    await writer.write(change(repo, "id-1", set_tag("v5000")))
    assert await writer.history(repo, "Keptn-Context: no-such-context") == []
    assert in_clone(writer, repo, "rev-parse", "--is-shallow-repository") == "false"


async def test_ancestry_in_a_shallow_clone_is_always_right(writer: GitWriter, remote: Path, tmp_path: Path) -> None:
    repo = repository(remote)
    ours = (await writer.write(change(repo, "id-1", set_tag("v6000")))).commit
    old = git("rev-parse", "main~100", cwd=remote).strip()  # far beyond the boundary
    recent = git("rev-parse", "main~2", cwd=remote).strip()
    # an older commit of the same line (a controller catching up): "no", without fetching any history
    assert not await writer.is_ancestor(repo, ours, recent)
    assert int(in_clone(writer, repo, "rev-list", "--count", "HEAD")) == 6
    # an ancestor beyond the boundary: the clone deepens until merge-base can see it
    assert await writer.is_ancestor(repo, old, ours)
    # a newer commit pushed by someone else is fetched on demand
    newer = push_unrelated(remote, tmp_path / "other", "later")
    assert await writer.is_ancestor(repo, ours, newer)
    assert not await writer.is_ancestor(repo, ours, "0" * 40)


async def test_ancestry_across_a_rewritten_branch_deepens_instead_of_guessing(
    writer: GitWriter, remote: Path, tmp_path: Path
) -> None:
    """Someone rewrote the branch on top of an old commit: "no" is only certain after looking past the boundary."""
    repo = repository(remote)
    ours = (await writer.write(change(repo, "id-1", set_tag("v7000")))).commit
    base = git("rev-parse", "main~150", cwd=remote).strip()
    work = tmp_path / "rewrite"
    git("clone", "--quiet", str(remote), str(work))
    git("reset", "--quiet", "--hard", base, cwd=work)
    (work / "rewritten.txt").write_text("x\n")
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "rewrite", cwd=work)
    git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=work)
    rewritten = git("rev-parse", "HEAD", cwd=work).strip()
    older = git("rev-parse", f"{base}~10", cwd=remote).strip()
    assert not await writer.is_ancestor(repo, ours, rewritten)
    assert await writer.is_ancestor(repo, older, rewritten)


async def test_changing_the_clone_options_changes_the_clone(tmp_path: Path, remote: Path) -> None:
    """A restarted process with other options: a shallow clone is unshallowed, another filter means a new clone."""
    shallow = repository(remote, clone_filter=None)
    await GitWriter(tmp_path / "state").write(change(shallow, "id-1", set_tag("v8000")))
    full = repository(remote, depth=None, clone_filter=None)
    writer = GitWriter(tmp_path / "state")
    await writer.write(change(full, "id-2", set_tag("v8001")))
    assert in_clone(writer, full, "rev-parse", "--is-shallow-repository") == "false"
    assert int(in_clone(writer, full, "rev-list", "--count", "HEAD")) == COMMITS + 2
    partial = repository(remote, depth=None, clone_filter="blob:none")
    writer = GitWriter(tmp_path / "state")
    await writer.write(change(partial, "id-3", set_tag("v8002")))
    assert in_clone(writer, partial, "config", "remote.origin.partialclonefilter") == "blob:none"
