"""Commits are found by whole trailers with exact values: history lookups, the idempotency lookup, batched commits,
and whether a descendant still holds what our commit changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import git, make_remote

from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.gitops.supersede import superseded
from keptn_gitops_service.gitops.writer import BATCH_TRAILER, GitWriter, batch_files


def test_a_batch_entry_matches_only_with_exact_string_values() -> None:
    entry = {"Keptn-Context": "ctx-1", "Keptn-Scope": "p/dev/carts-db", "Keptn-Triggered-Id": "id-1", "files": ["a"]}
    other = {"Keptn-Context": 7, "Keptn-Scope": "p/dev/carts", "files": ["b"]}
    message = "2 changes\n\n- x\n\n" + "".join(f"{BATCH_TRAILER}: {json.dumps(e)}\n" for e in (entry, other))
    assert batch_files(message, {"Keptn-Context": "ctx-1", "Keptn-Scope": "p/dev/carts-db"}) == {"a"}
    assert batch_files(message, {"Keptn-Context": "ctx", "Keptn-Scope": "p/dev/carts-db"}) == set()
    assert batch_files(message, {"Keptn-Scope": "p/dev/carts"}) == {"b"}
    assert batch_files(message, {"Keptn-Context": "7"}) == set()  # a number is not the string
    assert batch_files(message, {}) == set()  # nothing identifies a change of the batch


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"a.yaml": "tag: 1.0.0\nother: x\n", "b.yaml": "tag: 1.0.0\n"})


@pytest.fixture
def repo(remote: Path) -> Repository:
    return Repository(name="fleet", url=f"file://{remote}")


def commit(remote: Path, work: Path, message: str, files: dict[str, str | None]) -> str:
    """Commit ``files`` (``None``: delete) with ``message`` to the remote's main; its sha."""
    if not work.exists():
        git("clone", "--quiet", str(remote), str(work))
    git("pull", "--quiet", "--ff-only", cwd=work)
    for path, text in files.items():
        if text is None:
            (work / path).unlink()
        else:
            (work / path).write_text(text)
    git("add", "--all", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@x.invalid", "commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


async def test_history_matches_whole_trailers_exactly(tmp_path: Path, remote: Path, repo: Repository) -> None:
    work = tmp_path / "work"
    db = commit(
        remote,
        work,
        "deploy carts-db\n\nKeptn-Context: ctx-12\nKeptn-Scope: p/dev/carts-db\nKeptn-Triggered-Id: id-10",
        {"b.yaml": "tag: 2.0.0\n"},
    )
    commit(
        remote,
        work,
        "notes\n\nKeptn-Context: ctx-1\nKeptn-Scope: p/dev/carts\nKeptn-Triggered-Id: id-1\n\nSigned-off-by: t",
        {"a.yaml": "tag: 3.0.0\nother: x\n"},
    )
    writer = GitWriter(tmp_path / "state")
    scope = "Keptn-Scope: p/dev/carts"
    assert await writer.history(repo, "Keptn-Context: ctx-1", scope) == []  # only in a paragraph before the trailers
    assert await writer.history(repo, "Keptn-Context: ctx", "Keptn-Scope: p/dev/carts-db") == []  # a prefix
    assert await writer.history(repo, "Keptn-Context: ctx-12", scope) == []  # carts is not carts-db
    assert await writer.history(repo, "Keptn-Context: ", scope) == []
    assert await writer.history(repo, "Keptn-Context: ctx-12", "Keptn-Scope: p/dev/carts-db") == [
        (db, [("b.yaml", "tag: 1.0.0\n", "tag: 2.0.0\n")])
    ]
    clone = writer.clone(repo)
    assert await clone.find_trailers([("Keptn-Triggered-Id", "id-1"), ("Keptn-Triggered-Id", "")]) == {}
    assert await clone.find_trailers([("Keptn-Triggered-Id", "id-10")]) == {("Keptn-Triggered-Id", "id-10"): db}


async def test_a_descendant_supersedes_only_by_changing_our_values(
    tmp_path: Path, remote: Path, repo: Repository
) -> None:
    work = tmp_path / "work"
    ours = commit(remote, work, "deploy 2.0.0\n\nKeptn-Triggered-Id: id-a", {"a.yaml": "tag: 2.0.0\nother: x\n"})
    kept = commit(remote, work, "other line", {"a.yaml": "tag: 2.0.0\nother: y\n"})
    back = commit(remote, work, "revert it", {"a.yaml": "tag: 1.0.0\nother: y\n"})
    again = commit(remote, work, "third value", {"a.yaml": "tag: 4.0.0\nother: y\n"})
    gone = commit(remote, work, "drop a", {"a.yaml": None})
    clone = GitWriter(tmp_path / "state").clone(repo)
    await clone.sync()
    match = {"Keptn-Triggered-Id": "id-a"}
    assert await superseded(clone, ours, kept, match) is None
    first = f"superseded: commit {back[:12]} (revert it) changed a.yaml tag"
    assert (
        await superseded(clone, ours, back, match) == f"{first} back to '1.0.0' before commit {ours[:12]} was applied"
    )
    assert await superseded(clone, ours, again, match) == (
        f"{first} back to '1.0.0' before commit {ours[:12]} was applied"
    ), "the first commit that changed it is named"
    assert await superseded(clone, back, again, {}) == (
        f"superseded: commit {again[:12]} (third value) changed a.yaml tag from '1.0.0' to '4.0.0'"
        f" before commit {back[:12]} was applied"
    )
    assert await superseded(clone, back, again, match) is None, "not our commit: nothing of ours to follow"
    assert await superseded(clone, again, gone, {}) == (
        f"superseded: commit {gone[:12]} (drop a) removed a.yaml before commit {again[:12]} was applied"
    )


async def test_in_a_batched_commit_only_our_own_files_count(tmp_path: Path, remote: Path, repo: Repository) -> None:
    work = tmp_path / "work"
    entries = [{"Keptn-Triggered-Id": "id-a", "files": ["a.yaml"]}, {"Keptn-Triggered-Id": "id-b", "files": ["b.yaml"]}]
    message = "2 changes in one commit\n\n- a\n- b\n\n" + "\n".join(
        f"{BATCH_TRAILER}: {json.dumps(e, separators=(',', ':'))}" for e in entries
    )
    batch = commit(remote, work, message, {"a.yaml": "tag: 2.0.0\nother: x\n", "b.yaml": "tag: 2.0.0\n"})
    undo_b = commit(remote, work, "rollback b", {"b.yaml": "tag: 1.0.0\n"})
    clone = GitWriter(tmp_path / "state").clone(repo)
    await clone.sync()
    assert await superseded(clone, batch, undo_b, {"Keptn-Triggered-Id": "id-a"}) is None
    reason = await superseded(clone, batch, undo_b, {"Keptn-Triggered-Id": "id-b"})
    assert reason is not None and reason.startswith(f"superseded: commit {undo_b[:12]} (rollback b) changed b.yaml")
