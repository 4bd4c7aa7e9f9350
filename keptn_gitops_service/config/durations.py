"""Go-style durations (``90s``, ``10m``, ``1h30m``), the format Keptn and Flux users write."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a positive Go duration string; raise :class:`ValueError` with the reason."""
    text = text.strip()
    if not text:
        raise ValueError("duration is empty")
    pos, seconds = 0, 0.0
    for part in _PART.finditer(text):
        if part.start() != pos:
            break
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text):
        raise ValueError(f"'{text}' is not a duration like 30s, 10m or 1h30m")
    if seconds <= 0:
        raise ValueError(f"duration '{text}' must be positive")
    return timedelta(seconds=seconds)
