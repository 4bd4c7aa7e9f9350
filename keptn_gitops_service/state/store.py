"""Where each owned triggered event is recorded, from receipt to finished, so every step is idempotent.

One small async interface (:class:`StateStore`), two implementations: embedded SQLite (the default: a file in
the state directory, a volume in the chart; one process) and a NATS JetStream key-value bucket shared by
replicas (:mod:`.jetstream`, with leases). A triggered ``id`` is claimed exactly once: a redelivery of the same
``id`` finds the existing record and produces no second commit and no second pair of replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from keptn_gitops_service.errors import LeaseLostError, StateError

__all__ = ["ORDER", "LeaseLostError", "Phase", "Record", "SqliteStateStore", "StateStore"]


class Phase(enum.StrEnum):
    """How far a deployment got. Phases only move forward."""

    RECEIVED = "received"
    STARTED = "started"  # .started was published
    COMMITTED = "committed"  # the commit is pushed (or nothing had to change)
    FINISHED = "finished"  # .finished was published


ORDER = list(Phase)
T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    """The stored state of one triggered event."""

    triggered_id: str
    context: str
    event_type: str
    payload: bytes
    phase: Phase
    commit: str
    result: str
    updated_at: float


class StateStore(Protocol):
    """Persistence of in-flight work."""

    async def claim(self, triggered_id: str, context: str, event_type: str, payload: bytes) -> tuple[Record, bool]:
        """Record a received event; return its record and whether this call created it (and so owns it)."""
        ...

    async def advance(self, triggered_id: str, phase: Phase, *, commit: str = "", result: str = "") -> Record:
        """Move a record forward to ``phase`` (never backwards), storing the commit/result if given; raises
        :class:`LeaseLostError` when another replica has taken the record over."""
        ...

    async def get(self, triggered_id: str) -> Record | None: ...

    async def owns(self, triggered_id: str) -> bool:
        """Whether this instance still holds ``triggered_id`` (asked right before ``.finished`` is published)."""
        ...

    async def open(self) -> None:
        """Connect (before any other call)."""
        ...

    async def unfinished(self) -> list[Record]:
        """Every unfinished record this instance may resume now, oldest first (asked once, at start)."""
        ...

    async def orphans(self) -> list[Record]:
        """Unfinished records of other replicas that died, now taken over by this instance (asked periodically)."""
        ...

    async def close(self) -> None: ...

    # ---- the CDEvents outbox and what deciding an event remembers (cdevents/) ----

    async def outbox_add(self, event_id: str, body: bytes) -> None:
        """Keep an event until it is delivered; adding an id that is already there changes nothing."""
        ...

    async def outbox_pending(self) -> list[tuple[str, bytes]]:
        """The events this instance should deliver now, oldest first."""
        ...

    async def outbox_remove(self, event_id: str) -> None:
        """Forget a delivered event."""
        ...

    async def memo_get(self, key: str) -> bytes | None:
        """A value stored under ``key`` (``None``: never stored); kept until replaced, never expiring."""
        ...

    async def memo_put(self, key: str, value: bytes) -> None: ...


class SqliteStateStore:
    """:class:`StateStore` in one SQLite file (WAL mode, ``synchronous=FULL``: a call that wrote returns once its
    transaction is on the disk, so it survives a power loss, not only a crash of the process).

    Every call runs on one worker thread of its own: a durable commit waits for the disk, and the event loop must go
    on answering probes and other triggers meanwhile. One thread also keeps the calls in order, so a claim's insert
    and read see no other call in between. Group commit: the calls made while the thread is busy run next, one after
    the other, in one transaction, and each caller returns once that transaction is committed — concurrent
    triggers share one wait for the disk instead of queueing for one each."""

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-store")
        self._lock = threading.Lock()  # guards the three below, shared by the event loop and the store's thread
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self._draining = False
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS triggers (triggered_id TEXT PRIMARY KEY, context TEXT NOT NULL,"
                " event_type TEXT NOT NULL, payload BLOB NOT NULL, phase TEXT NOT NULL,"
                " git_commit TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS cdevents_outbox (event_id TEXT PRIMARY KEY, body BLOB NOT NULL,"
                " added_at REAL NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=False)
            raise StateError(f"cannot open the state store {path}: {exc}") from None

    async def _call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the store's thread in the next batch; return once the batch is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise StateError("the state store is closed")
            self._pending.append((work, future, loop))
            start, self._draining = not self._draining, True
        if start:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:  # the executor was shut down
                with self._lock:
                    self._closed, self._draining, self._pending = True, False, []
                raise StateError("the state store is closed") from None
        return await future

    def _drain(self) -> None:
        """On the store's thread: run what is pending, batch after batch, until nothing is; each caller is answered
        on its event loop once its batch is committed."""
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            try:
                outcomes = self._run_batch([work for work, _, _ in batch])
            except Exception as exc:  # never expected; a caller must not wait for ever, nor the calls after it
                failed = StateError(f"the state store failed: {exc.__class__.__name__}: {exc}")
                outcomes = [(False, failed) for _ in batch]
            answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], tuple[bool, Any]]]] = {}
            for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
                answers.setdefault(loop, []).append((future, outcome))
            for loop, settled in answers.items():  # one wake-up of each event loop per batch
                with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody waits any more
                    loop.call_soon_threadsafe(_settle, settled)

    def _run_batch(self, batch: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """Run a batch on the store's thread: one call alone as it is (its own statement is its transaction),
        several in one transaction. Each outcome is ``(True, result)`` or ``(False, exception)``; a result stands
        only once the transaction that holds it is committed, so a failed commit fails every call of it."""
        if len(batch) == 1:
            return [_outcome(batch[0])]
        outcomes: list[tuple[bool, Any]] = []
        first = 0  # the first call of the open transaction
        begun = self._begin()
        for work in batch:
            if begun is not None:
                outcomes.append((False, begun))
                continue
            outcomes.append(_outcome(work))
            if not self._db.in_transaction:  # an error rolled the whole transaction back: none of it is stored
                lost = StateError("the state store rolled back a transaction (a failed write or the disk)")
                outcomes[first:] = [(False, lost) for _ in outcomes[first:]]
                first, begun = len(outcomes), self._begin()
        if begun is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                failed = StateError(f"cannot commit to the state store: {exc}")
                outcomes[first:] = [(False, failed) for _ in outcomes[first:]]
        return outcomes

    def _begin(self) -> StateError | None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return StateError(f"cannot begin a transaction in the state store: {exc}")
        return None

    async def claim(self, triggered_id: str, context: str, event_type: str, payload: bytes) -> tuple[Record, bool]:
        return await self._call(partial(self._claim, triggered_id, context, event_type, payload))

    async def advance(self, triggered_id: str, phase: Phase, *, commit: str = "", result: str = "") -> Record:
        return await self._call(partial(self._advance, triggered_id, phase, commit, result))

    async def get(self, triggered_id: str) -> Record | None:
        return await self._call(partial(self._get, triggered_id))

    async def open(self) -> None:
        """Nothing to do: the file is opened at construction, so a bad path fails early."""

    async def owns(self, triggered_id: str) -> bool:
        return True  # one process owns the file

    async def orphans(self) -> list[Record]:
        return []  # no other replicas

    async def unfinished(self) -> list[Record]:
        return await self._call(self._unfinished)

    async def close(self) -> None:
        with contextlib.suppress(StateError):  # closing twice is harmless
            await self._call(_nothing)  # every call made before is done
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)  # a batch still running ends first
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    async def outbox_add(self, event_id: str, body: bytes) -> None:
        await self._write(
            "INSERT OR IGNORE INTO cdevents_outbox (event_id, body, added_at) VALUES (?, ?, ?)",
            (event_id, body, time.time()),
            f"cannot keep CDEvent {event_id} in the outbox",
        )

    async def outbox_pending(self) -> list[tuple[str, bytes]]:
        def pending() -> list[tuple[str, bytes]]:
            try:
                rows = self._db.execute("SELECT event_id, body FROM cdevents_outbox ORDER BY rowid").fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"cannot list the CDEvents outbox: {exc}") from None
            return [(str(r[0]), bytes(r[1])) for r in rows]

        return await self._call(pending)

    async def outbox_remove(self, event_id: str) -> None:
        await self._write(
            "DELETE FROM cdevents_outbox WHERE event_id = ?",
            (event_id,),
            f"cannot remove CDEvent {event_id} from the outbox",
        )

    async def memo_get(self, key: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                row = self._db.execute("SELECT value FROM memo WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise StateError(f"cannot read {key} from the state store: {exc}") from None
            return bytes(row[0]) if row else None

        return await self._call(get)

    async def memo_put(self, key: str, value: bytes) -> None:
        await self._write("INSERT OR REPLACE INTO memo (key, value) VALUES (?, ?)", (key, value), f"cannot store {key}")

    async def _write(self, sql: str, parameters: tuple[object, ...], failure: str) -> None:
        def write() -> None:
            try:
                self._db.execute(sql, parameters)
            except sqlite3.Error as exc:
                raise StateError(f"{failure}: {exc}") from None

        await self._call(write)

    def _claim(self, triggered_id: str, context: str, event_type: str, payload: bytes) -> tuple[Record, bool]:
        try:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO triggers (triggered_id, context, event_type, payload, phase, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (triggered_id, context, event_type, payload, Phase.RECEIVED.value, time.time()),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot record event {triggered_id}: {exc}") from None
        record = self._get(triggered_id)
        assert record is not None
        return record, cursor.rowcount == 1

    def _advance(self, triggered_id: str, phase: Phase, commit: str, result: str) -> Record:
        record = self._get(triggered_id)
        if record is None:
            raise StateError(f"no state recorded for event {triggered_id}")
        if ORDER.index(phase) < ORDER.index(record.phase):
            phase = record.phase
        try:
            self._db.execute(
                "UPDATE triggers SET phase = ?, git_commit = COALESCE(NULLIF(?, ''), git_commit),"
                " result = COALESCE(NULLIF(?, ''), result), updated_at = ? WHERE triggered_id = ?",
                (phase.value, commit, result, time.time(), triggered_id),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot update event {triggered_id}: {exc}") from None
        updated = self._get(triggered_id)
        assert updated is not None
        return updated

    def _get(self, triggered_id: str) -> Record | None:
        try:
            row = self._db.execute(
                "SELECT triggered_id, context, event_type, payload, phase, git_commit, result, updated_at"
                " FROM triggers WHERE triggered_id = ?",
                (triggered_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read event {triggered_id}: {exc}") from None
        return _record(row) if row else None

    def _unfinished(self) -> list[Record]:
        try:
            rows = self._db.execute(
                "SELECT triggered_id, context, event_type, payload, phase, git_commit, result, updated_at"
                " FROM triggers WHERE phase != ? ORDER BY updated_at",
                (Phase.FINISHED.value,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot list unfinished events: {exc}") from None
        return [_record(r) for r in rows]


def _outcome(work: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, work()
    except Exception as exc:  # handed to the caller, whose call raises it
        return False, exc


def _nothing() -> None:
    pass


def _settle(settled: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
    for future, (ok, value) in settled:
        if future.done():  # its caller was cancelled; the work was done all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _record(row: tuple[str, str, str, bytes, str, str, str, float]) -> Record:
    return Record(row[0], row[1], row[2], bytes(row[3]), Phase(row[4]), row[5], row[6], row[7])
