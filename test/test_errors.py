"""The error hierarchy's helpers."""

from __future__ import annotations

import asyncio

from keptn_gitops_service.errors import StateError, stop_if_cancelled


async def test_a_loop_that_carries_on_after_errors_still_stops_when_cancelled() -> None:
    """nats-py can turn a cancellation into its own error; the loops that catch it must stop all the same (a lease
    renewer that swallowed the cancel kept ``Service.stop`` waiting forever)."""
    waiting, give_up = asyncio.Event(), asyncio.Event()

    async def call() -> None:
        try:
            waiting.set()
            await give_up.wait()
        except asyncio.CancelledError:
            raise StateError("cannot read from the state store: nats: connection closed") from None

    async def renew_forever() -> None:
        while not give_up.is_set():
            try:
                await call()
            except StateError:
                stop_if_cancelled()

    task = asyncio.create_task(renew_forever())
    await waiting.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    give_up.set()  # a loop that swallowed the cancel ends here instead of hanging the test
    await asyncio.wait({task})
    assert done == {task} and task.cancelled()
