"""The task lifecycle: one ``{task: body}`` table routes live messages and resumed records; whatever a body returns
or raises ends in exactly one ``.finished`` with typed status/result; observers hear of every finished task after
it was sent and before it is recorded; the state store keeps the bytes received."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from harness import triggered

from keptn_gitops_service.clock import ManualClock
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import GitError, TransportError
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
    # a failing observer neither fails the task nor silences the others; they are handed the .finished sent
    assert heard == [(event["id"], replace(finished, reply=sink.events[-1]))]
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


class Passes(TaskBody):
    """A body that passes at once."""

    async def run(self, job: Job) -> Finished:
        return Finished(Status.SUCCEEDED, Result.PASS, "done")

    def errored_data(self, commit: str) -> dict[str, Any]:
        return {}


async def test_observers_are_told_before_the_record_is_finished_and_again_after_a_stop_in_between(
    store: SqliteStateStore,
) -> None:
    """At least once: what an observer keeps (the CDEvents outbox) is kept before the record says finished, so a
    process that stops between the two finishes the task again on resume and tells the observers again."""
    flow, sink = lifecycle(store, {"deployment": Passes()})
    phases: list[Phase | None] = []

    async def stops(trigger: Trigger, finished: Finished) -> None:
        record = await store.get(trigger.id)
        phases.append(record.phase if record else None)
        if len(phases) == 1:
            raise asyncio.CancelledError  # the process stops while the observer works

    flow.observers.append(stops)
    event = triggered()
    with pytest.raises(asyncio.CancelledError):
        await flow.handle(json.dumps(event).encode())
    assert sink.kinds(event["id"]) == ["started", "finished"]
    assert phases == [Phase.STARTED]  # told after .finished was sent, before it was recorded
    [left] = await store.unfinished()
    assert left.triggered_id == event["id"]
    again, resumed = lifecycle(store, {"deployment": Passes()})
    again.observers.append(stops)
    await again.resume(left)
    assert resumed.kinds(event["id"]) == ["finished"]  # .started is not sent twice
    assert phases == [Phase.STARTED, Phase.STARTED]  # told again
    record = await store.get(event["id"])
    assert record is not None and (record.phase, record.result) == (Phase.FINISHED, "pass")


class HeldSink(Sink):
    """Publishes ``.started`` only once ``release`` is set, or fails it (NATS never confirmed it)."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.asked = asyncio.Event()
        self.fail = fail

    async def publish(self, event: KeptnEvent) -> None:
        if event.kind == "started":
            self.asked.set()
            if self.fail:
                raise TransportError(f"NATS did not confirm {event.type}: TimeoutError")
            await self.release.wait()
        await super().publish(event)


class Commits(TaskBody):
    """A body that says when it runs, records a commit and passes."""

    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def run(self, job: Job) -> Finished:
        self.running.set()
        await job.committed("c0ffee" * 6 + "beef")
        return Finished(Status.SUCCEEDED, Result.PASS, "done", job.commit)

    def errored_data(self, commit: str) -> dict[str, Any]:
        return {}


async def test_the_body_runs_while_started_is_confirmed_and_the_commit_record_waits_for_it(
    store: SqliteStateStore,
) -> None:
    """``.started`` is sent, confirmed and recorded beside the body (not on the path of the deployment); the
    ``committed`` record and ``.finished`` wait for it, so the record never says more than Keptn was told."""
    body = Commits()
    flow = Lifecycle(
        parse_config(CONFIG, "c.yaml"), store, sink := HeldSink(), ManualClock(), tasks={"deployment": body}
    )
    event = triggered()
    handled = asyncio.create_task(flow.handle(json.dumps(event).encode()))
    await sink.asked.wait()
    assert body.running.is_set()  # the body works although .started is not confirmed yet
    for _ in range(50):  # the body's commit record waits for .started (ticks of the loop, no time)
        await asyncio.sleep(0)
    record = await store.get(event["id"])
    assert record is not None and record.phase is Phase.RECEIVED and sink.events == []
    assert not handled.done()
    sink.release.set()
    finished = await handled
    assert finished is not None and finished.passed
    assert sink.kinds(event["id"]) == ["started", "finished"]
    record = await store.get(event["id"])
    assert record is not None and (record.phase, record.commit) == (Phase.FINISHED, "c0ffee" * 6 + "beef")


async def test_a_started_that_cannot_be_sent_stops_the_task_before_its_commit_is_recorded(
    store: SqliteStateStore,
) -> None:
    """Sending ``.started`` fails while the body works: nothing is recorded past ``received`` and no ``.finished``
    goes out; a restart resumes it from there (``.started``, then the rest)."""
    flow = Lifecycle(
        parse_config(CONFIG, "c.yaml"), store, HeldSink(fail=True), ManualClock(), tasks={"deployment": Commits()}
    )
    event = triggered()
    with pytest.raises(TransportError, match="NATS did not confirm"):
        await flow.handle(json.dumps(event).encode())
    [left] = await store.unfinished()
    assert (left.triggered_id, left.phase, left.commit) == (event["id"], Phase.RECEIVED, "")
    again, sink = lifecycle(store, {"deployment": Commits()})
    await again.resume(left)
    assert sink.kinds(event["id"]) == ["started", "finished"]
    record = await store.get(event["id"])
    assert record is not None and record.phase is Phase.FINISHED


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
