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


class Ancestry(Protocol):
    """Answers "is commit A contained in commit B?" (a git clone of the repository)."""

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool: ...
