"""At-least-once delivery of CDEvents through an outbox in the state store.

:class:`CDEventsEmitter` is the observer of finished tasks: it decides the event (:func:`model.decide`) from the
history the store keeps, puts the event into the outbox and the new history back, and wakes the worker. It is
called after ``.finished`` was published and before the trigger's record is marked finished, so a crash in between
resumes the task, which finishes again and decides the same event (same id: the outbox keeps one copy).

:class:`OutboxWorker` sends what the outbox holds, oldest first, to every sender, and removes an event once every
sender took it. A failed sender is retried with exponential backoff on the injectable clock; a restart re-sends
whatever is still in the outbox. Nothing here ever delays a Keptn reply: the emitter only writes to the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Protocol

import structlog

from keptn_gitops_service.cdevents import model
from keptn_gitops_service.cdevents.senders import Sender
from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import GitOpsServiceError, describe_error, stop_if_cancelled
from keptn_gitops_service.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

FIRST_RETRY = 1.0
"""Seconds before the first retry of a failed delivery; each further failure doubles it up to :data:`MAX_RETRY`."""
MAX_RETRY = 300.0


class Outbox(Protocol):
    """What the CDEvents need of the state store (both stores implement it)."""

    async def outbox_add(self, event_id: str, body: bytes) -> None: ...

    async def outbox_pending(self) -> list[tuple[str, bytes]]: ...

    async def outbox_remove(self, event_id: str) -> None: ...

    async def memo_get(self, key: str) -> bytes | None: ...

    async def memo_put(self, key: str, value: bytes) -> None: ...


class Waker(Protocol):
    def wake(self) -> None: ...


class CDEventsEmitter:
    """The :class:`~model.TaskObserver` that turns finished tasks into CDEvents in the outbox."""

    def __init__(self, store: Outbox, worker: Waker | None = None, *, source: str = model.DEFAULT_SOURCE) -> None:
        if not model.valid_source(source):
            raise GitOpsServiceError(f"the CDEvents source {source!r} is not a URI reference")
        self.store = store
        self.worker = worker
        self.source = source

    async def finished(self, task: model.FinishedTask) -> None:
        """Decide and enqueue the task's event; never raises (the task has already answered Keptn)."""
        try:
            await self._emit(task)
        except GitOpsServiceError as exc:
            stop_if_cancelled()
            log.error("no CDEvent could be recorded for this task", triggeredid=task.triggered_id, error=str(exc))
        except Exception:
            log.exception("no CDEvent could be recorded for this task", triggeredid=task.triggered_id)

    async def _emit(self, task: model.FinishedTask) -> None:
        if not task.passed:
            log.debug("no CDEvent: the task did not pass", triggeredid=task.triggered_id)
            return
        history = model.decode_history(await self.store.memo_get(model.history_key(task)))
        chain_last = b""
        if task.keptn_context:
            chain_last = await self.store.memo_get(model.chain_key(task.keptn_context)) or b""
        decision = model.decide(task, history, chain_last.decode())
        if isinstance(decision, model.Skipped):
            log.warning("no CDEvent for this task", triggeredid=task.triggered_id, reason=decision.reason)
            return
        event = model.build(task, decision.emitted, source=self.source)
        body = json.dumps(event, separators=(",", ":")).encode()
        await self.store.outbox_add(decision.emitted.event_id, body)
        await self.store.memo_put(model.history_key(task), model.encode_history(decision.history))
        if task.keptn_context:
            await self.store.memo_put(model.chain_key(task.keptn_context), decision.emitted.event_id.encode())
        log.info(
            "CDEvent queued",
            cdevent=decision.emitted.type,
            id=decision.emitted.event_id,
            artifact=decision.emitted.artifact_id,
            triggeredid=task.triggered_id,
        )
        if self.worker is not None:
            self.worker.wake()


class OutboxWorker:
    """Delivers the outbox to every sender, retrying with backoff; started and stopped with the service."""

    def __init__(
        self,
        store: Outbox,
        senders: Sequence[Sender],
        clock: Clock,
        *,
        first_retry: float = FIRST_RETRY,
        max_retry: float = MAX_RETRY,
    ) -> None:
        self.store = store
        self.senders = tuple(senders)
        self.clock = clock
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.failures = 0
        """Consecutive passes with a failed delivery (the backoff's exponent)."""
        self._wakeup = asyncio.Event()
        self._delivered: dict[str, set[str]] = {}
        """Per pending event, the senders that already took it (so a retry goes only to the others)."""
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look at the outbox now (a new event); a running backoff is not cut short."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup.set()  # whatever a previous process left is sent at once
            self._task = asyncio.create_task(self.run(), name="cdevents outbox")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        for sender in self.senders:
            await sender.close()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            if await self.deliver_once():
                self.failures = 0
                await self._wakeup.wait()
                continue
            self.failures += 1
            delay = min(self.first_retry * 2 ** (self.failures - 1), self.max_retry)
            log.info("CDEvents will be sent again", retry_in=delay, failures=self.failures)
            await self.clock.sleep(delay)

    async def deliver_once(self) -> bool:
        """One pass over the outbox; ``True`` when everything in it was delivered (or it was empty)."""
        try:
            pending = await self.store.outbox_pending()
        except GitOpsServiceError as exc:
            stop_if_cancelled()
            log.warning("cannot read the CDEvents outbox", error=describe_error(exc))
            return False
        failed: set[str] = set()
        for event_id, body in pending:
            done = self._delivered.setdefault(event_id, set())
            for sender in self.senders:
                if sender.name in done or sender.name in failed:
                    continue
                try:
                    await sender.send(body)
                except GitOpsServiceError as exc:
                    stop_if_cancelled()
                    failed.add(sender.name)  # later events wait for the next pass, keeping their order
                    log.warning("a CDEvent was not delivered", id=event_id, sink=sender.name, error=str(exc))
                    continue
                done.add(sender.name)
                log.info("CDEvent delivered", id=event_id, sink=sender.name)
            if len(done) == len(self.senders):
                try:
                    await self.store.outbox_remove(event_id)
                except GitOpsServiceError as exc:
                    stop_if_cancelled()
                    log.warning("cannot remove a delivered CDEvent from the outbox", id=event_id, error=str(exc))
                    return False
                self._delivered.pop(event_id, None)
        return not failed
