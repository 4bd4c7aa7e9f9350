"""Point the container images of plain Kubernetes manifests at a new image, with a minimal diff.

This is what kustomize's image transformer does to rendered manifests (``api/filters/imagetag``: every container
whose image names the repository gets the new reference) and what a Flux full-reference marker on an ``image:``
line does, done here on the files themselves: each ``image`` scalar is replaced through
:func:`.yamledit.set_scalar`, so comments, quoting, ``---`` separators and CRLF survive byte for byte and every
edit passes the re-parse safety net.

Where the pod spec sits, per kind (Kubernetes ``core/v1``, ``apps/v1``, ``batch/v1``)::

    Pod                                              spec
    Deployment, StatefulSet, DaemonSet, ReplicaSet   spec.template.spec
    Job                                              spec.template.spec
    CronJob                                          spec.jobTemplate.spec.template.spec

and in each pod spec the lists ``containers``, ``initContainers`` and ``ephemeralContainers``.

Decisions:

* A container matches when its image names the same repository as the new image after Docker normalisation
  (:func:`.imageref.same_repository`: ``nginx`` = ``docker.io/library/nginx``); its tag and digest do not
  matter. The new reference is written as the new image spells it (``str(image)``).
* Documents of other kinds, and workloads without the expected structure (e.g. a partial patch), are
  skipped; a text in which no container matched is an :class:`EditError`.
* The new image needs a tag or a digest: a bare name would mean ``:latest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.editing.imageref import ImageRef, same_repository, show
from keptn_gitops_service.editing.yamledit import Index, Key, PathSegment, format_path, load_documents, set_scalar
from keptn_gitops_service.errors import EditError

__all__ = ["CONTAINER_LISTS", "POD_SPEC_PATHS", "set_container_images"]

POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


@dataclass(frozen=True)
class _Container:
    """One container's ``image`` scalar: where it is and what it says."""

    document: int
    path: str
    image: str


def _pod_spec(document: Any) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """The pod spec of a workload document and its keys, or ``None`` for other documents."""
    if not isinstance(document, dict) or not isinstance(document.get("kind"), str):
        return None
    keys = POD_SPEC_PATHS.get(document["kind"])
    if keys is None:
        return None
    node: Any = document
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return (keys, node) if isinstance(node, dict) else None


def _containers(index: int, document: Any) -> Iterator[_Container]:
    """Every container image (string) of a workload document, in list order."""
    found = _pod_spec(document)
    if found is None:
        return
    keys, spec = found
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        if not isinstance(items, list):
            continue
        for position, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("image"), str):
                segments: list[PathSegment] = [Key(k) for k in keys]
                segments += [Key(list_name), Index(position), Key("image")]
                yield _Container(index, format_path(segments), item["image"])


def set_container_images(text: str, image: ImageRef) -> str:
    """Set every container image that names ``image``'s repository to ``image`` (multi-document texts too).

    Raises :class:`EditError` when no container matches, when ``image`` has neither tag nor digest, and for
    anything :func:`.yamledit.set_scalar` refuses (aliases, anchors, block scalars, duplicate keys).
    """
    if image.tag is None and image.digest is None:
        raise EditError(f"image reference {show(str(image))} has neither tag nor digest; refusing to deploy ':latest'")
    containers = [c for i, doc in enumerate(load_documents(text)) for c in _containers(i, doc)]
    matching = [c for c in containers if same_repository(c.image, image)]
    if not matching:
        raise EditError(_no_match(containers, image))
    for container in matching:
        text = set_scalar(text, container.path, str(image), document=container.document, force_string=True)
    return text


def _no_match(containers: list[_Container], image: ImageRef) -> str:
    if not containers:
        kinds = ", ".join(POD_SPEC_PATHS)
        return f"the text has no container image to set to {show(str(image))} (no {kinds} with containers)"
    images = ", ".join(dict.fromkeys(show(c.image) for c in containers))
    return f"no container image names the repository of {show(str(image))} (images in the text: {images})"
