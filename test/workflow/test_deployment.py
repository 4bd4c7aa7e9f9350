"""deployment.triggered → commit → (simulated) Flux reconciled → deployment.finished, over a real NATS and git."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import Loop, start_loop, stop_loop, triggered
from support import ConfigRule, git, kustomize_image, push_unrelated, read_remote, service_config

from keptn_gitops_service.clock import ManualClock

KS = "apps/dev/carts/kustomization.yaml"


def poked(loop: Loop) -> bool:
    """The service has asked Flux to reconcile now (reconcile.fluxcd.io/requestedAt on the GitRepository)."""
    repo = loop.kube.get_object("source.toolkit.fluxcd.io", "v1", "gitrepositories", "flux-system", "fleet")
    return bool(repo and "reconcile.fluxcd.io/requestedAt" in (repo["metadata"].get("annotations") or {}))


def head(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


async def test_a_delivery_passes_with_a_minimal_commit_and_helm_service_shaped_replies(loop: Loop) -> None:
    before = read_remote(loop.remote, KS)
    event = triggered("docker.io/keptnexamples/carts:0.13.1", labels={"buildId": "42"})
    await loop.publish(event)
    finished = await loop.finished(event["id"])
    started, done = loop.replies_to(event["id"])
    assert started["type"] == "sh.keptn.event.deployment.started"
    assert started["data"] == {
        "project": "sockshop",
        "stage": "dev",
        "service": "carts",
        "labels": {"buildId": "42"},
        "status": "succeeded",
    }
    assert done is finished and finished["type"] == "sh.keptn.event.deployment.finished"
    for reply in (started, finished):
        assert reply["source"] == "keptn-gitops-service"
        assert reply["shkeptncontext"] == event["shkeptncontext"]
        assert reply["shkeptnspecversion"] == "0.2.4" and reply["time"].endswith("Z")
    data = finished["data"]
    assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
    commit = head(loop.remote)
    assert data["deployment"] == {
        "deploymentstrategy": "direct",
        "deploymentURIsLocal": ["http://carts.sockshop-dev:80"],
        "deploymentNames": ["direct"],
        "gitCommit": commit,
    }
    assert data["message"].startswith(f"Flux applied commit {commit[:12]}")
    # only the tag's bytes changed; the imagepolicy marker and every comment survive
    assert read_remote(loop.remote, KS) == before.replace("newTag: 0.13.0 #", "newTag: 0.13.1 #")
    message = git("log", "-1", "--format=%B", "main", cwd=loop.remote)
    assert "deploy sockshop/dev/carts to docker.io/keptnexamples/carts:0.13.1" in message
    assert f"Keptn-Context: {event['shkeptncontext']}" in message and f"Keptn-Triggered-Id: {event['id']}" in message
    ks = loop.kube.get_object("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "sockshop-dev", "carts")
    assert ks is not None and ks["status"]["lastAppliedRevision"] == f"main@sha1:{commit}"


async def test_duplicate_delivery_gives_one_commit_and_one_pair_of_replies(loop: Loop) -> None:
    event = triggered("docker.io/keptnexamples/carts:0.14.0")
    await loop.publish(event)
    await loop.publish(event)  # while the first is in flight
    await loop.finished(event["id"])
    await loop.publish(event)  # after it finished
    await loop.idle()
    assert [r["type"].rsplit(".", 1)[1] for r in loop.replies_to(event["id"])] == ["started", "finished"]
    assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "2"


async def test_flux_failure_fails_fast_with_flux_reason(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url)
    try:
        loop.flux.fail_with(
            "sockshop-dev",
            "carts",
            "HealthCheckFailed",
            "Health check failed after 5m0s: timeout waiting for: [Deployment/sockshop-dev/carts status: 'InProgress']",
        )
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith(
            "Flux failed to apply the revision: HealthCheckFailed: Health check failed after 5m0s: timeout waiting for"
        )
        assert f"lastAttemptedRevision main@sha1:{head(loop.remote)}" in data["message"]
        assert data["deployment"]["gitCommit"] == head(loop.remote)
    finally:
        await stop_loop(loop)


async def test_a_stale_failure_of_an_older_revision_is_not_ours(tmp_path: Path, nats_url: str) -> None:
    """The overlay path was already wrong before our commit (Flux failed an older revision and has not attempted
    ours): we wait and time out with that status, instead of blaming our commit for an older failure. Flux is
    not running after the start, so the status the waiter last saw is exactly the stale failure."""
    clock = ManualClock()
    loop = await start_loop(tmp_path, nats_url, ks_path="./apps/dev/cart", clock=clock, run_flux=False)
    try:
        event = triggered()
        await loop.publish(event)
        # observed (it pokes after observing), then waiting: two sleepers, the progress reporter's and the wait's own
        while not (poked(loop) and clock.sleepers >= 2):
            await asyncio.sleep(0.01)
        clock.advance(120)
        data = (await loop.finished(event["id"]))["data"]
        assert data["message"].startswith("timed out after 2m0s")
        assert "Ready=False (ArtifactFailed: kustomization path not found" in data["message"]
    finally:
        await stop_loop(loop)


async def test_a_descendant_commit_applied_by_flux_counts(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url, run_flux=False)
    try:
        event = triggered()
        await loop.publish(event)

        def ours_pushed() -> bool:
            return event["id"] in git("log", "-1", "--format=%B", "main", cwd=loop.remote)

        while not ours_pushed():
            await asyncio.sleep(0.01)
        ours = head(loop.remote)
        newer = push_unrelated(loop.remote, tmp_path / "human", "hotfix")
        await loop.flux.reconcile_once()  # Flux only ever sees the newer commit
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass" and data["deployment"]["gitCommit"] == ours
        assert f"lastAppliedRevision main@sha1:{newer}" in data["message"]
    finally:
        await stop_loop(loop)


async def test_legacy_revision_format_is_understood(tmp_path: Path, nats_url: str) -> None:
    loop = await start_loop(tmp_path, nats_url, legacy=True)
    try:
        event = triggered()
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass", data["message"]
        assert f"lastAppliedRevision main/{head(loop.remote)}" in data["message"]
    finally:
        await stop_loop(loop)


async def test_timeout_reports_the_last_observed_status(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    loop = await start_loop(tmp_path, nats_url, clock=clock, run_flux=False)
    try:
        event = triggered()
        await loop.publish(event)
        # the waiter is now blocked on the controlled clock (the progress reporter sleeps on it too)
        while not (poked(loop) and clock.sleepers >= 2):
            await asyncio.sleep(0.01)
        assert not [r for r in loop.replies_to(event["id"]) if r["type"].endswith("finished")]
        clock.advance(119)
        await asyncio.sleep(0)
        assert not [r for r in loop.replies_to(event["id"]) if r["type"].endswith("finished")]
        clock.advance(1)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"].startswith(
            f"timed out after 2m0s waiting for Flux to apply commit {head(loop.remote)[:12]}"
        )
        assert "Kustomization sockshop-dev/carts: Ready=True (ReconciliationSucceeded" in data["message"]
    finally:
        await stop_loop(loop)


async def test_shipyard_timeout_property_overrides_the_rule(tmp_path: Path, nats_url: str) -> None:
    clock = ManualClock()
    loop = await start_loop(tmp_path, nats_url, clock=clock, run_flux=False)
    try:
        event = triggered(deployment={"deploymentstrategy": "direct", "timeout": "30s"})
        await loop.publish(event)
        while not (poked(loop) and clock.sleepers >= 2):  # the progress reporter and the wait
            await asyncio.sleep(0.01)
        clock.advance(30)
        assert (await loop.finished(event["id"]))["data"]["message"].startswith("timed out after 30s")
    finally:
        await stop_loop(loop)


async def test_a_timeout_out_of_range_is_an_error_before_anything_is_committed(loop: Loop) -> None:
    """0.0001ms passed the old check, was pushed and then "timed out after 0s"; 99999999999h overflowed."""
    original = head(loop.remote)
    cases = {
        "0.0001ms": "data.deployment.timeout: duration '0.0001ms' is shorter than the minimum of 1s "
        "(durations count whole seconds)",
        "99999999999h": "data.deployment.timeout: duration '99999999999h' is longer than the maximum of 30 days (720h)",
    }
    events = {text: triggered(deployment={"deploymentstrategy": "direct", "timeout": text}) for text in cases}
    for event in events.values():
        await loop.publish(event)
    for text, message in cases.items():
        data = (await loop.finished(events[text]["id"]))["data"]
        assert (data["status"], data["result"], data["message"]) == ("errored", "fail", message)
        assert "gitCommit" not in data["deployment"]
    assert head(loop.remote) == original


async def test_bad_inputs_are_answered_precisely_and_leave_the_repository_untouched(
    tmp_path: Path, nats_url: str
) -> None:
    update = ('file: "{values.file}"', "yamlPath: image.tag", 'value: "{image.tag}"')
    rule = ConfigRule(updates=(kustomize_image(), update))
    loop = await start_loop(tmp_path, nats_url, config=service_config(tmp_path / "remote.git", rule))
    try:
        original = head(loop.remote)
        cases = {
            "path escapes": (
                triggered(
                    configurationChange={
                        "values": {"image": "docker.io/keptnexamples/carts:1.0.0", "file": "../../../etc/passwd"}
                    }
                ),
                "rules[0].updates[1]" if False else "contains '..' and could leave the repository",
            ),
            "image with a newline": (
                triggered("docker.io/keptnexamples/carts:1.0.0\nevil: true"),
                "is not a valid OCI reference",
            ),
            # the rule owns every service of sockshop, so a trigger without one is ours, and answered
            "missing service": (triggered(service=None), "data.service is missing"),
            "labels not strings": (triggered(labels={"a": 1}), "data.labels.a must be a string, got a number"),
        }
        # whose these are nobody can tell (test/service/test_ownership.py): not answered
        unowned = [triggered(project=None), {**triggered(), "data": "sockshop"}]
        for event in unowned:
            await loop.publish(event)
        for event, _ in cases.values():
            await loop.publish(event)
        for name, (event, expected) in cases.items():
            replies = [await loop.finished(event["id"])]
            pair = loop.replies_to(event["id"])
            assert [r["type"].rsplit(".", 1)[1] for r in pair] == ["started", "finished"], name
            data = replies[0]["data"]
            assert (data["status"], data["result"]) == ("errored", "fail"), name
            assert expected in data["message"], (name, data["message"])
            assert data["deployment"] == {
                "deploymentstrategy": "",
                "deploymentURIsLocal": None,
                "deploymentNames": None,
            }
        await loop.publish(b'{"id": "broken", "type": "sh.keptn.event.deployment.triggered", ')
        await loop.idle()
        assert loop.replies_to("broken") == []
        assert [loop.replies_to(event["id"]) for event in unowned] == [[], []]
        assert head(loop.remote) == original
    finally:
        await stop_loop(loop)


async def test_release_is_answered_with_the_incoming_result(loop: Loop) -> None:
    event = triggered()
    event.update(type="sh.keptn.event.release.triggered")
    event["data"]["result"] = "warning"
    await loop.publish(event)
    finished = await loop.finished(event["id"])
    assert finished["type"] == "sh.keptn.event.release.finished"
    assert (finished["data"]["status"], finished["data"]["result"]) == ("succeeded", "warning")
    assert [r["type"] for r in loop.replies_to(event["id"])] == [
        "sh.keptn.event.release.started",
        "sh.keptn.event.release.finished",
    ]
