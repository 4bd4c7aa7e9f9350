"""Flux revision strings: ``main@sha1:<sha>`` (source-controller ≥ v0.35) and legacy ``main/<sha>``.

Same grammar as fluxcd/pkg ``git/utils.go`` (``SplitRevision``/``ExtractHashFromRevision``), see
source-controller ``docs/spec/v1/gitrepositories.md``, Artifact revision. We only ever compare the extracted SHA.
"""

from __future__ import annotations

import re

_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


def split_revision(revision: str) -> tuple[str, str]:
    """``(pointer, sha)`` from ``main@sha1:<sha>``, ``main/<sha>``, ``sha1:<sha>`` or ``<sha>``."""
    if not revision:
        return "", ""
    if "@" in revision:
        pointer, _, digest = revision.rpartition("@")
    elif ":" in revision:
        pointer, digest = "", revision
    elif "/" in revision:
        pointer, _, digest = revision.rpartition("/")
        pointer = "" if pointer == "HEAD" else pointer
    else:
        pointer, digest = "", revision
    return pointer, digest.rpartition(":")[2]


def revision_sha(revision: str) -> str:
    """The lower-case commit SHA in a revision string, or ``""`` when it carries none."""
    sha = split_revision(revision)[1]
    return sha.lower() if _SHA.match(sha) else ""
