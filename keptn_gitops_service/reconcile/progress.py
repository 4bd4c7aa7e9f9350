"""What a running wait last observed, for the progress lines a waiting deployment logs.

:meth:`~keptn_gitops_service.reconcile.dispatch.Reconciler.wait` sets a :class:`Progress` for the wait (a context
variable, so the waiters and the tasks they start see the same one) and logs it every
``KEPTN_GITOPS_PROGRESS_INTERVAL`` seconds; the waiters :func:`note` every status they judge.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Progress:
    """The object a wait follows, the commit it waits for, and the last status observed."""

    waiting_for: str
    commit: str
    status: str = "not observed yet"


CURRENT: ContextVar[Progress | None] = ContextVar("keptn_gitops_progress", default=None)


def note(status: str) -> None:
    """Record the status a waiter just judged (a no-op outside a wait)."""
    progress = CURRENT.get()
    if progress is not None:
        progress.status = status
