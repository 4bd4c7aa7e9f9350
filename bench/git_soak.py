"""Soak: N deployments through one long-lived process, sampling file descriptors, child processes and RSS.

Compares our writer (the ``git`` CLI driven asynchronously) with the same loop written with GitPython, which
the design card named and whose own docs warn about leaks in long-running processes. Both run in this process
against the same kind of bare remote. Usage: ``python bench/git_soak.py [--count 1000] [--only cli|gitpython]``
(GitPython is only needed for its half: ``pip install gitpython``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchgit import children

from keptn_gitops_service.config.model import Author, Repository
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter

ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@x.invalid",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@x.invalid",
}


def sample() -> tuple[int, int, int]:
    """(open fds, live child processes, RSS in KiB) of this process."""
    fds = len(os.listdir("/proc/self/fd"))
    rss = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:")
    )
    return fds, len(children(os.getpid())), rss


def make_remote(root: Path) -> Path:
    bare, seed = root / "remote.git", root / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True, env=ENV)
    subprocess.run(["git", "clone", "-q", str(bare), str(seed)], check=True, env=ENV)
    (seed / "values.yaml").write_text("image:\n  tag: v0\n")
    for args in (["add", "-A"], ["commit", "-qm", "seed"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", *args], cwd=seed, check=True, env=ENV)
    shutil.rmtree(seed)
    return bare


def soak(name: str, count: int, deploy: Callable[[int], None]) -> list[tuple[int, float, int, int, int]]:
    rows = []
    start = time.perf_counter()
    for i in range(1, count + 1):
        deploy(i)
        if i == 1 or i % max(1, count // 10) == 0:
            rows.append((i, time.perf_counter() - start, *sample()))
    print(f"\n{name}: deployments, seconds, open fds, child processes, RSS KiB")
    for row in rows:
        print(f"  {row[0]:>6} {row[1]:>8.1f} {row[2]:>5} {row[3]:>4} {row[4]:>8}")
    return rows


def cli_deploys(root: Path) -> Callable[[int], None]:
    bare = make_remote(root)
    writer = GitWriter(root / "state")
    repo = Repository(name="soak", url=f"file://{bare}", author=Author("soak", "soak@x.invalid"))
    loop = asyncio.new_event_loop()

    def deploy(i: int) -> None:
        edit = FileEdit("values.yaml", lambda text: f"image:\n  tag: v{i}\n")
        change = Change(repo, (edit,), f"deploy v{i}\n\nKeptn-Triggered-Id: {i}\n", ("Keptn-Triggered-Id", str(i)))
        loop.run_until_complete(writer.write(change))

    return deploy


def gitpython_deploys(root: Path) -> Callable[[int], None]:
    import git  # GitPython

    bare = make_remote(root)
    clone = git.Repo.clone_from(str(bare), str(root / "gp"), env=ENV)
    origin = clone.remotes.origin
    with clone.config_writer() as config:
        config.set_value("user", "name", "soak").set_value("user", "email", "soak@x.invalid")

    def deploy(i: int) -> None:
        origin.fetch()
        clone.head.reset("origin/main", index=True, working_tree=True)
        list(clone.iter_commits("origin/main", grep=f"Keptn-Triggered-Id: {i}", max_count=1))
        (Path(clone.working_tree_dir) / "values.yaml").write_text(f"image:\n  tag: v{i}\n")
        clone.index.add(["values.yaml"])
        clone.index.commit(f"deploy v{i}\n\nKeptn-Triggered-Id: {i}\n")
        origin.push("HEAD:refs/heads/main")

    return deploy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--only", choices=["cli", "gitpython"])
    args = parser.parse_args()
    results = {}
    for name, factory in (("git CLI (ours)", cli_deploys), ("GitPython", gitpython_deploys)):
        if args.only and not name.lower().startswith(args.only[:3]):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                results[name] = soak(name, args.count, factory(Path(tmp)))
            except ImportError:
                print(f"\n{name}: skipped (not installed)", file=sys.stderr)
    print("\nlast/first sample ratios (1.00 = flat):")
    for name, rows in results.items():
        first, last = rows[0], rows[-1]
        per = last[1] / last[0] * 1000
        print(
            f"  {name:<16} fds {last[2] / first[2]:.2f}  children {last[3]}/{first[3]}  "
            f"RSS {last[4] / first[4]:.2f}  {per:.0f} ms/deployment"
        )


if __name__ == "__main__":
    main()
