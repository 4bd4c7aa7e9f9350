"""The git writer against real bare remotes: trailers, no empty commits, one reused clone, races, failures."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from support import git, make_remote, push_unrelated, read_remote

from keptn_gitops_service.config.model import Author, Repository
from keptn_gitops_service.errors import EditError, GitError, UnsafePathError
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter, RetryPolicy
from keptn_gitops_service.metrics import PUSH_RETRIES

VALUES = "image:\n  repository: docker.io/keptnexamples/carts  # the image\n  tag: 0.13.1\n"


def set_tag(tag: str):  # type: ignore[no-untyped-def]
    return lambda text: text.replace("tag: 0.13.1", f"tag: {tag}")


def change(repo: Repository, triggered_id: str, *edits: FileEdit) -> Change:
    message = f"deploy carts\n\nKeptn-Context: ctx\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, edits, message, ("Keptn-Triggered-Id", triggered_id))


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"apps/dev/carts/values.yaml": VALUES, "README.md": "fleet\n"})


@pytest.fixture
def repo(remote: Path) -> Repository:
    return Repository(name="fleet", url=f"file://{remote}", author=Author("keptn-bot", "bot@keptn.invalid"))


@pytest.fixture
def writer(tmp_path: Path) -> GitWriter:
    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    return GitWriter(tmp_path / "state", sleep=no_sleep, rng=random.Random(7))


async def test_commit_carries_the_edit_the_trailers_and_our_identity(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    result = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))))
    assert result.created and result.attempts == 1
    assert read_remote(remote, "apps/dev/carts/values.yaml") == VALUES.replace("0.13.1", "0.13.2")
    assert git("rev-parse", "main", cwd=remote).strip() == result.commit
    trailers = git("log", "-1", "--format=%(trailers:key=Keptn-Triggered-Id,valueonly)", "main", cwd=remote)
    assert trailers.strip() == "id-1"
    assert (
        git("log", "-1", "--format=%an <%ae>|%cn", "main", cwd=remote).strip()
        == "keptn-bot <bot@keptn.invalid>|keptn-bot"
    )


async def test_no_commit_when_nothing_changes_reports_head(writer: GitWriter, repo: Repository, remote: Path) -> None:
    head = git("rev-parse", "main", cwd=remote).strip()
    result = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.1"))))
    assert (result.commit, result.created) == (head, False)
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "1"


async def test_redelivery_finds_the_existing_commit(writer: GitWriter, repo: Repository, remote: Path) -> None:
    first = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))))
    second = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))))
    assert second.commit == first.commit and not second.created
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "2"


async def test_one_clone_is_reused(writer: GitWriter, repo: Repository, tmp_path: Path) -> None:
    await writer.write(change(repo, "a", FileEdit("apps/dev/carts/values.yaml", set_tag("1"))))
    await writer.write(change(repo, "b", FileEdit("apps/dev/carts/values.yaml", lambda t: t + "# b\n")))
    assert len(list((tmp_path / "state" / "clones").iterdir())) == 1


async def test_a_push_race_is_resolved_by_reapplying_on_the_new_tip(
    writer: GitWriter, repo: Repository, remote: Path, tmp_path: Path
) -> None:
    """Another bot pushes between our fetch and our push, several times: we re-apply and win eventually."""
    other = tmp_path / "other"
    races = iter(range(3))

    def racing_edit(text: str) -> str:
        if next(races, None) is not None:
            push_unrelated(remote, other, f"f{random.random()}")
        return text.replace("tag: 0.13.1", "tag: 0.14.0")

    retries_before = PUSH_RETRIES._value.get()
    result = await writer.write(change(repo, "id-race", FileEdit("apps/dev/carts/values.yaml", racing_edit)))
    assert result.created and result.attempts == 4
    assert PUSH_RETRIES._value.get() == retries_before + 3
    assert read_remote(remote, "apps/dev/carts/values.yaml") == VALUES.replace("0.13.1", "0.14.0")
    assert len(list(Path(other / "other").iterdir())) == 3
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "5"


async def test_bounded_retries_then_a_clear_error(repo: Repository, remote: Path, tmp_path: Path) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    writer = GitWriter(tmp_path / "s", retry=RetryPolicy(max_attempts=3), sleep=record, rng=random.Random(1))

    def always_race(text: str) -> str:
        push_unrelated(remote, tmp_path / "other", f"x{len(delays)}")
        return text + "# ours\n"

    with pytest.raises(GitError, match="rejected 3 times"):
        await writer.write(change(repo, "id", FileEdit("apps/dev/carts/values.yaml", always_race)))
    assert len(delays) == 3 and delays[1] > delays[0] * 1.2  # jittered exponential backoff


async def test_concurrent_deployments_of_one_process_never_lose_an_update(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    def add(name: str):  # type: ignore[no-untyped-def]
        return lambda text: text + f"# {name}\n"

    edits = [change(repo, f"id-{i}", FileEdit("apps/dev/carts/values.yaml", add(f"svc{i}"))) for i in range(10)]
    results = await asyncio.gather(*(writer.write(c) for c in edits))
    final = read_remote(remote, "apps/dev/carts/values.yaml")
    assert all(f"# svc{i}\n" in final for i in range(10))
    assert len({r.commit for r in results}) == 10


async def test_a_failing_edit_leaves_the_remote_untouched(writer: GitWriter, repo: Repository, remote: Path) -> None:
    head = git("rev-parse", "main", cwd=remote).strip()

    def broken(_: str) -> str:
        raise EditError("path 'image.tag' not found")

    ok = FileEdit("README.md", lambda t: t + "changed\n")
    with pytest.raises(EditError, match=r"^apps/dev/carts/values.yaml: path 'image.tag' not found$"):
        await writer.write(change(repo, "id", ok, FileEdit("apps/dev/carts/values.yaml", broken)))
    assert git("rev-parse", "main", cwd=remote).strip() == head
    # the half-applied README edit in the clone never leaks into the next commit
    result = await writer.write(change(repo, "id2", FileEdit("apps/dev/carts/values.yaml", set_tag("2"))))
    assert "changed" not in read_remote(remote, "README.md", result.commit)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.yaml", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("apps/link/values.yaml", "goes through the symlink 'apps/link'"),
        (".git/config", "does not name a file"),
        ("apps/dev/carts/missing.yaml", "no such file in repository fleet"),
    ],
)
async def test_paths_cannot_leave_the_repository(tmp_path: Path, path: str, message: str) -> None:
    remote = make_remote(tmp_path, {"apps/dev/carts/values.yaml": VALUES})
    seed = tmp_path / "seed2"
    git("clone", "--quiet", str(remote), str(seed))
    (seed / "apps" / "link").symlink_to("/etc")
    git("add", "--all", cwd=seed)
    git("commit", "--quiet", "-m", "symlink", cwd=seed)
    git("push", "--quiet", "origin", "HEAD:main", cwd=seed)
    writer = GitWriter(tmp_path / "state")
    repo = Repository(name="fleet", url=f"file://{remote}")
    with pytest.raises((UnsafePathError, EditError), match=message):
        await writer.write(change(repo, "id", FileEdit(path, lambda t: t + "x")))


async def test_missing_branch_is_a_clear_error(tmp_path: Path, remote: Path) -> None:
    writer = GitWriter(tmp_path / "state")
    repo = Repository(name="fleet", url=f"file://{remote}", branch="production")
    with pytest.raises(GitError, match=r"git clone failed: .*production"):
        await writer.write(change(repo, "id", FileEdit("README.md", lambda t: t + "x")))


async def test_ancestry(writer: GitWriter, repo: Repository, remote: Path, tmp_path: Path) -> None:
    ours = (await writer.write(change(repo, "id", FileEdit("README.md", lambda t: t + "x")))).commit
    newer = push_unrelated(remote, tmp_path / "other", "later")
    assert await writer.is_ancestor(repo, ours, newer)  # fetched on demand
    assert not await writer.is_ancestor(repo, newer, ours)
    assert not await writer.is_ancestor(repo, ours, "0" * 40)
