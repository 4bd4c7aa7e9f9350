"""Fixtures for the go-utils conformance tests (the same as test/workflow's, copied rather than imported)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance.build import GoMissingError, conformance_binary
from support import nats_server


@pytest.fixture
def nats_url() -> Iterator[str]:
    with nats_server() as url:
        yield url


@pytest.fixture(scope="session")
def checker() -> Path | GoMissingError:
    """The Go checker built with keptn/go-utils, or why there is none: each test then FAILS with that message
    (see ``test_go_utils.binary``) instead of erroring in setup, and never skips."""
    try:
        return conformance_binary()
    except GoMissingError as exc:
        return exc
