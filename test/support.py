"""Real parts for tests: bare git remotes, free ports (the nats-server is keptn_gitops_sim.natsd.NatsServer, through the
``nats_server`` fixture of test/conftest.py). No mocks of things that run here."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from keptn_gitops_sim.natsd import free_port

__all__ = ["GIT_ENV", "free_port", "git", "make_remote", "push_unrelated", "racing_remote", "read_remote", "until"]

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Someone Else",
    "GIT_AUTHOR_EMAIL": "someone@example.invalid",
    "GIT_COMMITTER_NAME": "Someone Else",
    "GIT_COMMITTER_EMAIL": "someone@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git as "someone else" (a human or another bot) — an argument list, never a shell string."""
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_remote(tmp: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A bare repository whose ``branch`` holds ``files`` in one commit; returns the bare repo's path."""
    bare = tmp / "remote.git"
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
    work = tmp / "seed"
    git("clone", "--quiet", str(bare), str(work))
    git("checkout", "--quiet", "-B", branch, cwd=work)
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode())
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    shutil.rmtree(work)
    return bare


def read_remote(bare: Path, rel: str, ref: str = "main") -> str:
    return git("show", f"{ref}:{rel}", cwd=bare)


def push_unrelated(bare: Path, work: Path, name: str, *, branch: str = "main") -> str:
    """Another pusher: commit an unrelated file and push it; return the new sha."""
    if not work.exists():
        git("clone", "--quiet", "--branch", branch, str(bare), str(work))
    git("pull", "--quiet", "--ff-only", "origin", branch, cwd=work)
    (work / "other").mkdir(exist_ok=True)
    (work / "other" / name).write_text(f"{name}\n")
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", f"unrelated {name}", cwd=work)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


async def until(predicate: object, timeout: float = 20.0) -> None:
    """Wait (cooperatively) until ``predicate()`` is true; the timeout is only a safety bound."""
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


_RACING_HOOK = """#!{python}
# Installed by test/support.py racing_remote(): while the budget in {budget} lasts, every push that reaches this
# remote finds that another pusher won the race: a commit lands on the branch first, so the pusher's ref update
# fails with "cannot lock ref ... is at X but expected Y", exactly as when two pushers race for real.
import os, pathlib, subprocess, sys
budget = pathlib.Path({budget!r})
left = int(budget.read_text())
if left > 0:
    budget.write_text(str(left - 1))
    env = {{k: v for k, v in os.environ.items() if k not in ("GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY",
           "GIT_ALTERNATE_OBJECT_DIRECTORIES") and not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}}
    def git(*args):
        return subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True).stdout.strip()
    tree = git("rev-parse", "refs/heads/{branch}^{{tree}}")
    new = git("-c", "user.name=other-bot", "-c", "user.email=bot@other.invalid",
              "commit-tree", "-p", "refs/heads/{branch}", "-m", f"other bot {{left}}", tree)
    git("update-ref", "refs/heads/{branch}", new)
sys.stdin.read()
"""


def racing_remote(bare: Path, races: int, *, branch: str = "main") -> Path:
    """Make the next ``races`` pushes to ``bare`` lose a race against another pusher (a server-side hook);
    returns the budget file (write a number into it to change the budget)."""
    budget = bare / "race-budget"
    budget.write_text(str(races))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(_RACING_HOOK.format(python=sys.executable, budget=str(budget), branch=branch))
    hook.chmod(0o755)
    return budget
