"""Stopping asyncio tasks for sure.

Python 3.11's ``asyncio.wait_for`` loses a cancellation that arrives just as the future it waits for completes (it
returns the result instead; fixed in 3.12), and libraries built on it — nats-py, aiohttp — inherit that. A task
cancelled once may therefore carry on, and whoever awaits it waits as long as its work takes (forever, on a clock
nobody advances). So a task that must stop is cancelled again until it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_EVERY = 0.2
"""Seconds between two cancellations of a task that has not stopped yet."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one of them has ended (cancelling again those that carry on)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
