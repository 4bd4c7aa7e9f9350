"""Serve bare repositories over HTTP on loopback with ``git http-backend``, the way a Git host does for Flux.

A small threaded HTTP server runs ``git http-backend`` as a CGI program for each request (an argument list,
never a shell), passing the request body through and turning the CGI ``Status:`` header into the HTTP status.
Read-only by default: pushing over HTTP is refused, the service pushes to the same bare repositories with
``file://``. With ``push=True`` (the upstream of Keptn's resource-service, which only pushes over HTTP(S)) pushes
are accepted from any user name, as a Git host would after authenticating it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CGI_TIMEOUT = 60


class GitHttpServer:
    """Every bare repository under ``root``, at ``http://127.0.0.1:<port>/<its path below root>``."""

    def __init__(self, root: Path, *, push: bool = False) -> None:
        self.root = root
        self.push = push
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, bare: Path) -> str:
        return f"http://127.0.0.1:{self.port}/{bare.relative_to(self.root).as_posix()}"

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


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one response per connection: no chunking, the CGI output is sent as is

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class names it so)
            server.requests.append(f"{self.command} {self.path}")

        def _chunked_body(self) -> bytes:
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def _cgi(self) -> None:
            url = urlsplit(self.path)
            pushing = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
            if pushing and not server.push:
                self.send_error(403, "read-only: push with file:// instead")
                return
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = self._chunked_body()  # libgit2 pushes with chunked requests
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            length = len(body)
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
                "CONTENT_LENGTH": str(length),
                "REMOTE_ADDR": self.client_address[0],
            }
            if pushing:
                env["REMOTE_USER"] = "keptn"  # git http-backend accepts pushes from an authenticated user
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
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
