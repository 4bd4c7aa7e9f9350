"""The state store in a NATS JetStream key-value bucket, shared by every replica (issue: replicas).

Each owned triggered event is one key. Whoever creates the key owns the deployment and holds a *lease* on it:
``owner`` plus ``lease_until`` (wall-clock time), renewed every third of the lease while the work runs. Every
write is a compare-and-set on the key's revision, so two replicas can never both move a record; a replica
that died stops renewing, and once its lease has expired another replica takes the record over (a CAS that
only one of them wins) and resumes it. A replica that was paused past its lease loses the record the same
way, and learns it at its next write (:class:`LeaseLostError`) — before it could publish a second
``.finished``.

JetStream KV semantics relied on (nats.py ``nats/js/kv.py``): ``create`` succeeds only for a missing key,
``update(key, value, last=revision)`` only while the key's latest revision is ``last``.

The CDEvents outbox and the histories that decide each event's type live in a second bucket,
``<bucket>-cdevents``, whose entries never expire (a service's history must outlive the seven days of the trigger
records). An outbox entry names the replica that added it; another replica delivers it only once it has waited
a lease (its owner may be dead), so a live replica's events are normally sent by that replica alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import LeaseLostError, StateError, describe_error, stop_if_cancelled
from keptn_gitops_service.state.store import ORDER, Phase, Record

log = structlog.get_logger(__name__)

DEFAULT_BUCKET = "keptn-gitops-service"
CDEVENTS_SUFFIX = "-cdevents"
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_CAS_ATTEMPTS = 8


@dataclass(frozen=True)
class _Stored:
    record: Record
    owner: str
    lease_until: float
    revision: int


class JetStreamStateStore:
    """:class:`~keptn_gitops_service.state.store.StateStore` in a JetStream key-value bucket."""

    def __init__(
        self,
        *,
        owner: str,
        clock: Clock,
        lease: float = 30.0,
        nats_url: str = "",
        bucket: str = DEFAULT_BUCKET,
        keep: float = 7 * 24 * 3600,
    ) -> None:
        """Connect to ``nats_url`` and bind ``bucket`` in :meth:`open` (or use :meth:`bind`)."""
        self._js: JetStreamContext | None = None
        self._kv_bound: KeyValue | None = None
        self._memo_bound: KeyValue | None = None
        self.owner = owner
        self._clock = clock
        self.lease = lease
        self._nats_url = nats_url
        self._bucket_name = bucket
        self._keep = keep
        self._nc: NATS | None = None
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    @classmethod
    async def bind(
        cls, js: JetStreamContext, *, owner: str, clock: Clock, bucket: str = DEFAULT_BUCKET, lease: float = 30.0
    ) -> JetStreamStateStore:
        """A store on an existing JetStream connection (the caller closes the connection)."""
        store = cls(owner=owner, clock=clock, lease=lease, bucket=bucket)
        store._js = js
        await store.open()
        return store

    async def open(self) -> None:
        """Connect to NATS (a connection of its own, reconnecting forever) and bind the bucket."""
        if self._js is None:
            try:
                self._nc = await nats.connect(
                    self._nats_url, name=f"keptn-gitops-service state {self.owner}", max_reconnect_attempts=-1
                )
            except Exception as exc:
                raise StateError(f"cannot connect to NATS for the state store: {_describe(exc)}") from None
            self._js = self._nc.jetstream()
        if self._kv_bound is None:
            self._kv_bound = await _bucket(self._js, self._bucket_name, self._keep)
        if self._memo_bound is None:
            self._memo_bound = await _bucket(self._js, self._bucket_name + CDEVENTS_SUFFIX, None)
        self.start_renewing()

    @property
    def _kv(self) -> KeyValue:
        if self._kv_bound is None:
            raise StateError("the JetStream state store is not open yet")
        return self._kv_bound

    @property
    def _memo(self) -> KeyValue:
        if self._memo_bound is None:
            raise StateError("the JetStream state store has no CDEvents bucket (it is not open yet)")
        return self._memo_bound

    async def outbox_add(self, event_id: str, body: bytes) -> None:
        value = json.dumps(
            {"id": event_id, "body": base64.b64encode(body).decode(), "owner": self.owner, "addedAt": self._now()},
            separators=(",", ":"),
        ).encode()
        try:
            await self._memo.create(_outbox_key(event_id), value)
        except KeyWrongLastSequenceError:
            return  # already there
        except Exception as exc:
            raise StateError(f"cannot keep CDEvent {event_id} in the outbox: {_describe(exc)}") from None

    async def outbox_pending(self) -> list[tuple[str, bytes]]:
        """This replica's undelivered events, and those of others that have waited more than a lease."""
        found: list[tuple[str, bytes]] = []
        try:
            for _, value in await self._entries(self._bucket_name + CDEVENTS_SUFFIX, "outbox.>"):
                data = json.loads(value)
                added = float(data["addedAt"])
                if data["owner"] == self.owner or added + self.lease <= self._now():
                    found.append((str(data["id"]), base64.b64decode(data["body"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"an entry of the CDEvents outbox is corrupt: {exc}") from None
        return found

    async def outbox_remove(self, event_id: str) -> None:
        try:
            await self._memo.delete(_outbox_key(event_id))
        except Exception as exc:
            raise StateError(f"cannot remove CDEvent {event_id} from the outbox: {_describe(exc)}") from None

    async def memo_get(self, key: str) -> bytes | None:
        try:
            entry = await self._memo.get(_memo_key(key))
        except KeyNotFoundError:
            return None
        except Exception as exc:
            raise StateError(f"cannot read {key} from the state store: {_describe(exc)}") from None
        return entry.value

    async def memo_put(self, key: str, value: bytes) -> None:
        try:
            await self._memo.put(_memo_key(key), value)
        except Exception as exc:
            raise StateError(f"cannot store {key}: {_describe(exc)}") from None

    def start_renewing(self) -> None:
        """Renew the leases of the records this instance works on, every third of the lease."""
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name="state lease renewal")

    async def claim(self, triggered_id: str, context: str, event_type: str, payload: bytes) -> tuple[Record, bool]:
        record = Record(triggered_id, context, event_type, payload, Phase.RECEIVED, "", "", self._now())
        try:
            await self._kv.create(_key(triggered_id), self._encode(record, self.owner))
        except KeyWrongLastSequenceError:
            existing = await self._read(triggered_id)
            if existing is None:  # deleted in between (bucket TTL): treat as new next time
                raise StateError(f"event {triggered_id} vanished from the state store while claiming it") from None
            return existing.record, False
        except Exception as exc:
            raise StateError(f"cannot record event {triggered_id}: {_describe(exc)}") from None
        self._held.add(triggered_id)
        return record, True

    async def advance(self, triggered_id: str, phase: Phase, *, commit: str = "", result: str = "") -> Record:
        def forward(record: Record) -> Record:
            to = phase if ORDER.index(phase) >= ORDER.index(record.phase) else record.phase
            return replace(
                record, phase=to, commit=commit or record.commit, result=result or record.result, updated_at=self._now()
            )

        updated = await self._change(triggered_id, forward)
        if updated.phase is Phase.FINISHED:
            self._held.discard(triggered_id)
        return updated

    async def get(self, triggered_id: str) -> Record | None:
        stored = await self._read(triggered_id)
        return stored.record if stored else None

    async def owns(self, triggered_id: str) -> bool:
        """Whether this instance holds ``triggered_id`` — renewing the lease if so. A record another replica
        holds, even on an expired lease, is not ours until :meth:`unfinished`/:meth:`orphans` take it over."""
        stored = await self._read(triggered_id)
        if stored is None or stored.owner != self.owner:
            self._held.discard(triggered_id)
            return False
        try:
            await self._change(triggered_id, lambda record: record)
        except LeaseLostError:
            return False
        return True

    async def unfinished(self) -> list[Record]:
        """The unfinished records this instance may work on now: its own, and those whose owner's lease has
        expired, which it takes over. Records held by a live replica are left to it."""
        return await self._unfinished(include_own=True)

    async def _unfinished(self, *, include_own: bool) -> list[Record]:
        keys = [key for key, _ in await self._entries(self._bucket_name, "trigger.>")]
        taken = []
        for key in keys:
            stored = await self._read_key(key)
            if stored is None or stored.record.phase is Phase.FINISHED:
                continue
            mine = stored.owner == self.owner
            if (mine and not include_own) or (not mine and stored.lease_until > self._now()):
                continue
            try:
                record = await self._change(stored.record.triggered_id, lambda r: r)
            except LeaseLostError:
                continue  # another replica took it over first
            log.info(
                "took over an unfinished deployment",
                triggeredid=record.triggered_id,
                previous_owner=stored.owner,
                phase=record.phase.value,
            )
            taken.append(record)
        return sorted(taken, key=lambda r: r.updated_at)

    async def orphans(self) -> list[Record]:
        """Unfinished records of *other* replicas whose lease has expired, taken over by this one (the service
        asks every half lease, so a dead replica's deployments are resumed within about 1.5 leases)."""
        return await self._unfinished(include_own=False)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        self._held.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    async def _change(self, triggered_id: str, change: Callable[[Record], Record]) -> Record:
        """Compare-and-set ``change`` onto the record, taking or renewing the lease; retried when another write
        landed in between, refused when another live replica holds the lease."""
        for _ in range(_CAS_ATTEMPTS):
            stored = await self._read(triggered_id)
            if stored is None:
                raise StateError(f"no state recorded for event {triggered_id}")
            if stored.owner != self.owner and stored.lease_until > self._now():
                self._held.discard(triggered_id)
                raise LeaseLostError(f"event {triggered_id} is being handled by {stored.owner}")
            updated = change(stored.record)
            try:
                await self._kv.update(_key(triggered_id), self._encode(updated, self.owner), last=stored.revision)
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:
                raise StateError(f"cannot update event {triggered_id}: {_describe(exc)}") from None
            if updated.phase is not Phase.FINISHED:
                self._held.add(triggered_id)
            return updated
        raise StateError(f"event {triggered_id} kept changing under us; gave up after {_CAS_ATTEMPTS} attempts")

    async def _renew_forever(self) -> None:
        while True:
            await self._clock.sleep(self.lease / 3)
            for triggered_id in list(self._held):
                await _quietly(self.owns(triggered_id), triggered_id)

    async def _entries(self, bucket: str, pattern: str) -> list[tuple[str, bytes]]:
        """The live keys of ``bucket`` matching ``pattern`` with their values, in the order they were written.

        Read message by message from the bucket's stream rather than through a KV watch: nats.py's watch (and
        ``keys()``, built on it) may signal "no more entries" before handing over the ones already on their way
        (its start marker compares the consumer's pending count with the messages its callback has handled
        so far), so a bucket with entries was now and then listed as empty."""
        if self._js is None:
            raise StateError("the JetStream state store is not open yet")
        prefix = f"$KV.{bucket}."
        latest: dict[str, tuple[int, bytes]] = {}
        seq = 1
        try:
            while True:
                try:
                    msg = await self._js.get_msg(f"KV_{bucket}", seq, subject=prefix + pattern, next=True)
                except NotFoundError:
                    break
                key = (msg.subject or "")[len(prefix) :]
                if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
                    latest.pop(key, None)
                else:
                    latest[key] = (msg.seq or seq, msg.data or b"")
                seq = (msg.seq or seq) + 1
        except Exception as exc:
            raise StateError(f"cannot list the JetStream key-value bucket {bucket!r}: {_describe(exc)}") from None
        return [(key, value) for key, (_, value) in sorted(latest.items(), key=lambda item: item[1][0])]

    async def _read(self, triggered_id: str) -> _Stored | None:
        return await self._read_key(_key(triggered_id))

    async def _read_key(self, key: str) -> _Stored | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            raise StateError(f"cannot read {key} from the state store: {_describe(exc)}") from None
        if entry.value is None or entry.revision is None:
            return None
        return _decode(entry.value, entry.revision)

    def _encode(self, record: Record, owner: str) -> bytes:
        return json.dumps(
            {
                "triggeredid": record.triggered_id,
                "shkeptncontext": record.context,
                "type": record.event_type,
                "payload": base64.b64encode(record.payload).decode(),
                "phase": record.phase.value,
                "commit": record.commit,
                "result": record.result,
                "updatedAt": record.updated_at,
                "owner": owner,
                "leaseUntil": self._now() + self.lease,
            },
            separators=(",", ":"),
        ).encode()

    def _now(self) -> float:
        return self._clock.now().timestamp()


async def _bucket(js: JetStreamContext, bucket: str, keep: float | None) -> KeyValue:
    """Bind ``bucket``, creating it (file-backed, one revision per key, entries kept ``keep`` s, or for ever when
    ``None``) when missing."""
    try:
        try:
            return await js.key_value(bucket)
        except BucketNotFoundError:
            return await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=1, ttl=keep, storage=StorageType.FILE)
            )
    except Exception as exc:
        raise StateError(f"cannot open the JetStream key-value bucket {bucket!r}: {_describe(exc)}") from None


def _key(triggered_id: str) -> str:
    """A KV key for any triggered id (KV keys allow only ``[-/_=.A-Za-z0-9]``; ids are usually UUIDs)."""
    if _PLAIN_ID.match(triggered_id):
        return f"trigger.{triggered_id}"
    return f"trigger.h{hashlib.sha256(triggered_id.encode()).hexdigest()}"


def _outbox_key(event_id: str) -> str:
    if _PLAIN_ID.match(event_id):
        return f"outbox.{event_id}"
    return f"outbox.h{hashlib.sha256(event_id.encode()).hexdigest()}"


def _memo_key(key: str) -> str:
    return f"memo.{hashlib.sha256(key.encode()).hexdigest()}"


def _decode(value: bytes, revision: int) -> _Stored:
    try:
        data: dict[str, Any] = json.loads(value)
        record = Record(
            triggered_id=data["triggeredid"],
            context=data["shkeptncontext"],
            event_type=data["type"],
            payload=base64.b64decode(data["payload"]),
            phase=Phase(data["phase"]),
            commit=data["commit"],
            result=data["result"],
            updated_at=float(data["updatedAt"]),
        )
        return _Stored(record, str(data["owner"]), float(data["leaseUntil"]), revision)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"a state record is corrupt: {exc}") from None


async def _quietly(renewal: Awaitable[bool], triggered_id: str) -> None:
    try:
        if not await renewal:
            log.warning("lost the lease of a deployment to another replica", triggeredid=triggered_id)
    except StateError as exc:
        stop_if_cancelled()
        log.warning("could not renew a lease", triggeredid=triggered_id, error=describe_error(exc))


def _describe(exc: Exception) -> str:
    return str(exc) or exc.__class__.__name__
