"""A token over real smart HTTP (``git http-backend`` behind Basic auth): it works, shallow and partial too, and
it never shows up in a command line, a file, a log line or an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support import (
    GitCommandError,
    GitHttpServer,
    command_lines_containing,
    git,
    make_remote,
    push_unrelated,
    read_remote,
)

from keptn_gitops_service.config.model import Author, CloneOptions, Repository, TokenAuth
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

TOKEN = "ghp_HttpSecretToken4711"
USER = "keptn-bot"


def change(repo: Repository, triggered_id: str, tag: str) -> Change:
    edit = FileEdit("values.yaml", lambda text: f"tag: {tag}\n")
    message = f"deploy {tag}\n\nKeptn-Context: ctx-{triggered_id}\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, (edit,), message, ("Keptn-Triggered-Id", triggered_id))


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """``<root>/fleet.git`` with a few commits, partial clones allowed; returns the root."""
    root = tmp_path / "served"
    root.mkdir()
    bare = make_remote(tmp_path, {"values.yaml": "tag: v0\n", "README.md": "fleet\n"})
    bare = bare.rename(root / "fleet.git")
    for i in range(5):
        push_unrelated(bare, tmp_path / "other", f"f{i}")
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    return root


def files_containing(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


async def test_a_token_clones_shallow_and_partial_pushes_and_fetches_lazily_without_ever_showing(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TOKEN", TOKEN)
    seen_clients: list[str] = []
    leaks: list[str] = []
    with GitHttpServer(served, push=True, user=USER, token=TOKEN) as server:

        def look_at_every_process() -> None:  # runs while git waits for this very answer
            seen_clients.extend(command_lines_containing("remote-http"))
            leaks.extend(command_lines_containing(TOKEN))

        server.on_authorised.append(look_at_every_process)
        repo = Repository(
            "fleet",
            server.url(served / "fleet.git"),
            auth=TokenAuth("FLEET_TOKEN", username=USER),
            author=Author("bot", "bot@keptn.invalid"),
            clone=CloneOptions(depth=1, filter="blob:none"),
        )
        writer = GitWriter(tmp_path / "state")
        with capture_logs() as logs:
            first = await writer.write(change(repo, "1", "v1"))
            history = await writer.history(repo, "Keptn-Context: ctx-1")
            assert await writer.is_ancestor(
                repo, git("rev-parse", "main~3", cwd=served / "fleet.git").strip(), first.commit
            )
        assert server.denied >= 1, "git first asks without credentials, then through the askpass helper"
        assert server.authorised > 3
    assert read_remote(served / "fleet.git", "values.yaml") == "tag: v1\n"
    assert history == [(first.commit, [("values.yaml", "tag: v0\n", "tag: v1\n")])]  # blobs fetched lazily
    assert seen_clients, "the process scan saw git's HTTP helper (so it would have seen the token)"
    assert leaks == []
    assert files_containing(tmp_path / "state", TOKEN.encode()) == []
    assert TOKEN not in repr(logs)
    assert git("config", "--get", "remote.origin.url", cwd=writer.clone(repo).path).strip() == repo.url


async def test_a_server_quoting_the_token_and_a_wrong_token_never_reach_an_error(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TOKEN", TOKEN)
    with GitHttpServer(served, push=True, user=USER, token=TOKEN) as server:
        quoting = Repository("quoting", server.url(served / "error.git"), auth=TokenAuth("FLEET_TOKEN", username=USER))
        with pytest.raises(GitError) as info:
            await GitWriter(tmp_path / "a").write(change(quoting, "1", "v1"))
        assert "remote error: token *** is not valid here" in str(info.value)
        assert TOKEN not in str(info.value)

        wrong = "ghp_WrongToken0815"
        monkeypatch.setenv("FLEET_TOKEN", wrong)
        fleet = Repository("fleet", server.url(served / "fleet.git"), auth=TokenAuth("FLEET_TOKEN", username=USER))
        with pytest.raises(GitError, match="Authentication failed") as info:
            await GitWriter(tmp_path / "b").write(change(fleet, "2", "v2"))
        assert wrong not in str(info.value) and TOKEN not in str(info.value)


def test_without_a_token_the_server_serves_clones_and_refuses_pushes_unless_told(served: Path, tmp_path: Path) -> None:
    """The read-only mode a Git host gives Flux, and the pushing mode an upstream of Keptn's resource-service needs."""
    bare = served / "fleet.git"
    with GitHttpServer(served) as server:
        git("clone", "--quiet", server.url(bare), str(tmp_path / "reader"))
        assert (tmp_path / "reader" / "values.yaml").read_text() == "tag: v0\n"
        (tmp_path / "reader" / "values.yaml").write_text("tag: v9\n")
        git("commit", "--quiet", "-am", "v9", cwd=tmp_path / "reader")
        with pytest.raises(GitCommandError, match="403"):
            git("push", "--quiet", "origin", "HEAD:main", cwd=tmp_path / "reader")
        assert server.requests and server.denied == 0 and server.authorised == 0
    assert read_remote(bare, "values.yaml") == "tag: v0\n"
    with GitHttpServer(served, push=True) as server:
        git("push", "--quiet", server.url(bare), "HEAD:main", cwd=tmp_path / "reader")
    assert read_remote(bare, "values.yaml") == "tag: v9\n"
