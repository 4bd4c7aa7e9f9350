"""What a watcher concludes about our commit, and the interface every wait strategy implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Verdict(enum.Enum):
    IN_PROGRESS = "in progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Observation:
    """A verdict plus a human summary of the status it was derived from."""

    verdict: Verdict
    summary: str


@dataclass(frozen=True)
class WaitOutcome:
    """The end of a wait: success, failure or timeout, with the message for ``deployment.finished``."""

    succeeded: bool
    message: str
    timed_out: bool = False
    applied: tuple[str, ...] = ()
    """For a ``wait.clusters`` wait: the clusters that applied the commit (their ``deploymentURIs`` are added)."""


class Ancestry(Protocol):
    """Answers "is commit A contained in commit B?" (a git clone of the repository), and whether B still carries
    what A changed."""

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool: ...

    async def superseded(self, commit: str, descendant: str) -> str | None:
        """Why ``descendant``, a descendant of ``commit``, no longer holds what ``commit`` changed (a later commit
        changed it again), or ``None`` when it does. A controller that applied such a descendant did not apply
        ``commit``'s change."""
        ...
