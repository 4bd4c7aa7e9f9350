"""Flux ``$imagepolicy`` setter markers and ``keptn`` markers: only the marked scalars' characters change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yamlcheck import Keys, assert_only_targets_changed, read

from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.editing.markers import MarkedScalar, find_markers, set_marked_values
from keptn_gitops_service.errors import EditError

DIGEST = "sha256:" + "e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9"
OLD_DIGEST = "sha256:ec0119616bb8be9199575c05bfc23a6bf0fbdb0690ee15834e7b43bc3f4f6017"
PODINFO = "ghcr.io/stefanprodan/podinfo"


# Every style that trips up re-serialising tools: comments on every line, quotes, flow collections, anchors
# and merges elsewhere, a block scalar, two documents.
TRICKY = """\
# leading comment
---
# values for carts
image: # the image
  repository: "docker.io/keptnexamples/carts" # {"$imagepolicy": "keptn:carts:name"}
  tag: '0.13.1'   # {"$imagepolicy": "keptn:carts:tag"}
  full: docker.io/keptnexamples/carts:0.13.1 #{"$imagepolicy":"keptn:carts"}
defaults: &defaults # anchored elsewhere
  replicas: 1 # one
prod: # merged
  <<: *defaults # merge
  version: "0.13.1" # {"keptn": "{image.tag}"}
notes: | # a block scalar
  tag: 0.13.1 # {"keptn": "{image.tag}"} inside a block scalar is text, not a comment
flow: {
  name: carts, # {"keptn": "carts-{image.tag}"}
  replicas: 2 # plain comment
}
mongo: # another policy
  repository: mongo # {"$imagepolicy": "keptn:mongo:name"}
  tag: "4.4" # {"$imagepolicy": "keptn:mongo:tag"}
---
# second document
containers:
- name: carts # c
  image: keptnexamples/carts:0.13.1 # {"$imagepolicy": "keptn:carts"}
"""

TRICKY_TARGETS: dict[tuple[int, Keys], Any] = {
    (0, ("image", "tag")): "0.14.0",
    (0, ("image", "full")): "docker.io/keptnexamples/carts:0.14.0",
    (0, ("prod", "version")): "0.14.0",
    (0, ("flow", "name")): "carts-0.14.0",
    (1, ("containers", 0, "image")): "docker.io/keptnexamples/carts:0.14.0",
}


def render(image: ImageRef) -> Callable[[str], str]:
    return lambda template: template.format(image=image)


def constant(value: str) -> Callable[[str], str]:
    return lambda _: value


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


def rejected(text: str, image: str = "docker.io/keptnexamples/carts:0.14.0", **kwargs: Any) -> str:
    with pytest.raises(EditError) as caught:
        set_marked_values(text, parse_image(image), **kwargs)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ upstream fixture


def test_flux_fixture_markers_are_found(upstream_fixtures: Path) -> None:
    markers = find_markers(read(upstream_fixtures, "flux/image_policy_setter_markers.yaml"))
    assert [(m.document, m.path, m.field) for m in markers] == [
        (0, "spec.values.image.repository", "name"),
        (0, "spec.values.image.tag", "tag"),
        (0, "spec.values.image.digest", "digest"),
        (1, "spec.images[0].newName", "name"),
        (1, "spec.images[0].newTag", "tag"),
        (2, "images[0].newName", "name"),
        (2, "images[0].newTag", "tag"),
    ]
    assert markers[1] == MarkedScalar(
        "$imagepolicy", "flux-system:podinfo:tag", "flux-system:podinfo", "tag", 0, "spec.values.image.tag", "5.0.0", 10
    )


def test_flux_fixture_new_tag_and_digest(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    new = set_marked_values(text, parse_image(f"{PODINFO}:5.0.3@{DIGEST}"))
    assert changed_lines(text, new) == [
        (
            '      tag: 5.0.0  # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
            '      tag: 5.0.3  # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
        ),
        (
            f'      digest: {OLD_DIGEST} # {{"$imagepolicy": "flux-system:podinfo:digest"}}\n',
            f'      digest: {DIGEST} # {{"$imagepolicy": "flux-system:podinfo:digest"}}\n',
        ),
        (
            '      newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
            '      newTag: 5.0.3 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
        ),
        (
            '  newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
            '  newTag: 5.0.3 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
        ),
    ]
    assert_only_targets_changed(
        text,
        new,
        {
            (0, ("spec", "values", "image", "tag")): "5.0.3",
            (0, ("spec", "values", "image", "digest")): DIGEST,
            (1, ("spec", "images", 0, "newTag")): "5.0.3",
            (2, ("images", 0, "newTag")): "5.0.3",
        },
    )


def test_flux_fixture_policy_moves_the_repository(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml").replace("\n", "\r\n")
    image = parse_image(f"ghcr.io/acme/podinfo:6.0.0@{DIGEST}")
    assert rejected(text, str(image)) == (
        f"none of the 7 '$imagepolicy' markers is for 'ghcr.io/acme/podinfo:6.0.0@{DIGEST}' "
        f"(marked images: '{PODINFO}')"
    )
    assert rejected(text, str(image), policy="flux-system:podinfo") == (
        f"the '$imagepolicy' marker 'flux-system:podinfo:name' at line 9 holds the repository '{PODINFO}', but the "
        f"image 'ghcr.io/acme/podinfo:6.0.0@{DIGEST}' is from 'ghcr.io/acme/podinfo'; refusing to change the image "
        "repository (set allowRepositoryChange: true on the update if the move is intended)"
    )
    notes: list[str] = []
    new = set_marked_values(text, image, policy="flux-system:podinfo", allow_repository_change=True, note=notes.append)
    assert notes == [f"image repository changed from {PODINFO} to ghcr.io/acme/podinfo"]
    assert new.count("\r\n") == text.count("\r\n") and "\n" not in new.replace("\r\n", "")
    targets: dict[tuple[int, Keys], Any] = {
        (0, ("spec", "values", "image", "repository")): "ghcr.io/acme/podinfo",
        (1, ("spec", "images", 0, "newName")): "ghcr.io/acme/podinfo",
        (2, ("images", 0, "newName")): "ghcr.io/acme/podinfo",
        (0, ("spec", "values", "image", "tag")): "6.0.0",
        (0, ("spec", "values", "image", "digest")): DIGEST,
        (1, ("spec", "images", 0, "newTag")): "6.0.0",
        (2, ("images", 0, "newTag")): "6.0.0",
    }
    assert_only_targets_changed(text, new, targets)
    assert rejected(text, f"ghcr.io/acme/podinfo:6.0.0@{DIGEST}", policy="flux-system:other") == (
        "no '$imagepolicy' marker for the policy 'flux-system:other' (policies marked: 'flux-system:podinfo')"
    )


def test_flux_fixture_digest_marker_needs_a_digest(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    assert rejected(text, f"{PODINFO}:5.0.3") == (
        "the '$imagepolicy' marker 'flux-system:podinfo:digest' at line 11 needs a digest, but the image "
        f"'{PODINFO}:5.0.3' has none"
    )
    assert rejected(text, f"{PODINFO}@{DIGEST}") == (
        "the '$imagepolicy' marker 'flux-system:podinfo:tag' at line 10 needs a tag, but the image "
        f"'{PODINFO}@{DIGEST}' has none"
    )


def test_unchanged_values_return_the_text_as_is(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    assert set_marked_values(text, parse_image(f"{PODINFO}:5.0.0@{OLD_DIGEST}")) is text


# ------------------------------------------------------------------------------------------ hand-written


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_tricky_file_changes_only_the_marked_scalars(newline: str) -> None:
    text = TRICKY.replace("\n", newline)
    image = parse_image("docker.io/keptnexamples/carts:0.14.0")
    new = set_marked_values(text, image, keptn_values=render(image))
    assert_only_targets_changed(text, new, TRICKY_TARGETS)
    assert [line for _, line in changed_lines(text, new)] == [
        f'  tag: \'0.14.0\'   # {{"$imagepolicy": "keptn:carts:tag"}}{newline}',
        f'  full: docker.io/keptnexamples/carts:0.14.0 #{{"$imagepolicy":"keptn:carts"}}{newline}',
        f'  version: "0.14.0" # {{"keptn": "{{image.tag}}"}}{newline}',
        f'  name: carts-0.14.0, # {{"keptn": "carts-{{image.tag}}"}}{newline}',
        f'  image: docker.io/keptnexamples/carts:0.14.0 # {{"$imagepolicy": "keptn:carts"}}{newline}',
    ]


def test_tricky_file_other_policy_by_name() -> None:
    image = parse_image("mongo:7.0")
    new = set_marked_values(TRICKY, image, keptn_values=lambda _: "unchanged")
    assert_only_targets_changed(
        TRICKY,
        new,
        {
            (0, ("mongo", "repository")): "mongo",
            (0, ("mongo", "tag")): "7.0",
            (0, ("prod", "version")): "unchanged",
            (0, ("flow", "name")): "unchanged",
        },
    )
    assert '  tag: "7.0" # {"$imagepolicy": "keptn:mongo:tag"}\n' in new


def test_numbers_stay_strings_for_flux_and_keep_their_type_for_keptn() -> None:
    text = 'tag: 1.0 # {"$imagepolicy": "ns:p:tag"}\nreplicas: 2 # {"keptn": "{n}"}\n'
    new = set_marked_values(text, parse_image("carts:1.10"), policy="ns:p", keptn_values=lambda _: "3")
    assert new == 'tag: "1.10" # {"$imagepolicy": "ns:p:tag"}\nreplicas: 3 # {"keptn": "{n}"}\n'
    assert yaml.safe_load(new) == {"tag": "1.10", "replicas": 3}


def test_empty_value_and_missing_trailing_newline() -> None:
    text = 'image:\n  tag: # {"keptn": "{image.tag}"}\n  name: x # {"keptn": "n"}'
    image = parse_image("carts:v2")
    new = set_marked_values(text, image, keptn_values=lambda t: "yes" if t == "n" else t.format(image=image))
    assert new == 'image:\n  tag: v2 # {"keptn": "{image.tag}"}\n  name: "yes" # {"keptn": "n"}'


def test_yaml_syntax_in_a_value_is_written_as_a_string() -> None:
    text = 'label: v1 # {"keptn": "x"}\n'
    for value in ("a: b", "x # y", "[1, 2]", "{a: 1}", "&anchor", "*alias", "- item", "'q'", '"d"', "null"):
        new = set_marked_values(text, parse_image("carts:1"), keptn_values=constant(value))
        assert new.endswith(' # {"keptn": "x"}\n')
        assert yaml.safe_load(new) == {"label": value}


# ------------------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'notes: | # {"keptn": "x"}\n  body\n',
            "the 'keptn' marker at line 1, column 10 is on a block scalar ('|'); only single-line scalars can be "
            "marked",
        ),
        (
            'a: &v 1\nb: *v # {"keptn": "x"}\n',
            "the 'keptn' marker at line 2, column 7 is on the alias '*v'; mark the anchored value '&v' instead",
        ),
        (
            'a: &v 1 # {"keptn": "x"}\nb: *v\n',
            "path 'a' at line 1 is the anchored scalar '&v'; changing it would change every alias of it",
        ),
        (
            'image: {tag: v1} # {"keptn": "x"}\n',
            "the 'keptn' marker at line 1, column 18 follows a flow mapping; only scalars can be marked",
        ),
        (
            'list: [a, b] # {"keptn": "x"}\n',
            "the 'keptn' marker at line 1, column 14 follows a flow sequence; only scalars can be marked",
        ),
        (
            '# {"keptn": "x"}\ntag: v1\n',
            "the 'keptn' marker at line 1, column 1 does not follow a value on its line; put it after the scalar "
            "it marks",
        ),
        (
            'image: # {"keptn": "x"}\n  tag: v1\n',
            "the 'keptn' marker at line 1, column 8 does not follow a value on its line; put it after the scalar "
            "it marks",
        ),
        (
            'tag: v1 # {"keptn": "x"\n',
            "the marker comment at line 1, column 9 is not valid JSON (Expecting ',' delimiter): '# {\"keptn\": \"x\"'",
        ),
        (
            'tag: v1 # {"keptn": "x", "other": 1}\n',
            "the marker comment at line 1, column 9 must be a JSON object with exactly one key, not 2: "
            '\'# {"keptn": "x", "other": 1}\'',
        ),
        (
            'tag: v1 # {"keptn": 1}\n',
            "the 'keptn' marker at line 1, column 9 needs a non-empty string value: '# {\"keptn\": 1}'",
        ),
        (
            'tag: v1 # {"$imagepolicy": "carts"}\n',
            "the '$imagepolicy' marker at line 1, column 9 has the value 'carts'; Flux expects "
            "'<namespace>:<name>', optionally followed by ':tag', ':name' or ':digest'",
        ),
        (
            'tag: v1 # {"$imagepolicy": "ns:carts:tag"}\n',
            "the '$imagepolicy' marker 'ns:carts:tag' at line 1 has no full-reference or ':name' marker of the "
            "policy 'ns:carts' in the file, so it cannot be matched to 'docker.io/keptnexamples/carts:0.14.0'; "
            "pass the policy",
        ),
        ("tag: v1 # a plain comment\n", "the text has no '$imagepolicy' or 'keptn' marker"),
        ("tag: [v1\n", "the text is not valid YAML: expected ',' or ']', but got '<stream end>' at line 2, column 1"),
    ],
)
def test_rejections(text: str, message: str) -> None:
    assert rejected(text, keptn_values=lambda _: "v2") == message


def test_rejections_of_arguments_and_rendered_values() -> None:
    text = 'tag: v1 # {"keptn": "{image.tag}"}\n'
    assert rejected(text) == "the text has 'keptn' markers (line 1) but no renderer for their templates was given"
    assert rejected(text + 'name: a # {"keptn": "n"}\n') == (
        "the text has 'keptn' markers (lines 1, 2) but no renderer for their templates was given"
    )
    assert rejected(text, keptn_values=lambda _: "v2\nevil: true") == (
        "value 'v2\\nevil: true' contains a line break; only single-line values can be written"
    )
    assert rejected(text, policy="carts") == "policy 'carts' must have the form '<namespace>:<name>'"
    assert rejected(text, policy="ns:carts:tag") == "policy 'ns:carts:tag' must have the form '<namespace>:<name>'"
    full = 'image: carts:v1 # {"$imagepolicy": "ns:carts"}\n'
    assert rejected(full, "carts") == (
        "the '$imagepolicy' marker 'ns:carts' at line 1 needs a tag or digest, but the image 'carts' has neither"
    )


def test_ambiguous_paths_are_refused_by_the_safety_net() -> None:
    text = 'tag: v1 # {"keptn": "x"}\ntag: v2\n'
    assert rejected(text, keptn_values=lambda _: "v3") == (
        "key 'tag' appears 2 times under the document root at line 1 (lines 1 and 2); duplicate keys are invalid "
        "YAML and readers disagree on which one wins"
    )


# ------------------------------------------------------------------------------------------ property


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True),
    crlf=st.booleans(),
)
def test_property_only_marked_scalars_change(upstream_fixtures: Path, tag: str, crlf: bool) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    text = text.replace("\n", "\r\n") if crlf else text
    new = set_marked_values(text, ImageRef(PODINFO, tag, DIGEST))
    targets: dict[tuple[int, Keys], Any] = {
        (0, ("spec", "values", "image", "tag")): tag,
        (0, ("spec", "values", "image", "digest")): DIGEST,
        (1, ("spec", "images", 0, "newTag")): tag,
        (2, ("images", 0, "newTag")): tag,
    }
    assert_only_targets_changed(text, new, targets)
    assert [m.value for m in find_markers(new) if m.field == "tag"] == [tag, tag, tag]
