"""The git writer against real bare remotes: trailers, no empty commits, one reused clone, races, failures."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from support import git, make_remote, push_unrelated, racing_remote, read_remote

from keptn_gitops_service.config.model import Author, Repository
from keptn_gitops_service.errors import EditConflictError, EditError, GitError, UnsafePathError
from keptn_gitops_service.gitops.writer import (
    Change,
    FileEdit,
    GitWriter,
    RetryPolicy,
    batch_files,
    batch_message,
    trailers,
)
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
    assert (result.commit, result.created, result.unchanged) == (head, False, True)
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "1"
    empty = await writer.write(change(repo, "id-2"))  # a redeploy: no edits at all
    assert (empty.commit, empty.created, empty.unchanged) == (head, False, True)


async def test_redelivery_finds_the_existing_commit(writer: GitWriter, repo: Repository, remote: Path) -> None:
    first = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))))
    second = await writer.write(change(repo, "id-1", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))))
    assert second.commit == first.commit and not second.created
    assert not first.unchanged and not second.unchanged  # a commit carries it: not "already in place"
    assert git("rev-list", "--count", "main", cwd=remote).strip() == "2"


async def test_one_clone_is_reused(writer: GitWriter, repo: Repository, tmp_path: Path) -> None:
    await writer.write(change(repo, "a", FileEdit("apps/dev/carts/values.yaml", set_tag("1"))))
    await writer.write(change(repo, "b", FileEdit("apps/dev/carts/values.yaml", lambda t: t + "# b\n")))
    assert len(list((tmp_path / "state" / "clones").iterdir())) == 1


async def test_lost_push_races_are_resolved_by_replaying_on_the_new_tip(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    """Another pusher wins three times between our fetch and our push: we replay our commit on its tip."""
    racing_remote(remote, 3)
    calls: list[str] = []

    def edit(text: str) -> str:
        calls.append(text)
        return text.replace("tag: 0.13.1", "tag: 0.14.0")

    retries_before = PUSH_RETRIES._value.get()
    result = await writer.write(change(repo, "id-race", FileEdit("apps/dev/carts/values.yaml", edit)))
    assert result.created and result.attempts == 4
    assert len(calls) == 1  # replayed by rebase, not re-applied: nothing of ours changed under us
    assert PUSH_RETRIES._value.get() == retries_before + 3
    assert read_remote(remote, "apps/dev/carts/values.yaml") == VALUES.replace("0.13.1", "0.14.0")
    log = git("log", "--format=%an %s", "main", cwd=remote).splitlines()
    assert log[:4] == ["keptn-bot deploy carts", *[f"other-bot other bot {n}" for n in (1, 2, 3)]]


async def test_a_change_next_to_ours_is_merged_by_reapplying(
    writer: GitWriter, repo: Repository, remote: Path, tmp_path: Path
) -> None:
    """Someone edits the neighbouring line between our fetch and our push: the rebase conflicts, so the edit is
    applied again on their version, which keeps both changes."""
    other = tmp_path / "other"
    git("clone", "--quiet", str(remote), str(other))
    calls: list[str] = []

    def edit(text: str) -> str:
        calls.append(text)
        if len(calls) == 1:
            values = other / "apps/dev/carts/values.yaml"
            values.write_text(values.read_text().replace("carts  # the image", "carts-v2  # the image"))
            git("commit", "--quiet", "-am", "rename", cwd=other)
            git("push", "--quiet", "origin", "HEAD:main", cwd=other)
        return re.sub(r"tag: \S+", "tag: 0.14.0", text)

    result = await writer.write(change(repo, "id-n", FileEdit("apps/dev/carts/values.yaml", edit)))
    assert result.created and result.attempts == 2 and len(calls) == 2
    assert read_remote(remote, "apps/dev/carts/values.yaml") == VALUES.replace("0.13.1", "0.14.0").replace(
        "carts  #", "carts-v2  #"
    )


async def test_our_target_changed_under_us_fails_that_change_clearly(
    writer: GitWriter, repo: Repository, remote: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    git("clone", "--quiet", str(remote), str(other))

    def edit(text: str) -> str:
        if "0.13.9" not in text and not (other / "done").exists():
            (other / "done").write_text("")
            values = other / "apps/dev/carts/values.yaml"
            values.write_text(values.read_text().replace("tag: 0.13.1", "tag: 0.13.9"))
            git("commit", "--quiet", "-am", "hotfix", cwd=other)
            git("push", "--quiet", "origin", "HEAD:main", cwd=other)
        return re.sub(r"tag: \S+", "tag: 0.14.0", text)

    with pytest.raises(EditConflictError) as caught:
        await writer.write(change(repo, "id-c", FileEdit("apps/dev/carts/values.yaml", edit)))
    assert str(caught.value) == (
        "apps/dev/carts/values.yaml: image.tag was changed from '0.13.1' to '0.13.9' by someone else while we were"
        " setting it to '0.14.0'; not overwriting their change"
    )
    assert "tag: 0.13.9" in read_remote(remote, "apps/dev/carts/values.yaml")


async def test_bounded_retries_then_a_clear_error(repo: Repository, remote: Path, tmp_path: Path) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    writer = GitWriter(tmp_path / "s", retry=RetryPolicy(max_attempts=3), sleep=record, rng=random.Random(1))
    racing_remote(remote, 1000)
    with pytest.raises(GitError, match="rejected 3 times"):
        await writer.write(change(repo, "id", FileEdit("apps/dev/carts/values.yaml", set_tag("0.2"))))
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
    with pytest.raises(
        GitError, match=rf"git clone for repository 'fleet' \(file://{remote}, branch production\) failed: .*production"
    ):
        await writer.write(change(repo, "id", FileEdit("README.md", lambda t: t + "x")))


async def test_ancestry(writer: GitWriter, repo: Repository, remote: Path, tmp_path: Path) -> None:
    ours = (await writer.write(change(repo, "id", FileEdit("README.md", lambda t: t + "x")))).commit
    newer = push_unrelated(remote, tmp_path / "other", "later")
    assert await writer.is_ancestor(repo, ours, newer)  # fetched on demand
    assert not await writer.is_ancestor(repo, newer, ours)
    assert not await writer.is_ancestor(repo, ours, "0" * 40)


def kustomization(service: str) -> str:
    return f"images:\n  - name: docker.io/keptnexamples/{service}\n    newTag: 1.0.0 # keep\n"


def tag_change(repo: Repository, service: str, tag: str = "2.0.0", path: str | None = None) -> Change:
    """What the deployment workflow writes for ``service``: one kustomization edit, Keptn trailers."""
    file = path or f"apps/{service}/kustomization.yaml"
    return Change(
        repo,
        (FileEdit(file, lambda t: t.replace("newTag: 1.0.0", f"newTag: {tag}", 1)),),
        f"deploy {service}\n\nKeptn-Context: ctx-{service}\nKeptn-Scope: p/dev/{service}\n"
        f"Keptn-Triggered-Id: id-{service}\n",
        ("Keptn-Triggered-Id", f"id-{service}"),
    )


def commits_with(remote: Path, line: str) -> list[str]:
    return git("log", "--format=%H", "--fixed-strings", f"--grep={line}", "main", cwd=remote).split()


async def test_concurrent_changes_to_different_files_are_batched(tmp_path: Path) -> None:
    services = [f"svc{i:02d}" for i in range(30)]
    remote = make_remote(tmp_path, {f"apps/{s}/kustomization.yaml": kustomization(s) for s in services})
    repo = Repository(name="fleet", url=f"file://{remote}")
    writer = GitWriter(tmp_path / "state")
    changes = [tag_change(repo, s) for s in services]
    results = await asyncio.gather(*(writer.write(c) for c in changes))
    made = int(git("rev-list", "--count", "main", cwd=remote)) - 1  # the seed commit is not ours
    assert made == 1  # all queued before the first round started: one fetch, one commit, one push
    for service, result in zip(services, results, strict=True):
        assert result.created
        assert "newTag: 2.0.0" in git("show", f"{result.commit}:apps/{service}/kustomization.yaml", cwd=remote)
        assert commits_with(remote, f"Keptn-Triggered-Id: id-{service}") == [result.commit]
    again = await asyncio.gather(*(writer.write(c) for c in changes))  # redelivery: found again, nothing new
    assert [r.commit for r in again] == [r.commit for r in results] and not any(r.created for r in again)


async def test_changes_to_one_file_get_a_commit_each_in_one_push(tmp_path: Path) -> None:
    """Each commit stays attributable to one change: a shared file starts a new commit, not a new push."""
    shared = "".join(kustomization(s).replace("1.0.0", f"1.0.0-{s}") for s in ("a", "b", "c"))
    remote = make_remote(tmp_path, {"apps/all.yaml": shared, "apps/d/kustomization.yaml": kustomization("d")})
    repo = Repository(name="fleet", url=f"file://{remote}")
    writer = GitWriter(tmp_path / "state")

    def on_shared(service: str) -> Change:
        edit = FileEdit("apps/all.yaml", lambda t: t.replace(f"1.0.0-{service}", f"2.0.0-{service}"))
        return Change(
            repo,
            (edit,),
            f"deploy {service}\n\nKeptn-Triggered-Id: id-{service}\n",
            ("Keptn-Triggered-Id", f"id-{service}"),
        )

    first = writer.write(tag_change(repo, "d"))  # goes alone; the rest queue behind its push
    results = await asyncio.gather(first, *(writer.write(on_shared(s)) for s in ("a", "b", "c")))
    shared_commits = {r.commit for r in results[1:]}
    assert len(shared_commits) == 3
    for service, result in zip(("a", "b", "c"), results[1:], strict=True):
        before = git("show", f"{result.commit}^:apps/all.yaml", cwd=remote)
        after = git("show", f"{result.commit}:apps/all.yaml", cwd=remote)
        assert after == before.replace(f"1.0.0-{service}", f"2.0.0-{service}") != before  # its own change only
    final = read_remote(remote, "apps/all.yaml")
    assert all(final.count(f"2.0.0-{s}") == 1 for s in ("a", "b", "c"))


async def test_a_failing_change_fails_alone_in_its_batch(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {f"apps/{s}/kustomization.yaml": kustomization(s) for s in ("a", "b", "c")})
    repo = Repository(name="fleet", url=f"file://{remote}")
    writer = GitWriter(tmp_path / "state")
    broken = tag_change(repo, "x", path="apps/x/kustomization.yaml")  # no such file
    outcomes = await asyncio.gather(
        writer.write(tag_change(repo, "a")),
        writer.write(broken),
        writer.write(tag_change(repo, "b")),
        writer.write(tag_change(repo, "c")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], EditError) and "apps/x/kustomization.yaml: no such file" in str(outcomes[1])
    for service, outcome in zip("abc", [outcomes[0], *outcomes[2:]], strict=True):
        assert not isinstance(outcome, BaseException) and outcome.created
        assert "newTag: 2.0.0" in read_remote(remote, f"apps/{service}/kustomization.yaml")


async def test_history_of_a_batched_commit_names_only_the_changes_own_files(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {f"apps/{s}/kustomization.yaml": kustomization(s) for s in ("a", "b", "c")})
    repo = Repository(name="fleet", url=f"file://{remote}")
    writer = GitWriter(tmp_path / "state")
    blocker = writer.write(tag_change(repo, "a"))
    b, c = (await asyncio.gather(blocker, writer.write(tag_change(repo, "b")), writer.write(tag_change(repo, "c"))))[1:]
    assert b.commit == c.commit  # one commit for both
    history = await writer.history(
        repo, "Keptn-Context: ctx-b", match={"Keptn-Context": "ctx-b", "Keptn-Scope": "p/dev/b"}
    )
    assert [(sha, [path for path, _, _ in files]) for sha, files in history] == [
        (b.commit, ["apps/b/kustomization.yaml"])
    ]
    # a trailer line that matches by text but belongs to another change of the batch is not ours
    assert (
        await writer.history(repo, "Keptn-Context: ctx-b", match={"Keptn-Context": "ctx-b", "Keptn-Scope": "p/dev/c"})
        == []
    )


def test_batch_message_keeps_every_trailer_and_attributes_files() -> None:
    repo = Repository(name="fleet", url="file:///nowhere")
    message = batch_message([tag_change(repo, "a"), tag_change(repo, "b")], [["apps/a/k.yaml"], ["apps/b/k.yaml"]])
    assert message.splitlines()[0] == "2 changes in one commit"
    pairs = trailers(message)
    assert ("Keptn-Triggered-Id", "id-a") in pairs and ("Keptn-Scope", "p/dev/b") in pairs
    assert batch_files(message, {"Keptn-Scope": "p/dev/b"}) == {"apps/b/k.yaml"}
    assert batch_files(tag_change(repo, "a").message, {"Keptn-Scope": "p/dev/a"}) is None


async def test_an_edit_may_create_its_file_when_asked_to(writer: GitWriter, repo: Repository, remote: Path) -> None:
    path = "apps/dev/carts/new/.argocd-source-carts.yaml"
    with pytest.raises(EditError, match="no such file"):
        await writer.write(change(repo, "id-no", FileEdit(path, lambda t: t + "helm: {}\n")))
    result = await writer.write(change(repo, "id-yes", FileEdit(path, lambda t: t + "helm: {}\n", create=True)))
    assert result.created and read_remote(remote, path) == "helm: {}\n"


# ---- proposals: a pull request's head branch ----


async def test_a_proposal_is_pushed_to_its_own_branch_and_leaves_the_deployment_branch_alone(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    main_before = git("rev-parse", "main", cwd=remote).strip()
    edit = FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.2"))
    proposed = await writer.propose(change(repo, "id-1", edit), "keptn/sockshop/dev/carts/abc")
    assert proposed.created and not proposed.unchanged
    assert git("rev-parse", "main", cwd=remote).strip() == main_before
    assert git("rev-parse", "keptn/sockshop/dev/carts/abc", cwd=remote).strip() == proposed.commit
    assert git("rev-parse", f"{proposed.commit}^", cwd=remote).strip() == main_before
    assert "tag: 0.13.2" in read_remote(remote, "apps/dev/carts/values.yaml", "keptn/sockshop/dev/carts/abc")
    assert "Keptn-Triggered-Id: id-1" in git("log", "-1", "--format=%B", proposed.commit, cwd=remote)
    # proposed again (a restart): the branch is replaced by the same change on the tip
    again = await writer.propose(change(repo, "id-1", edit), "keptn/sockshop/dev/carts/abc")
    assert again.created and git("rev-parse", "keptn/sockshop/dev/carts/abc", cwd=remote).strip() == again.commit


async def test_a_proposal_the_branch_already_holds_pushes_nothing(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    proposed = await writer.propose(
        change(repo, "id-2", FileEdit("apps/dev/carts/values.yaml", set_tag("0.13.1"))), "keptn/x"
    )
    assert proposed.unchanged and proposed.commit == git("rev-parse", "main", cwd=remote).strip()
    assert git("branch", "--list", "keptn/x", cwd=remote) == ""


async def test_a_proposal_already_merged_is_found_by_its_trailer(
    writer: GitWriter, repo: Repository, remote: Path
) -> None:
    merged = await writer.write(change(repo, "id-3", FileEdit("apps/dev/carts/values.yaml", set_tag("0.14.0"))))
    found = await writer.propose(
        change(repo, "id-3", FileEdit("apps/dev/carts/values.yaml", set_tag("0.14.0"))), "keptn/y"
    )
    assert found.commit == merged.commit and not found.created and not found.unchanged


@pytest.mark.parametrize("branch", ["-delete", "a..b", "x.lock", "refs/", "a b", ""])
async def test_a_proposal_refuses_branch_names_it_would_not_make(
    writer: GitWriter, repo: Repository, branch: str
) -> None:
    with pytest.raises(GitError, match="is not a branch name this service pushes"):
        await writer.propose(change(repo, "id-4", FileEdit("README.md", str.upper)), branch)
