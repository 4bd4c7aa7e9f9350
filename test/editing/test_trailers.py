"""Trailers are parsed and matched whole, with exact values (editing/trailers.py)."""

from __future__ import annotations

from keptn_gitops_service.editing.trailers import carries, parse_trailers


def test_only_the_last_paragraphs_key_value_lines_are_trailers() -> None:
    message = (
        "deploy\n\nKeptn-Context: in-the-body\n\n"
        "Keptn-Context: c1\nnot a trailer\nKey With-Space: x\nKeptn-Scope:  p/dev/carts  \nKeptn-Empty:\n"
    )
    assert parse_trailers(message) == [("Keptn-Context", "c1"), ("Keptn-Scope", "p/dev/carts")]
    assert parse_trailers("Keptn-Context: subject only\n") == []
    assert carries(message, [("Keptn-Context", "c1"), ("Keptn-Scope", "p/dev/carts")])
    assert not carries(message, [("Keptn-Context", "c")])
    assert not carries(message, [("Keptn-Scope", "p/dev/cart")])
    assert not carries(message, [("Keptn-Context", "in-the-body")])
    assert not carries(message, [])
