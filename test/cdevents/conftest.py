"""CDEvents test fixtures: the v0.5.1 JSON schemas (with their format constraints enforced) and an HTTP sink."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cdevents_sink import Sink
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

# RFC 3986 characters of a URI reference (anything else must be percent-encoded)
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def _formats() -> FormatChecker:
    """The formats the CDEvents schemas use, checked (jsonschema checks them only with optional packages)."""
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            return False
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True

    @checker.checks("uri-reference", raises=ValueError)
    def uri_reference(value: object) -> bool:
        if not isinstance(value, str):
            return True
        urlsplit(value)
        return bool(_URI_CHARACTERS.fullmatch(value))

    @checker.checks("uri", raises=ValueError)
    def uri(value: object) -> bool:
        return not isinstance(value, str) or (uri_reference(value) and bool(urlsplit(value).scheme))

    return checker


@pytest.fixture(scope="session")
def validate(upstream_fixtures: Path) -> Callable[[dict[str, Any]], None]:
    """Validate a CDEvent against the v0.5.1 schema of its ``context.type`` (raises ``ValidationError``)."""
    folder = upstream_fixtures / "cdevents" / "schemas"
    schemas = [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    by_type = {
        s["properties"]["context"]["properties"]["type"]["enum"][0]: s
        for s in schemas
        if "context" in s.get("properties", {})
    }
    assert len(by_type) == 3
    checker = _formats()

    def check(event: dict[str, Any]) -> None:
        schema = by_type[event["context"]["type"]]
        Draft202012Validator(schema, registry=registry, format_checker=checker).validate(event)

    return check


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    running = Sink()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
