"""Signed commits, verified by git itself: SSH keys (ssh-keygen) and OpenPGP keys (gpg)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import GitCommandError, git, make_remote, racing_remote

from keptn_gitops_service.config.model import Author, Repository, Signing
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

AUTHOR = Author("keptn-bot", "bot@keptn.invalid")


def change(repo: Repository, triggered_id: str) -> Change:
    edit = FileEdit("values.yaml", lambda text: text.replace("v1", f"v-{triggered_id}"))
    message = f"deploy\n\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, (edit,), message, ("Keptn-Triggered-Id", triggered_id))


def verify(remote: Path, commit: str, *config: str, env: dict[str, str] | None = None) -> list[str]:
    """Check the commit's signature with ``git verify-commit`` (raising :class:`GitCommandError` when it does not
    verify); return git's reading of it: the verdict (``G``: good), the signer and the signing key's fingerprint."""
    options = [part for option in config for part in ("-c", option)]
    git(*options, "verify-commit", commit, cwd=remote, env=env)
    return git(*options, "log", "-1", "--format=%G?%n%GS%n%GF", commit, cwd=remote, env=env).splitlines()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"values.yaml": "tag: v1\n"})


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "signing"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot", "-f", str(key)], check=True)
    return key


async def test_ssh_signed_commits_verify_against_the_allowed_signers(
    tmp_path: Path, remote: Path, ssh_key: Path
) -> None:
    repo = Repository("fleet", f"file://{remote}", author=AUTHOR, signing=Signing("ssh", key_file=str(ssh_key)))
    commit = (await GitWriter(tmp_path / "state").write(change(repo, "1"))).commit
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{AUTHOR.email} {ssh_key.with_suffix('.pub').read_text()}")
    verdict, signer, key = verify(remote, commit, "gpg.format=ssh", f"gpg.ssh.allowedSignersFile={allowed}")
    assert (verdict, signer) == ("G", AUTHOR.email)
    listed = subprocess.run(["ssh-keygen", "-l", "-f", f"{ssh_key}.pub"], check=True, capture_output=True, text=True)
    assert key == listed.stdout.split()[1]  # SHA256:<fingerprint> of the signing key
    with pytest.raises(GitCommandError):  # the seed commit is not signed: the check can fail
        verify(remote, f"{commit}^", "gpg.format=ssh", f"gpg.ssh.allowedSignersFile={allowed}")


async def test_a_commit_replayed_after_a_lost_push_race_is_signed_too(
    tmp_path: Path, remote: Path, ssh_key: Path
) -> None:
    repo = Repository("fleet", f"file://{remote}", author=AUTHOR, signing=Signing("ssh", key_file=str(ssh_key)))
    racing_remote(remote, 2)
    result = await GitWriter(tmp_path / "state").write(change(repo, "1"))
    assert result.attempts == 3 and git("rev-parse", "main", cwd=remote).strip() == result.commit
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{AUTHOR.email} {ssh_key.with_suffix('.pub').read_text()}")
    assert verify(remote, result.commit, "gpg.format=ssh", f"gpg.ssh.allowedSignersFile={allowed}")[:2] == [
        "G",
        AUTHOR.email,
    ]


async def test_a_missing_signing_key_fails_the_commit_and_leaves_the_remote_alone(tmp_path: Path, remote: Path) -> None:
    missing = tmp_path / "no-such-key"
    repo = Repository("fleet", f"file://{remote}", author=AUTHOR, signing=Signing("ssh", key_file=str(missing)))
    head = git("rev-parse", "main", cwd=remote).strip()
    with pytest.raises(
        GitError, match=r"git commit for repository 'fleet' \(file://.*, branch main\) failed: .*no-such-key"
    ):
        await GitWriter(tmp_path / "state").write(change(repo, "1"))
    assert git("rev-parse", "main", cwd=remote).strip() == head


@pytest.fixture
def gnupg_home() -> Iterator[tuple[Path, str]]:
    """A fresh GnuPG home with an unprotected signing key; its gpg-agent is stopped afterwards."""
    # gpg-agent's socket path must stay short, so not under pytest's deep tmp_path
    home = Path(tempfile.mkdtemp(prefix="gpg-"))
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(
            ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
             f"{AUTHOR.name} <{AUTHOR.email}>", "ed25519", "sign", "never"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        listing = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        yield home, fingerprint
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
async def test_openpgp_signed_commits_verify_with_gpg(
    tmp_path: Path, remote: Path, gnupg_home: tuple[Path, str]
) -> None:
    home, fingerprint = gnupg_home
    signing = Signing("openpgp", key_id=fingerprint, gnupg_home=str(home))
    repo = Repository("fleet", f"file://{remote}", author=AUTHOR, signing=signing)
    commit = (await GitWriter(tmp_path / "state").write(change(repo, "1"))).commit
    assert verify(remote, commit, env={"GNUPGHOME": str(home)}) == ["G", f"{AUTHOR.name} <{AUTHOR.email}>", fingerprint]
    with pytest.raises(GitCommandError):
        verify(remote, f"{commit}^", env={"GNUPGHOME": str(home)})
