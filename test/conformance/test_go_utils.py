"""Compatibility proof from the Go side: keptn/go-utils (v0.20.4, as in keptn 1.4.5) drives the whole loop.

A Go program (``go/main.go``) plays the shipyard-controller: it builds the ``.triggered`` event with go-utils'
types, publishes it on NATS as structured CloudEvents JSON (subject = type) and decodes our ``.started`` and
``.finished`` with go-utils, checking what the shipyard-controller relies on and the
helm-service-shaped payload. The service runs in-process against a real nats-server, a bare git
remote and the simulated Kubernetes API + Flux (``harness.start_loop``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest
from conformance.build import GoMissingError
from harness import start_loop, stop_loop
from support import git

IMAGE = "docker.io/keptnexamples/carts:0.13.1"


def binary(checker: Path | GoMissingError) -> Path:
    """The built checker; without a Go toolchain the test fails here with a clear message (no skip)."""
    if isinstance(checker, GoMissingError):
        pytest.fail(str(checker), pytrace=False)
    return checker


async def run_checker(program: Path, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    """Run the Go checker; return its exit status, its JSON summary and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(program), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    summary = json.loads(out) if out.strip() else {}
    return proc.returncode, summary, err.decode()


def passed(rc: int, summary: dict[str, Any]) -> bool:
    return rc == 0 and summary.get("ok") is True and summary.get("failed") == []


async def test_deployment_replies_satisfy_go_utils_and_the_shipyard_controller(
    tmp_path: Path, nats_url: str, checker: Path | GoMissingError
) -> None:
    program = binary(checker)
    loop = await start_loop(tmp_path, nats_url)
    try:
        rc, summary, stderr = await run_checker(
            program,
            *("--nats", nats_url, "--scenario", "deployment", "--image", IMAGE, "--label", "buildId=42"),
            *("--expect-status", "succeeded", "--expect-result", "pass", "--timeout", "20s"),
        )
        assert passed(rc, summary), (rc, stderr, summary.get("failed"))
        commit = git("rev-parse", "main", cwd=loop.remote).strip()
        assert summary["goUtils"] == "v0.20.4"
        assert (summary["status"], summary["result"]) == ("succeeded", "pass")
        assert summary["deployment"] == {
            "deploymentstrategy": "direct",
            "parsedDeploymentStrategy": "direct",
            "deploymentNames": ["direct"],
            "deploymentURIsLocal": ["http://carts.sockshop-dev:80"],
            "gitCommit": commit,
        }
        assert summary["started"]["source"] == summary["finished"]["source"] == "keptn-gitops-service"
        assert summary["finished"]["data"]["labels"] == {"buildId": "42"}
        assert IMAGE in git("log", "-1", "--format=%B", "main", cwd=loop.remote)
        # the Python-side recorder saw the same pair, and nothing else
        triggered_id = summary["triggered"]["id"]
        assert [r["id"] for r in loop.replies_to(triggered_id)] == [
            summary["started"]["id"],
            summary["finished"]["id"],
        ]
    finally:
        await stop_loop(loop)


async def test_release_replies_satisfy_go_utils_and_the_shipyard_controller(
    tmp_path: Path, nats_url: str, checker: Path | GoMissingError
) -> None:
    program = binary(checker)
    loop = await start_loop(tmp_path, nats_url)
    try:
        before = git("rev-parse", "main", cwd=loop.remote).strip()
        rc, summary, stderr = await run_checker(
            program,
            *("--nats", nats_url, "--scenario", "release", "--incoming-result", "pass"),
            *("--expect-status", "succeeded", "--expect-result", "pass", "--timeout", "20s"),
        )
        assert passed(rc, summary), (rc, stderr, summary.get("failed"))
        assert summary["triggered"]["type"] == "sh.keptn.event.release.triggered"
        assert summary["started"]["type"] == "sh.keptn.event.release.started"
        assert summary["finished"]["type"] == "sh.keptn.event.release.finished"
        assert (summary["status"], summary["result"]) == ("succeeded", "pass")
        assert git("rev-parse", "main", cwd=loop.remote).strip() == before  # a release commits nothing
    finally:
        await stop_loop(loop)


async def test_rollback_replies_satisfy_go_utils_and_restore_the_deployed_version(
    tmp_path: Path, nats_url: str, checker: Path | GoMissingError
) -> None:
    """A delivery and then its rollback sequence, both triggered with go-utils types in one Keptn context."""
    program = binary(checker)
    loop = await start_loop(tmp_path, nats_url)
    try:
        kustomization = "apps/dev/carts/kustomization.yaml"
        original = git("show", f"main:{kustomization}", cwd=loop.remote)
        context = "0b0c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
        common = ("--nats", nats_url, "--keptn-context", context, "--timeout", "20s")
        rc, summary, stderr = await run_checker(program, *common, "--scenario", "deployment", "--image", IMAGE)
        assert passed(rc, summary), (rc, stderr, summary.get("failed"))
        deployed = git("rev-parse", "main", cwd=loop.remote).strip()
        rc, summary, stderr = await run_checker(
            program,
            *common,
            *("--scenario", "rollback", "--incoming-result", "fail"),
            *("--expect-status", "succeeded", "--expect-result", "fail"),
        )
        assert passed(rc, summary), (rc, stderr, summary.get("failed"))
        assert summary["finished"]["type"] == "sh.keptn.event.rollback.finished"
        assert summary["message"].startswith(f"Rolled back {deployed[:12]}")
        assert git("show", f"main:{kustomization}", cwd=loop.remote) == original
    finally:
        await stop_loop(loop)


async def test_the_checker_fails_when_nobody_answers(nats_url: str, checker: Path | GoMissingError) -> None:
    program = binary(checker)
    rc, summary, stderr = await run_checker(program, "--nats", nats_url, "--scenario", "deployment", "--timeout", "1s")
    assert rc == 1 and summary["ok"] is False
    assert "FAIL one .started: no .started (sh.keptn.event.deployment.started) received within 1s" in stderr
    assert "FAIL one .finished: no .finished (sh.keptn.event.deployment.finished) received within 1s" in stderr


async def test_the_checker_rejects_a_non_conforming_responder(nats_url: str, checker: Path | GoMissingError) -> None:
    """A responder that skips .started, says "failed" instead of "fail" and misspells a key is caught,
    even where Go's case-insensitive json decoding alone would not notice."""
    program = binary(checker)
    nc = await nats.connect(nats_url)

    async def answer(msg: Any) -> None:
        trigger = json.loads(msg.data)
        data = {**trigger["data"], "status": "succeeded", "result": "failed"}
        data["deployment"] = {"deploymentStrategy": "direct", "deploymentURIsLocal": [], "deploymentNames": []}
        reply = {
            **{k: trigger[k] for k in ("specversion", "datacontenttype", "shkeptncontext", "shkeptnspecversion")},
            "id": "reply-1",
            "source": "sloppy-service",
            "type": "sh.keptn.event.deployment.finished",
            "time": trigger["time"],
            "triggeredid": trigger["id"],
            "data": data,
        }
        await nc.publish(reply["type"], json.dumps(reply).encode())

    await nc.subscribe("sh.keptn.event.deployment.triggered", cb=answer)
    await nc.flush()
    try:
        rc, summary, stderr = await run_checker(
            program, "--nats", nats_url, "--scenario", "deployment", "--timeout", "5s", "--settle", "100ms"
        )
    finally:
        await nc.close()
    assert rc == 1 and summary["ok"] is False
    failures = set(summary["failed"])
    assert "one .started: no .started (sh.keptn.event.deployment.started) received within 5s" in failures
    assert '.finished data.result is a keptnv2.ResultType: result "failed"' in failures
    assert "deployment.deploymentNames non-empty: got []" in failures
    assert any(f.startswith("data.deployment.deploymentstrategy present with exact spelling") for f in failures)
    # Go's decoding matched the misspelt key, so the strategy itself parsed
    assert summary["deployment"]["parsedDeploymentStrategy"] == "direct"
    assert summary["finished"]["source"] == "sloppy-service"
    assert sorted(line.removeprefix("FAIL ") for line in stderr.splitlines()) == sorted(failures)
