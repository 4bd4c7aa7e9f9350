"""OCI image references: strict parsing, Docker-style name normalisation, repository comparison.

The grammar is the one of ``github.com/distribution/reference`` (``regexp.go`` / ``reference.go``), which is
what Docker, containerd, kustomize and Flux all use::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] path-component ["/" path-component]*
    domain          := host [":" port-number]
    host            := domain-name | "[" ipv6 "]"
    domain-name     := domain-component ["." domain-component]*
    domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component  := /[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*/
    tag             := /[\\w][\\w.-]{0,127}/
    digest          := algorithm ":" hex      (sha256: 64, sha384: 96, sha512: 128 lowercase hex digits)

plus ``NameTotalLengthMax = 255`` for the name. A reference that a registry would refuse must never reach a
GitOps repository, so :func:`parse_image` rejects it with a sentence naming the exact problem.

Which leading component is a registry host follows ``splitDockerDomain`` in ``normalize.go``: it is a host
when it is ``localhost``, contains ``.`` or ``:``, or is not lowercase; a single-component name is never one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from keptn_gitops_service.errors import InvalidImageReferenceError

__all__ = ["ImageRef", "normalize_name", "parse_image", "same_repository", "show"]

NAME_TOTAL_LENGTH_MAX = 255
DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
# go-digest's registered algorithms and the length of their lowercase hex encoding.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; ``name`` is kept as written (not normalised) so it can be written back."""

    name: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        """Render ``name[:tag][@digest]``, the form every container runtime accepts."""
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def show(text: str) -> str:
    """Quote ``text`` for an error message, escaping control characters so the message stays one line."""
    shown = text if len(text) <= 300 else text[:300] + "..."
    escaped = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in shown)
    return "'" + escaped.replace("'", "\\'") + "'"


def _invalid(ref: str, problem: str) -> InvalidImageReferenceError:
    """Build the uniform "not a valid OCI reference" error."""
    return InvalidImageReferenceError(f"image reference {show(ref)} is not a valid OCI reference: {problem}")


def parse_image(ref: str) -> ImageRef:
    """Parse and validate an image reference, raising :class:`InvalidImageReferenceError` on any defect."""
    if ref == "":
        raise InvalidImageReferenceError("image reference is empty")
    _check_characters(ref)
    remainder, digest = _split_digest(ref)
    name, tag = _split_tag(ref, remainder)
    _check_name(ref, name)
    return ImageRef(name=name, tag=tag, digest=digest)


def _check_characters(ref: str) -> None:
    """Reject whitespace and control characters up front, with a message that names them."""
    for ch in ref:
        if ch in "\r\n":
            raise _invalid(ref, "it contains a line break")
        if ch.isspace():
            raise _invalid(ref, "it contains whitespace")
        if unicodedata.category(ch)[0] == "C":
            raise _invalid(ref, f"it contains the control character U+{ord(ch):04X}")
        if not ch.isascii():
            raise _invalid(ref, f"it contains the non-ASCII character {ch!r}")


def _split_digest(ref: str) -> tuple[str, str | None]:
    """Split off and validate ``@algorithm:hex``, as go-digest's ``Digest.Validate`` does."""
    if "@" not in ref:
        return ref, None
    remainder, _, digest = ref.partition("@")
    if "@" in digest:
        raise _invalid(ref, "it contains more than one '@'")
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not _DIGEST_ALGORITHM.fullmatch(algorithm) or not encoded:
        raise _invalid(ref, f"digest {show(digest)} must have the form algorithm:hex, e.g. sha256:<64 hex>")
    expected = _DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        supported = ", ".join(sorted(_DIGEST_HEX_LENGTHS))
        raise _invalid(ref, f"digest algorithm {show(algorithm)} is not supported (use one of {supported})")
    if len(encoded) != expected or not _HEX.fullmatch(encoded):
        raise _invalid(ref, f"digest {show(digest)} must be {algorithm}: followed by {expected} lowercase hex digits")
    return remainder, digest


def _split_tag(ref: str, remainder: str) -> tuple[str, str | None]:
    """Split off and validate ``:tag`` (a colon after the last ``/``; earlier colons belong to a port)."""
    colon = remainder.rfind(":")
    if colon == -1 or "/" in remainder[colon:]:
        return remainder, None
    name, tag = remainder[:colon], remainder[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise _invalid(
            ref,
            f"tag {show(tag)} must be 1 to 128 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'",
        )
    return name, tag


def _split_domain(name: str) -> tuple[str | None, str]:
    """Return (host or None, repository path), deciding like ``splitDockerDomain`` in ``normalize.go``."""
    first, slash, rest = name.partition("/")
    if not slash:
        return None, name
    if first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        return first, rest
    return None, name


def _check_name(ref: str, name: str) -> None:
    """Validate the repository name: length, optional registry host, lowercase path components."""
    if name == "":
        raise _invalid(ref, "the repository name is empty")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(ref, f"the name is {len(name)} characters long; the maximum is {NAME_TOTAL_LENGTH_MAX}")
    domain, path = _split_domain(name)
    if domain is not None and not _HOST.fullmatch(domain):
        raise _invalid(ref, f"registry host {show(domain)} is not a valid host[:port]")
    if path.lower() != path:
        raise _invalid(ref, "repository path must be lowercase")
    if domain is None and _IDENTIFIER.fullmatch(path):
        raise _invalid(ref, "a 64-character hexadecimal string is an image ID, not a repository name")
    for component in path.split("/"):
        if component == "":
            raise _invalid(ref, "the repository path has an empty component ('//' or a leading/trailing '/')")
        if not _PATH_COMPONENT.fullmatch(component):
            raise _invalid(
                ref,
                f"path component {show(component)} is invalid (components are lowercase letters and digits, "
                "separated by a single '.', '_' or '__', or by dashes)",
            )


def normalize_name(name: str) -> str:
    """Canonical name: ``carts`` -> ``docker.io/library/carts``; ``index.docker.io`` -> ``docker.io``.

    ``name`` may carry a tag or digest; they are validated and dropped. This is ``ParseNormalizedNamed`` +
    ``splitDockerDomain`` from distribution/reference ``normalize.go``.
    """
    parsed = parse_image(name)
    domain, path = _split_domain(parsed.name)
    if domain is None or domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return f"{domain}/{path}"


def same_repository(a: str | ImageRef, b: str | ImageRef) -> bool:
    """Whether two references name the same repository after normalisation (tags and digests are ignored).

    A string that is not a valid reference (e.g. a ``${PLACEHOLDER}`` in a kustomization) names no repository,
    so it is only "the same" as an identical string.
    """
    a_name = a.name if isinstance(a, ImageRef) else a
    b_name = b.name if isinstance(b, ImageRef) else b
    try:
        return normalize_name(a_name) == normalize_name(b_name)
    except InvalidImageReferenceError:
        return a_name == b_name
