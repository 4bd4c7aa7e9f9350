"""Credentials never leak: not in argv, not in errors; git runs isolated from the machine's configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import make_remote

from keptn_gitops_service.config.model import Author, NoAuth, Repository, Signing, SshAuth, TokenAuth
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.git import Git, check_access, display_url, scrub, signing_options, ssh_command

SECRET = "ghp_SuperSecretToken123"


async def test_a_token_reaches_git_only_through_askpass_and_never_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TOKEN", SECRET)
    runner = Git(auth=TokenAuth("FLEET_TOKEN"), author=Author(), helper_dir=tmp_path / "home")
    # a closed loopback port: git fails after setting up the credential path
    with pytest.raises(GitError) as info:
        await runner.run("ls-remote", "https://127.0.0.1:9/org/fleet.git")
    assert SECRET not in str(info.value)
    env, secrets = runner._environment()
    assert env["KEPTN_GITOPS_GIT_PASSWORD"] == SECRET and secrets == [SECRET]
    askpass = Path(env["GIT_ASKPASS"])
    assert SECRET not in askpass.read_text() and os.access(askpass, os.X_OK)


async def test_the_askpass_helper_answers_git_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setenv("FLEET_TOKEN", SECRET)
    runner = Git(auth=TokenAuth("FLEET_TOKEN", username="bot"), author=Author(), helper_dir=tmp_path / "home")
    env, _ = runner._environment()
    answers = []
    for prompt in ("Username for 'https://git.example.com': ", "Password for 'https://bot@git.example.com': "):
        proc = await asyncio.create_subprocess_exec(env["GIT_ASKPASS"], prompt, env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        answers.append(out.decode().strip())
    assert answers == ["bot", SECRET]


async def test_a_missing_token_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    runner = Git(auth=TokenAuth("NOPE_TOKEN"), author=Author(), helper_dir=tmp_path)
    with pytest.raises(GitError, match="NOPE_TOKEN is not set"):
        await runner.run("--version")


async def test_git_ignores_global_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "userhome"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Global User\n")
    monkeypatch.setenv("HOME", str(home))
    runner = Git(auth=NoAuth(), author=Author("ours", "o@x.invalid"), helper_dir=tmp_path)
    result = await runner.run("config", "--get", "user.name", check=False)
    assert result.stdout.strip() == ""


def test_ssh_command_quotes_paths_and_checks_host_keys() -> None:
    cmd = ssh_command(SshAuth("/keys/my key", "/keys/known hosts"))
    assert "'/keys/my key'" in cmd and "'UserKnownHostsFile=/keys/known hosts'" in cmd
    assert "StrictHostKeyChecking=yes" in cmd


def test_scrub_removes_secrets_and_url_credentials() -> None:
    text = f"fatal: https://user:{SECRET}@host/x.git and {SECRET}"
    assert scrub(text, [SECRET]) == "fatal: https://***@host/x.git and ***"


async def test_per_command_configuration_goes_before_the_command(tmp_path: Path) -> None:
    runner = Git(auth=NoAuth(), author=Author(), helper_dir=tmp_path)
    result = await runner.run("config", "--get", "user.signingkey", config={"user.signingkey": "/keys/signing"})
    assert result.stdout.strip() == "/keys/signing"


def test_signing_options_name_the_key_and_its_home_but_hold_no_secret() -> None:
    ssh = signing_options(Signing("ssh", key_file="/keys/signing"))
    assert ssh == ({"gpg.format": "ssh", "user.signingkey": "/keys/signing"}, {})
    pgp = signing_options(Signing("openpgp", key_id="3AA5C34371567BD2", gnupg_home="/gnupg"))
    assert pgp == ({"gpg.format": "openpgp", "user.signingkey": "3AA5C34371567BD2"}, {"GNUPGHOME": "/gnupg"})
    with pytest.raises(GitError, match="unknown commit signing format 'x509'"):
        signing_options(Signing("x509", key_file="/k"))


def test_messages_show_urls_without_credentials() -> None:
    assert display_url("https://bot:ghp_x@git.example.com/org/fleet.git") == "https://git.example.com/org/fleet.git"
    assert display_url("https://ghp_x@git.example.com/fleet.git") == "https://git.example.com/fleet.git"
    assert display_url("ssh://bot:pw@git.example.com/fleet.git") == "ssh://git.example.com/fleet.git"
    assert display_url("ssh://git@git.example.com/fleet.git") == "ssh://git@git.example.com/fleet.git"
    assert display_url("git@git.example.com:org/fleet.git") == "git@git.example.com:org/fleet.git"
    assert display_url("file:///srv/fleet.git") == "file:///srv/fleet.git"


async def test_a_git_failure_names_the_repository_entry_and_its_url(tmp_path: Path) -> None:
    # a URL with credentials in it (the loader refuses them; an embedding program might not)
    repo = Repository("fleet", f"https://bot:{SECRET}@127.0.0.1:9/org/fleet.git", branch="prod")
    with pytest.raises(GitError) as info:
        await check_access(repo, helper_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(
        "git ls-remote for repository 'fleet' (https://127.0.0.1:9/org/fleet.git, branch prod) failed: "
    )
    assert SECRET not in message and "bot" not in message


async def test_reaching_a_repository_checks_the_token_variable_and_the_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = make_remote(tmp_path, {"README.md": "x\n"})
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    tokened = Repository("fleet", f"file://{remote}", auth=TokenAuth("NOPE_TOKEN"))
    with pytest.raises(GitError) as info:
        await check_access(tokened, helper_dir=tmp_path / "home")
    assert str(info.value) == (
        f"the git token environment variable NOPE_TOKEN of repository 'fleet' (file://{remote}, branch main) is not set"
    )
    await check_access(Repository("fleet", f"file://{remote}"), helper_dir=tmp_path / "home")
    with pytest.raises(GitError) as info:
        await check_access(Repository("fleet", f"file://{remote}", branch="prod"), helper_dir=tmp_path / "home")
    assert str(info.value) == f"the branch prod does not exist in repository 'fleet' (file://{remote}, branch prod)"
