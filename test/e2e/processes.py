"""Local processes of the end-to-end environment: started with an argument list, logged to a file, always stopped."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

POLL = 0.2  # seconds between readiness probes; a probe, not a clock: deadlines bound every wait


class ProcessError(RuntimeError):
    """A process of the environment exited or never became ready; the message ends with its log's tail."""


class Process:
    """One program, its output in ``<logs>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], logs: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        logs.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env or {})
            )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> ProcessError:
        return ProcessError(f"{self.name} {what} (log {self.log}):\n{self.tail()}")

    def check_running(self) -> None:
        code = self._proc.poll()
        if code is not None:
            raise self.failure(f"exited with {code}")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Probe ``ready`` until it holds; fail early when the process dies, with its log."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_running()
            if time.monotonic() > deadline:
                raise self.failure(f"not {what} after {timeout:.0f}s")
            time.sleep(POLL)

    def wait_http_ok(self, url: str, timeout: float) -> None:
        self.wait_until(lambda: http_ok(url), f"answering {url}", timeout)

    def stop(self, timeout: float = 15) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class ProcessGroup:
    """Processes a part of the environment started, in order; stopped in reverse, also when starting fails."""

    def __init__(self) -> None:
        self._processes: list[Process] = []

    @property
    def processes(self) -> tuple[Process, ...]:
        return tuple(self._processes)

    @contextmanager
    def _starting(self) -> Iterator[None]:
        """Stop what was started if the block fails (or is interrupted), then re-raise."""
        try:
            yield
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def check_running(self) -> None:
        for process in self._processes:
            process.check_running()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= int(response.status) < 300
    except (OSError, urllib.error.URLError):
        return False
