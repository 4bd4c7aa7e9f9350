"""Run the ``git`` CLI asynchronously, with an isolated environment and credentials that never leak.

Why the CLI and not GitPython: GitPython's own docs warn that it leaks resources in long-running processes,
and Kargo and Argo CD both drive the CLI (shallow clones, credential helpers, signing for free). The soak that
backs this choice is ``bench/git_soak.py``.

Isolation: no system/global git config is read (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``),
git never prompts (``GIT_TERMINAL_PROMPT=0``), and the identity comes from our config. Credentials: an HTTPS
token is handed over by an askpass helper reading it from the child's environment (not the URL, not argv,
so not in ``ps``); SSH uses an explicit key with strict host-key checking. Every output is scrubbed of the
secret before it can reach a log line or an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keptn_gitops_service.config.model import Auth, Author, NoAuth, Repository, Signing, SshAuth, TokenAuth
from keptn_gitops_service.errors import GitError

DEFAULT_TIMEOUT = 300.0
_ASKPASS = """#!/bin/sh
# keptn-gitops-service askpass helper: answers git's prompts from its own environment.
case "$1" in
  Username*) printf '%s\\n' "$KEPTN_GITOPS_GIT_USERNAME" ;;
  *) printf '%s\\n' "$KEPTN_GITOPS_GIT_PASSWORD" ;;
esac
"""


@dataclass(frozen=True)
class GitResult:
    """What a git command printed (already scrubbed) and how it exited."""

    returncode: int
    stdout: str
    stderr: str


class Git:
    """A git command runner bound to one repository's credentials and identity."""

    def __init__(
        self,
        *,
        auth: Auth,
        author: Author,
        helper_dir: Path,
        timeout: float = DEFAULT_TIMEOUT,
        label: str = "",
    ) -> None:
        """``label`` names the repository in error messages (:func:`repository_label`)."""
        self._auth = auth
        self._author = author
        self._helper_dir = helper_dir
        self._timeout = timeout
        self._for = f" for {label}" if label else ""
        self._of = f" of {label}" if label else ""

    async def run(
        self,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        stdin: bytes | None = None,
        config: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "",
    ) -> GitResult:
        """Run ``git <args>``; raise :class:`GitError` (scrubbed) on failure when ``check``.

        ``config`` becomes ``-c key=value`` options of this command only; ``env`` is added to its environment.
        Messages name the command ``git <name>`` (by default its first argument).
        """
        name = name or args[0]
        base_env, secrets = self._environment()
        env = {**base_env, **(env or {})}
        options = [f"{key}={value}" for key, value in (config or {}).items()]
        argv = ["git", "-c", "credential.helper=", "-c", "core.hooksPath=/dev/null"]
        argv += [part for option in options for part in ("-c", option)]
        argv += args
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: see kill_group
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self._timeout)
        except TimeoutError:
            kill_group(proc)
            await proc.wait()
            raise GitError(f"git {name}{self._for} did not finish within {self._timeout:.0f}s") from None
        except asyncio.CancelledError:
            kill_group(proc)
            await proc.wait()
            raise
        result = GitResult(
            proc.returncode or 0,
            scrub(out.decode(errors="replace"), secrets),
            scrub(err.decode(errors="replace"), secrets),
        )
        if check and result.returncode != 0:
            raise GitError(f"git {name}{self._for} failed: {last_lines(result.stderr or result.stdout)}")
        return result

    async def spawn(self, *args: str, cwd: Path) -> asyncio.subprocess.Process:
        """Start ``git <args>`` as a long-lived child with pipes on stdin and stdout (``git cat-file --batch``), in
        the same isolated environment and with the same credentials as :meth:`run`; its stderr is discarded."""
        env, _ = self._environment()
        argv = ["git", "-c", "credential.helper=", "-c", "core.hooksPath=/dev/null", *args]
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                limit=2**20,
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from None

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def author(self) -> Author:
        return self._author

    def _environment(self) -> tuple[dict[str, str], list[str]]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._helper_dir),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self._author.name,
            "GIT_AUTHOR_EMAIL": self._author.email,
            "GIT_COMMITTER_NAME": self._author.name,
            "GIT_COMMITTER_EMAIL": self._author.email,
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        }
        secrets: list[str] = []
        if isinstance(self._auth, TokenAuth):
            token = os.environ.get(self._auth.token_env, "")
            if not token:
                raise GitError(f"the git token environment variable {self._auth.token_env}{self._of} is not set")
            env["GIT_ASKPASS"] = str(self._askpass())
            env["KEPTN_GITOPS_GIT_USERNAME"] = self._auth.username
            env["KEPTN_GITOPS_GIT_PASSWORD"] = token
            secrets.append(token)
        elif isinstance(self._auth, SshAuth):
            env["GIT_SSH_COMMAND"] = ssh_command(self._auth)
        elif not isinstance(self._auth, NoAuth):  # pragma: no cover - exhaustive
            raise GitError("unknown auth type")
        return env, secrets

    def _askpass(self) -> Path:
        path = self._helper_dir / "askpass.sh"
        if not path.exists() or path.read_text() != _ASKPASS:
            self._helper_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(_ASKPASS)
            tmp.chmod(stat.S_IRWXU)
            tmp.replace(path)
        return path


async def check_access(repository: Repository, *, helper_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Reach ``repository``'s branch with its credentials (``git ls-remote``), as the writer will; raise
    :class:`GitError` naming the repository when the credentials are missing or refused, the remote cannot be
    reached, or the branch does not exist."""
    label = repository_label(repository)
    git = Git(auth=repository.auth, author=repository.author, helper_dir=helper_dir, timeout=timeout, label=label)
    branch = f"refs/heads/{repository.branch}"
    listed = await git.run("ls-remote", "--heads", "--", repository.url, branch)
    if not listed.stdout.strip():
        raise GitError(f"the branch {repository.branch} does not exist in {label}")


def repository_label(repository: Repository) -> str:
    """How messages name a repository entry: ``repository 'fleet' (https://git.example.com/fleet.git, branch
    main)``, the URL without credentials."""
    return f"repository '{repository.name}' ({display_url(repository.url)}, branch {repository.branch})"


def display_url(url: str) -> str:
    """``url`` without credentials: no user information in an http(s) URL, no ``user:password@`` in any other."""
    return re.sub(r"(?i)^(https?://)[^/]*@|^([a-z][a-z0-9+.-]*://)[^/@]*:[^/@]*@", r"\1\2", url)


def signing_options(signing: Signing) -> tuple[dict[str, str], dict[str, str]]:
    """The git configuration and the environment that make ``git commit -S`` sign with ``signing``'s key."""
    if signing.format == "ssh":
        if not signing.key_file:
            raise GitError("SSH commit signing needs a key file")
        config = {"gpg.format": "ssh", "user.signingkey": signing.key_file}
        return config, {}
    if signing.format == "openpgp":
        if not (signing.key_id and signing.gnupg_home):
            raise GitError("OpenPGP commit signing needs a key id and a GnuPG home directory")
        return {"gpg.format": "openpgp", "user.signingkey": signing.key_id}, {"GNUPGHOME": signing.gnupg_home}
    raise GitError(f"unknown commit signing format '{signing.format}'")


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill git and the helpers it started (``git-upload-pack``, ``ssh``, ``git-remote-https``). They inherit git's
    pipes, so with git alone killed ``wait()`` would block as long as a stalled remote keeps a helper alive."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def ssh_command(auth: SshAuth) -> str:
    """The ``GIT_SSH_COMMAND`` for a key (git runs it through a shell, so every path is quoted)."""
    parts = ["ssh", "-i", auth.private_key_file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    parts += ["-o", "StrictHostKeyChecking=yes"]
    if auth.known_hosts_file:
        parts += ["-o", f"UserKnownHostsFile={auth.known_hosts_file}"]
    return " ".join(shlex.quote(p) for p in parts)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret, and any ``user:password@`` in URLs, with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _strip_url_credentials(text)


def _strip_url_credentials(text: str) -> str:
    return re.sub(r"(?i)(https?://)[^/@\s]+@", r"\1***@", text)


def last_lines(text: str, count: int = 3) -> str:
    """The last meaningful lines of git's output, joined for an error message."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no output"
