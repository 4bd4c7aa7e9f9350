"""One small hostile file in the GitOps repository must not stall the service (issue 13).

The whole loop — the service, a real nats-server, a real bare git remote, the SIMULATED Flux — with a rule of
project ``hostile`` whose values.yaml is an alias bomb, a 50 MB manifest, or a file within every limit but too slow
to edit before the deadline. Each such deployment ends errored/fail with a message naming the file and the limit,
leaves no commit in the remote, while /healthz keeps answering (the service runs in this test's event loop, so a
blocked loop would also block this test) and a concurrent deployment of project ``sockshop`` — in the same
repository, often in the same write round — passes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import start_loop, stop_loop, triggered
from support import git, service_config

HOSTILE_FILE = "hostile/dev/carts/values.yaml"

HOSTILE_RULE = """\
  - match: {project: hostile, stage: "*", service: "*"}
    repository: fleet
    updates:
      - file: "hostile/{stage}/{service}/values.yaml"
        yamlPath: image.tag
        value: "{image.tag}"
    wait: {none: {}}
"""


def alias_bomb() -> str:
    """The issue's 422-byte file: eight levels of nine aliases each (43 million nodes when expanded)."""
    lines = ["a0: &a0 [x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\nimage:\n  tag: 0.13.0\n"


def manifest(size: int) -> str:
    """A flat multi-document manifest of about ``size`` characters, ``image.tag`` in its last document."""
    doc = "kind: ConfigMap\nmetadata: {name: cm-%d}\ndata:\n" + "".join(f"  key{k}: value {k}\n" for k in range(40))
    count = max(1, size // len(doc % 0))
    return "---\n".join(doc % i for i in range(count)) + "---\nimage:\n  tag: 0.13.0\n"


class Prober:
    """GETs /healthz from a thread, over and over, until stopped; records every answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)  # one kept-alive connection
        try:
            while not self._stop.is_set():
                try:
                    connection.request("GET", "/healthz")
                    response = connection.getresponse()
                    response.read()
                    self.answers.append(response.status)
                except OSError as error:
                    self.answers.append(0)
                    self.errors.append(repr(error))
                    connection.close()
        finally:
            connection.close()

    async def __aenter__(self) -> Prober:
        self._thread.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)  # its last request needs the loop to answer


def commits_for(remote: Path, triggered_id: str) -> list[str]:
    return git("log", "main", f"--grep=Keptn-Triggered-Id: {triggered_id}", "--format=%H", cwd=remote).split()


CASES: dict[str, tuple[Callable[[], str], dict[str, Any], str]] = {
    "alias bomb": (
        alias_bomb,
        {},
        f"{HOSTILE_FILE}: YAML aliases expand to more than 100000 nodes (limit KEPTN_GITOPS_YAML_MAX_NODES)",
    ),
    "50 MB manifest": (
        lambda: manifest(50 * 1024 * 1024),
        {},
        f"{HOSTILE_FILE}: the file has {{size}} bytes, more than the 4194304 bytes allowed "
        "(limit KEPTN_GITOPS_MAX_FILE_BYTES)",
    ),
    "slow manifest past the deadline": (
        lambda: manifest(1024 * 1024),
        {"edit_timeout_seconds": 1.0},
        f"{HOSTILE_FILE}: editing took longer than 1 s; the file is too slow to process "
        "(limit KEPTN_GITOPS_EDIT_TIMEOUT)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_file_fails_its_deployment_alone_while_the_service_stays_responsive(
    tmp_path: Path, nats_url: str, case: str
) -> None:
    make, settings, expected = CASES[case]
    text = make()
    remote = tmp_path / "remote.git"  # where start_loop's make_remote puts it
    config = service_config(remote).replace("rules:\n", "rules:\n" + HOSTILE_RULE, 1)
    loop = await start_loop(tmp_path, nats_url, config=config, files={HOSTILE_FILE: text}, settings=settings)
    try:
        assert loop.service.probes is not None
        before = git("rev-list", "--count", "main", cwd=remote)
        hostile = triggered(project="hostile")
        other = triggered("docker.io/keptnexamples/carts:0.13.2")
        async with Prober(loop.service.probes.port) as prober:
            await loop.publish(hostile)
            await loop.publish(other)
            finished = await loop.finished(hostile["id"], timeout=90)
            passed = await loop.finished(other["id"], timeout=90)
        assert finished["data"]["status"] == "errored" and finished["data"]["result"] == "fail"
        assert finished["data"]["message"] == expected.format(size=len(text.encode()))
        assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(hostile["id"])] == ["started", "finished"]
        assert commits_for(remote, hostile["id"]) == []
        assert passed["data"]["result"] == "pass", json.dumps(passed["data"])
        assert len(commits_for(remote, other["id"])) == 1
        assert int(git("rev-list", "--count", "main", cwd=remote)) == int(before) + 1
        assert prober.answers and set(prober.answers) == {200}, prober.errors[:3]
        print(f"\n{case}: /healthz answered {len(prober.answers)} times while both deployments ran")
    finally:
        await stop_loop(loop)
