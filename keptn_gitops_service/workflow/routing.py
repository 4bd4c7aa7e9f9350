"""Which rule owns an event: the first whose globs match project, stage and service (PRODUCT.md §2.3)."""

from __future__ import annotations

from fnmatch import fnmatchcase

import structlog

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError
from keptn_gitops_service.keptn.data import EventScope, scope_from_data
from keptn_gitops_service.keptn.events import MAX_EVENT_BYTES, KeptnEvent, from_json, to_structured
from keptn_gitops_service.keptn.transport import Ack, EventSink
from keptn_gitops_service.state.store import Phase, Record, StateStore

log = structlog.get_logger(__name__)


def find_rule(config: GitOpsConfig, project: str, stage: str, service: str) -> Rule | None:
    """The first matching rule, or ``None`` (then another deployment service may own the event)."""
    for rule in config.rules:
        m = rule.match
        if fnmatchcase(project, m.project) and fnmatchcase(stage, m.stage) and fnmatchcase(service, m.service):
            return rule
    return None


async def claim_owned(
    event: KeptnEvent, task: str, config: GitOpsConfig, store: StateStore, on_claimed: Ack | None
) -> tuple[EventScope, Rule] | None:
    """For a ``<task>.triggered`` a rule owns: record it (calling ``on_claimed`` once it is persisted) and return
    its scope and rule; ``None`` when it is not ours, has no valid scope, or was already claimed."""
    if event.source == SERVICE_NAME or event.kind != "triggered" or event.task != task:
        return None
    try:
        scope = scope_from_data(event.data)
    except EventError as exc:
        log.warning(f"{task} trigger without a valid scope ignored", triggeredid=event.id, error=str(exc))
        return None
    rule = find_rule(config, scope.project, scope.stage, scope.service)
    if rule is None:
        return None
    created = (await store.claim(event.id, event.shkeptncontext, event.type, to_structured(event)))[1]
    if on_claimed is not None:
        await on_claimed()
    return (scope, rule) if created else None


async def publish_finished(
    store: StateStore, sink: EventSink, trigger: KeptnEvent, reply: KeptnEvent, *, commit: str = "", result: str = ""
) -> bool:
    """Publish ``.finished`` for ``trigger`` and record it — unless another replica has taken the trigger over
    (its lease had expired while this one was paused or cut off): then the other replica answers, not us."""
    if not await store.owns(trigger.id):
        log.warning("another replica took this trigger over; it will answer", triggeredid=trigger.id)
        return False
    await sink.publish(reply)
    await store.advance(trigger.id, Phase.FINISHED, commit=commit, result=result)
    return True


def log_finished(what: str, *, status: str, result: str, **fields: object) -> None:
    """Log a ``.finished`` at the level it deserves: errored at error, fail at warning, pass at info."""
    level = log.error if status == "errored" else log.warning if result == "fail" else log.info
    level(f"{what} finished", status=status, result=result, **fields)


def stored_trigger(record: Record) -> KeptnEvent:
    """The trigger of a stored record. It passed the wire's size limit when it arrived; its stored re-encoding
    may be a little larger, which must not make it impossible to resume."""
    return from_json(record.payload, max_bytes=len(record.payload) + MAX_EVENT_BYTES)
