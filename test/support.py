"""Real parts for tests: bare git remotes, a git smart-HTTP server, free ports and the service's configuration
(the nats-server is keptn_gitops_sim.natsd.NatsServer, through the ``nats_server`` fixture of test/conftest.py).
No mocks of things that run here."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from keptn_gitops_sim.natsd import free_port as free_port

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Someone Else",
    "GIT_AUTHOR_EMAIL": "someone@example.invalid",
    "GIT_COMMITTER_NAME": "Someone Else",
    "GIT_COMMITTER_EMAIL": "someone@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


class GitCommandError(RuntimeError):
    """A git command of a test failed; the message carries its exit code and what it wrote to stderr."""

    def __init__(self, args: tuple[str, ...], cwd: Path | None, returncode: int, stderr: str) -> None:
        where = f" in {cwd}" if cwd is not None else ""
        super().__init__(f"git {' '.join(args)}{where} failed with exit code {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def git(
    *args: str,
    cwd: Path | None = None,
    input: str | bytes | None = None,  # noqa: A002 - subprocess's name for it
    env: Mapping[str, str] | None = None,
) -> str:
    """Run git as "someone else" (a human or another bot) — an argument list, never a shell string — in ``cwd``,
    with ``input`` on its stdin and ``env`` on top of the environment; return its stdout exactly (no newline
    translation; bytes that are not UTF-8 come back as surrogates: ``.encode("utf-8", "surrogateescape")``).
    Raise :class:`GitCommandError` with git's stderr when it fails."""
    data = input.encode() if isinstance(input, str) else input
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    done = subprocess.run(["git", *args], cwd=cwd, env=full_env, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise GitCommandError(args, cwd, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout.decode("utf-8", "surrogateescape")


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


# ------------------------------------------------------------------------------------------ git over HTTP

CGI_TIMEOUT = 60


class GitHttpServer:
    """Every bare repository under ``root`` at ``http://127.0.0.1:<port>/<its path below root>``, served by
    ``git http-backend`` as a CGI program (an argument list, never a shell), the way a Git host serves them.

    Read-only unless ``push``. With a ``token``, every request needs HTTP Basic authentication as ``user`` with
    it (a request without it is answered 401 and counted in ``denied``), every authorised request runs the
    ``on_authorised`` hooks while the git client waits for the answer (so a test can look at the machine's
    processes at exactly the moment the token is in use), and a repository called ``error.git`` answers with a git
    protocol error that quotes the token, the way a careless server might."""

    def __init__(self, root: Path, *, push: bool = False, user: str = "keptn", token: str | None = None) -> None:
        self.root = root
        self.push = push
        self.user = user
        self.token = token
        self.requests: list[str] = []
        self.denied = 0
        self.authorised = 0
        self.on_authorised: list[Callable[[], None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _git_http_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bare: Path) -> str:
        return f"{self.base_url}/{bare.relative_to(self.root).as_posix()}"

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _pkt(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def _git_http_handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    expected = None
    if server.token is not None:
        expected = "Basic " + base64.b64encode(f"{server.user}:{server.token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one response per connection: no chunking, the CGI output is sent as is

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
            server.requests.append(f"{self.command} {self.path}")

        def _serve(self) -> None:
            if expected is not None:
                if self.headers.get("Authorization") != expected:
                    server.denied += 1
                    self._send(401, [("WWW-Authenticate", 'Basic realm="git"')], b"")
                    return
                server.authorised += 1
                for hook in server.on_authorised:
                    hook()
            url = urlsplit(self.path)
            if server.token is not None and url.path.startswith("/error.git/"):
                error = _pkt(f"ERR token {server.token} is not valid here\n")
                payload = _pkt("# service=git-upload-pack\n") + b"0000" + error
                self._send(200, [("Content-Type", "application/x-git-upload-pack-advertisement")], payload)
                return
            pushing = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
            if pushing and not server.push:
                self.send_error(403, "read-only: push with file:// instead")
                return
            body = self._body()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": url.path,
                "QUERY_STRING": url.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
            }
            if pushing or expected is not None:
                env["REMOTE_USER"] = server.user  # git http-backend accepts pushes from an authenticated user
            for header in ("Git-Protocol", "Content-Encoding", "Accept"):
                if header in self.headers:
                    env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
            proc = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=CGI_TIMEOUT, check=False
            )
            head, blank, payload = proc.stdout.partition(b"\r\n\r\n")
            if not blank or proc.returncode != 0:
                self.send_error(500, f"git http-backend failed: {proc.stderr.decode(errors='replace').strip()}")
                return
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                else:
                    headers.append((name, value.strip()))
            self._send(status, headers, payload)

        def _body(self) -> bytes:
            if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""
            chunks = []  # libgit2 and git's HTTP helper send large requests chunked
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def command_lines_containing(text: str) -> list[str]:
    """The command lines of every process on this machine that contain ``text`` (what ``ps`` shows)."""
    hits = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            line = raw.replace(b"\0", b" ").decode(errors="replace")
            if text in line:
                hits.append(line)
    return hits


# ------------------------------------------------------------------------------------------ the configuration


def kustomize_image(file: str = "apps/{stage}/{service}/kustomization.yaml") -> tuple[str, ...]:
    """An update (its lines): the kustomize ``images:`` entry of the service's image in ``file``."""
    return (f'file: "{file}"', 'kustomizeImage: {name: "docker.io/keptnexamples/{service}"}')


VALUES_TAG = ('file: "apps/{stage}/{service}/values.yaml"', "yamlPath: image.tag", 'value: "{image.tag}"')
"""An update (its lines): ``image.tag`` of the service's ``values.yaml``."""
WAIT_FLUX = 'flux: {kind: Kustomization, name: "{service}", namespace: "{project}-{stage}"}'
WAIT_NONE = "{none: {}}"


@dataclass(frozen=True)
class ConfigRule:
    """One rule of a test configuration, of the repository ``fleet``. The default is the demo's rule: every
    sockshop service, its kustomize overlay, a Flux wait of 2m, a local deployment URI."""

    match: str = '{project: sockshop, stage: "*", service: "*"}'
    updates: tuple[tuple[str, ...], ...] = (kustomize_image(),)
    wait: str = WAIT_FLUX  # a flow mapping (WAIT_NONE) is written on the ``wait:`` line, with no timeout
    timeout: str = "2m"
    deployment_uris: bool = True
    extra: tuple[str, ...] = ()
    """More keys of the rule, each a line as written under it (``mode: pullRequest``)."""

    def lines(self) -> list[str]:
        lines = [
            f"  - match: {self.match}",
            "    repository: fleet",
            *(f"    {line}" for line in self.extra),
            "    updates:",
        ]
        for update in self.updates:
            lines += [("      - " if i == 0 else "        ") + line for i, line in enumerate(update)]
        if self.wait.startswith("{"):
            lines.append(f"    wait: {self.wait}")
        else:
            lines += ["    wait:", f"      {self.wait}", f"      timeout: {self.timeout}"]
        if self.deployment_uris:
            lines += ["    deploymentURIs:", '      local: ["http://{service}.{project}-{stage}:80"]']
        return lines


NO_WAIT = ConfigRule(match="{project: sockshop}", wait=WAIT_NONE, deployment_uris=False)
"""Every sockshop service, finished right after the push."""


def service_config(url: str | Path, *rules: ConfigRule, forge: str = "") -> str:
    """The service's configuration YAML: the repository ``fleet`` at ``url`` (a bare repository's path is
    written as its ``file://`` URL; ``forge``: its ``forge`` flow mapping), then ``rules`` (by default one
    :class:`ConfigRule`)."""
    lines = [
        "apiVersion: gitops.keptn-contrib/v1",
        "kind: GitOpsConfig",
        "repositories:",
        "  - name: fleet",
        f"    url: {f'file://{url}' if isinstance(url, Path) else url}",
        "    branch: main",
        "    author: {name: keptn-gitops-service, email: gitops@keptn.invalid}",
        *([f"    forge: {forge}"] if forge else []),
        "rules:",
    ]
    for rule in rules or (ConfigRule(),):
        lines += rule.lines()
    return "\n".join(lines) + "\n"
