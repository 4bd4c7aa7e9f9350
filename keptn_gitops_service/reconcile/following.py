"""Follow one object through a shared feed of live objects until a judge reaches a verdict or the deadline passes.

A feed is a Kubernetes watch (:class:`~keptn_gitops_service.reconcile.kube.SharedWatch`) or an Argo CD API stream
(:class:`~keptn_gitops_service.reconcile.argocd_rest.ApplicationStream`): both keep the current objects of one
kind in one namespace and wake waiters on every change, so a wait costs no request of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.errors import ReconcileError
from keptn_gitops_service.reconcile.outcome import Observation, Verdict
from keptn_gitops_service.reconcile.progress import note

Object = Mapping[str, Any]


class ObjectFeed(Protocol):
    """The live objects of one kind in one namespace."""

    @property
    def fatal(self) -> ReconcileError | None:
        """Set when the feed stopped for good (e.g. 401/403): every waiter on it fails with this message."""

    @property
    def last_error(self) -> str:
        """The last interruption, for messages while an object is not known yet."""

    def get(self, name: str) -> Object | None: ...

    def next_change(self, name: str | None = None) -> asyncio.Event:
        """Set at the next change of ``name`` (or of anything). Take it before reading, so no change slips by."""

    def interest(self, name: str) -> AbstractContextManager[None]:
        """While the block runs, hints (webhooks) about ``name`` are acted upon."""


class ObjectCache:
    """What every feed keeps: the objects by name, change events (for anything and per name), and the names
    waiters follow. Feeds call :meth:`_notify` after every change."""

    def __init__(self) -> None:
        self._objects: dict[str, Object] = {}
        self._changed = asyncio.Event()
        self._changed_by_name: dict[str, asyncio.Event] = {}
        self._interest: Counter[str] = Counter()

    def get(self, name: str) -> Object | None:
        return self._objects.get(name)

    def next_change(self, name: str | None = None) -> asyncio.Event:
        """An event set at the next change (with ``name``: of that object only; a re-list or a fatal error counts
        for every name). Take it *before* reading objects, so no change slips between."""
        if name is None:
            return self._changed
        return self._changed_by_name.setdefault(name, asyncio.Event())

    @contextlib.contextmanager
    def interest(self, name: str) -> Iterator[None]:
        """Declare that a waiter follows object ``name`` while the block runs: hints for it are acted upon."""
        self._interest[name] += 1
        try:
            yield
        finally:
            self._interest[name] -= 1
            if self._interest[name] <= 0:
                del self._interest[name]
                self._changed_by_name.pop(name, None)

    def _notify(self, name: str | None = None) -> None:
        """Wake the waiters of ``name`` (``None``: of every object) and those waiting for any change."""
        self._changed.set()
        self._changed = asyncio.Event()
        if name is None:
            woken = list(self._changed_by_name.values())
            self._changed_by_name.clear()
        else:
            event = self._changed_by_name.pop(name, None)
            woken = [event] if event is not None else []
        for event in woken:
            event.set()


class Judge(ABC):
    """Turns the current object into an observation; may keep state and start background work between calls."""

    #: Re-judge at least this often (seconds) even without a change, for verdicts that depend on time passing.
    recheck: float | None = None

    @abstractmethod
    async def judge(self, obj: Object | None) -> Observation:
        """``obj`` is the feed's copy, ``None`` while the feed does not hold the object."""

    def background(self) -> Sequence[asyncio.Future[Any]]:
        """Work in flight (e.g. a refresh request) whose completion should trigger a new judgement."""
        return ()


@dataclass(frozen=True)
class Followed:
    """A verdict (succeeded or failed), or the last in-progress observation when the deadline passed."""

    observation: Observation
    timed_out: bool = False


async def follow(feed: ObjectFeed, name: str, judge: Judge, *, clock: Clock, deadline: float) -> Followed:
    """Judge ``name`` on every change of it until a verdict, the feed's fatal error, or ``deadline`` (monotonic)."""
    with feed.interest(name):
        while True:
            change = feed.next_change(name)
            if feed.fatal is not None:
                return Followed(Observation(Verdict.FAILED, str(feed.fatal)))
            obj = feed.get(name)
            observation = await judge.judge(obj)
            if observation.verdict is not Verdict.IN_PROGRESS:
                return Followed(observation)
            if obj is None and feed.last_error:
                observation = Observation(Verdict.IN_PROGRESS, f"{observation.summary} ({feed.last_error})")
            note(observation.summary)
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return Followed(observation, timed_out=True)
            nap = min(remaining, judge.recheck) if judge.recheck else remaining
            await wait_any([change.wait(), clock.sleep(nap)], judge.background())


async def wait_any(own: Sequence[Awaitable[Any]], others: Sequence[asyncio.Future[Any]] = ()) -> None:
    """Return when any of ``own`` or ``others`` is done; ``own`` are cancelled then, ``others`` keep running."""
    tasks = [asyncio.ensure_future(a) for a in own]
    try:
        await asyncio.wait([*tasks, *(o for o in others if not o.done())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def older_version(obj: Object, than: str) -> bool:
    """Whether ``obj`` is an older version of its object than resourceVersion ``than``.

    resourceVersions are opaque to clients, but etcd-backed API servers (and Argo CD, which compares them the same
    way in its refresh) issue increasing integers; when either is not an integer, nothing counts as older.
    """
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return version.isdigit() and than.isdigit() and int(version) < int(than)


def duration_text(seconds: float) -> str:
    """``1m30s``/``45s``, as in timeout messages."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
