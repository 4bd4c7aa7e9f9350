"""Fixtures for the go-utils conformance tests (nats_url comes from test/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.build import GoMissingError, conformance_binary


@pytest.fixture(scope="session")
def checker() -> Path | GoMissingError:
    """The Go checker built with keptn/go-utils, or why there is none: each test then FAILS with that message
    (see ``test_go_utils.binary``) instead of erroring in setup, and never skips."""
    try:
        return conformance_binary()
    except GoMissingError as exc:
        return exc
