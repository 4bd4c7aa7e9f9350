"""Commit trailers, parsed and matched exactly.

Commits are found again by their trailers (``Keptn-Context``, ``Keptn-Scope``, ``Keptn-Triggered-Id``): a
redelivered trigger by its id, a rollback by its context and scope. A text search would match substrings (an empty
context every commit, ``sockshop/dev/carts`` also ``sockshop/dev/carts-db``), so every candidate's message is parsed
here and compared whole line by whole line; ``git log --grep`` only narrows down the candidates.

A trailer is a ``Key: value`` line of a message's last paragraph, as git reads it (``git interpret-trailers
--parse``): keys without whitespace, the value trimmed. Lines that are not trailers (continuations, prose) carry
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["carries", "parse_line", "parse_trailers"]


def parse_line(line: str) -> tuple[str, str] | None:
    """``(key, value)`` of one ``Key: value`` line, or ``None`` when it is not one."""
    key, sep, value = line.partition(": ")
    if not sep or not key or any(ch.isspace() for ch in key) or not key.isprintable():
        return None
    return key, value.strip()


def parse_trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a commit message: the ``Key: value`` lines of its last paragraph, in order."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return []
    return [pair for line in paragraphs[-1].splitlines() if (pair := parse_line(line)) is not None]


def carries(message: str, wanted: Iterable[tuple[str, str]]) -> bool:
    """Whether the message's trailers include every ``(key, value)`` of ``wanted`` exactly (none wanted: no)."""
    wanted = set(wanted)
    return bool(wanted) and wanted <= set(parse_trailers(message))
