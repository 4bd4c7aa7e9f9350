"""Stopping tasks for sure (Python 3.11's wait_for can lose a cancellation)."""

from __future__ import annotations

import asyncio

from keptn_gitops_service.tasks import cancel_and_wait


async def test_a_task_that_lost_a_cancellation_is_cancelled_again() -> None:
    lost = 0

    async def carries_on() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # what 3.11's wait_for does when its future completed as the cancel arrived
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()

    task = asyncio.create_task(carries_on())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 10)
    assert task.cancelled() and lost == 1


async def test_finished_tasks_are_left_as_they_are() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait([done])
    assert done.done() and not done.cancelled()
