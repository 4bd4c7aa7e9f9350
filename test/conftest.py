"""Shared fixtures. Sub-package fixtures live in each test/<subsystem>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Loop, start_loop, stop_loop
from support import nats_server

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

# test/e2e builds and runs a real control plane with the Flux controllers: ./scripts/e2e runs it, with this set.
collect_ignore = [] if os.environ.get("KEPTN_GITOPS_E2E") == "1" else ["e2e"]


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` (real upstream samples; read-only)."""
    if not FIXTURES.is_dir():
        raise RuntimeError(f"the shared fixtures are missing: expected them at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def nats_url() -> Iterator[str]:
    """A real nats-server on a free loopback port (stopped after the test)."""
    with nats_server() as url:
        yield url


@pytest.fixture
async def loop(tmp_path: Path, nats_url: str) -> AsyncIterator[Loop]:
    """The whole loop, running (see harness.py)."""
    running = await start_loop(tmp_path, nats_url)
    try:
        yield running
    finally:
        await stop_loop(running)
