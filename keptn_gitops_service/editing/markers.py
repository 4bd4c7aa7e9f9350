"""Set the scalars that carry a Flux ``$imagepolicy`` setter marker or our own ``keptn`` marker.

Flux image-automation (fixture ``flux/image_policy_setter_markers.yaml``, copied from the Flux
image-update guide; code ``internal/update/setters.go``) defines four setters per ImagePolicy ``ns:name`` and
finds them through a trailing comment on the value's line::

    image: ghcr.io/stefanprodan/podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo"}         name:tag[@digest]
    repository: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}    name
    tag: 5.0.0  # {"$imagepolicy": "flux-system:podinfo:tag"}                                   tag
    digest: sha256:ec01... # {"$imagepolicy": "flux-system:podinfo:digest"}                     digest

Flux rewrites whole files through kyaml; here every marked
scalar is changed with :func:`.yamledit.set_scalar`, so only its characters move, the comment stays byte for
byte, and each edit passes yamledit's re-parse safety net.

Our own marker ``# {"keptn": "<template>"}`` marks any scalar with a template that the caller renders (e.g.
``{image.tag}``); its type is kept (a quoted string stays a string, a number stays a number).

Decisions:

* A comment is a marker when its text (after the ``#`` signs, as kyaml's ``TrimLeft(comment, "#")``) starts
  with ``{"$imagepolicy":`` or ``{"keptn":``. It must then be a JSON object with exactly one key and a string
  value, and must follow a single-line scalar on its own line; anything else is an :class:`EditError`
  (Flux would silently skip it, but a marker that marks nothing is always a mistake).
* Which Flux markers belong to the new image: with ``policy`` given, exactly the markers of that policy.
  Without it, a full-reference or ``:name`` marker is ours when its current value names the same repository
  (:func:`.imageref.same_repository`); a ``:tag``/``:digest`` marker is ours when a full or ``:name`` marker
  of the same policy is ours, skipped when that policy's name markers name another repository, and an error
  when the file has no full or ``:name`` marker for its policy (there is nothing to tell whose tag it is).
* Flux values are written as strings (``force_string``): a tag ``1.10`` must not become the float ``1.1``.
* With ``policy``, a full-reference or ``:name`` marker may hold another repository than the new image: changing
  it is refused unless ``allow_repository_change`` (then ``note`` hears it), as for ``kustomizeImage``.
* Refused: a ``:tag`` marker for an image without tag, a ``:digest`` marker for an image without digest, a
  full-reference marker for an image with neither, and markers on block scalars, aliases, keys or
  collections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from keptn_gitops_service.editing.imageref import ImageRef, parse_image, same_repository, show
from keptn_gitops_service.editing.yamledit import (
    AliasNode,
    Index,
    Key,
    PathSegment,
    compose_roots,
    format_path,
    set_scalar,
)
from keptn_gitops_service.editing.yamllimits import LimitedLoader
from keptn_gitops_service.errors import EditError, InvalidImageReferenceError

__all__ = ["FLUX_MARKER_KEY", "KEPTN_MARKER_KEY", "MarkedScalar", "find_markers", "set_marked_values"]

FLUX_MARKER_KEY = "$imagepolicy"
KEPTN_MARKER_KEY = "keptn"

_MARKER_START = re.compile(r'\{\s*"(?:\$imagepolicy|keptn)"\s*:')
_POLICY_REF = re.compile(r"([^:\s]+):([^:\s]+)(?::(tag|name|digest))?")
_LINE_END = re.compile("[\r\n\x85\u2028\u2029]|$")
_BETWEEN = re.compile(r"[ \t]*(?:,[ \t]*)?")  # what may separate a value from its marker (``,`` in flow style)

Field = Literal["tag", "name", "digest"] | None


@dataclass(frozen=True)
class MarkedScalar:
    """A scalar with a marker comment after it on the same line.

    ``kind`` is ``"$imagepolicy"`` or ``"keptn"``; ``argument`` is the marker's value as written (a policy
    reference or a template); for Flux markers ``policy`` is ``ns:name`` and ``field`` the setter suffix
    (``None`` for the full reference). ``path`` is in :func:`.yamledit.parse_path` syntax within
    ``document``; ``value`` is the scalar's current string value; ``line`` is 1-based.
    """

    kind: str
    argument: str
    policy: str | None
    field: Field
    document: int
    path: str
    value: str
    line: int

    @property
    def where(self) -> str:
        """``the '$imagepolicy' marker 'ns:p:tag' at line 3`` — the marker as messages name it."""
        return f"the {show(self.kind)} marker {show(self.argument)} at line {self.line}"


# ---------------------------------------------------------------------------------------------------------
# Composition that records comments and aliases
# ---------------------------------------------------------------------------------------------------------


class _Loader(LimitedLoader):
    """The pure-Python composer, additionally recording every comment (index of ``#``) and every alias.

    PyYAML's scanner drops comments in ``scan_to_next_token`` and after a block scalar header; both skip only
    spaces, comments, line breaks and a leading BOM, so the first ``#`` of each line in the text they skip
    begins a comment that runs to the end of that line.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        self.comments: list[int] = []

    def _record(self, start: int) -> None:
        position = start
        while (hash_at := self.text.find("#", position, self.index)) != -1:
            self.comments.append(hash_at)
            position = _line_end(self.text, hash_at)

    def scan_to_next_token(self) -> None:
        start = self.index
        super().scan_to_next_token()
        self._record(start)

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> None:
        start = self.index
        super().scan_block_scalar_ignored_line(start_mark)
        self._record(start)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if node is not None and isinstance(event, yaml.AliasEvent):
            return AliasNode(node, str(event.anchor), event.start_mark, event.end_mark)
        return node


def _line_end(text: str, at: int) -> int:
    match = _LINE_END.search(text, at)
    return match.start() if match else len(text)


def _line(index: int, text: str) -> int:
    return text.count("\n", 0, index) + 1


@dataclass(frozen=True)
class _Place:
    """A node of a composed document: its path (``None`` when unreachable by path) and whether it is a key."""

    node: yaml.Node
    document: int
    segments: tuple[PathSegment, ...] | None
    is_key: bool


def _compose(text: str) -> tuple[list[yaml.Node], list[int]]:
    """Every document's root node and the positions of every comment."""
    loader = _Loader(text)
    roots = compose_roots(loader)
    return roots, loader.comments


def _places(node: yaml.Node, document: int, segments: tuple[PathSegment, ...] | None) -> Iterator[_Place]:
    """Every node below ``node`` (keys included), depth first, with the path that reaches it."""
    yield _Place(node, document, segments, is_key=False)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield _Place(key, document, None, is_key=True)
            reachable = segments is not None and isinstance(key, yaml.ScalarNode)
            yield from _places(value, document, _extended(segments, Key(str(key.value))) if reachable else None)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _places(item, document, _extended(segments, Index(i)))


def _extended(segments: tuple[PathSegment, ...] | None, segment: PathSegment) -> tuple[PathSegment, ...] | None:
    return None if segments is None else (*segments, segment)


# ---------------------------------------------------------------------------------------------------------
# Finding markers
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Comment:
    """A comment that is a marker: where its ``#`` is and what it says."""

    at: int
    line: int
    column: int
    text: str
    kind: str
    argument: str

    @property
    def where(self) -> str:
        return f"the {show(self.kind)} marker at line {self.line}, column {self.column}"


def _as_marker(text: str, at: int) -> _Comment | None:
    """Parse the comment starting at ``at`` as a marker; ``None`` when it is an ordinary comment."""
    comment = text[at : _line_end(text, at)]
    body = comment.lstrip("#").strip()
    if not _MARKER_START.match(body):
        return None
    line_start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    line, column = _line(at, text), at - line_start + 1
    pairs = _json_pairs(body, line, column, comment)
    kind, argument = pairs[0]
    if not isinstance(argument, str) or argument == "":
        raise EditError(
            f"the {show(kind)} marker at line {line}, column {column} needs a non-empty string value: {show(comment)}"
        )
    return _Comment(at, line, column, comment, kind, argument)


def _json_pairs(body: str, line: int, column: int, comment: str) -> list[tuple[str, Any]]:
    """The key/value pairs of the marker's JSON object; exactly one is allowed."""
    try:
        pairs: Any = json.loads(body, object_pairs_hook=lambda items: items)
    except json.JSONDecodeError as error:
        raise EditError(
            f"the marker comment at line {line}, column {column} is not valid JSON ({error.msg}): {show(comment)}"
        ) from None
    if not isinstance(pairs, list) or len(pairs) != 1:
        count = len(pairs) if isinstance(pairs, list) else 0
        raise EditError(
            f"the marker comment at line {line}, column {column} must be a JSON object with exactly one key, "
            f"not {count}: {show(comment)}"
        )
    return list(pairs)


def _attached(text: str, comment: _Comment, places: Sequence[_Place]) -> _Place:
    """The node the marker follows on its line (only spaces, or a flow ``,``, between the node and the ``#``)."""
    for place in places:
        node = place.node
        start, end = int(node.start_mark.index), int(node.end_mark.index)
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") and start < comment.at < end:
            raise EditError(
                f"{comment.where} is on a block scalar ('{node.style}'); only single-line scalars can be marked"
            )
    before = [p for p in places if p.node.end_mark.index <= comment.at]
    found = [p for p in before if _BETWEEN.fullmatch(text, int(p.node.end_mark.index), comment.at)]
    if not found:
        raise EditError(f"{comment.where} does not follow a value on its line; put it after the scalar it marks")
    return found[-1]


def _checked_scalar(comment: _Comment, place: _Place) -> tuple[tuple[PathSegment, ...], yaml.ScalarNode]:
    """Refuse markers on keys, aliases and collections; return the marked scalar and its path."""
    node = place.node
    if isinstance(node, AliasNode):
        raise EditError(
            f"{comment.where} is on the alias '*{node.anchor}'; mark the anchored value '&{node.anchor}' instead"
        )
    if place.is_key:
        raise EditError(f"{comment.where} follows the mapping key {show(str(node.value))}, not a value")
    if not isinstance(node, yaml.ScalarNode):
        kind = "mapping" if isinstance(node, yaml.MappingNode) else "sequence"
        raise EditError(f"{comment.where} follows a flow {kind}; only scalars can be marked")
    if place.segments is None:
        raise EditError(f"{comment.where} is below a complex mapping key; its value cannot be addressed")
    return place.segments, node


def _flux_reference(comment: _Comment) -> tuple[str, Field]:
    """Split ``ns:name[:tag|name|digest]`` as Flux's setter names are built (``setters.go``)."""
    match = _POLICY_REF.fullmatch(comment.argument)
    if match is None:
        raise EditError(
            f"{comment.where} has the value {show(comment.argument)}; Flux expects '<namespace>:<name>', "
            "optionally followed by ':tag', ':name' or ':digest'"
        )
    field: Field = match.group(3)  # type: ignore[assignment]
    return f"{match.group(1)}:{match.group(2)}", field


def find_markers(text: str) -> list[MarkedScalar]:
    """Every marked scalar in ``text``, in file order; malformed or misplaced markers raise :class:`EditError`."""
    roots, comments = _compose(text)
    places = [place for i, root in enumerate(roots) for place in _places(root, i, ())]
    found: list[MarkedScalar] = []
    for at in comments:
        comment = _as_marker(text, at)
        if comment is None:
            continue
        place = _attached(text, comment, places)
        segments, node = _checked_scalar(comment, place)
        policy, field = _flux_reference(comment) if comment.kind == FLUX_MARKER_KEY else (None, None)
        path = format_path(segments)
        found.append(
            MarkedScalar(comment.kind, comment.argument, policy, field, place.document, path, node.value, comment.line)
        )
    return found


# ---------------------------------------------------------------------------------------------------------
# Choosing and writing values
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    marked: MarkedScalar
    value: str
    force_string: bool


def _is_name_marker(marked: MarkedScalar) -> bool:
    return marked.field in (None, "name")


def _selected_flux(flux: Sequence[MarkedScalar], image: ImageRef, policy: str | None) -> list[MarkedScalar]:
    """The Flux markers that track ``image`` (see the module docstring for the rules)."""
    if policy is not None:
        chosen = [m for m in flux if m.policy == policy]
        if not chosen:
            known = ", ".join(sorted({show(str(m.policy)) for m in flux})) or "none"
            raise EditError(f"no '$imagepolicy' marker for the policy {show(policy)} (policies marked: {known})")
        return chosen
    ours = [m for m in flux if _is_name_marker(m) and same_repository(m.value, image)]
    ours_policies = {m.policy for m in ours}
    named_policies = {m.policy for m in flux if _is_name_marker(m)}
    for marked in flux:
        if not _is_name_marker(marked) and marked.policy not in named_policies:
            raise EditError(
                f"{marked.where} has no full-reference or ':name' marker of the policy {show(str(marked.policy))} "
                f"in the file, so it cannot be matched to {show(str(image))}; pass the policy"
            )
    return [m for m in flux if m in ours or (not _is_name_marker(m) and m.policy in ours_policies)]


def _flux_value(marked: MarkedScalar, image: ImageRef) -> str:
    """What Flux's setter for ``marked.field`` would write for ``image`` (``setters.go``)."""
    if marked.field == "name":
        return image.name
    if marked.field == "tag":
        if image.tag is None:
            raise EditError(f"{marked.where} needs a tag, but the image {show(str(image))} has none")
        return image.tag
    if marked.field == "digest":
        if image.digest is None:
            raise EditError(f"{marked.where} needs a digest, but the image {show(str(image))} has none")
        return image.digest
    if image.tag is None and image.digest is None:
        raise EditError(f"{marked.where} needs a tag or digest, but the image {show(str(image))} has neither")
    return str(image)


def _keptn_edits(markers: Sequence[MarkedScalar], render: Callable[[str], str] | None) -> list[_Edit]:
    if markers and render is None:
        lines = ("line " if len(markers) == 1 else "lines ") + ", ".join(str(m.line) for m in markers)
        raise EditError(f"the text has 'keptn' markers ({lines}) but no renderer for their templates was given")
    return [_Edit(m, render(m.argument), force_string=False) for m in markers if render is not None]


def set_marked_values(
    text: str,
    image: ImageRef,
    *,
    policy: str | None = None,
    keptn_values: Callable[[str], str] | None = None,
    allow_repository_change: bool = False,
    note: Callable[[str], None] | None = None,
) -> str:
    """Write ``image`` into the Flux-marked scalars and rendered templates into the ``keptn``-marked ones.

    ``policy`` (``ns:name``) restricts the Flux markers to that ImagePolicy; ``keptn_values`` renders a
    ``keptn`` marker's template into the new value (its exceptions propagate). Every marked scalar is set
    with :func:`.yamledit.set_scalar`, so only its characters change. Raises :class:`EditError` when no
    marker is selected, when ``policy`` is given but not marked in the text, when a selected marker holds
    another repository and ``allow_repository_change`` is false, and for the cases listed in the module
    docstring. Values already equal leave the text as it is.
    """
    if policy is not None and (_POLICY_REF.fullmatch(policy) is None or policy.count(":") != 1):
        raise EditError(f"policy {show(policy)} must have the form '<namespace>:<name>'")
    markers = find_markers(text)
    flux = [m for m in markers if m.kind == FLUX_MARKER_KEY]
    selected = _selected_flux(flux, image, policy)
    _check_repositories(selected, image, allow_repository_change, note)
    edits = [_Edit(m, _flux_value(m, image), force_string=True) for m in selected]
    edits += _keptn_edits([m for m in markers if m.kind == KEPTN_MARKER_KEY], keptn_values)
    if not edits:
        raise EditError(_nothing_selected(flux, image))
    for edit in sorted(edits, key=lambda e: e.marked.line):
        marked = edit.marked
        text = set_scalar(text, marked.path, edit.value, document=marked.document, force_string=edit.force_string)
    return text


def _check_repositories(
    selected: Sequence[MarkedScalar], image: ImageRef, allow: bool, note: Callable[[str], None] | None
) -> None:
    """Refuse (or report) full-reference and ``:name`` markers that would move to another repository."""
    moved = [m for m in selected if _is_name_marker(m) and not same_repository(_marked_name(m), image)]
    for marked in moved:
        current = _marked_name(marked)
        if not allow:
            raise EditError(
                f"{marked.where} holds the repository {show(current)}, but the image {show(str(image))} is from "
                f"{show(image.name)}; refusing to change the image repository (set allowRepositoryChange: true on "
                "the update if the move is intended)"
            )
    if note is not None:
        for current in dict.fromkeys(_marked_name(m) for m in moved):
            note(f"image repository changed from {current} to {image.name}")


def _marked_name(marked: MarkedScalar) -> str:
    """The repository a full-reference or ``:name`` marker holds (its value without tag and digest)."""
    if marked.field == "name":
        return marked.value
    try:
        return parse_image(marked.value).name
    except InvalidImageReferenceError:
        return marked.value


def _nothing_selected(flux: Sequence[MarkedScalar], image: ImageRef) -> str:
    if not flux:
        return "the text has no '$imagepolicy' or 'keptn' marker"
    values = ", ".join(sorted({show(m.value) for m in flux if _is_name_marker(m)}))
    return f"none of the {len(flux)} '$imagepolicy' markers is for {show(str(image))} (marked images: {values})"
