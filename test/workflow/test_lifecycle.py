"""The task lifecycle: one ``{task: body}`` table routes live messages and resumed records; whatever a body returns
or raises ends in exactly one ``.finished`` with typed status/result; observers hear of every finished task after
it was sent; the state store keeps the bytes received."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import triggered

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.keptn.data import Result, Status
from keptn_gitops_service.keptn.events import KeptnEvent
from keptn_gitops_service.state.store import Phase, SqliteStateStore
from keptn_gitops_service.workflow.lifecycle import Finished, Job, Lifecycle, TaskBody, Trigger
from keptn_gitops_service.workflow.release import ReleaseBody

CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: file:///nowhere
rules:
  - match: {project: sockshop}
    repository: fleet
    updates: [{file: a.yaml, yamlPath: a, value: b}]
"""


class Sink:
    def __init__(self) -> None:
        self.events: list[KeptnEvent] = []

    async def publish(self, event: KeptnEvent) -> None:
        self.events.append(event)

    def kinds(self, triggered_id: str) -> list[str | None]:
        return [e.kind for e in self.events if e.triggeredid == triggered_id]


class Pushes(TaskBody):
    """A body that records a commit, then fails the way a git error does."""

    async def run(self, job: Job) -> Finished:
        await job.committed("c0ffee" * 6 + "beef")
        raise GitError("git push failed: the remote hung up")

    def errored_data(self, commit: str) -> dict[str, Any]:
        return {"deployment": {"gitCommit": commit}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    state = SqliteStateStore(tmp_path / "state.sqlite3")
    await state.open()
    yield state
    await state.close()


def lifecycle(store: SqliteStateStore, tasks: dict[str, TaskBody]) -> tuple[Lifecycle, Sink]:
    sink = Sink()
    return Lifecycle(parse_config(CONFIG, "c.yaml"), store, sink, ManualClock(), tasks=tasks), sink


def of(task: str, **data: Any) -> dict[str, Any]:
    event = triggered(**data)
    event["type"] = f"sh.keptn.event.{task}.triggered"
    return event


async def test_an_error_after_the_commit_ends_errored_with_the_commit_and_observers_hear_it(
    store: SqliteStateStore,
) -> None:
    flow, sink = lifecycle(store, {"deployment": Pushes()})
    heard: list[tuple[str, Finished]] = []

    async def observer(trigger: Trigger, finished: Finished) -> None:
        assert sink.kinds(trigger.id)[-1] == "finished"  # told after .finished was sent
        heard.append((trigger.id, finished))

    async def broken(trigger: Trigger, finished: Finished) -> None:
        raise RuntimeError("an observer's bug")

    flow.observers += [broken, observer]
    event = triggered()
    body = json.dumps(event).encode()
    finished = await flow.handle(body)
    assert finished is not None
    assert (finished.status, finished.result) == (Status.ERRORED, Result.FAIL)
    assert finished.message == "git push failed: the remote hung up"
    assert heard == [(event["id"], finished)]  # a failing observer neither fails the task nor silences the others
    assert sink.kinds(event["id"]) == ["started", "finished"]
    reply = sink.events[-1].data
    assert (reply["status"], reply["result"], reply["deployment"]) == (
        "errored",
        "fail",
        {"gitCommit": finished.commit},
    )
    record = await store.get(event["id"])
    assert record is not None and record.payload == body  # the bytes received, not a re-encoding
    assert (record.phase, record.commit, record.result) == (Phase.FINISHED, finished.commit, "fail")


async def test_the_table_routes_live_messages_and_resumed_records_alike(store: SqliteStateStore) -> None:
    flow, sink = lifecycle(store, {"release": ReleaseBody()})
    deployment = triggered()
    assert await flow.handle(json.dumps(deployment).encode()) is None  # no body for it in this table: not ours
    assert sink.events == []
    release = of("release", result="warning")
    body = json.dumps(release).encode()
    await store.claim(release["id"], release["shkeptncontext"], release["type"], body)
    await flow.resume((await store.unfinished())[0])
    assert sink.kinds(release["id"]) == ["started", "finished"]
    data = sink.events[-1].data
    assert (data["status"], data["result"], data["message"]) == ("succeeded", "warning", "Finished release")


async def test_an_owned_trigger_with_an_invalid_scope_is_started_and_errored(store: SqliteStateStore) -> None:
    flow, sink = lifecycle(store, {"release": ReleaseBody()})
    release = of("release", stage="Dev!")  # a rule matches its raw fields: ours, though not a valid Keptn name
    finished = await flow.handle(json.dumps(release).encode())
    assert finished is not None and (finished.status, finished.result) == (Status.ERRORED, Result.FAIL)
    assert (
        finished.message
        == "data.stage 'Dev!' is not a valid Keptn name: only lowercase letters, digits and '-' are allowed"
    )
    assert sink.kinds(release["id"]) == ["started", "finished"]
    assert sink.events[0].data == {"project": "sockshop", "stage": "Dev!", "service": "carts", "status": "succeeded"}
    assert await flow.handle(json.dumps(release).encode()) is None  # a redelivery gets nothing new
    assert len(sink.events) == 2
