"""``release.triggered``: direct GitOps has nothing to promote, so answer like helm-service does for ``direct``
deployments — ``release.started`` then ``release.finished`` echoing the incoming result
[keptn@0.18.1:helm-service/controller/release_handler.go]."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.model import GitOpsConfig
from keptn_gitops_service.keptn.data import echoed_result, finished_data, scope_from_data, started_data
from keptn_gitops_service.keptn.events import KeptnEvent, make_reply
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.state.store import Phase, Record, StateStore
from keptn_gitops_service.workflow.routing import (
    Replier,
    claim_owned,
    log_finished,
    publish_finished,
    scope_problem,
    stored_trigger,
)

log = structlog.get_logger(__name__)


@dataclass
class ReleaseWorkflow:
    """Answers release triggers for the project/stage/services our rules own."""

    config: GitOpsConfig
    store: StateStore
    sink: EventSink
    clock: Clock
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))

    async def handle(self, event: KeptnEvent, *, on_claimed: Ack | None = None) -> bool:
        """Answer one ``release.triggered``; ``False`` when it is not ours or already answered."""
        if await claim_owned(event, "release", self.config, self.store, on_claimed) is None:
            return False
        await self._answer(event, started=False)
        return True

    async def resume(self, record: Record) -> None:
        """Send whatever a previous process did not get to send for this release."""
        if record.phase is not Phase.FINISHED:
            await self._answer(stored_trigger(record), started=record.phase is not Phase.RECEIVED)

    async def reject(self, event: KeptnEvent, message: str, *, claim: bool = False, started: bool = False) -> None:
        """Answer an owned release trigger that is invalid with errored/fail and ``message`` (see
        :meth:`Replier.reject`)."""
        replier = Replier(self.store, self.sink, self.clock, self.new_id)
        await replier.reject(event, message, claim=claim, started=started)

    async def _answer(self, event: KeptnEvent, *, started: bool) -> None:
        problem = scope_problem(event.data)
        if problem is not None:
            await self.reject(event, problem, started=started)
            return
        scope = scope_from_data(event.data)
        if not started:
            reply = make_reply(
                event, "started", started_data(scope), source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id()
            )
            await self.sink.publish(reply)
            await self.store.advance(event.id, Phase.STARTED)
        result = echoed_result(event.data)
        finished = finished_data(scope, status="succeeded", result=result, message="Finished release")
        log_finished("release", status="succeeded", result=result, message="Finished release", triggeredid=event.id)
        reply = make_reply(
            event, "finished", finished, source=SERVICE_NAME, now=self.clock.now(), event_id=self.new_id()
        )
        await publish_finished(self.store, self.sink, event, reply, result=result)
