"""``Lifecycle.receive``: one ownership rule decides, from the raw JSON, whether a trigger is answered at all.

The loop's rule owns ``project: sockshop`` with every stage and service. A trigger for another project is left to
the service that owns it (helm-service) — with no reply at all, however malformed the rest of it is, because two
answers to one trigger mean two deployments. A trigger whose project cannot be read cannot be told apart: no
reply either, with a warning. A sockshop trigger that is otherwise invalid is ours: ``.started``, then
``.finished`` errored/fail naming the problem, and nothing is written to the repository.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import Loop, start_loop, stop_loop, triggered
from structlog.testing import capture_logs
from support import NO_WAIT, git, service_config

from keptn_gitops_service import SERVICE_NAME


def head(loop: Loop) -> str:
    return git("rev-parse", "main", cwd=loop.remote).strip()


def of(task: str, event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as a ``<task>.triggered``."""
    event["type"] = f"sh.keptn.event.{task}.triggered"
    return event


def with_top(event: dict[str, Any], **top: Any) -> dict[str, Any]:
    event.update(top)
    return event


async def answered_after(loop: Loop, events: list[dict[str, Any]]) -> None:
    """Publish ``events``, then an owned valid trigger; return once that one finished and the service is idle —
    what was published before it has been handled by then (no sleeping)."""
    for event in events:
        await loop.publish(json.dumps(event).encode())  # all on one subject: received and handled in this order
    sentinel = triggered()
    await loop.publish(sentinel)
    assert (await loop.finished(sentinel["id"]))["data"]["result"] == "pass"
    await loop.service.wait_idle()


async def test_a_trigger_no_rule_owns_gets_no_reply_however_malformed(loop: Loop) -> None:
    not_ours = {
        "bad time": with_top(triggered(project="podtato"), time="bad"),
        "labels with a number": triggered(project="podtato", labels={"a": 1}),
        "invalid project name": triggered(project="OtherProject"),
        "missing service": triggered(project="podtato", service=None),
        "empty stage": triggered(project="podtato", stage=""),
        "data.configurationChange wrong": triggered(project="podtato", configurationChange="x"),
        "release, bad labels": of("release", triggered(project="podtato", labels=["x"])),
        "rollback, bad time": of("rollback", with_top(triggered(project="podtato"), time="yesterday")),
    }
    cannot_tell = {
        "project a number": triggered(project=7),
        "project missing": triggered(project=None),
        "data not an object": with_top(triggered(), data="sockshop"),
        "project missing and bad time": with_top(triggered(project=None), time="bad"),
        "no data": {k: v for k, v in triggered().items() if k != "data"},
    }
    never = {
        "from ourselves": with_top(triggered(), source=SERVICE_NAME),
        "a started event": with_top(triggered(), type="sh.keptn.event.deployment.started"),
        "another task": of("test", triggered()),
        "a sequence event": with_top(triggered(), type="sh.keptn.event.dev.delivery.triggered"),
    }
    before = head(loop)
    with capture_logs() as logs:
        await answered_after(loop, [*not_ours.values(), *cannot_tell.values(), *never.values()])
    for name, event in {**not_ours, **cannot_tell, **never}.items():
        assert loop.replies_to(event["id"]) == [], name
    assert len(git("rev-list", f"{before}..main", cwd=loop.remote).split()) == 1  # the sentinel's commit only

    def said(event: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in logs if e.get("triggeredid") == event["id"]]

    for name, event in not_ours.items():
        assert [e["event"] for e in said(event)] == ["no rule matches; leaving the event to other services"], name
    for name, event in cannot_tell.items():
        (entry,) = said(event)
        assert entry["log_level"] == "warning", name
        assert entry["event"].startswith("cannot tell whether a rule owns this deployment trigger: "), name
    assert said(cannot_tell["project a number"])[0]["event"] == (
        "cannot tell whether a rule owns this deployment trigger: data.project is missing or not a string; "
        "leaving it to other services"
    )
    assert "data is a string, not an object" in said(cannot_tell["data not an object"])[0]["event"]
    assert "data is missing;" in said(cannot_tell["no data"])[0]["event"]
    for name, event in never.items():
        assert said(event) == [], name


async def test_an_owned_trigger_that_is_otherwise_invalid_is_answered_errored_precisely(loop: Loop) -> None:
    cases = {
        "bad time": (
            with_top(triggered(), time="bad"),
            "the event could not be decoded: time is not an RFC 3339 timestamp: 'bad'",
        ),
        "labels with a number": (triggered(labels={"a": 1}), "data.labels.a must be a string, got a number"),
        "missing service": (triggered(service=None), "data.service is missing"),
        "invalid stage name": (
            triggered(stage="Dev"),
            "data.stage 'Dev' is not a valid Keptn name: only lowercase letters, digits and '-' are allowed",
        ),
        "release, bad labels": (
            of("release", triggered(labels={"team": None})),
            "data.labels.team must be a string, got null",
        ),
        "rollback, bad time": (
            of("rollback", with_top(triggered(), time="yesterday")),
            "the event could not be decoded: time is not an RFC 3339 timestamp: 'yesterday'",
        ),
    }
    before = head(loop)
    for event, _ in cases.values():
        await loop.publish(event)
    for name, (event, message) in cases.items():
        finished = await loop.finished(event["id"])
        replies = loop.replies_to(event["id"])
        task = event["type"].split(".")[3]
        assert [r["type"] for r in replies] == [
            f"sh.keptn.event.{task}.started",
            f"sh.keptn.event.{task}.finished",
        ], name
        assert all(r["source"] == SERVICE_NAME and r["shkeptncontext"] == event["shkeptncontext"] for r in replies)
        data = finished["data"]
        assert (data["status"], data["result"], data["message"]) == ("errored", "fail", message), name
        assert data["project"] == "sockshop", name
    await loop.service.wait_idle()
    assert head(loop) == before  # nothing was written for any of them


async def test_a_rule_for_every_project_owns_an_invalid_project_name(tmp_path: Path, nats_url: str) -> None:
    """``match: {}`` matches every project, so a project Keptn could never have sent is still this rule's."""
    config = service_config(tmp_path / "remote.git", replace(NO_WAIT, match="{}"))
    loop = await start_loop(tmp_path, nats_url, config=config)
    try:
        invalid = triggered(project="OtherProject")
        unreadable = triggered(project=None)  # every project is this rule's: missing is too
        for event in (invalid, unreadable):
            await loop.publish(event)
        assert (await loop.finished(invalid["id"]))["data"]["message"] == (
            "data.project 'OtherProject' is not a valid Keptn name: only lowercase letters, digits and '-' are allowed"
        )
        assert (await loop.finished(unreadable["id"]))["data"]["message"] == "data.project is missing"
    finally:
        await stop_loop(loop)
