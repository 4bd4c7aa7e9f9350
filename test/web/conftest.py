"""Fixtures for the whole loop (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Loop, start_loop, stop_loop
from support import nats_server


@pytest.fixture
def nats_url() -> Iterator[str]:
    with nats_server() as url:
        yield url


@pytest.fixture
async def loop(tmp_path: Path, nats_url: str) -> AsyncIterator[Loop]:
    running = await start_loop(tmp_path, nats_url)
    try:
        yield running
    finally:
        await stop_loop(running)
