"""rollback.triggered restores what this Keptn context deployed, with the same minimal edit, waits for Flux, and
answers with the incoming result like helm-service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import Loop, rollback_of, triggered
from support import git, push_unrelated, read_remote

KS = "apps/dev/carts/kustomization.yaml"


async def deploy(loop: Loop, image: str) -> dict[str, Any]:
    event = triggered(image)
    await loop.publish(event)
    assert (await loop.finished(event["id"]))["data"]["result"] == "pass"
    return event


async def test_rollback_restores_the_previous_version_and_echoes_the_result(loop: Loop) -> None:
    original = read_remote(loop.remote, KS)
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
    deployed = git("rev-parse", "main", cwd=loop.remote).strip()
    assert read_remote(loop.remote, KS) != original
    rollback = rollback_of(deployment)
    await loop.publish(rollback)
    finished = await loop.finished(rollback["id"])
    assert finished["type"] == "sh.keptn.event.rollback.finished"
    data = finished["data"]
    assert (data["status"], data["result"]) == ("succeeded", "fail"), data["message"]
    assert data["message"].startswith(f"Rolled back {deployed[:12]} with commit ")
    assert read_remote(loop.remote, KS) == original  # byte-identical: marker and comments intact
    message = git("log", "-1", "--format=%B", "main", cwd=loop.remote)
    assert f"Keptn-Rollback-Of: {deployed}" in message and f"Keptn-Triggered-Id: {rollback['id']}" in message
    assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(rollback["id"])] == ["started", "finished"]


async def test_later_unrelated_changes_are_kept(loop: Loop, tmp_path: Path) -> None:
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.2")
    work = tmp_path / "human"
    git("clone", "--quiet", str(loop.remote), str(work))
    path = work / KS
    path.write_text(path.read_text().replace("namespace: sockshop-dev", "namespace: sockshop-dev  # owned by team x"))
    git("commit", "--quiet", "-am", "comment", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    rollback = rollback_of(deployment)
    await loop.publish(rollback)
    assert (await loop.finished(rollback["id"]))["data"]["status"] == "succeeded"
    text = read_remote(loop.remote, KS)
    assert "newTag: 0.13.0 #" in text and "# owned by team x" in text


async def test_a_value_changed_since_is_not_overwritten(loop: Loop, tmp_path: Path) -> None:
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.3")
    newer = await deploy(loop, "docker.io/keptnexamples/carts:0.14.0")  # another delivery, another context
    assert newer["shkeptncontext"] != deployment["shkeptncontext"]
    head = git("rev-parse", "main", cwd=loop.remote).strip()
    rollback = rollback_of(deployment)
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert (data["status"], data["result"]) == ("errored", "fail")
    assert "images[0].newTag is now '0.14.0', changed after the deployment set it to '0.13.3'" in data["message"]
    assert git("rev-parse", "main", cwd=loop.remote).strip() == head


async def test_nothing_to_roll_back(loop: Loop, tmp_path: Path) -> None:
    push_unrelated(loop.remote, tmp_path / "other", "x")
    rollback = rollback_of(triggered(), result="warning")
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"].startswith(f"nothing to roll back: Keptn context {rollback['shkeptncontext']}")


async def test_a_redelivered_rollback_makes_one_commit(loop: Loop) -> None:
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.4")
    rollback = rollback_of(deployment)
    await loop.publish(rollback)
    await loop.publish(rollback)
    await loop.finished(rollback["id"])
    await loop.service.wait_idle()
    assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "3"
    assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(rollback["id"])] == ["started", "finished"]


async def test_rollback_properties_that_are_not_an_object_are_a_precise_error(loop: Loop) -> None:
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.5")
    rollback = rollback_of(deployment)
    rollback["data"]["rollback"] = "15m"
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert (data["status"], data["result"], data["message"]) == (
        "errored",
        "fail",
        "data.rollback must be an object (the rollback task's properties)",
    )
