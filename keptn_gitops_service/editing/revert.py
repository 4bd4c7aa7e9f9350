"""Undo a commit's scalar edits with the same minimal-diff editor — not a blind ``git revert``.

A deployment commit changes scalars (a tag, a digest). To roll it back we compare the file before and after that
commit, list the scalars it changed, and set each back where it still holds the value the commit wrote. If a
later commit changed the same scalar again, rolling back would overwrite someone else's change: that is refused.
Later commits that touched *other* lines of the file are kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.editing.imageref import show
from keptn_gitops_service.editing.yamledit import (
    Index,
    Key,
    PathSegment,
    format_path,
    get_scalar,
    load_documents,
    set_scalar,
)
from keptn_gitops_service.errors import EditError


@dataclass(frozen=True)
class ScalarChange:
    """One scalar a commit changed: where, and its text before and after."""

    document: int
    path: str
    before: str
    after: str


def scalar_changes(before: str, after: str) -> tuple[ScalarChange, ...]:
    """The scalars that differ between two versions of a YAML file whose structure is otherwise the same."""
    old_docs, new_docs = load_documents(before), load_documents(after)
    if len(old_docs) != len(new_docs):
        raise EditError("the commit added or removed YAML documents; only scalar changes can be rolled back")
    paths: list[tuple[int, str]] = []
    for index, (old, new) in enumerate(zip(old_docs, new_docs, strict=True)):
        _walk(old, new, [], lambda segments, i=index: paths.append((i, format_path(segments))))
    changes = []
    for document, path in paths:
        old_text, new_text = get_scalar(before, path, document=document), get_scalar(after, path, document=document)
        if old_text is None or new_text is None:
            raise EditError(f"{path} is not a plain scalar in both versions; it cannot be rolled back")
        changes.append(ScalarChange(document, path, old_text, new_text))
    return tuple(changes)


def revert_changes(current: str, changes: Sequence[ScalarChange]) -> str:
    """Set every changed scalar back to its earlier value, if it still holds the value the commit wrote."""
    for change in changes:
        now = get_scalar(current, change.path, document=change.document)
        if now == change.before:
            continue
        if now != change.after:
            raise EditError(
                f"{change.path} is now {show(str(now))}, changed after the deployment set it to {show(change.after)};"
                " not rolling back over that change"
            )
        current = set_scalar(current, change.path, change.before, document=change.document)
    return current


def _walk(old: Any, new: Any, segments: list[PathSegment], found: Any) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        if set(old) != set(new):
            added = sorted(str(k) for k in set(new) ^ set(old))
            raise EditError(
                f"the commit added or removed the keys {', '.join(added)} under {format_path(segments) or 'the root'};"
                " only changed values can be rolled back"
            )
        for key in old:
            _walk(old[key], new[key], [*segments, Key(str(key))], found)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            raise EditError(f"the commit changed the length of {format_path(segments)}; it cannot be rolled back")
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(a, b, [*segments, Index(index)], found)
    elif old != new or type(old) is not type(new):
        if isinstance(old, Mapping | list) or isinstance(new, Mapping | list):
            raise EditError(f"the commit changed the structure at {format_path(segments)}; it cannot be rolled back")
        found(segments)
