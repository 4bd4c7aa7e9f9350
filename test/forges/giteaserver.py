"""A real Gitea for the forge tests: built by ``python test/e2e/build.py gitea``, started on a free loopback port.

:class:`GiteaServer` writes its own ``app.ini`` (SQLite, offline, no mail, no SSH, no LFS, a secret key and internal
token made for this run) into a temporary directory, runs ``gitea web`` there and stops it by its PID. It creates
two users with the ``gitea admin`` command — ``owner`` (an administrator, who owns the test repositories and opens
the pull requests) and ``reviewer`` (a collaborator who approves and merges) — and an API token for each. The
helpers create a repository with a first commit on ``main``, push branches with real git over HTTP (the token in
an ``http.extraHeader`` passed through the environment, never in an argument list) and wait until Gitea shows the
pushed commit: Gitea processes a push asynchronously, so a pull request opened right after ``git push`` could find
no branch yet.
"""

from __future__ import annotations

import base64
import getpass
import itertools
import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.build import GiteaTools, gitea_location
from e2e.processes import Process

from keptn_gitops_sim.natsd import free_port

START_TIMEOUT = 60.0  # seconds; Gitea answers about a second after it starts, migrations included
WAIT_TIMEOUT = 30.0  # seconds a pushed branch may take to show up in the API
POLL = 0.1
SCOPES = ["write:repository", "write:issue", "write:user"]


class GiteaError(RuntimeError):
    """The test Gitea refused a set-up call; the message holds its answer."""


@dataclass(frozen=True)
class User:
    name: str
    password: str
    token: str


@dataclass(frozen=True)
class Repo:
    """A repository on the test Gitea with a local clone that pushes as ``owner``."""

    owner: str
    name: str
    clone: Path

    @property
    def path(self) -> str:
        return f"{self.owner}/{self.name}"


class GiteaServer:
    """One Gitea process; :meth:`start` also creates the two users and their tokens."""

    def __init__(self, tools: GiteaTools, workdir: Path) -> None:
        self.tools = tools
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/v1"
        self.config = workdir / "custom" / "conf" / "app.ini"
        self.started_in = 0.0
        """Seconds from starting the process until it answered its health check."""
        self._process: Process | None = None
        self._users: dict[str, User] = {}
        self._names = itertools.count(1)

    # -- the process ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._write_config()
        started = time.monotonic()
        self._process = Process(
            "gitea",
            [str(self.tools.gitea), "web", "--config", str(self.config), "--work-path", str(self.workdir)],
            self.workdir / "log",
            env=self._env(),
        )
        try:
            self._process.wait_http_ok(f"{self.url}/api/healthz", START_TIMEOUT)
            self.started_in = time.monotonic() - started
            self._users["owner"] = self._create_user("owner", admin=True)
            self._users["reviewer"] = self._create_user("reviewer", admin=False)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def log_tail(self) -> str:
        return self._process.tail() if self._process is not None else ""

    def _env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "USER": getpass.getuser(),
            "GITEA_WORK_DIR": str(self.workdir),
            "LANG": "C.UTF-8",
        }

    def _write_config(self) -> None:
        work = self.workdir
        self.config.parent.mkdir(parents=True, exist_ok=True)
        # Gitea writes generated keys back into app.ini at start, so it must be a file of its own, writable.
        self.config.write_text(
            f"""APP_NAME = keptn-gitops-service tests
RUN_USER = {getpass.getuser()}
RUN_MODE = prod
WORK_PATH = {work}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {self.port}
DOMAIN = 127.0.0.1
ROOT_URL = {self.url}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = {work / "data"}
STATIC_ROOT_PATH = {self.tools.static_root}

[database]
DB_TYPE = sqlite3
PATH = {work / "data" / "gitea.db"}
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = {work / "repositories"}
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(32)}
INTERNAL_TOKEN = {secrets.token_urlsafe(64)}
PASSWORD_HASH_ALGO = pbkdf2
MIN_PASSWORD_LENGTH = 8

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true
ENABLE_NOTIFY_MAIL = false
DEFAULT_KEEP_EMAIL_PRIVATE = false

[mailer]
ENABLED = false

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[actions]
ENABLED = false

[packages]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = {work / "log"}
""",
            encoding="utf-8",
        )

    # -- users -------------------------------------------------------------------------------------------------

    def user(self, name: str) -> User:
        return self._users[name]

    @property
    def owner(self) -> User:
        return self._users["owner"]

    @property
    def reviewer(self) -> User:
        return self._users["reviewer"]

    def _create_user(self, name: str, *, admin: bool) -> User:
        argv = [
            str(self.tools.gitea),
            "admin",
            "user",
            "create",
            "--username",
            name,
            "--email",
            f"{name}@example.invalid",
            "--random-password",  # printed once on stdout, never in an argument list
            "--must-change-password=false",
            "--config",
            str(self.config),
            "--work-path",
            str(self.workdir),
        ]
        if admin:
            argv.append("--admin")
        proc = subprocess.run(argv, env=self._env(), capture_output=True, text=True, timeout=60, check=False)
        found = re.search(r"generated random password is '([^']+)'", proc.stdout)
        if proc.returncode != 0 or found is None:
            raise GiteaError(f"gitea admin user create {name} failed ({proc.returncode}):\n{proc.stderr}")
        password = found.group(1)
        basic = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
        created = self._call("POST", f"/users/{name}/tokens", {"name": "tests", "scopes": SCOPES}, auth=basic)
        return User(name, password, str(created["sha1"]))

    # -- the API ---------------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, user: str = "owner", ok: tuple[int, ...] = ()) -> Any:
        """Call the API as ``user`` (``owner`` or ``reviewer``); a status >= 400 not in ``ok`` raises."""
        return self._call(method, path, body, auth=f"token {self._users[user].token}", ok=ok)

    def _call(self, method: str, path: str, body: Any, *, auth: str, ok: tuple[int, ...] = ()) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Authorization", auth)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return None
            raise GiteaError(f"{method} {path} answered {exc.code}: {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw.strip() else None

    # -- repositories and git ------------------------------------------------------------------------------------

    def create_repo(self, prefix: str = "fleet") -> Repo:
        """A new repository of ``owner`` with one commit on ``main``, ``reviewer`` a collaborator with write
        access, and a local clone in the work directory."""
        name = f"{prefix}-{next(self._names)}"
        self.api("POST", "/user/repos", {"name": name, "default_branch": "main", "auto_init": False})
        self.api("PUT", f"/repos/owner/{name}/collaborators/reviewer", {"permission": "write"})
        clone = self.workdir / "clones" / name
        clone.mkdir(parents=True)
        repo = Repo("owner", name, clone)
        self.git(repo, "init", "--quiet", "--initial-branch=main")
        self.git(repo, "remote", "add", "origin", f"{self.url}/owner/{name}.git")
        self.commit(repo, "README.md", f"# {name}\n", "first commit")
        sha = self.push(repo, "main")
        # Until Gitea has handled the first push the repository counts as empty, and asking for one of its
        # branches then can answer 500 (a nil pointer in Gitea 1.26): wait for that first.
        self._wait(lambda: not self.api("GET", f"/repos/{repo.path}")["empty"], f"{repo.path} to hold {sha}")
        self.wait_branch(repo, "main", sha)
        return repo

    def git(self, repo: Repo, *args: str) -> str:
        token = base64.b64encode(f"owner:{self.owner.token}".encode()).decode() if self._users else ""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "owner",
            "GIT_AUTHOR_EMAIL": "owner@example.invalid",
            "GIT_COMMITTER_NAME": "owner",
            "GIT_COMMITTER_EMAIL": "owner@example.invalid",
            # The credential travels in the environment, never in an argument list that `ps` shows.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
        }
        proc = subprocess.run(
            ["git", *args], cwd=repo.clone, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise GiteaError(f"git {' '.join(args)} in {repo.clone} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout.strip()

    def commit(self, repo: Repo, name: str, content: str, message: str) -> str:
        (repo.clone / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.clone / name).write_text(content, encoding="utf-8")
        self.git(repo, "add", "--all")
        self.git(repo, "commit", "--quiet", "-m", message)
        return self.git(repo, "rev-parse", "HEAD")

    def push(self, repo: Repo, branch: str) -> str:
        self.git(repo, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return self.git(repo, "rev-parse", "HEAD")

    def push_branch(self, repo: Repo, branch: str, name: str | None = None, base: str = "main") -> str:
        """A new branch ``branch`` from ``origin/<base>`` with one commit changing ``name``, pushed and visible in
        the API; returns its commit."""
        self.git(repo, "fetch", "--quiet", "origin", base)
        self.git(repo, "checkout", "--quiet", "-B", branch, "FETCH_HEAD")
        self.commit(repo, name or f"{branch.replace('/', '-')}.txt", f"{branch}\n", f"change on {branch}")
        sha = self.push(repo, branch)
        self.wait_branch(repo, branch, sha)
        return sha

    def branch_sha(self, repo: Repo, branch: str) -> str | None:
        found = self.api("GET", f"/repos/{repo.path}/branches/{branch}", ok=(404,))
        return None if found is None else str(found["commit"]["id"])

    def wait_branch(self, repo: Repo, branch: str, sha: str) -> None:
        """Until the API shows ``branch`` at ``sha`` (Gitea handles pushes in a queue)."""
        self._wait(lambda: self.branch_sha(repo, branch) == sha, f"{repo.path} branch {branch} to show {sha}")

    def merge_as(self, user: str, repo: Repo, number: int, how: str = "merge") -> str:
        """``user`` merges pull request ``number`` in Gitea once Gitea has found it mergeable (it checks a new pull
        request in the background); returns the merge commit."""
        path = f"/repos/{repo.path}/pulls/{number}"
        self._wait(lambda: bool(self.api("GET", path, user=user)["mergeable"]), f"{repo.path}#{number} to be mergeable")
        self.api("POST", f"{path}/merge", {"Do": how}, user=user)
        merged: str = self.api("GET", path)["merge_commit_sha"]
        return merged

    @staticmethod
    def _wait(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise GiteaError(f"waited {WAIT_TIMEOUT:.0f}s in vain for {what}")
            time.sleep(POLL)

    def commits_on(self, repo: Repo, branch: str) -> list[str]:
        """The commits reachable from ``branch`` on the server, newest first (fetched with git)."""
        self.git(repo, "fetch", "--quiet", "origin", branch)
        return self.git(repo, "rev-list", "FETCH_HEAD").split()


class GiteaMissingError(RuntimeError):
    """The Gitea build is not in the cache."""


@contextmanager
def running_gitea(workdir: Path) -> Iterator[GiteaServer]:
    """A started :class:`GiteaServer` in ``workdir``, stopped by its PID afterwards; :class:`GiteaMissingError` when
    the build is missing (the fixtures turn that into a failure, never a skip)."""
    tools = gitea_location()
    if not tools.gitea.is_file() or not (tools.static_root / "options").is_dir():
        raise GiteaMissingError(
            f"Gitea {tools.version} is not built (no {tools.gitea}): run `python test/e2e/build.py gitea` first "
            "(./scripts/test does)"
        )
    server = GiteaServer(tools, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
