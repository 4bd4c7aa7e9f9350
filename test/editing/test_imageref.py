"""Image references: the distribution/reference grammar, precise rejections, Docker name normalisation."""

from __future__ import annotations

import pytest

from keptn_gitops_service.editing.imageref import ImageRef, normalize_name, parse_image, same_repository
from keptn_gitops_service.errors import EditError, InvalidImageReferenceError

DIGEST = "sha256:" + "0cc9a8446c95009ef382f5eade883a67c257f77d50f84e78ecef2aac9428d1e5"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("carts", ImageRef("carts", None, None)),
        ("keptnexamples/carts:0.13.1", ImageRef("keptnexamples/carts", "0.13.1", None)),
        ("docker.io/keptnexamples/carts:0.13.1", ImageRef("docker.io/keptnexamples/carts", "0.13.1", None)),
        ("localhost:5000/carts:v1", ImageRef("localhost:5000/carts", "v1", None)),
        ("localhost/carts", ImageRef("localhost/carts", None, None)),
        ("[::1]:5000/a/b:latest", ImageRef("[::1]:5000/a/b", "latest", None)),
        ("ghcr.io/stefanprodan/podinfo@" + DIGEST, ImageRef("ghcr.io/stefanprodan/podinfo", None, DIGEST)),
        (
            "ghcr.io/stefanprodan/podinfo:6.6.1@" + DIGEST,
            ImageRef("ghcr.io/stefanprodan/podinfo", "6.6.1", DIGEST),
        ),
        ("a__b/c---d/e.f_g:_tag.-x", ImageRef("a__b/c---d/e.f_g", "_tag.-x", None)),
        ("Registry.Example.com/carts:1", ImageRef("Registry.Example.com/carts", "1", None)),
        ("x:" + "t" * 128, ImageRef("x", "t" * 128, None)),
    ],
)
def test_valid_references_parse_into_parts(ref: str, expected: ImageRef) -> None:
    assert parse_image(ref) == expected
    assert str(parse_image(ref)) == ref


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("docker.io/Keptn/carts:1", "repository path must be lowercase"),
        ("Carts:1", "repository path must be lowercase"),
        ("carts :1", "it contains whitespace"),
        ("carts:1\n", "it contains a line break"),
        ("carts:1\x00", "control character U+0000"),
        ("keptn/a..b:1", "path component 'a..b' is invalid"),
        ("a..b/carts:1", "registry host 'a..b' is not a valid host"),
        ("carts/../x:1", "path component '..' is invalid"),
        ("carts//x", "empty component"),
        ("carts/", "empty component"),
        ("carts:", "tag '' must be 1 to 128 characters"),
        ("carts:-x", "tag '-x' must be"),
        ("carts:" + "t" * 129, "must be 1 to 128 characters"),
        ("carts@sha256:abc", "must be sha256: followed by 64 lowercase hex digits"),
        ("carts@sha256:" + "A" * 64, "lowercase hex digits"),
        ("carts@md5:" + "a" * 32, "digest algorithm 'md5' is not supported"),
        ("carts@" + "a" * 64, "must have the form algorithm:hex"),
        ("carts@x@y", "more than one '@'"),
        ("a" * 64, "image ID, not a repository name"),
        ("exa_mple.com/carts:1", "registry host 'exa_mple.com' is not a valid host"),
        ("x" * 256, "the name is 256 characters long; the maximum is 255"),
        ("cärts:1", "non-ASCII character"),
        (":1", "the repository name is empty"),
    ],
)
def test_invalid_references_say_exactly_what_is_wrong(ref: str, problem: str) -> None:
    with pytest.raises(InvalidImageReferenceError) as caught:
        parse_image(ref)
    message = str(caught.value)
    assert message.startswith("image reference '")
    assert "is not a valid OCI reference: " in message
    assert problem in message
    assert "\n" not in message  # control characters are escaped so the event message stays one line


def test_uppercase_message_matches_the_documented_sentence() -> None:
    with pytest.raises(InvalidImageReferenceError) as caught:
        parse_image("docker.io/Keptn/carts:1")
    assert str(caught.value) == (
        "image reference 'docker.io/Keptn/carts:1' is not a valid OCI reference: repository path must be lowercase"
    )


def test_empty_reference_is_rejected_and_is_an_edit_error() -> None:
    with pytest.raises(EditError, match="image reference is empty"):
        parse_image("")


def test_an_uppercase_first_component_is_a_registry_host_like_docker_decides() -> None:
    # splitDockerDomain: a non-lowercase first component can only be a host.
    assert normalize_name("Keptn/carts") == "Keptn/carts"


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("carts", "docker.io/library/carts"),
        ("carts:1.0", "docker.io/library/carts"),
        ("keptnexamples/carts", "docker.io/keptnexamples/carts"),
        ("docker.io/carts", "docker.io/library/carts"),
        ("index.docker.io/keptnexamples/carts", "docker.io/keptnexamples/carts"),
        ("index.docker.io/carts@" + DIGEST, "docker.io/library/carts"),
        ("ghcr.io/carts", "ghcr.io/carts"),
        ("localhost/carts", "localhost/carts"),
        ("localhost:5000/a/b", "localhost:5000/a/b"),
    ],
)
def test_familiar_names_are_normalised(name: str, normalized: str) -> None:
    assert normalize_name(name) == normalized


def test_same_repository_compares_normalised_names_and_ignores_tags() -> None:
    assert same_repository("carts", "docker.io/library/carts:1.2")
    assert same_repository(parse_image("keptnexamples/carts:1"), "index.docker.io/keptnexamples/carts")
    assert not same_repository("keptnexamples/carts", "ghcr.io/keptnexamples/carts")
    assert not same_repository("carts", "keptnexamples/carts")


def test_same_repository_falls_back_to_exact_text_for_non_references() -> None:
    assert same_repository("${IMAGE}", "${IMAGE}")
    assert not same_repository("${IMAGE}", "carts")


def test_image_ref_is_frozen() -> None:
    ref = parse_image("carts:1")
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]
