"""Undoing a commit's scalar edits: which scalars changed, restoring them minimally, refusing to clobber."""

from __future__ import annotations

import pytest

from keptn_gitops_service.editing.revert import ScalarChange, revert_changes, scalar_changes
from keptn_gitops_service.errors import EditError

BEFORE = """\
# values for carts
image:
  repository: docker.io/keptnexamples/carts   # registry
  tag: "0.13.0"
---
replicas: 2
containers:
  - name: carts
    image: docker.io/keptnexamples/carts:0.13.0
"""
AFTER = BEFORE.replace('tag: "0.13.0"', 'tag: "0.13.1"').replace("carts:0.13.0", "carts:0.13.1")


def test_changed_scalars_are_found_in_every_document() -> None:
    assert scalar_changes(BEFORE, AFTER) == (
        ScalarChange(0, "image.tag", "0.13.0", "0.13.1"),
        ScalarChange(
            1, "containers[0].image", "docker.io/keptnexamples/carts:0.13.0", "docker.io/keptnexamples/carts:0.13.1"
        ),
    )


def test_revert_restores_the_exact_bytes_and_keeps_later_unrelated_edits() -> None:
    later = AFTER.replace("replicas: 2", "replicas: 3  # scaled by hand")
    reverted = revert_changes(later, scalar_changes(BEFORE, AFTER))
    assert reverted == BEFORE.replace("replicas: 2", "replicas: 3  # scaled by hand")


def test_revert_is_idempotent_and_refuses_to_overwrite_a_newer_value() -> None:
    changes = scalar_changes(BEFORE, AFTER)
    assert revert_changes(BEFORE, changes) == BEFORE
    newer = AFTER.replace('tag: "0.13.1"', 'tag: "0.14.0"')
    with pytest.raises(EditError, match=r"image.tag is now '0.14.0', changed after the deployment set it to '0.13.1'"):
        revert_changes(newer, changes)


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (BEFORE + "extra: key\n", "added or removed the keys extra"),
        (BEFORE.replace("  - name: carts\n", "  - name: carts\n    args: [a]\n"), "added or removed the keys args"),
        (BEFORE + "---\nthird: doc\n", "added or removed YAML documents"),
    ],
)
def test_structural_changes_cannot_be_rolled_back(after: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        scalar_changes(BEFORE, after)
