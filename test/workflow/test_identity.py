"""Identities are exact: a rollback reverts only what its own Keptn context committed for its own service, an event
cannot smuggle trailers into a commit, and a deployment that a later commit undid before Flux applied it does not
pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Loop, overlay, start_loop, stop_loop, triggered
from support import NO_WAIT, git, read_remote, service_config, until

from keptn_gitops_service.keptn.events import KeptnEvent, to_structured
from keptn_gitops_service.workflow.lifecycle import triggered as triggered_from

KS = "apps/dev/carts/kustomization.yaml"
DB = "apps/dev/carts-db/kustomization.yaml"


def rollback_in(context: str | None, service: str = "carts", result: str = "fail") -> dict[str, Any]:
    """A rollback.triggered of ``context`` (``None``: without the attribute) for ``service``."""
    event = triggered()
    event["type"] = "sh.keptn.event.rollback.triggered"
    if context is None:
        del event["shkeptncontext"]
    else:
        event["shkeptncontext"] = context
    event["data"] = {"project": "sockshop", "stage": "dev", "service": service, "result": result, "status": "errored"}
    return event


def head(loop: Loop) -> str:
    return git("rev-parse", "main", cwd=loop.remote).strip()


async def deploy(loop: Loop, image: str, **data: Any) -> dict[str, Any]:
    event = triggered(image, **data)
    await loop.publish(event)
    finished = await loop.finished(event["id"])
    assert finished["data"]["result"] == "pass", finished["data"]["message"]
    return event


async def handled_after(loop: Loop, *events: dict[str, Any]) -> None:
    """Publish ``events``, then a rollback that has nothing to undo, and wait until all of them were handled."""
    for event in events:
        await loop.publish(event)
    marker = rollback_in("no-such-context")
    await loop.publish(marker)
    await loop.finished(marker["id"])
    await loop.idle()


@pytest.fixture
async def two_services(tmp_path: Path, nats_url: str) -> AsyncIterator[Loop]:
    """carts and carts-db, finished right after the push."""
    files = {DB: overlay("carts-db"), KS: overlay("carts")}
    config = service_config(tmp_path / "remote.git", NO_WAIT)
    running = await start_loop(tmp_path, nats_url, files=files, run_flux=False, config=config)
    try:
        yield running
    finally:
        await stop_loop(running)


# ---- rollbacks find only their own commits ----


@pytest.mark.parametrize("context", ["", None], ids=["empty", "missing"])
async def test_a_rollback_without_a_context_reverts_nothing(loop: Loop, context: str | None) -> None:
    await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
    before, deployed = head(loop), read_remote(loop.remote, KS)
    rollback = rollback_in(context)
    await handled_after(loop, rollback)
    assert head(loop) == before and read_remote(loop.remote, KS) == deployed
    assert not any("Rolled back" in reply["data"].get("message", "") for reply in loop.replies_to(rollback["id"]))


async def test_a_rollback_event_without_a_context_answers_nothing_to_roll_back(loop: Loop) -> None:
    """Decoding refuses such an event; the rollback itself still never takes an empty context for a match."""
    await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
    before = head(loop)
    data = rollback_in("x", result="warning")["data"]
    event = KeptnEvent(
        id="rb-1", type="sh.keptn.event.rollback.triggered", source="shipyard", shkeptncontext="", data=data, time=None
    )
    rule = loop.service.config.rules[0]
    finished = await loop.service.lifecycle.answer(triggered_from("rollback", rule, to_structured(event), event))
    assert finished is not None
    assert (finished.status, finished.result, finished.message) == (
        "succeeded",
        "warning",
        "nothing to roll back: the rollback of sockshop/dev/carts carries no Keptn context",
    )
    assert head(loop) == before


async def test_a_rollback_in_a_prefix_of_a_context_reverts_nothing(loop: Loop) -> None:
    deployment = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
    before = head(loop)
    prefix = deployment["shkeptncontext"][:8]
    rollback = rollback_in(prefix, result="warning")
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert (data["status"], data["result"]) == ("succeeded", "warning")
    assert data["message"] == f"nothing to roll back: Keptn context {prefix} made no commit for sockshop/dev/carts"
    assert head(loop) == before


async def test_a_rollback_of_carts_leaves_carts_db_alone(two_services: Loop) -> None:
    loop = two_services
    deployment = await deploy(loop, "docker.io/keptnexamples/carts-db:2.0.0", service="carts-db")
    before, db = head(loop), read_remote(loop.remote, DB)
    assert "newTag: 2.0.0" in db
    rollback = rollback_in(deployment["shkeptncontext"], service="carts")
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert data["message"].startswith("nothing to roll back"), data["message"]
    assert head(loop) == before and read_remote(loop.remote, DB) == db
    # the rollback of carts-db itself still finds it
    own = rollback_in(deployment["shkeptncontext"], service="carts-db")
    await loop.publish(own)
    data = (await loop.finished(own["id"]))["data"]
    assert data["message"].startswith(f"Rolled back {before[:12]} with commit "), data["message"]
    assert read_remote(loop.remote, DB) == overlay("carts-db")


# ---- trailers cannot be injected ----


async def test_an_id_with_a_newline_cannot_inject_trailers(loop: Loop) -> None:
    victim = await deploy(loop, "docker.io/keptnexamples/carts:0.13.1")
    victim_commit = head(loop)
    attack = triggered("docker.io/keptnexamples/carts:0.13.9")
    attack["id"] = f"x\nKeptn-Context: {victim['shkeptncontext']}\nKeptn-Scope: sockshop/dev/carts"
    await handled_after(loop, attack)
    assert head(loop) == victim_commit, "the event with a multi-line id made no commit"
    assert not any(r["data"].get("result") == "pass" for r in loop.replies if r.get("triggeredid") == attack["id"])
    rollback = rollback_in(victim["shkeptncontext"])
    await loop.publish(rollback)
    data = (await loop.finished(rollback["id"]))["data"]
    assert data["message"].startswith(f"Rolled back {victim_commit[:12]} with commit "), data["message"]
    log = git("log", "--format=%B", "main", cwd=loop.remote)
    assert log.count(f"Keptn-Context: {victim['shkeptncontext']}") == 2  # the victim's deployment and rollback


# ---- a deployment that a later commit undid before it was applied does not pass ----


@pytest.fixture
async def manual_flux(tmp_path: Path, nats_url: str) -> AsyncIterator[Loop]:
    """The whole loop with Flux reconciling only when the test says so."""
    running = await start_loop(tmp_path, nats_url, run_flux=False)
    try:
        yield running
    finally:
        await stop_loop(running)


async def test_a_rollback_committed_during_the_deployment_is_not_reported_as_its_pass(manual_flux: Loop) -> None:
    loop = manual_flux
    original = head(loop)
    deployment = triggered("docker.io/keptnexamples/carts:0.13.1")
    await loop.publish(deployment)
    await until(lambda: head(loop) != original)
    ours = head(loop)
    rollback = rollback_in(deployment["shkeptncontext"])
    await loop.publish(rollback)
    await until(lambda: head(loop) != ours)
    reverted = head(loop)
    assert "newTag: 0.13.0 #" in read_remote(loop.remote, KS)
    await loop.flux.reconcile_once()  # Flux sees the rollback first: our commit is never what runs
    data = (await loop.finished(deployment["id"]))["data"]
    assert (data["status"], data["result"]) == ("errored", "fail"), data["message"]
    assert data["message"].startswith(
        f"superseded: commit {reverted[:12]} (rollback sockshop/dev/carts) changed {KS} images[0].newTag back to"
        f" '0.13.0' before commit {ours[:12]} was applied. Kustomization sockshop-dev/carts: "
    ), data["message"]
    assert data["deployment"]["gitCommit"] == ours
    rolled = (await loop.finished(rollback["id"]))["data"]
    assert (rolled["status"], rolled["result"]) == ("succeeded", "fail"), rolled["message"]


async def test_a_newer_deployment_of_the_same_value_supersedes_an_unapplied_one(manual_flux: Loop) -> None:
    loop = manual_flux
    original = head(loop)
    first = triggered("docker.io/keptnexamples/carts:0.13.1")
    await loop.publish(first)
    await until(lambda: head(loop) != original)
    ours = head(loop)
    second = triggered("docker.io/keptnexamples/carts:0.13.2")
    await loop.publish(second)
    await until(lambda: head(loop) != ours)
    newer = head(loop)
    await loop.flux.reconcile_once()
    data = (await loop.finished(first["id"]))["data"]
    assert data["result"] == "fail"
    assert data["message"].startswith(
        f"superseded: commit {newer[:12]} (deploy sockshop/dev/carts to docker.io/keptnexamples/carts:0.13.2)"
        f" changed {KS} images[0].newTag from '0.13.1' to '0.13.2' before commit {ours[:12]} was applied."
    ), data["message"]
    assert (await loop.finished(second["id"]))["data"]["result"] == "pass"


async def test_a_descendant_that_keeps_our_value_still_passes(manual_flux: Loop, tmp_path: Path) -> None:
    """Someone else's later commit to another line of the same file: Flux applied our change with it."""
    loop = manual_flux
    original = head(loop)
    deployment = triggered("docker.io/keptnexamples/carts:0.13.1")
    await loop.publish(deployment)
    await until(lambda: head(loop) != original)
    work = tmp_path / "human"
    git("clone", "--quiet", str(loop.remote), str(work))
    path = work / KS
    path.write_text(path.read_text().replace("namespace: sockshop-dev", "namespace: sockshop-dev  # team x"))
    git("commit", "--quiet", "-am", "comment", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    await loop.flux.reconcile_once()
    data = (await loop.finished(deployment["id"]))["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
