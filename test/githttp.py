"""A real smart-HTTP git server for tests: ``git http-backend`` behind HTTP Basic authentication with a token.

Every authorised request runs a hook while the git client waits for the answer, so a test can look at the
machine's processes at exactly the moment the token is in use.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import GIT_ENV


@dataclass
class GitHttpServer:
    """What the running server saw."""

    url: str
    denied: int = 0
    authorised: int = 0
    on_authorised: list[Callable[[], None]] = field(default_factory=list)


def _pkt(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


@contextmanager
def git_http_server(root: Path, *, user: str, token: str) -> Iterator[GitHttpServer]:
    """Serve the bare repositories under ``root`` on a free loopback port at ``http://127.0.0.1:<port>/``.

    A repository called ``error.git`` answers every request with a git protocol error that quotes the token,
    the way a careless server might."""
    expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
    state = GitHttpServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def _serve(self) -> None:
            if self.headers.get("Authorization") != expected:
                state.denied += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            state.authorised += 1
            for hook in state.on_authorised:
                hook()
            path, _, query = self.path.partition("?")
            if path.startswith("/error.git/"):
                self._send(200, {"Content-Type": "application/x-git-upload-pack-advertisement"}, self._error())
                return
            body = self._body()
            env = {
                **GIT_ENV,
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, {}
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers[name] = value
            self._send(status, headers, payload)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def _error(self) -> bytes:
            return _pkt("# service=git-upload-pack\n") + b"0000" + _pkt(f"ERR token {token} is not valid here\n")

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="git-http-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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
