"""Go-style durations (``90s``, ``10m``, ``1h30m``), the format Keptn and Flux users write."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

MIN_DURATION: Final = timedelta(seconds=1)
"""The shortest duration accepted: the service counts (and reports) whole seconds."""
MAX_DURATION: Final = timedelta(days=30)
"""The longest duration accepted: a longer wait is a typo, and would outlive every Keptn sequence timeout."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string, rounded to whole seconds (as it is used and reported) and checked to lie
    between :data:`MIN_DURATION` and :data:`MAX_DURATION` after rounding; raise :class:`ValueError` with the
    reason."""
    text = text.strip()
    if not text:
        raise ValueError("duration is empty")
    shown = text if len(text) <= 40 else text[:40] + "…"
    pos, seconds = 0, 0.0
    for part in _PART.finditer(text):
        if part.start() != pos:
            break
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text):
        raise ValueError(f"'{shown}' is not a duration like 30s, 10m or 1h30m")
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration '{shown}' is longer than the maximum of 30 days (720h)")
    rounded = math.floor(seconds + 0.5)
    if rounded < MIN_DURATION.total_seconds():
        raise ValueError(f"duration '{shown}' is shorter than the minimum of 1s (durations count whole seconds)")
    return timedelta(seconds=rounded)
