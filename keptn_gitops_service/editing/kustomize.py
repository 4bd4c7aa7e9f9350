"""Set an image in a ``kustomization.yaml`` ``images:`` list with a minimal diff.

kustomize's image transformer (``api/filters/imagetag/updater.go``, ``SetImageValue``) rewrites every
container image whose name matches an ``images[].name`` and builds the new reference from the entry::

    newName set          -> replaces the name
    newTag and digest    -> name:newTag@digest   (the digest decides what is pulled; the tag is informational)
    newTag only          -> name:newTag          (an original digest is dropped)
    digest only          -> name@digest          (an original tag is dropped)

Decisions that follow from it:

* An image with a digest but no tag sets ``digest`` and leaves an existing ``newTag`` untouched: kustomize
  then renders ``name:oldTag@newDigest`` and runtimes pull by digest, so the new image is deployed and the
  diff stays one line. We never delete keys.
* An image with a tag but no digest, for an entry that pins ``digest``, is refused: kustomize would render
  ``name:newTag@oldDigest`` and keep deploying the old image — and removing the key is not a minimal edit.
* ``newTag`` and ``digest`` are always written as strings (quoted where a reader could take ``1.10`` for a
  number): kustomize reads them into Go ``string`` fields.
* An entry that does not exist is an error naming the entries there are: an appended entry whose name matches no
  container changes nothing, and the deployment would pass without deploying. Only ``create=True`` appends it
  (and creates ``images:``).
* The repository the entry deploys (``newName``, else ``name``) is changed only with
  ``allow_repository_change=True``: ``--image carts:1`` for an entry of ``docker.io/keptnexamples/carts`` is far
  more often a mistake than a move to Docker Hub's official ``carts``. A ``name`` that is no image reference (a
  placeholder such as ``${IMAGE}``) deploys no repository yet, so filling in its ``newName`` is no change.

All edits go through :mod:`.yamledit`, so comments (including Flux ``# {"$imagepolicy": ...}`` markers),
quoting, indentation and newlines survive and every step is re-parsed and checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.editing.imageref import ImageRef, parse_image, same_repository, show
from keptn_gitops_service.editing.yamledit import (
    append_sequence_item,
    insert_mapping_key,
    insert_mapping_sequence,
    load_documents,
    set_scalar,
)
from keptn_gitops_service.errors import EditError, InvalidImageReferenceError

__all__ = ["set_kustomize_image"]

# kustomize's field order in an images entry; new keys go after the last of their predecessors present.
_FIELD_ORDER = ("name", "newName", "newTag", "digest")


@dataclass(frozen=True)
class _Target:
    """The kustomization document and its current ``images`` value."""

    document: int
    data: dict[str, Any]


def set_kustomize_image(
    text: str,
    name: str,
    image: ImageRef,
    *,
    create: bool = False,
    allow_repository_change: bool = False,
    note: Callable[[str], None] | None = None,
) -> str:
    """Point the ``images`` entry for ``name`` at ``image`` in the text of a ``kustomization.yaml``.

    The entry is the one whose ``name`` is ``name`` exactly or names the same repository (Docker-normalised).
    ``newTag``/``digest`` are set from the image, ``newName`` only when the entry's effective name
    (``newName`` or ``name``) is another repository than ``image.name`` — which ``allow_repository_change`` must
    allow; ``note`` then hears ``image repository changed from <old> to <new>``. Missing keys are inserted in
    kustomize's order. A missing entry is an :class:`EditError` listing the entries, unless ``create``: then it
    is appended to ``images:`` (created at the end of the document when absent).
    """
    if image.tag is None and image.digest is None:
        raise EditError(f"image reference {show(str(image))} has neither tag nor digest; kustomizeImage needs one")
    target = _kustomization(text)
    images = target.data.get("images")
    if images is not None and not isinstance(images, list):
        raise EditError(f"'images' is a {type(images).__name__}, not a list of image entries")
    entries = images or []
    index = _matching_entry(entries, name)
    if index is None and not create:
        raise EditError(_no_entry(entries, name))
    if index is not None:
        return _update_entry(text, target.document, index, entries[index], image, allow_repository_change, note)
    entry = _new_entry(name, image)
    if "newName" in entry:
        _repository_change(
            _deployed(name), image, allow_repository_change, note, f"the new 'images' entry {show(name)}"
        )
    if "images" not in target.data:
        return insert_mapping_sequence(text, "", "images", [entry], document=target.document)
    return append_sequence_item(text, "images", entry, document=target.document)


def _no_entry(images: list[Any], name: str) -> str:
    """Why there is no entry for ``name``, with the entries the file has."""
    names = [entry.get("name") for entry in images if isinstance(entry, dict)]
    listed = ", ".join(show(str(n)) for n in names) or "none"
    return (
        f"no 'images' entry is named {show(name)} or names its repository (entries: {listed}); an entry that "
        "matches no container would deploy nothing. Correct kustomizeImage.name, or set kustomizeImage.create: "
        "true to add the entry"
    )


def _deployed(name: str) -> str | None:
    """The repository an effective entry name deploys; ``None`` for a placeholder that is no image reference."""
    try:
        parse_image(name)
    except InvalidImageReferenceError:
        return None
    return name


def _repository_change(
    current: str | None, image: ImageRef, allow: bool, note: Callable[[str], None] | None, what: str
) -> None:
    """Refuse (or, when allowed, report) pointing ``what``, which deploys ``current``, at another repository."""
    if current is None or same_repository(current, image.name):
        return
    if not allow:
        raise EditError(
            f"{what} deploys the repository {show(current)}, but the image {show(str(image))} is from "
            f"{show(image.name)}; refusing to change the image repository (set allowRepositoryChange: true on the "
            "update if the move is intended)"
        )
    if note is not None:
        note(f"image repository changed from {current} to {image.name}")


def _kustomization(text: str) -> _Target:
    """Pick the document to edit: the one with top-level ``images``, else the one kustomization mapping."""
    documents = load_documents(text)
    mappings = [(i, doc) for i, doc in enumerate(documents) if isinstance(doc, dict)]
    with_images = [(i, doc) for i, doc in mappings if "images" in doc]
    if len(with_images) > 1:
        indexes = ", ".join(str(i) for i, _ in with_images)
        raise EditError(f"several documents have a top-level 'images' list (documents {indexes})")
    if with_images:
        return _Target(*with_images[0])
    kustomizations = [(i, doc) for i, doc in mappings if _looks_like_kustomization(doc)]
    candidates = kustomizations or mappings
    if len(candidates) == 1:
        return _Target(*candidates[0])
    if not candidates:
        raise EditError("the file contains no YAML mapping to add 'images' to")
    indexes = ", ".join(str(i) for i, _ in candidates)
    raise EditError(f"cannot tell which document is the kustomization (documents {indexes} are candidates)")


def _looks_like_kustomization(doc: dict[str, Any]) -> bool:
    api_version = doc.get("apiVersion")
    return doc.get("kind") == "Kustomization" and (
        api_version is None or str(api_version).startswith("kustomize.config.k8s.io/")
    )


def _matching_entry(images: list[Any], name: str) -> int | None:
    """Index of the entry for ``name``: an exact match wins over a normalised one; several is an error."""
    names = [entry.get("name") if isinstance(entry, dict) else None for entry in images]
    exact = [i for i, entry_name in enumerate(names) if entry_name == name]
    similar = [i for i, n in enumerate(names) if isinstance(n, str) and same_repository(n, name)]
    for found in (exact, similar):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            items = ", ".join(f"images[{i}]" for i in found)
            raise EditError(f"several 'images' entries match {show(name)} ({items}); kustomize would apply each")
    return None


def _new_entry(name: str, image: ImageRef) -> dict[str, str]:
    """A new entry in kustomize's field order."""
    entry = {"name": name}
    if not (image.name == name or same_repository(image.name, name)):
        entry["newName"] = image.name
    if image.tag is not None:
        entry["newTag"] = image.tag
    if image.digest is not None:
        entry["digest"] = image.digest
    return entry


def _wanted_fields(
    entry: dict[str, Any], image: ImageRef, allow_repository_change: bool, note: Callable[[str], None] | None
) -> dict[str, str]:
    """The fields of an existing entry that must hold new values."""
    pinned = entry.get("digest")
    if image.digest is None and pinned:
        raise EditError(
            f"the 'images' entry for {show(str(entry.get('name')))} pins digest {show(str(pinned))}; "
            f"the new image {show(str(image))} has no digest, and kustomize would keep deploying the "
            "pinned one"
        )
    wanted: dict[str, str] = {}
    current = entry.get("newName") or entry.get("name")
    if not (current == image.name or (isinstance(current, str) and same_repository(current, image.name))):
        what = f"the 'images' entry {show(str(entry.get('name')))}"
        _repository_change(_deployed(str(current)), image, allow_repository_change, note, what)
        wanted["newName"] = image.name
    if image.tag is not None:
        wanted["newTag"] = image.tag
    if image.digest is not None:
        wanted["digest"] = image.digest
    return wanted


def _update_entry(
    text: str,
    document: int,
    index: int,
    entry: dict[str, Any],
    image: ImageRef,
    allow_repository_change: bool,
    note: Callable[[str], None] | None,
) -> str:
    """Set or insert each wanted field of ``images[index]``, one verified edit at a time."""
    path = f"images[{index}]"
    present = set(entry)
    for field, value in _wanted_fields(entry, image, allow_repository_change, note).items():
        if field in present:
            text = set_scalar(text, f"{path}.{field}", value, document=document, force_string=True)
            continue
        before = [f for f in _FIELD_ORDER[: _FIELD_ORDER.index(field)] if f in present]
        after_key = before[-1] if before else None
        text = insert_mapping_key(text, path, field, value, after_key=after_key, document=document)
        present.add(field)
    return text
