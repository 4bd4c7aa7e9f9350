"""Minimal-diff YAML editing: only the target scalar's characters may change, byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keptn_gitops_service.editing import yamledit
from keptn_gitops_service.editing.yamledit import (
    Index,
    Key,
    Match,
    append_sequence_item,
    format_path,
    get_scalar,
    insert_mapping_key,
    insert_mapping_sequence,
    parse_path,
    set_scalar,
)
from keptn_gitops_service.errors import EditError

# A file in every style that trips up re-serialising tools.
TRICKY = """\
# leading comment
%YAML 1.1
---
# values for carts
image: # the image
    repository: "docker.io/keptnexamples/carts" # double-quoted
    tag: '0.13.1'   # {"$imagepolicy": "keptn:carts:tag"}
    pullPolicy: IfNotPresent # plain
notes: |
  tag: 0.13.1
  keep: me
folded: >-
  folded
  text
defaults: &defaults # anchored
  replicas: 1
  labels: {app: carts, tier: "backend", version: v1}
prod:
  <<: *defaults # merged
  replicas: 3

containers: # indentless sequence
- name: carts
  image: docker.io/keptnexamples/carts:0.13.1 # plain
-   name: db
    image: mongo:4.4
sidecars:
    -   name: proxy # oddly indented
        image: "envoy:v1.2"
list: [a, 'b', "c"] # flow sequence
...
---
kind: Second # second document
image: {tag: v2, repository: x} # flow mapping
"""


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """The (old, new) line pairs that differ; both texts must have the same number of lines."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


def replaced(text: str, document: int, keys: Sequence[str | int], value: Any) -> list[Any]:
    """``yaml.safe_load_all(text)`` with the value at ``keys`` of ``document`` replaced."""
    docs = list(yaml.safe_load_all(text))
    target = docs[document]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return docs


# ----------------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("", ()),
        ("image.tag", (Key("image"), Key("tag"))),
        (
            "spec.template.spec.containers[0].image",
            (Key("spec"), Key("template"), Key("spec"), Key("containers"), Index(0), Key("image")),
        ),
        ("containers[name=carts].image", (Key("containers"), Match("name", "carts"), Key("image"))),
        ('images[name="ghcr.io/x"].newTag', (Key("images"), Match("name", "ghcr.io/x"), Key("newTag"))),
        (
            'metadata.annotations["example.com/x"]',
            (Key("metadata"), Key("annotations"), Key("example.com/x")),
        ),
        ("metadata.annotations.'a.b'", (Key("metadata"), Key("annotations"), Key("a.b"))),
        ("[1].x", (Index(1), Key("x"))),
        ("$imagepolicy", (Key("$imagepolicy"),)),
    ],
)
def test_parse_path(path: str, segments: tuple[Any, ...]) -> None:
    assert parse_path(path) == segments


def test_format_path_round_trips() -> None:
    path = 'spec.containers[name=carts].annotations["example.com/x"][0]'
    assert format_path(parse_path(path)) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a..b", "invalid path 'a..b': expected a key but found '.' at position 2"),
        (".a", "expected a key but found '.' at position 0"),
        ("a.", "expected a key but found the end at position 2"),
        ("a[x", "expected a number, a quoted key or field=value inside '[...]' at position 3"),
        ("a[0", "expected ']' at position 3"),
        ("a[-1]", "expected a number, a quoted key or field=value inside '[...]' at position 4"),
        ('a["b', 'unterminated "quoted" key'),
        ("a b", "expected '.' or '[' but found ' ' at position 1"),
        ("a[name=]", "expected a value but found ']'"),
    ],
)
def test_bad_path_syntax_is_rejected_precisely(path: str, message: str) -> None:
    with pytest.raises(EditError) as caught:
        parse_path(path)
    assert message in str(caught.value)


# --------------------------------------------------------------------------------------------------- reading


def test_get_scalar_reads_values_across_styles_and_documents() -> None:
    assert get_scalar(TRICKY, "image.tag", document=0) == "0.13.1"
    assert get_scalar(TRICKY, "image.tag", document=1) == "v2"
    assert get_scalar(TRICKY, "containers[name=db].image") == "mongo:4.4"
    assert get_scalar(TRICKY, "sidecars[0].image") == "envoy:v1.2"
    assert get_scalar(TRICKY, "list[2]") == "c"
    assert get_scalar(TRICKY, "prod.replicas") == "3"
    assert get_scalar(TRICKY, "kind") == "Second"


def test_get_scalar_returns_none_for_absent_paths() -> None:
    assert get_scalar(TRICKY, "image.digest", document=0) is None
    assert get_scalar(TRICKY, "containers[name=web].image") is None
    assert get_scalar(TRICKY, "containers[7]") is None
    assert get_scalar("", "a") is None


def test_get_scalar_requires_a_unique_document() -> None:
    with pytest.raises(EditError, match=r"path 'image.tag' exists in documents 0, 1; pass a document index"):
        get_scalar(TRICKY, "image.tag")


def test_get_scalar_rejects_collections_and_bad_document_indexes() -> None:
    with pytest.raises(EditError, match=r"path 'image' is a mapping at line 6, not a scalar"):
        get_scalar(TRICKY, "image", document=0)
    with pytest.raises(EditError, match=r"document 5 does not exist \(the text has 2 documents\)"):
        get_scalar(TRICKY, "kind", document=5)


def test_get_scalar_follows_aliases() -> None:
    assert get_scalar("a: &x v1\nb: *x\n", "b") == "v1"


# ------------------------------------------------------------------------------------------------ set_scalar


@pytest.mark.parametrize(
    ("path", "document", "value", "old_line", "new_line"),
    [
        ("image.tag", 0, "0.14.0", "    tag: '0.13.1'   # {", "    tag: '0.14.0'   # {"),
        ("image.tag", 0, "it's", "    tag: '0.13.1'   #", "    tag: 'it''s'   #"),
        ("image.repository", 0, 'a"b\\c', '"docker.io/keptnexamples/carts"', '"a\\"b\\\\c"'),
        ("image.pullPolicy", 0, "Always", "pullPolicy: IfNotPresent # plain", "pullPolicy: Always # plain"),
        (
            "containers[name=carts].image",
            None,
            "docker.io/keptnexamples/carts:0.14.0",
            "  image: docker.io/keptnexamples/carts:0.13.1 # plain",
            "  image: docker.io/keptnexamples/carts:0.14.0 # plain",
        ),
        ("sidecars[name=proxy].image", None, "envoy:v1.3", '"envoy:v1.2"', '"envoy:v1.3"'),
        ("list[0]", None, "z", "list: [a, 'b', \"c\"]", "list: [z, 'b', \"c\"]"),
        ("list[1]", None, "z", "list: [a, 'b', \"c\"]", "list: [a, 'z', \"c\"]"),
        ("image.tag", 1, "v3", "image: {tag: v2, repository: x}", "image: {tag: v3, repository: x}"),
        ("image.tag", 1, "a,b", "image: {tag: v2, repository: x}", 'image: {tag: "a,b", repository: x}'),
        ("list[0]", None, "0?", "list: [a, 'b', \"c\"]", 'list: ["0?", \'b\', "c"]'),
        ("prod.replicas", None, "5", "  replicas: 3", "  replicas: 5"),
        ("prod.replicas", None, "many", "  replicas: 3", '  replicas: "many"'),
    ],
)
def test_set_scalar_changes_only_the_target_and_keeps_its_style(
    path: str, document: int | None, value: str, old_line: str, new_line: str
) -> None:
    new = set_scalar(TRICKY, path, value, document=document)
    [(before, after)] = changed_lines(TRICKY, new)
    assert old_line in before
    assert new_line in after
    assert before.replace(old_line, new_line) == after


@pytest.mark.parametrize(
    "value",
    [
        "1.10",
        "true",
        "null",
        "~",
        "0x1F",
        "",
        "yes",
        "1e3",
        "7e12345",
        "a: b",
        "a #b",
        "-x",
        "*x",
        "&x",
        "!x",
        "|x",
        ">x",
        "'x",
        '"x',
        "%x",
        "@x",
        "`x",
        "[x",
        "{x",
        "#x",
        "x:",
        " x",
        "x ",
    ],
)
def test_plain_strings_switch_to_double_quotes_when_plain_would_change_meaning(value: str) -> None:
    new = set_scalar("tag: v1 # keep\n", "tag", value)
    assert new.startswith('tag: "')
    assert new.endswith('" # keep\n')
    assert yaml.safe_load(new) == {"tag": value}


@pytest.mark.parametrize("value", ["v2", "1.0.0", "5.0.1-rc.1", "sha-7f3e2a1", "a_b", "ghcr.io/x:5000"])
def test_plain_strings_stay_plain_when_safe(value: str) -> None:
    assert set_scalar("tag: v1 # keep\n", "tag", value) == f"tag: {value} # keep\n"


def test_typed_plain_scalars_keep_their_type_or_get_quoted() -> None:
    assert set_scalar("replicas: 3\n", "replicas", "4") == "replicas: 4\n"
    assert set_scalar("ratio: 1.5\n", "ratio", "2.5") == "ratio: 2.5\n"
    assert set_scalar("on: true\n", "on", "false") == "on: false\n"
    assert set_scalar("replicas: 3\n", "replicas", "4.5") == 'replicas: "4.5"\n'
    assert set_scalar("ratio: 1.5\n", "ratio", "v2") == 'ratio: "v2"\n'


def test_force_string_quotes_values_other_readers_would_type() -> None:
    assert set_scalar("newTag: 1.0\n", "newTag", "1.1", force_string=True) == 'newTag: "1.1"\n'
    assert set_scalar("newTag: 1.0\n", "newTag", "1.0", force_string=True) == 'newTag: "1.0"\n'
    assert set_scalar("newTag: v1\n", "newTag", "v2", force_string=True) == "newTag: v2\n"


def test_empty_and_null_values_are_string_slots() -> None:
    assert set_scalar("tag:\nx: 1\n", "tag", "v2") == "tag: v2\nx: 1\n"
    assert set_scalar("tag: # fill me\n", "tag", "v2") == "tag: v2 # fill me\n"
    assert set_scalar("tag: ~\n", "tag", "v2") == "tag: v2\n"
    assert set_scalar("- \n- x\n", "[0]", "v2") == "- v2\n- x\n"


def test_explicit_str_tag_is_kept_and_forces_a_string() -> None:
    new = set_scalar("tag: !!str 1.0 # pinned\n", "tag", "1.10")
    assert new == "tag: !!str 1.10 # pinned\n"
    assert yaml.safe_load(new) == {"tag": "1.10"}


def test_equal_value_returns_the_same_text() -> None:
    assert set_scalar(TRICKY, "image.tag", "0.13.1", document=0) is TRICKY


def test_crlf_bom_and_missing_trailing_newline_survive() -> None:
    text = "\ufeff# c\r\nimage:\r\n  tag: v1 # c\r\n  name: x"
    new = set_scalar(text, "image.tag", "v2")
    assert new == "\ufeff# c\r\nimage:\r\n  tag: v2 # c\r\n  name: x"
    assert set_scalar(new, "image.name", "z").endswith("  name: z")


def test_block_scalars_next_to_the_target_are_untouched() -> None:
    text = "a: |\n  tag: v1\n\nb: v1\nc: >\n  v1\n"
    assert set_scalar(text, "b", "v2") == "a: |\n  tag: v1\n\nb: v2\nc: >\n  v1\n"


def test_anchors_and_aliases_elsewhere_are_untouched() -> None:
    text = "base: &b {x: 1}\nuse: *b\nother: &o 2\ntag: v1\nmore: *o\n"
    assert set_scalar(text, "tag", "v2") == "base: &b {x: 1}\nuse: *b\nother: &o 2\ntag: v2\nmore: *o\n"


def test_merged_mapping_keys_outside_the_anchor_are_editable() -> None:
    new = set_scalar(TRICKY, "prod.replicas", "4")
    assert next(iter(yaml.safe_load_all(new)))["prod"] == {
        "replicas": 4,
        "labels": {"app": "carts", "tier": "backend", "version": "v1"},
    }


def test_documents_with_end_markers_and_directives() -> None:
    text = "%YAML 1.1\n---\na: 1\n...\n---\nb: v1\n...\n"
    assert set_scalar(text, "b", "v2") == "%YAML 1.1\n---\na: 1\n...\n---\nb: v2\n...\n"


# ------------------------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("v2\nevil: true", "value 'v2\\nevil: true' contains a line break"),
        ("v2\r", "contains a line break"),
        ("v2\u2028", "contains a line break"),
        ("v2\x00", "control character U+0000"),
        ("v\t2", "control character U+0009"),
        ("v2\x1b[31m", "control character U+001B"),
        ("\ufeffv2", "control character U+FEFF"),
    ],
)
def test_values_with_line_breaks_or_control_characters_are_rejected(value: str, message: str) -> None:
    with pytest.raises(EditError) as caught:
        set_scalar("tag: v1\n", "tag", value)
    assert message in str(caught.value)


def test_colon_space_injection_cannot_create_keys() -> None:
    new = set_scalar("image:\n  tag: v1\n", "image.tag", "v2\x20evil: true")
    assert yaml.safe_load(new) == {"image": {"tag": "v2 evil: true"}}
    new = set_scalar("image: {tag: v1}\n", "image.tag", "v2, evil: true")
    assert yaml.safe_load(new) == {"image": {"tag": "v2, evil: true"}}


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("a: |\n  v1\n", "a", "path 'a' at line 1 is a literal block scalar ('|')"),
        ("a: >-\n  v1\n", "a", "path 'a' at line 1 is a folded block scalar ('>')"),
        (
            "a: &x v1\nb: *x\n",
            "b",
            "path 'b' goes through the alias '*x' at line 2; edit the anchored node '&x' at line 1",
        ),
        (
            "a: &x v1\nb: *x\n",
            "a",
            "path 'a' at line 1 is the anchored scalar '&x'; changing it would change every alias",
        ),
        (
            "a: &x {t: v1}\nb: *x\n",
            "a.t",
            "path 'a.t' is inside the anchored node '&x' at line 1, which is used through",
        ),
        ("a: &x {t: v1}\nb: *x\n", "b.t", "goes through the alias '*x'"),
        ("a: !!int 1\n", "a", "path 'a' at line 1 has the explicit tag '!!int'"),
        ("a: !custom v1\n", "a", "has the explicit tag '!custom'"),
        ("a: {t: v1}\n", "a", "path 'a' is a flow mapping at line 1, not a scalar"),
        ("a:\n- v1\n", "a", "path 'a' is a sequence at line 2, not a scalar"),
        (
            "image:\n  repo: x\n\n  name: y\n",
            "image.tag",
            "path 'image.tag' not found (no key 'tag' under 'image' at line 2, which has the keys 'repo', 'name')",
        ),
        ("image: v1\n", "image.tag", "('image' at line 1 is the scalar 'v1', not a mapping)"),
        ("a: [x]\n", "a[3]", "the sequence 'a' at line 1 has 1 item, so there is no item [3]"),
        ("a: [x]\n", "a.b", "'a' at line 1 is a flow sequence, not a mapping"),
        (
            "c:\n- name: x\n- {name: z}\n- other: 1\n",
            "c[name=y].image",
            "no item with name='y' in the sequence 'c' at line 2, whose items have name 'x', 'z')",
        ),
        (
            "c:\n- other: 1\n",
            "c[name=y]",
            "no item with name='y' in the sequence 'c' at line 2, whose items have no 'name'",
        ),
        ("a: {}\n", "a.b", "no key 'b' under 'a' at line 1, which has no keys)"),
        (
            "c:\n- name: x\n- name: x\n",
            "c[name=x].image",
            "2 items match [name=x] in the sequence 'c' at line 2 (lines 2, 3)",
        ),
        ("a: 1\na: 2\n", "a", "key 'a' appears 2 times under the document root at line 1 (lines 1 and 2)"),
        (
            "b: &b {x: 1}\nc:\n  <<: *b\n",
            "c.x",
            "(it may come from a '<<' merge; edit the anchored mapping instead)",
        ),
        (
            "a: [1\n",
            "a",
            "the text is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, column 1",
        ),
        ("", "a", "path 'a' not found (the text contains no YAML document)"),
        ("a: 1\n", "a..b", "invalid path 'a..b'"),
    ],
)
def test_unsafe_or_missing_targets_are_rejected_precisely(text: str, path: str, message: str) -> None:
    with pytest.raises(EditError) as caught:
        set_scalar(text, path, "v2")
    assert message in str(caught.value)


def test_multi_document_not_found_lists_each_document() -> None:
    with pytest.raises(EditError) as caught:
        set_scalar("a: 1\n---\nb: 2\n", "c", "x")
    assert str(caught.value) == (
        "path 'c' not found in any of the 2 documents "
        "(document 0: no key 'c' under the document root at line 1, which has the keys 'a'; "
        "document 1: no key 'c' under the document root at line 3, which has the keys 'b')"
    )


def test_the_reparse_safety_net_refuses_a_splice_that_changes_more(monkeypatch: pytest.MonkeyPatch) -> None:
    def injecting(value: str, node: yaml.ScalarNode, *, forced_string: bool, flow: bool) -> str:
        return value  # pretend the renderer forgot to quote

    monkeypatch.setattr(yamledit, "_render_like", injecting)
    with pytest.raises(EditError, match=r"refusing to set image.tag: the edited text would change more"):
        set_scalar("image:\n  tag: v1\n", "image.tag", "v2 # hidden")
    with pytest.raises(EditError, match=r"refusing to set image.tag: the edited text would not parse"):
        set_scalar("image:\n  tag: v1\n", "image.tag", "[v2")


# ------------------------------------------------------------------------------------------------- inserting


def test_insert_mapping_key_uses_sibling_indentation_and_order() -> None:
    text = "image: # c\n    repository: x # c\n    tag: v1 # c\nother: 1\n"
    new = insert_mapping_key(text, "image", "digest", "sha256:abc", after_key="repository")
    assert new == "image: # c\n    repository: x # c\n    digest: sha256:abc\n    tag: v1 # c\nother: 1\n"
    new = insert_mapping_key(text, "image", "pullPolicy", "true")
    assert new == 'image: # c\n    repository: x # c\n    tag: v1 # c\n    pullPolicy: "true"\nother: 1\n'


def test_insert_mapping_key_after_a_nested_block_and_trailing_comments() -> None:
    text = "a:\n  b:\n    c: |\n      text\n\n  # about d\n  d: 1\n"
    new = insert_mapping_key(text, "a", "x", "y1", after_key="b")
    assert new == "a:\n  b:\n    c: |\n      text\n  x: y1\n\n  # about d\n  d: 1\n"


def test_insert_mapping_key_in_sequence_items_and_at_the_root() -> None:
    text = "images:\n- name: a # c\n  newTag: 1\n"
    assert insert_mapping_key(text, "images[0]", "newName", "b", after_key="name") == (
        "images:\n- name: a # c\n  newName: b\n  newTag: 1\n"
    )
    assert insert_mapping_key(text, "", "namespace", "prod") == text + "namespace: prod\n"


def test_insert_mapping_key_keeps_crlf_and_a_missing_final_newline() -> None:
    assert insert_mapping_key("a: 1\r\nb: 2\r\n", "", "c", "3") == 'a: 1\r\nb: 2\r\nc: "3"\r\n'
    assert insert_mapping_key("a: 1\r\nb: 2", "", "c", "x") == "a: 1\r\nb: 2\r\nc: x"
    assert insert_mapping_key("a:\n  b: 2", "a", "c", "x") == "a:\n  b: 2\n  c: x"


@pytest.mark.parametrize(
    ("text", "parent", "key", "after", "message"),
    [
        (
            "a: {b: 1}\n",
            "a",
            "c",
            None,
            "path 'a' at line 1 is a flow mapping ({...}); keys can only be added",
        ),
        ("a:\n  b: 1\n", "a", "b", None, "key 'b' already exists under 'a' at line 2"),
        ("a:\n  b: 1\n", "a", "c", "z", "key 'z' (to insert after) not found under 'a' at line 2"),
        ("a: [1]\n", "a", "c", None, "path 'a' is a flow sequence at line 1, not a mapping"),
        ("a:\n  b: 1\n", "x", "c", None, "path 'x' not found"),
        ("a: &a {b: 1}\nc: *a\n", "c", "d", None, "goes through the alias '*a'"),
        (
            "a: &a\n  b: 1\nc: *a\n",
            "a",
            "d",
            None,
            "inside the anchored node '&a' at line 1, which is used through",
        ),
    ],
)
def test_insert_mapping_key_rejections(text: str, parent: str, key: str, after: str | None, message: str) -> None:
    with pytest.raises(EditError) as caught:
        insert_mapping_key(text, parent, key, "v", after_key=after)
    assert message in str(caught.value)


def test_insert_mapping_key_rejects_newlines_in_key_or_value() -> None:
    with pytest.raises(EditError, match="value 'x\\\\ny: 1' contains a line break"):
        insert_mapping_key("a: 1\n", "", "b", "x\ny: 1")
    with pytest.raises(EditError, match="key 'b\\\\nc' contains a line break"):
        insert_mapping_key("a: 1\n", "", "b\nc", "x")


def test_append_sequence_item_matches_existing_item_style() -> None:
    text = "images:\n    -   name: a # c\n        newTag: v1\n# trailing\n"
    assert append_sequence_item(text, "images", {"name": "b", "newTag": "1.10"}) == (
        'images:\n    -   name: a # c\n        newTag: v1\n    -   name: b\n        newTag: "1.10"\n# trailing\n'
    )


def test_append_sequence_item_fills_an_empty_value_and_refuses_flow_sequences() -> None:
    assert append_sequence_item("images:\nx: 1\n", "images", {"name": "b"}) == "images:\n- name: b\nx: 1\n"
    with pytest.raises(EditError, match=r"path 'images' at line 1 is a flow sequence \(\[...\]\)"):
        append_sequence_item("images: []\n", "images", {"name": "b"})


def test_insert_mapping_sequence_follows_the_documents_sequence_indentation() -> None:
    indented = "resources:\n  - a.yaml\n"
    assert insert_mapping_sequence(indented, "", "images", [{"name": "b", "newTag": "v1"}]) == (
        indented + "images:\n  - name: b\n    newTag: v1\n"
    )
    indentless = "resources:\r\n- a.yaml"
    assert insert_mapping_sequence(indentless, "", "images", [{"name": "b"}]) == (
        "resources:\r\n- a.yaml\r\nimages:\r\n- name: b"
    )


# -------------------------------------------------------------------------------------------- upstream files


def read(upstream_fixtures: Path, name: str) -> str:
    return (upstream_fixtures / "gitops" / name).read_bytes().decode("utf-8")


def test_flux_setter_markers_survive(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    new = set_scalar(text, "spec.values.image.tag", "5.0.1", document=0)
    assert changed_lines(text, new) == [
        (
            '      tag: 5.0.0  # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
            '      tag: 5.0.1  # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
        ),
    ]
    digest = "sha256:" + "b" * 64
    new = set_scalar(new, "spec.values.image.digest", digest, document=0)
    assert f'digest: {digest} # {{"$imagepolicy": "flux-system:podinfo:digest"}}\n' in new
    # the root-level kustomize images list exists in document 2 only, so no index is needed
    new = set_scalar(new, "images[0].newTag", "5.0.1")
    assert new.count('newTag: 5.0.1 # {"$imagepolicy": "flux-system:podinfo:tag"}') == 1
    assert new.endswith("---\n")
    assert len(list(yaml.safe_load_all(new))) == len(list(yaml.safe_load_all(text))) == 4


def test_kargo_yaml_update_step_value(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "kargo/steps_yaml_update.yaml")
    path = "steps[uses=yaml-update].config.updates[key=image.tag].value"
    assert get_scalar(text, path) == '${{ imageFrom("my/image").Tag }}'
    new = set_scalar(text, path, "1.2.3")
    assert changed_lines(text, new) == [('      value: ${{ imageFrom("my/image").Tag }}\n', "      value: 1.2.3\n")]
    assert new.endswith("# Render manifests to ./out, commit, push, etc...\n")


def test_kargo_stage_with_comments_between_items(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "kargo/stage_promotion_git_push_argocd_update.yaml")
    path = "spec.promotionTemplate.spec.steps[uses=argocd-update].config.apps[name=my-app].sources[0].repoURL"
    new = set_scalar(text, path, "https://github.com/example/other.git")
    assert changed_lines(text, new) == [
        (
            "            - repoURL: https://github.com/example/repo.git\n",
            "            - repoURL: https://github.com/example/other.git\n",
        ),
    ]
    new = insert_mapping_key(text, "spec.promotionTemplate.spec.steps[as=commit].config", "author", "keptn")
    assert (
        "          message: ${{ outputs['update-image'].commitMessage }} # Or task.outputs in a (Cluster)"
        "PromotionTask\n          author: keptn\n      - uses: git-push\n" in new
    )


def test_argocd_image_updater_double_quotes_stay(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "argocd-image-updater/imageupdater_cr_pr_helmvalues.yaml")
    path = "spec.applicationRefs[namePattern=my-app].images[alias=nginx].imageName"
    new = set_scalar(text, path, "nginx:1.27.0")
    assert changed_lines(text, new) == [
        ('          imageName: "nginx:1.17.10"\n', '          imageName: "nginx:1.27.0"\n'),
    ]


def test_helmrelease_history_selectors(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/helmrelease_status_history.yaml")
    assert get_scalar(text, "status.history[version=1].chartVersion") == "6.6.0+cdd538a0167e"
    new = set_scalar(text, "status.history[version=2].chartVersion", "6.6.2+0cc9a8446c95")
    assert changed_lines(text, new) == [
        ("      chartVersion: 6.6.1+0cc9a8446c95\n", "      chartVersion: 6.6.2+0cc9a8446c95\n"),
    ]
    with pytest.raises(EditError, match=r"2 items match \[name=podinfo\] in the sequence 'status.history'"):
        set_scalar(text, "status.history[name=podinfo].version", "3")


# -------------------------------------------------------------------------------------------------- property


@dataclass(frozen=True)
class Target:
    """A corpus file, a path in it, and the same location as a document index plus load-time keys."""

    name: str
    text: str
    path: str
    document: int
    keys: tuple[str | int, ...]


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def corpus(upstream_fixtures: Path) -> list[Target]:
    flux = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    kargo = read(upstream_fixtures, "kargo/steps_git_clone_kustomize_set_image.yaml")
    updater = read(upstream_fixtures, "argocd-image-updater/imageupdater_cr_pr_helmvalues.yaml")
    history = read(upstream_fixtures, "flux/helmrelease_status_history.yaml")
    return [
        Target("flux-tag", flux, "spec.values.image.tag", 0, ("spec", "values", "image", "tag")),
        Target("flux-crlf", crlf(flux), "spec.images[0].newTag", 1, ("spec", "images", 0, "newTag")),
        Target("flux-kustomize", flux, "images[0].newTag", 2, ("images", 0, "newTag")),
        Target("kargo", kargo, "steps[2].config.images[0].tag", 0, ("steps", 2, "config", "images", 0, "tag")),
        Target(
            "updater",
            updater,
            "spec.writeBackConfig.gitConfig.branch",
            0,
            ("spec", "writeBackConfig", "gitConfig", "branch"),
        ),
        Target(
            "history",
            "\ufeff" + history.rstrip("\n"),
            "status.history[1].appVersion",
            0,
            ("status", "history", 1, "appVersion"),
        ),
        Target("tricky-single", TRICKY, "image.tag", 0, ("image", "tag")),
        Target("tricky-double", TRICKY, "sidecars[0].image", 0, ("sidecars", 0, "image")),
        Target("tricky-plain", crlf(TRICKY), "containers[1].image", 0, ("containers", 1, "image")),
        Target("tricky-flow-seq", TRICKY, "list[1]", 0, ("list", 1)),
        Target("tricky-flow-map", TRICKY, "image.tag", 1, ("image", "tag")),
    ]


def child(node: yaml.Node, key: str | int) -> yaml.Node:
    """The child of a composed collection node by index or by key."""
    if isinstance(key, int):
        item: yaml.Node = node.value[key]
        return item
    pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
    return next(value for k, value in pairs if k.value == key)


def scalar_span(text: str, document: int, keys: Sequence[str | int]) -> tuple[int, int]:
    """The original scalar's [start, end) from PyYAML marks, found independently of the module under test."""
    node = list(yaml.compose_all(text, Loader=yaml.SafeLoader))[document]
    for key in keys:
        node = child(node, key)
    assert isinstance(node, yaml.ScalarNode)
    return node.start_mark.index, node.end_mark.index


TAGS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)


@pytest.mark.parametrize("index", range(11))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=TAGS)
def test_property_only_the_target_scalar_changes(upstream_fixtures: Path, index: int, value: str) -> None:
    target = corpus(upstream_fixtures)[index]
    text = target.text
    old_value = get_scalar(text, target.path, document=target.document)
    assert old_value is not None
    new = set_scalar(text, target.path, value, document=target.document)

    # (a) every character before and after the original scalar is unchanged
    start, end = scalar_span(text, target.document, target.keys)
    tail = len(text) - end
    assert new[:start] == text[:start]
    assert new[len(new) - tail :] == text[end:]

    # (b) the data is the original with only the target replaced
    assert list(yaml.safe_load_all(new)) == replaced(text, target.document, target.keys, value)

    # (c) writing the old value back restores the original bytes when the style did not change
    old_style, new_style = text[start], new[start]
    quotes = ("'", '"')
    if (old_style in quotes) == (new_style in quotes) and (old_style not in quotes or old_style == new_style):
        assert set_scalar(new, target.path, old_value, document=target.document) == text
