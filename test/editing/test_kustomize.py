"""kustomization.yaml ``images:`` updates: kustomize semantics with a minimal, verified diff."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.editing.kustomize import set_kustomize_image
from keptn_gitops_service.errors import EditError

DIGEST = "sha256:" + "e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9"

KUSTOMIZATION = """\
# carts in dev
apiVersion: kustomize.config.k8s.io/v1beta1 # api
kind: Kustomization # kind
resources: # what we deploy
  - deployment.yaml # the deployment
images: # pinned images
  - name: docker.io/keptnexamples/carts # carts
    newTag: "0.13.1" # {"$imagepolicy": "keptn:carts:tag"}
  - name: mongo # the db
    newTag: 4.4 # plain
"""


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    return [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]


def added_lines(old: str, new: str) -> list[str]:
    """Lines of ``new`` that are not in ``old`` (the old lines must all be kept, in order)."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    remaining = iter(new_lines)
    added: list[str] = []
    for line in old_lines:
        for candidate in remaining:
            if candidate == line:
                break
            added.append(candidate)
        else:
            raise AssertionError(f"line {line!r} was lost")
    added.extend(remaining)
    return added


def test_new_tag_replaces_only_the_tag_and_keeps_the_marker() -> None:
    new = set_kustomize_image(KUSTOMIZATION, "docker.io/keptnexamples/carts", parse_image("keptnexamples/carts:0.14.0"))
    assert changed_lines(KUSTOMIZATION, new) == [
        (
            '    newTag: "0.13.1" # {"$imagepolicy": "keptn:carts:tag"}\n',
            '    newTag: "0.14.0" # {"$imagepolicy": "keptn:carts:tag"}\n',
        ),
    ]


def test_familiar_names_match_and_numeric_tags_become_strings() -> None:
    new = set_kustomize_image(KUSTOMIZATION, "docker.io/library/mongo", parse_image("mongo:4.4.1"))
    assert changed_lines(KUSTOMIZATION, new) == [("    newTag: 4.4 # plain\n", "    newTag: 4.4.1 # plain\n")]
    new = set_kustomize_image(KUSTOMIZATION, "mongo", parse_image("mongo:5.0"))
    assert changed_lines(KUSTOMIZATION, new) == [("    newTag: 4.4 # plain\n", '    newTag: "5.0" # plain\n')]
    assert yaml.safe_load(new)["images"][1] == {"name": "mongo", "newTag": "5.0"}


def test_a_different_repository_is_refused_unless_allowed_and_then_reported() -> None:
    with pytest.raises(EditError) as caught:
        set_kustomize_image(KUSTOMIZATION, "mongo", parse_image("ghcr.io/acme/mongo:7.0.1"))
    assert str(caught.value) == (
        "the 'images' entry 'mongo' deploys the repository 'mongo', but the image 'ghcr.io/acme/mongo:7.0.1' is from "
        "'ghcr.io/acme/mongo'; refusing to change the image repository (set allowRepositoryChange: true on the "
        "update if the move is intended)"
    )
    notes: list[str] = []
    new = set_kustomize_image(
        KUSTOMIZATION, "mongo", parse_image("ghcr.io/acme/mongo:7.0.1"), allow_repository_change=True, note=notes.append
    )
    assert notes == ["image repository changed from mongo to ghcr.io/acme/mongo"]
    assert added_lines(KUSTOMIZATION, new.replace("newTag: 7.0.1", "newTag: 4.4")) == [
        "    newName: ghcr.io/acme/mongo\n",
    ]
    assert yaml.safe_load(new)["images"][1] == {
        "name": "mongo",
        "newName": "ghcr.io/acme/mongo",
        "newTag": "7.0.1",
    }
    assert "  - name: mongo # the db\n    newName: ghcr.io/acme/mongo\n    newTag: 7.0.1 # plain\n" in new


def test_digest_is_inserted_after_new_tag_and_the_tag_is_kept() -> None:
    new = set_kustomize_image(KUSTOMIZATION, "mongo", parse_image(f"mongo@{DIGEST}"))
    assert added_lines(KUSTOMIZATION, new) == [f"    digest: {DIGEST}\n"]
    assert new.endswith(f"    newTag: 4.4 # plain\n    digest: {DIGEST}\n")


def test_tag_and_digest_are_both_written() -> None:
    new = set_kustomize_image(
        KUSTOMIZATION,
        "docker.io/keptnexamples/carts",
        parse_image(f"docker.io/keptnexamples/carts:0.14.0@{DIGEST}"),
    )
    entry = yaml.safe_load(new)["images"][0]
    assert entry == {"name": "docker.io/keptnexamples/carts", "newTag": "0.14.0", "digest": DIGEST}
    assert f'"0.14.0" # {{"$imagepolicy": "keptn:carts:tag"}}\n    digest: {DIGEST}\n' in new


def test_a_pinned_digest_refuses_a_tag_only_image() -> None:
    text = f"images:\n- name: carts\n  newTag: v1\n  digest: {DIGEST}\n"
    with pytest.raises(EditError) as caught:
        set_kustomize_image(text, "carts", parse_image("carts:v2"))
    assert str(caught.value) == (
        f"the 'images' entry for 'carts' pins digest '{DIGEST}'; the new image 'carts:v2' has no digest, "
        "and kustomize would keep deploying the pinned one"
    )


def test_an_image_without_tag_or_digest_is_refused() -> None:
    with pytest.raises(EditError) as caught:
        set_kustomize_image(KUSTOMIZATION, "mongo", parse_image("mongo"))
    assert str(caught.value) == "image reference 'mongo' has neither tag nor digest; kustomizeImage needs one"


def test_a_missing_entry_is_refused_naming_the_entries() -> None:
    """The user's case: a name with a typo would add an entry that matches no container and deploy nothing."""
    text = "images:\n- name: docker.io/keptnexamples/carts\n  newTag: 0.13.0\n"
    image = parse_image("docker.io/keptn-examples/carts:0.13.1")
    with pytest.raises(EditError) as caught:
        set_kustomize_image(text, "docker.io/keptn-examples/carts", image)
    assert str(caught.value) == (
        "no 'images' entry is named 'docker.io/keptn-examples/carts' or names its repository (entries: "
        "'docker.io/keptnexamples/carts'); an entry that matches no container would deploy nothing. Correct "
        "kustomizeImage.name, or set kustomizeImage.create: true to add the entry"
    )
    with pytest.raises(EditError, match=r"\(entries: none\)"):
        set_kustomize_image("resources: []\n", "carts", parse_image("carts:1"))
    with pytest.raises(EditError, match=r"\(entries: none\)"):
        set_kustomize_image("images:\n", "carts", parse_image("carts:1"))


def test_a_repository_given_by_a_short_name_is_refused() -> None:
    """The user's other case: ``--image carts:0.13.3`` would have set ``newName: carts``, another image."""
    text = "images:\n- name: docker.io/keptnexamples/carts\n  newTag: 0.13.0\n"
    with pytest.raises(EditError) as caught:
        set_kustomize_image(text, "docker.io/keptnexamples/carts", parse_image("carts:0.13.3"))
    assert str(caught.value).startswith(
        "the 'images' entry 'docker.io/keptnexamples/carts' deploys the repository 'docker.io/keptnexamples/carts', "
        "but the image 'carts:0.13.3' is from 'carts'; refusing"
    )


def test_unknown_image_is_appended_in_the_existing_item_style_when_asked_to() -> None:
    new = set_kustomize_image(KUSTOMIZATION, "redis", parse_image("redis:7.2"), create=True)
    assert new == KUSTOMIZATION + '  - name: redis\n    newTag: "7.2"\n'
    with pytest.raises(EditError, match=r"the new 'images' entry 'redis' deploys the repository 'redis', but the"):
        set_kustomize_image(KUSTOMIZATION, "redis", parse_image("ghcr.io/acme/redis:7.2"), create=True)
    new = set_kustomize_image(
        KUSTOMIZATION, "redis", parse_image("ghcr.io/acme/redis:7.2"), create=True, allow_repository_change=True
    )
    assert new == KUSTOMIZATION + '  - name: redis\n    newName: ghcr.io/acme/redis\n    newTag: "7.2"\n'


def test_missing_images_key_appends_a_block_at_the_end_of_the_document() -> None:
    text = "resources:\n- deployment.yaml\n---\nkind: ConfigMap\n"
    with pytest.raises(EditError, match=r"cannot tell which document is the kustomization \(documents 0, 1"):
        set_kustomize_image(text, "carts", parse_image("carts:1.0.0"), create=True)
    text = (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deployment.yaml\n"
        "---\nkind: ConfigMap\n"
    )
    new = set_kustomize_image(text, "carts", parse_image("carts:1.0.0"), create=True)
    assert new == text.replace("---", "images:\n- name: carts\n  newTag: 1.0.0\n---")


def test_empty_images_value_is_filled() -> None:
    text = "images: # none yet\nresources: []\n"
    assert set_kustomize_image(text, "carts", parse_image("carts:v1"), create=True) == (
        "images: # none yet\n- name: carts\n  newTag: v1\nresources: []\n"
    )


def test_flow_styles_are_edited_where_possible_and_refused_otherwise() -> None:
    text = 'images: [{name: carts, newTag: "1.0"}]\n'
    assert set_kustomize_image(text, "carts", parse_image("carts:1.1")) == 'images: [{name: carts, newTag: "1.1"}]\n'
    with pytest.raises(EditError, match=r"path 'images\[0\]' at line 1 is a flow mapping"):
        set_kustomize_image(text, "carts", parse_image(f"carts@{DIGEST}"))
    with pytest.raises(EditError, match=r"path 'images' at line 1 is a flow sequence"):
        set_kustomize_image("images: []\n", "carts", parse_image("carts:1.1"), create=True)


def test_exact_name_wins_and_ambiguity_is_refused() -> None:
    text = "images:\n- name: nginx\n  newTag: a\n- name: docker.io/library/nginx\n  newTag: b\n"
    new = set_kustomize_image(text, "nginx", parse_image("nginx:c"))
    assert yaml.safe_load(new)["images"] == [
        {"name": "nginx", "newTag": "c"},
        {"name": "docker.io/library/nginx", "newTag": "b"},
    ]
    with pytest.raises(EditError, match=r"several 'images' entries match 'library/nginx' \(images\[0\], images\[1\]\)"):
        set_kustomize_image(text, "library/nginx", parse_image("nginx:c"))


def test_placeholder_names_match_exactly() -> None:
    text = "images:\n- name: ${IMAGE}\n  newTag: v1\n"
    assert set_kustomize_image(text, "${IMAGE}", parse_image("carts:v2")) == (
        "images:\n- name: ${IMAGE}\n  newName: carts\n  newTag: v2\n"
    )


def test_crlf_and_no_trailing_newline() -> None:
    text = "images:\r\n- name: carts # c\r\n  newTag: v1 # c"
    assert set_kustomize_image(text, "carts", parse_image(f"carts:v2@{DIGEST}")) == (
        f"images:\r\n- name: carts # c\r\n  newTag: v2 # c\r\n  digest: {DIGEST}"
    )


def test_upstream_flux_markers_kustomization(upstream_fixtures: Path) -> None:
    text = (upstream_fixtures / "gitops/flux/image_policy_setter_markers.yaml").read_bytes().decode("utf-8")
    new = set_kustomize_image(text, "ghcr.io/stefanprodan/podinfo", parse_image("ghcr.io/stefanprodan/podinfo:5.0.3"))
    # only the root-level kustomize images list (document 2) changes, not the Flux Kustomization's spec.images
    assert changed_lines(text, new) == [
        (
            '  newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
            '  newTag: 5.0.3 # {"$imagepolicy": "flux-system:podinfo:tag"}\n',
        ),
    ]
    moved = set_kustomize_image(
        text, "ghcr.io/stefanprodan/podinfo", parse_image("ghcr.io/acme/podinfo:6.0.0"), allow_repository_change=True
    )
    assert changed_lines(text, moved)[0] == (
        '  newName: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}\n',
        '  newName: ghcr.io/acme/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}\n',
    )


@settings(max_examples=40, deadline=None)
@given(tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True))
def test_property_a_new_tag_changes_one_line_and_loads_as_the_tag(tag: str) -> None:
    new = set_kustomize_image(
        KUSTOMIZATION, "keptnexamples/carts", ImageRef("docker.io/keptnexamples/carts", tag, None)
    )
    changes = changed_lines(KUSTOMIZATION, new)
    assert len(changes) == (0 if tag == "0.13.1" else 1)
    assert all(b.endswith(' # {"$imagepolicy": "keptn:carts:tag"}\n') for _, b in changes)
    assert yaml.safe_load(new)["images"][0]["newTag"] == tag
