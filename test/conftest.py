"""Shared fixtures. Sub-package fixtures live in each test/<subsystem>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` (real upstream samples; read-only)."""
    if not FIXTURES.is_dir():
        raise RuntimeError(f"the shared fixtures are missing: expected them at {FIXTURES}")
    return FIXTURES
