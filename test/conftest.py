"""Shared fixtures. Sub-package fixtures live in each test/<subsystem>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Loop, start_loop, stop_loop
from support import nats_server

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream"

# test/e2e builds and runs a real control plane with the Flux controllers: ./scripts/e2e runs it, with this set.
collect_ignore = [] if os.environ.get("KEPTN_GITOPS_E2E") == "1" else ["e2e"]


@pytest.fixture(scope="session")
def upstream_fixtures() -> Path:
    """``test/fixtures/upstream``: verbatim upstream samples (Keptn, Flux, Argo CD, Kargo), each folder with its
    sources and licence; read-only."""
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
