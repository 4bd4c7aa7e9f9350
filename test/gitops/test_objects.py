"""Commits made from objects, without a work tree: trees in git's order, modes kept, a stale tip, a rewound branch,
and the idempotency lookup that does not read the history."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from support import GitCommandError, git, make_remote, push_unrelated, read_remote, until

from keptn_gitops_service.config.model import Author, Repository
from keptn_gitops_service.gitops import clone as clone_module
from keptn_gitops_service.gitops.objects import Tree, cleanup_message, serialize_tree
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

VALUES = "image:\n  tag: 1.0.0\n"


def change(repo: Repository, triggered_id: str, path: str, tag: str, *, create: bool = False) -> Change:
    def edit(text: str) -> str:
        return text.replace("tag: 1.0.0", f"tag: {tag}") if text else f"image:\n  tag: {tag}\n"

    message = f"deploy {tag}\n\nKeptn-Context: ctx\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, (FileEdit(path, edit, create=create),), message, ("Keptn-Triggered-Id", triggered_id))


@pytest.fixture
def writer(tmp_path: Path) -> GitWriter:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    return GitWriter(tmp_path / "state", sleep=no_sleep, rng=random.Random(5))


async def test_trees_are_written_in_gits_order_and_modes_are_kept(writer: GitWriter, tmp_path: Path) -> None:
    """Names that sort differently as files and as directories (``a.b``, ``a/``, ``a-c``), an executable file, a
    new directory: the commit passes ``git fsck --strict`` and ``git diff`` shows only the edited lines."""
    files = {"a/values.yaml": VALUES, "a.b": "x\n", "a-c/values.yaml": VALUES, "bin/run.sh": "#!/bin/sh\n"}
    remote = make_remote(tmp_path, files)
    seed = tmp_path / "seed2"
    git("clone", "--quiet", str(remote), str(seed))
    (seed / "bin" / "run.sh").chmod(0o755)
    (seed / "tools" / "values.yaml").parent.mkdir()
    (seed / "tools" / "values.yaml").write_text(VALUES)
    (seed / "tools" / "values.yaml").chmod(0o755)
    git("add", "--all", cwd=seed)
    git("commit", "--quiet", "-m", "modes", cwd=seed)
    git("push", "--quiet", "origin", "HEAD:main", cwd=seed)
    repo = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    results = await asyncio.gather(
        writer.write(change(repo, "id-1", "a/values.yaml", "2.0.0")),
        writer.write(change(repo, "id-2", "tools/values.yaml", "3.0.0")),
        writer.write(change(repo, "id-3", "new/deep/values.yaml", "4.0.0", create=True)),
    )
    git("fsck", "--strict", "--no-dangling", cwd=remote)
    tip = git("rev-parse", "main", cwd=remote).strip()
    assert {r.commit for r in results} == {tip}
    diff = git("diff", "--stat", f"{tip}^", tip, cwd=remote)
    assert "3 files changed, 4 insertions(+), 2 deletions(-)" in diff
    assert git("ls-tree", tip, "tools/values.yaml", cwd=remote).startswith("100755 blob")
    assert read_remote(remote, "tools/values.yaml") == "image:\n  tag: 3.0.0\n"
    assert read_remote(remote, "new/deep/values.yaml") == "image:\n  tag: 4.0.0\n"
    assert git("ls-tree", "--name-only", tip, cwd=remote).split() == ["a-c", "a.b", "a", "bin", "new", "tools"]


def test_serialized_trees_match_git(tmp_path: Path) -> None:
    names = {b"a": b"40000", b"a.b": b"100644", b"a-c": b"40000", b"a0": b"100644"}
    blob = b"\x01" * 20
    ours = serialize_tree({name: (mode, blob) for name, mode in names.items()})
    order = [entry.split(b"\0")[0].split(b" ")[1] for entry in ours.split(b"\x01" * 20) if entry]
    assert order == [b"a-c", b"a.b", b"a", b"a0"]  # a directory sorts as "a/"
    assert cleanup_message("\n\nsubject  \n\n\n\nbody\t\n\nKey: v\n\n") == "subject\n\nbody\n\nKey: v\n"


async def test_a_stale_tip_costs_one_more_push_and_is_no_conflict(writer: GitWriter, tmp_path: Path) -> None:
    """Someone changed our file's scalar between two of our deployments (not during one): the next deployment
    builds on the tip it last saw, is rejected, and sets its value on the new tip; their other commits stay."""
    remote = make_remote(tmp_path, {"apps/values.yaml": VALUES})
    repo = Repository("fleet", f"file://{remote}")
    await writer.write(change(repo, "id-1", "apps/values.yaml", "2.0.0"))
    other = tmp_path / "other"
    git("clone", "--quiet", str(remote), str(other))
    (other / "apps" / "values.yaml").write_text("image:\n  tag: 9.9.9\n")
    git("commit", "--quiet", "-am", "hotfix", cwd=other)
    git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    theirs = push_unrelated(remote, other, "later")

    def to_3(text: str) -> str:
        return re.sub(r"tag: \S+", "tag: 3.0.0", text)

    message = "deploy 3\n\nKeptn-Triggered-Id: id-2\n"
    edit = FileEdit("apps/values.yaml", to_3)
    result = await writer.write(Change(repo, (edit,), message, ("Keptn-Triggered-Id", "id-2")))
    assert result.created and result.attempts == 2
    assert git("rev-parse", f"{result.commit}^", cwd=remote).strip() == theirs
    assert read_remote(remote, "apps/values.yaml") == "image:\n  tag: 3.0.0\n"


async def test_a_rewound_branch_is_not_pushed_over(writer: GitWriter, tmp_path: Path) -> None:
    """The push is a compare-and-swap on the tip it was built on: a branch reset to an older commit rejects it (a
    plain push would fast-forward and bring the removed commits back)."""
    remote = make_remote(tmp_path, {"apps/values.yaml": VALUES, "README.md": "x\n"})
    repo = Repository("fleet", f"file://{remote}")
    seed = git("rev-parse", "main", cwd=remote).strip()
    await writer.write(change(repo, "id-1", "apps/values.yaml", "2.0.0"))
    git("update-ref", "refs/heads/main", seed, cwd=remote)  # someone rewinds the branch
    result = await writer.write(change(repo, "id-2", "README.md", "unused"))
    assert result.unchanged  # README.md has no tag: nothing to commit, confirmed on the rewound tip
    assert result.commit == seed == git("rev-parse", "main", cwd=remote).strip()
    third = await writer.write(change(repo, "id-3", "apps/values.yaml", "3.0.0"))
    assert git("rev-parse", f"{third.commit}^", cwd=remote).strip() == seed  # the removed commit stays removed


async def test_a_redelivery_is_found_without_reading_the_history(
    writer: GitWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_remote(tmp_path, {"apps/values.yaml": VALUES})
    repo = Repository("fleet", f"file://{remote}")
    first = await writer.write(change(repo, "id-1", "apps/values.yaml", "2.0.0"))
    for n in range(3):
        push_unrelated(remote, tmp_path / "other", f"n{n}")
    logs: list[tuple[str, ...]] = []
    original = clone_module.WorkingClone._log

    async def spy(self: clone_module.WorkingClone, *args: str) -> list[tuple[str, str]]:
        logs.append(args)
        return await original(self, *args)

    monkeypatch.setattr(clone_module.WorkingClone, "_log", spy)
    again = await writer.write(change(repo, "id-1", "apps/values.yaml", "2.0.0"))
    assert (again.commit, again.created) == (first.commit, False)
    # only the commits new since the last fetch were read (one bounded range), not the whole history
    assert len(logs) == 1 and any(".." in arg for arg in logs[0])
    assert clone_module.TRAILER_WINDOW >= 1000


async def test_the_idempotency_index_is_bounded(
    writer: GitWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clone_module, "TRAILER_INDEX_SIZE", 3)
    remote = make_remote(tmp_path, {f"apps/s{i}.yaml": VALUES for i in range(5)})
    repo = Repository("fleet", f"file://{remote}")
    shas = [(await writer.write(change(repo, f"id-{i}", f"apps/s{i}.yaml", "2.0.0"))).commit for i in range(5)]
    found = await writer.clone(repo).find_trailers([("Keptn-Triggered-Id", f"id-{i}") for i in range(5)])
    assert found == {("Keptn-Triggered-Id", f"id-{i}"): shas[i] for i in (2, 3, 4)}


async def test_the_clone_has_no_work_tree_and_its_reader_stops_when_idle(writer: GitWriter, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"apps/values.yaml": VALUES})
    repo = Repository("fleet", f"file://{remote}")
    result = await writer.write(change(repo, "id-1", "apps/values.yaml", "2.0.0"))
    path = writer.clone(repo).path
    assert sorted(p.name for p in path.iterdir()) == [".git"]
    assert git("rev-parse", "HEAD", cwd=path).strip() == result.commit
    objects = writer.clone(repo).objects
    await until(lambda: objects.reader_pid is None)  # no git child left once the writer is idle
    again = await writer.write(change(repo, "id-2", "apps/new.yaml", "3.0.0", create=True))  # the reader restarts
    assert again.created and read_remote(remote, "apps/new.yaml", again.commit) == "image:\n  tag: 3.0.0\n"
    await writer.close()
    assert objects.reader_pid is None


async def test_a_clone_first_used_for_an_ancestry_check_writes_on_the_branch_tip(tmp_path: Path) -> None:
    """After a restart the first use of an existing clone can be a resumed deployment's ancestry check; the next
    write must still build on the branch tip it reads then, not on a tip it never read."""

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    remote = make_remote(tmp_path, {"a/values.yaml": VALUES})
    repo = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    before = GitWriter(tmp_path / "state", sleep=no_sleep, rng=random.Random(5))
    first = await before.write(change(repo, "id-1", "a/values.yaml", "2.0.0"))
    await before.close()

    after = GitWriter(tmp_path / "state", sleep=no_sleep, rng=random.Random(5))  # the next process, same clone
    try:
        assert await after.clone(repo).is_ancestor(git("rev-parse", "main^", cwd=remote).strip(), first.commit)
        retag = FileEdit("a/values.yaml", lambda text: re.sub(r"tag: .*", "tag: 3.0.0", text))
        message = "deploy 3.0.0\n\nKeptn-Context: ctx\nKeptn-Triggered-Id: id-2\n"
        second = await after.write(Change(repo, (retag,), message, ("Keptn-Triggered-Id", "id-2")))
    finally:
        await after.close()
    assert second.commit == git("rev-parse", "main", cwd=remote).strip()
    assert git("rev-parse", f"{second.commit}^", cwd=remote).strip() == first.commit
    assert read_remote(remote, "a/values.yaml") == "image:\n  tag: 3.0.0\n"


async def test_a_round_of_many_changes_is_stored_as_one_pack_git_verifies(writer: GitWriter, tmp_path: Path) -> None:
    """150 changes in one round: their 300 blobs and trees go into one pack (the commit alone stays loose), which
    ``git verify-pack`` and ``git fsck --strict`` accept; a lone change afterwards adds loose objects, no pack."""
    files = {f"apps/s{i:03d}/values.yaml": VALUES for i in range(150)}
    remote = make_remote(tmp_path, files)
    repo = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    clone = writer.clone(repo)
    await clone.sync()
    packs = clone.path / ".git" / "objects" / "pack"
    before = set(packs.glob("*.pack"))
    results = await asyncio.gather(
        *(writer.write(change(repo, f"id-{i}", f"apps/s{i:03d}/values.yaml", f"2.0.{i}")) for i in range(150))
    )
    new = set(packs.glob("*.pack")) - before
    assert len(new) == 1
    (pack,) = new
    listed = git("verify-pack", "-v", str(pack.with_suffix(".idx")), cwd=clone.path)
    kinds = re.findall(r"^[0-9a-f]{40} (blob|tree|commit) ", listed, flags=re.MULTILINE)
    assert kinds.count("blob") == 150 and kinds.count("tree") >= 151 and "commit" not in kinds
    git("fsck", "--strict", "--no-dangling", cwd=remote)
    git("cat-file", "-e", results[0].commit, cwd=clone.path)  # the commit is stored too, loose
    for i in (0, 149):
        assert read_remote(remote, f"apps/s{i:03d}/values.yaml") == f"image:\n  tag: 2.0.{i}\n"
    await writer.write(change(repo, "lone", "apps/new/values.yaml", "3.0.0", create=True))
    assert set(packs.glob("*.pack")) == before | new
    assert read_remote(remote, "apps/new/values.yaml") == "image:\n  tag: 3.0.0\n"


async def test_objects_of_a_batch_are_read_before_they_are_stored(writer: GitWriter, tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"values.yaml": VALUES})
    repo = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    clone = writer.clone(repo)
    await clone.sync()
    objects = clone.objects
    with objects.batched():
        sha = objects.write("blob", b"kept\n")
        assert await objects.read(sha) == ("blob", 5, b"kept\n")
        assert await objects.read(sha, max_bytes=4) == ("blob", 5, None)
        with pytest.raises(GitCommandError):  # not stored yet
            git("cat-file", "-e", sha, cwd=clone.path)
        objects.flush()
        assert git("cat-file", "-p", sha, cwd=clone.path) == "kept\n"  # loose: fewer than a pack's worth
    await clone.close()


def test_many_entries_replaced_at_once_equal_one_by_one() -> None:
    entries = {f"svc{i:03d}".encode(): (b"40000", bytes([i]) * 20) for i in range(50)}
    entries[b"README.md"] = (b"100644", b"\x07" * 20)
    tree = Tree(serialize_tree(entries))
    same_modes = {f"svc{i:03d}".encode(): (b"40000", bytes([i + 100]) * 20) for i in range(0, 50, 3)}
    mixed = {**same_modes, b"new": (b"100644", b"\x09" * 20), b"README.md": (b"100755", b"\x07" * 20)}
    for changes in (same_modes, mixed, {b"svc001": (b"40000", b"\x05" * 20)}):
        one_by_one = tree
        for name, (mode, sha) in changes.items():
            one_by_one = one_by_one.replaced(name, mode, sha)
        at_once = tree.replaced_all(changes)
        assert at_once.raw == one_by_one.raw == serialize_tree({**entries, **changes})
        assert at_once.entries == Tree(at_once.raw).entries


async def test_reading_ahead_fills_the_tree_cache_and_skips_what_the_reads_will_report(
    writer: GitWriter, tmp_path: Path
) -> None:
    """Trees level by level and the files at the ends, one round trip each; a missing path, a path through a file
    and an unknown object are left out, and the reader goes on answering."""
    remote = make_remote(tmp_path, {"apps/a/values.yaml": VALUES, "apps/b/values.yaml": "b: 1\n", "top.txt": "t\n"})
    repo = Repository("fleet", f"file://{remote}", author=Author("bot", "bot@keptn.invalid"))
    clone = writer.clone(repo)
    await clone.sync()
    objects = clone.objects
    root = await objects.commit_tree(clone.tip)
    paths = [("apps", "a", "values.yaml"), ("apps", "b", "values.yaml"), ("apps", "c", "x"), ("top.txt", "x")]
    blobs = await objects.prefetch(root, paths, max_bytes=10)
    by_text = {data: size for _, size, data in blobs.values()}
    assert by_text == {None: len(VALUES), b"b: 1\n": 5}  # the longer one is not read, as read() does
    tree_a = git("rev-parse", f"{clone.tip}:apps/a", cwd=clone.path).strip()
    assert tree_a in objects._trees  # the cache is what reading ahead is for
    unknown = "0" * 40
    blob_b = git("rev-parse", f"{clone.tip}:apps/b/values.yaml", cwd=clone.path).strip()
    assert await objects.read_many([unknown, blob_b, blob_b]) == {blob_b: ("blob", 5, b"b: 1\n")}
    assert await objects.read(blob_b) == ("blob", 5, b"b: 1\n")
    await clone.close()
