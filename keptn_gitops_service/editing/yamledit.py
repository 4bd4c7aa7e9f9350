"""Minimal-diff YAML editing: change one scalar's characters and nothing else.

GitOps repositories are owned by people: a commit that re-serialises a file (as Flux image automation or
``yq`` do) destroys comments, quoting, key order, indentation, CRLF line endings and markers such as
``# {"$imagepolicy": "ns:name"}``. So this module never re-serialises. It composes the text with PyYAML's
pure-Python composer, whose nodes carry ``start_mark``/``end_mark`` with ``.index`` = offset into the decoded
``str`` (PyYAML's ``Reader`` keeps a ``str`` input as it is: ``\\r\\n`` stays two characters, and a leading
BOM keeps index 0 while ``Reader.forward`` does not count it as a column), and splices new characters in.

Every edit is then checked by a safety net: the new text is loaded again and must equal the old data with only
the intended change (compared per document, type-strict). If not, :class:`EditError` is raised and nothing is
written.

Scope decisions:

* Editable targets are single-line-valued scalars: plain, single- or double-quoted. Block scalars
  (``|``/``>``), aliases (``*x``), anchored scalars (``&x v``), scalars inside an anchored collection that is
  aliased (the edit would leak into every alias), and paths that go through an alias are refused.
* An explicit ``!!str`` (or non-specific ``!``) tag on the same line as the value is kept and the value after
  it is replaced; any other explicit tag (``!!int``, ``!custom``) is refused — we cannot know its semantics.
* Style is kept: plain stays plain, quoted stays quoted. A plain scalar switches to double quotes only when
  the new value would not be read back as the same type (e.g. ``1.10``, ``true``, ``~``, ``1e3``) or contains
  characters that are unsafe in a plain scalar. "Read back" is judged by PyYAML (YAML 1.1) *and* by the YAML
  1.2 core schema / go-yaml rules that Helm and kustomize use, so ``7e12345`` (a short git sha) is quoted.
* Null originals (``tag:``, ``tag: ~``) are treated as string slots: ``tag: v2`` is written plain.
"""

from __future__ import annotations

import copy
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from keptn_gitops_service.editing.yamllimits import LimitedLoader, remembered
from keptn_gitops_service.errors import EditError, YamlLimitError

__all__ = [
    "AliasNode",
    "Index",
    "Key",
    "Match",
    "PathSegment",
    "append_sequence_item",
    "compose_roots",
    "content_end",
    "file_newline",
    "format_path",
    "get_scalar",
    "insert_lines",
    "insert_mapping_key",
    "insert_mapping_sequence",
    "load_documents",
    "missing_reason",
    "parse_path",
    "set_scalar",
    "yaml_error",
]

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"

# ---------------------------------------------------------------------------------------------------------
# Path language: image.tag / containers[0].image / containers[name=carts].image / annotations["a.b/c"]
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """Select the value of a mapping key (compared with the key scalar's value)."""

    name: str


@dataclass(frozen=True)
class Index:
    """Select a sequence item by position (0-based)."""

    index: int


@dataclass(frozen=True)
class Match:
    """Select the one sequence item that is a mapping whose ``field`` scalar equals ``value``."""

    field: str
    value: str


PathSegment = Key | Index | Match

_BARE_KEY = re.compile(r"[^.\[\]\"'\s]+")
_BARE_FIELD = re.compile(r"[^=\[\]\"'\s]+")
_BARE_VALUE = re.compile(r"[^\]\"'\s]+")
_INDEX = re.compile(r"[0-9]+")


def _show(text: str) -> str:
    """Quote a string for a message, escaping control characters so the message stays on one line."""
    shown = text if len(text) <= 200 else text[:200] + "..."
    escaped = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in shown)
    return "'" + escaped.replace("'", "\\'") + "'"


class _PathParser:
    """A tiny recursive-descent parser for the path language (see :func:`parse_path`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pos = 0

    def fail(self, problem: str) -> EditError:
        return EditError(f"invalid path {_show(self.path)}: {problem} at position {self.pos}")

    def peek(self) -> str:
        return self.path[self.pos] if self.pos < len(self.path) else ""

    def parse(self) -> tuple[PathSegment, ...]:
        segments: list[PathSegment] = []
        if self.peek() != "[":
            segments.append(Key(self.key()))
        while self.pos < len(self.path):
            ch = self.peek()
            if ch == ".":
                self.pos += 1
                segments.append(Key(self.key()))
            elif ch == "[":
                self.pos += 1
                segments.append(self.selector())
            else:
                raise self.fail(f"expected '.' or '[' but found {_show(ch)}")
        return tuple(segments)

    def key(self) -> str:
        if self.peek() in ("'", '"'):
            return self.quoted()
        return self.bare(_BARE_KEY, "a key")

    def bare(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.path, self.pos)
        if match is None:
            found = _show(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected {what} but found {found}")
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        quote = self.peek()
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.path):
            ch = self.path[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.path):
                chars.append(self.path[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                return "".join(chars)
            chars.append(ch)
        raise self.fail(f"unterminated {quote}quoted{quote} key")

    def selector(self) -> PathSegment:
        segment: PathSegment
        if self.peek() in ("'", '"'):
            segment = Key(self.quoted())
        elif (number := _INDEX.match(self.path, self.pos)) and self.path[number.end() : number.end() + 1] != "=":
            self.pos = number.end()
            segment = Index(int(number.group()))
        else:
            field = self.quoted() if self.peek() in ("'", '"') else self.bare(_BARE_FIELD, "a field name")
            if self.peek() != "=":
                raise self.fail("expected a number, a quoted key or field=value inside '[...]'")
            self.pos += 1
            value = self.quoted() if self.peek() in ("'", '"') else self.bare(_BARE_VALUE, "a value")
            segment = Match(field, value)
        if self.peek() != "]":
            raise self.fail("expected ']'")
        self.pos += 1
        return segment


def parse_path(path: str) -> tuple[PathSegment, ...]:
    """Parse a path such as ``spec.containers[name=carts].image``; ``""`` is the document root.

    Keys are dotted; a key containing ``.``, brackets, quotes or spaces is written quoted, either after a dot
    (``a."b.c"``) or in brackets (``a["b.c"]``). ``[N]`` selects item N of a sequence, ``[field=value]`` the
    one mapping item whose ``field`` equals ``value`` (the value may be quoted).
    """
    if path == "":
        return ()
    return _PathParser(path).parse()


def _format_key(name: str) -> str:
    """A key as the path language writes it (quoted when it is not a bare key)."""
    if _BARE_KEY.fullmatch(name):
        return name
    return '["' + name.replace("\\", "\\\\").replace('"', '\\"') + '"]'


def format_path(segments: Sequence[PathSegment]) -> str:
    """Render segments back to the path language (used in messages)."""
    parts: list[str] = []
    for segment in segments:
        if isinstance(segment, Key):
            text = _format_key(segment.name)
            parts.append(text if not parts or text.startswith("[") else "." + text)
        elif isinstance(segment, Index):
            parts.append(f"[{segment.index}]")
        else:
            parts.append(f"[{segment.field}={segment.value}]")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Composition with positions, aliases, anchors and explicit tags recorded
# ---------------------------------------------------------------------------------------------------------


class AliasNode(yaml.Node):
    """Stands where an alias (``*name``) occurs; PyYAML's composer would return the anchored node itself.

    ``target`` is the anchored node: what the YAML limits count (:func:`.yamllimits.measure`).
    """

    def __init__(self, target: yaml.Node, anchor: str, start_mark: Any, end_mark: Any) -> None:
        super().__init__(target.tag, target.value, start_mark, end_mark)
        self.target = target
        self.anchor = anchor


class _Composer(LimitedLoader):
    """SafeLoader's composer that additionally records anchors, aliases and explicit tags per node (within the
    limits of :mod:`yamllimits`)."""

    replay_events = True

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.anchored: dict[int, str] = {}
        self.aliased: set[int] = set()
        self.explicit_tags: dict[int, str] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if node is None:
            return None
        if isinstance(event, yaml.AliasEvent):
            self.aliased.add(id(node))
            return AliasNode(node, str(event.anchor), event.start_mark, event.end_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.anchored[id(node)] = str(anchor)
        tag = getattr(event, "tag", None)
        if tag is not None:
            self.explicit_tags[id(node)] = str(tag)
        return node


@dataclass
class _Stream:
    """The composed documents of one text plus the facts the composer recorded."""

    text: str
    roots: list[yaml.Node]
    anchored: dict[int, str]
    aliased: set[int]
    explicit_tags: dict[int, str]


def yaml_error(error: yaml.YAMLError, what: str) -> EditError:
    """Turn a PyYAML error into a one-line sentence with a 1-based line and column."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = error.problem or error.context or "syntax error"
        return EditError(f"{what} is not valid YAML: {problem} at line {mark.line + 1}, column {mark.column + 1}")
    return EditError(f"{what} is not valid YAML: {error}")


def compose_roots(loader: LimitedLoader) -> list[yaml.Node]:
    """Every document's root node, composed by ``loader`` (which is then disposed); a YAML error becomes an
    :class:`EditError` naming the line and column."""
    try:
        roots: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                roots.append(node)
        return roots
    except yaml.YAMLError as error:
        raise yaml_error(error, "the text") from error
    finally:
        loader.dispose()


def _compose(text: str) -> _Stream:
    """Compose every document of ``text`` (pure-Python loader: its marks are exact ``str`` indices)."""
    loader = _Composer(text)
    roots = compose_roots(loader)
    return _Stream(text, roots, loader.anchored, loader.aliased, loader.explicit_tags)


# ---------------------------------------------------------------------------------------------------------
# Resolving a path to a node
# ---------------------------------------------------------------------------------------------------------


class _PathNotFoundError(EditError):
    """The path does not exist in a document (``get_scalar`` turns this into ``None``)."""


@dataclass(frozen=True)
class _Step:
    """One resolved path segment: which container was entered, where, and what was found."""

    container: yaml.Node
    key: yaml.Node | None
    position: int
    node: yaml.Node


@dataclass(frozen=True)
class _Located:
    """A resolved path in one document."""

    document: int
    root: yaml.Node
    steps: tuple[_Step, ...]

    @property
    def node(self) -> yaml.Node:
        return self.steps[-1].node if self.steps else self.root


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _unalias(node: yaml.Node) -> yaml.Node:
    return node.target if isinstance(node, AliasNode) else node


def _kind(node: yaml.Node) -> str:
    node = _unalias(node)
    if isinstance(node, yaml.MappingNode):
        return "a flow mapping" if node.flow_style else "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a flow sequence" if node.flow_style else "a sequence"
    return f"the scalar {_show(str(node.value))}"


def _where(segments: Sequence[PathSegment], node: yaml.Node) -> str:
    """'image' at line 3 / the top-level mapping at line 1 — the container a failing segment looked into."""
    if not segments:
        return f"the document root at line {_line(node)}"
    return f"{_show(format_path(segments))} at line {_line(node)}"


def _resolve(document: int, root: yaml.Node, segments: Sequence[PathSegment]) -> _Located:
    """Walk ``segments`` from ``root``; raise :class:`_PathNotFoundError` with the reason if absent."""
    steps: list[_Step] = []
    node = root
    for i, segment in enumerate(segments):
        container = _unalias(node)
        if isinstance(segment, Key):
            step = _step_key(container, segment, segments[:i])
        else:
            step = _step_item(container, segment, segments[:i])
        steps.append(step)
        node = step.node
    return _Located(document, root, tuple(steps))


def _step_key(container: yaml.Node, segment: Key, before: Sequence[PathSegment]) -> _Step:
    """Enter a mapping by key; duplicate keys are an error, a ``<<`` merge gets a hint."""
    if not isinstance(container, yaml.MappingNode):
        raise _PathNotFoundError(f"{_where(before, container)} is {_kind(container)}, not a mapping")
    found = [
        (position, key, value)
        for position, (key, value) in enumerate(container.value)
        if isinstance(_unalias(key), yaml.ScalarNode) and _unalias(key).value == segment.name
    ]
    if len(found) > 1:
        lines = " and ".join(str(_line(key)) for _, key, _ in found)
        raise EditError(
            f"key {_show(segment.name)} appears {len(found)} times under {_where(before, container)} "
            f"(lines {lines}); duplicate keys are invalid YAML and readers disagree on which one wins"
        )
    if not found:
        reason = f"no key {_show(segment.name)} under {_where(before, container)}{_keys_there(container)}"
        if any(isinstance(key, yaml.ScalarNode) and key.value == "<<" for key, _ in container.value):
            reason += " (it may come from a '<<' merge; edit the anchored mapping instead)"
        raise _PathNotFoundError(reason)
    position, key, value = found[0]
    return _Step(container, key, position, value)


def _keys_there(mapping: yaml.MappingNode, limit: int = 20) -> str:
    """``, which has the keys 'a', 'b'`` — the keys a missing key could have been meant as."""
    keys = [str(_unalias(key).value) for key, _ in mapping.value if isinstance(_unalias(key), yaml.ScalarNode)]
    if not keys:
        return ", which has no keys"
    shown = ", ".join(_show(key) for key in keys[:limit])
    return f", which has the keys {shown}{', …' if len(keys) > limit else ''}"


def _step_item(container: yaml.Node, segment: Index | Match, before: Sequence[PathSegment]) -> _Step:
    """Enter a sequence by index or by ``field=value``."""
    if not isinstance(container, yaml.SequenceNode):
        raise _PathNotFoundError(f"{_where(before, container)} is {_kind(container)}, not a sequence")
    items: list[yaml.Node] = list(container.value)
    if isinstance(segment, Index):
        if segment.index >= len(items):
            count = f"{len(items)} item" + ("" if len(items) == 1 else "s")
            raise _PathNotFoundError(
                f"the sequence {_where(before, container)} has {count}, so there is no item [{segment.index}]"
            )
        return _Step(container, None, segment.index, items[segment.index])
    matches = [i for i, item in enumerate(items) if _item_matches(item, segment)]
    if not matches:
        raise _PathNotFoundError(
            f"no item with {segment.field}={_show(segment.value)} in the sequence {_where(before, container)}"
            f"{_field_values(items, segment.field)}"
        )
    if len(matches) > 1:
        lines = ", ".join(str(_line(items[i])) for i in matches)
        raise EditError(
            f"{len(matches)} items match [{segment.field}={segment.value}] in the sequence "
            f"{_where(before, container)} (lines {lines}); use an [index] instead"
        )
    return _Step(container, None, matches[0], items[matches[0]])


def _field_values(items: Sequence[yaml.Node], field: str, limit: int = 20) -> str:
    """``, whose items have name 'a', 'b'`` — what the items' ``field`` holds."""
    values = []
    for item in map(_unalias, items):
        for key, value in item.value if isinstance(item, yaml.MappingNode) else []:
            key, value = _unalias(key), _unalias(value)
            if isinstance(key, yaml.ScalarNode) and key.value == field and isinstance(value, yaml.ScalarNode):
                values.append(str(value.value))
    if not values:
        return f", whose items have no {_show(field)}"
    shown = ", ".join(_show(value) for value in values[:limit])
    return f", whose items have {field} {shown}{', …' if len(values) > limit else ''}"


def _item_matches(item: yaml.Node, segment: Match) -> bool:
    item = _unalias(item)
    if not isinstance(item, yaml.MappingNode):
        return False
    for key, value in item.value:
        key, value = _unalias(key), _unalias(value)
        if isinstance(key, yaml.ScalarNode) and key.value == segment.field:
            return isinstance(value, yaml.ScalarNode) and value.value == segment.value
    return False


def _is_empty_document(root: yaml.Node) -> bool:
    return isinstance(root, yaml.ScalarNode) and root.tag == NULL_TAG and root.value == ""


def _locate(stream: _Stream, path: str, document: int | None) -> _Located:
    """Resolve ``path`` in the chosen document, or in the single document that contains it."""
    segments = parse_path(path)
    count = len(stream.roots)
    if document is not None:
        if not 0 <= document < count:
            raise EditError(f"document {document} does not exist (the text has {count} documents)")
        try:
            return _resolve(document, stream.roots[document], segments)
        except _PathNotFoundError as error:
            raise _PathNotFoundError(f"path {_show(path)} not found in document {document} ({error})") from None
    found: list[_Located] = []
    reasons: list[str] = []
    for i, root in enumerate(stream.roots):
        if not segments and _is_empty_document(root):
            continue
        try:
            found.append(_resolve(i, root, segments))
        except _PathNotFoundError as error:
            reasons.append(f"document {i}: {error}")
    if len(found) == 1:
        return found[0]
    if found:
        indexes = ", ".join(str(located.document) for located in found)
        raise EditError(f"path {_show(path)} exists in documents {indexes}; pass a document index to choose one")
    if count == 0:
        raise _PathNotFoundError(f"path {_show(path)} not found (the text contains no YAML document)")
    if count == 1:
        raise _PathNotFoundError(f"path {_show(path)} not found ({reasons[0].partition(': ')[2]})")
    raise _PathNotFoundError(f"path {_show(path)} not found in any of the {count} documents ({'; '.join(reasons)})")


# ---------------------------------------------------------------------------------------------------------
# Values: validation, type resolution, rendering in a scalar style
# ---------------------------------------------------------------------------------------------------------

_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINE_BREAKS = "\r\n\x85\u2028\u2029"
_PLAIN_UNSAFE_FIRST = "-?:,[]{}#&*!|>'\"%@`"
_FLOW_UNSAFE = ",?[]{}"  # PyYAML ends a flow plain scalar at any of these (scanner.scan_plain)
# Readers other than PyYAML: YAML 1.2 core schema and go-yaml (Helm, kustomize, Argo CD) numbers and bools.
_OTHER_NON_STRINGS = re.compile(
    r"""[-+]?(?:[0-9][0-9_]*|0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+)
      | [-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
      | [-+]?0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?[pP][-+]?[0-9]+
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | y|Y|n|N|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|true|True|TRUE|false|False|FALSE
      | null|Null|NULL|~""",
    re.VERBOSE,
)
_RESOLVER = yaml.resolver.Resolver()


def _check_text(text: str, what: str) -> None:
    """Refuse line breaks and control characters: they cannot be written into a single-line scalar."""
    for ch in text:
        if ch in _LINE_BREAKS:
            raise EditError(f"{what} {_show(text)} contains a line break; only single-line values can be written")
        if ch == "\ufeff" or _NON_PRINTABLE.match(ch) or unicodedata.category(ch) == "Cc":
            raise EditError(f"{what} {_show(text)} contains the control character U+{ord(ch):04X}")


def _plain_tag(value: str) -> str:
    """The tag PyYAML's resolver (YAML 1.1) gives ``value`` written as a plain scalar."""
    return str(_RESOLVER.resolve(yaml.ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]


def _reads_as_string(value: str) -> bool:
    """Whether every common reader (PyYAML, YAML 1.2 core, go-yaml) reads plain ``value`` as a string."""
    return _plain_tag(value) == STR_TAG and not _OTHER_NON_STRINGS.fullmatch(value)


def _plain_safe(value: str, *, flow: bool) -> bool:
    """Whether ``value`` can be written as a plain scalar without changing the structure around it."""
    if value == "" or value != value.strip() or value[0] in _PLAIN_UNSAFE_FIRST:
        return False
    if ": " in value or " #" in value or value.endswith(":") or "\t" in value:
        return False
    return not (flow and any(ch in _FLOW_UNSAFE for ch in value))


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _double_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_string(value: str, *, flow: bool = False) -> str:
    """A new string scalar: plain when that reads back as the same string, else double-quoted."""
    if _plain_safe(value, flow=flow) and _reads_as_string(value):
        return value
    return _double_quoted(value)


def _render_like(value: str, node: yaml.ScalarNode, *, forced_string: bool, flow: bool) -> str:
    """Render ``value`` in the style of ``node`` (see the module docstring for the rules)."""
    if node.style == "'":
        return _single_quoted(value)
    if node.style == '"':
        return _double_quoted(value)
    if not _plain_safe(value, flow=flow):
        return _double_quoted(value)
    if forced_string or node.tag in (STR_TAG, NULL_TAG):
        return value if forced_string or _reads_as_string(value) else _double_quoted(value)
    return value if _plain_tag(value) == node.tag else _double_quoted(value)


# ---------------------------------------------------------------------------------------------------------
# The safety net: load before and after, compare with only the intended change applied
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Tagged:
    """A node with a tag SafeLoader does not know (e.g. ``!Ref``), kept comparable instead of failing."""

    tag: str
    value: Any


class _DataLoader(LimitedLoader):
    """SafeLoader that constructs unknown tags as :class:`_Tagged` (still no arbitrary objects), within the
    limits of :mod:`yamllimits`."""

    replay_events = True


def _construct_unknown(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> _Tagged:
    if isinstance(node, yaml.ScalarNode):
        return _Tagged(node.tag, loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return _Tagged(node.tag, loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return _Tagged(node.tag, loader.construct_mapping(node, deep=True))
    raise EditError(f"cannot load the node tagged {_show(node.tag)} at line {_line(node)}")


_DataLoader.add_multi_constructor("", _construct_unknown)


def load_documents(text: str) -> list[Any]:
    """Load every document like ``yaml.safe_load_all`` (unknown tags become opaque values, not errors).

    Within one :func:`~.yamllimits.limited` context a text is loaded once; later calls get a deep copy."""
    return remembered("load_documents", text, _load_documents, copy.deepcopy)


def _load_documents(text: str) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_DataLoader))  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise yaml_error(error, "the text") from error


def same_data(a: Any, b: Any) -> bool:
    """Type-strict deep equality (``1`` != ``1.0`` != ``"1"``; NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, _Tagged):
        return a.tag == b.tag and same_data(a.value, b.value)
    return bool(a == b)


def _construct_key(node: yaml.Node) -> Any:
    """The Python key a mapping key node becomes when loaded (``1:`` -> ``1``)."""
    loader = _DataLoader("")
    try:
        return loader.construct_object(_unalias(node), deep=True)
    finally:
        loader.dispose()


def _data_path(located: _Located) -> list[Any]:
    """The keys/indices of ``located`` in loaded data."""
    return [step.position if step.key is None else _construct_key(step.key) for step in located.steps]


def _verify(old_text: str, new_text: str, document: int, change: Callable[[Any], Any], what: str) -> None:
    """Assert that ``new_text`` loads to the old data with ``change`` applied to ``document`` only."""
    before = load_documents(old_text)
    try:
        after = load_documents(new_text)
    except YamlLimitError:
        raise
    except EditError as error:
        raise EditError(f"refusing to {what}: the edited text would not parse ({error})") from error
    expected = list(before)
    expected[document] = change(before[document])
    try:
        same = len(after) == len(expected) and all(same_data(x, y) for x, y in zip(after, expected, strict=True))
    except RecursionError:
        same = False
    if not same:
        raise EditError(f"refusing to {what}: the edited text would change more than the target value")


def _replaced(data: Any, keys: Sequence[Any], value: Any) -> Any:
    """``data`` with the value at ``keys`` replaced (mutates the freshly loaded copy)."""
    if not keys:
        return value
    parent = data
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    return data


# ---------------------------------------------------------------------------------------------------------
# Reading and replacing scalars
# ---------------------------------------------------------------------------------------------------------


def get_scalar(text: str, path: str, *, document: int | None = None) -> str | None:
    """The string value of the scalar at ``path`` as written (decoded from quotes, no type conversion).

    Returns ``None`` when the path does not exist. ``document=None`` searches every document and requires the
    path to be in exactly one of them. Aliases are followed (reading cannot break anything).
    """
    stream = _compose(text)
    try:
        located = _locate(stream, path, document)
    except _PathNotFoundError:
        return None
    node = _unalias(located.node)
    if not isinstance(node, yaml.ScalarNode):
        raise EditError(f"path {_show(path)} is {_kind(node)} at line {_line(node)}, not a scalar")
    return str(node.value)


def missing_reason(text: str, path: str, *, document: int = 0) -> str | None:
    """Why ``path`` does not exist in ``document`` (the first missing step and what is there instead), or
    ``None`` when it exists."""
    stream = _compose(text)
    if not 0 <= document < len(stream.roots):
        return f"document {document} does not exist (the text has {len(stream.roots)} documents)"
    try:
        _resolve(document, stream.roots[document], parse_path(path))
    except _PathNotFoundError as error:
        return str(error)
    return None


def _check_unshared(stream: _Stream, located: _Located, path: str) -> None:
    """Refuse paths through aliases or into anchored collections that aliases share: the edit would leak."""
    shown = _show(path) if path else "the document root"
    for step in located.steps:
        if isinstance(step.node, AliasNode):
            target = step.node.target
            raise EditError(
                f"path {shown} goes through the alias '*{step.node.anchor}' at line {_line(step.node)}; "
                f"edit the anchored node '&{step.node.anchor}' at line {_line(target)} instead, knowing that "
                "every alias shares it"
            )
    shared = [step.container for step in located.steps] + [located.node]
    for container in shared:
        if id(container) in stream.aliased and not isinstance(container, yaml.ScalarNode):
            raise EditError(
                f"path {shown} is inside the anchored node '&{stream.anchored.get(id(container), '?')}' "
                f"at line {_line(container)}, which is used through aliases; changing it would change every "
                "alias"
            )


def _check_editable(stream: _Stream, located: _Located, path: str) -> yaml.ScalarNode:
    """Refuse targets whose change could not stay confined to their own characters."""
    shown = _show(path)
    _check_unshared(stream, located, path)
    node = located.node
    if not isinstance(node, yaml.ScalarNode):
        raise EditError(f"path {shown} is {_kind(node)} at line {_line(node)}, not a scalar")
    if id(node) in stream.anchored:
        raise EditError(
            f"path {shown} at line {_line(node)} is the anchored scalar '&{stream.anchored[id(node)]}'; "
            "changing it would change every alias of it"
        )
    if node.style in ("|", ">"):
        kind = "literal" if node.style == "|" else "folded"
        raise EditError(
            f"path {shown} at line {_line(node)} is a {kind} block scalar ('{node.style}'); only single-line "
            "plain or quoted scalars are edited"
        )
    explicit = stream.explicit_tags.get(id(node))
    if explicit is not None and node.tag != STR_TAG:
        written = _TAG_AS_WRITTEN.match(stream.text, int(node.start_mark.index))
        raise EditError(
            f"path {shown} at line {_line(node)} has the explicit tag "
            f"{_show(written.group(1) if written else explicit)}; only untagged or '!!str' scalars are edited"
        )
    return node


_TAG_AS_WRITTEN = re.compile(r"(?:&\S+\s+)?(!\S*)")


def _value_start(stream: _Stream, node: yaml.ScalarNode, path: str) -> int:
    """Where the scalar's own characters begin: after an explicit ``!!str`` tag on the same line."""
    start = int(node.start_mark.index)
    if id(node) not in stream.explicit_tags:
        return start
    match = re.compile(r"!\S*[ \t]+").match(stream.text, start)
    if match is None or match.end() > node.end_mark.index:
        raise EditError(
            f"path {_show(path)} at line {_line(node)}: the explicit tag and the value are not on the same line"
        )
    return match.end()


def _in_flow(located: _Located) -> bool:
    return any(getattr(step.container, "flow_style", False) for step in located.steps)


def set_scalar(text: str, path: str, value: str, *, document: int | None = None, force_string: bool = False) -> str:
    """Return ``text`` with the scalar at ``path`` set to ``value``; only that scalar's characters change.

    The scalar's style is kept (see the module docstring for when a plain scalar gets double quotes). The path
    must exist (see :func:`insert_mapping_key` to add keys). Raises :class:`EditError` for values with line
    breaks or control characters, non-scalar targets, block scalars, aliases, anchors, tags other than
    ``!!str``, and whenever the re-parse check finds any other change. Equal values return ``text`` as is.

    ``force_string=True`` writes the value as a string even where the original was a number or boolean (e.g.
    kustomize's ``newTag: 1.0``, which Go reads into a string field): plain only if it reads back as a string.
    """
    _check_text(value, "value")
    stream = _compose(text)
    located = _locate(stream, path, document)
    node = _check_editable(stream, located, path)
    if node.value == value and (not force_string or _loads_as_string(node, stream)):
        return text
    explicit_string = id(node) in stream.explicit_tags
    if force_string and node.style is None and not explicit_string:
        rendered = _render_string(value, flow=_in_flow(located))
    else:
        rendered = _render_like(value, node, forced_string=explicit_string, flow=_in_flow(located))
    forced_string = explicit_string or force_string
    start, end = _value_start(stream, node, path), int(node.end_mark.index)
    expected = _expected_value(rendered, value, forced_string)
    if start == end:
        start, rendered = _fill_empty(text, start, rendered)
        end = start
    new_text = text[:start] + rendered + text[end:]
    keys = _data_path(located)
    _verify(text, new_text, located.document, lambda data: _replaced(data, keys, expected), f"set {path}")
    return new_text


def _loads_as_string(node: yaml.ScalarNode, stream: _Stream) -> bool:
    """Whether the existing scalar is a string for every reader (quoted, ``!!str`` or unambiguous plain)."""
    return node.style is not None or id(node) in stream.explicit_tags or _reads_as_string(str(node.value))


def _fill_empty(text: str, at: int, rendered: str) -> tuple[int, str]:
    """Place a value where PyYAML put an empty scalar: right after ``:``/``-``, so it needs a space."""
    if text[at : at + 1] in (" ", "\t"):
        at += 1
        return at, rendered + (" " if text[at : at + 1] == "#" else "")
    return at, " " + rendered


def _expected_value(rendered: str, value: str, forced_string: bool) -> Any:
    """What the new scalar must load as: the string itself, or the typed value of a kept plain scalar."""
    if forced_string or rendered[:1] in ("'", '"') or _plain_tag(rendered) == STR_TAG:
        return value
    return load_documents(rendered)[0]


# ---------------------------------------------------------------------------------------------------------
# Inserting lines into block collections
# ---------------------------------------------------------------------------------------------------------


def content_end(text: str, node: yaml.Node) -> int:
    """Index just after the last character of ``node`` (a block collection ends at its last leaf).

    PyYAML ends a block collection at the next token (past trailing comments and blank lines) and a block
    scalar after its trailing line breaks, so neither ``end_mark`` is the place to insert after.
    """
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return content_end(text, node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return content_end(text, node.value[-1])
    end = int(node.end_mark.index)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def file_newline(text: str) -> str:
    """The newline the file uses: ``\\r\\n`` if any line ends so, else ``\\n``."""
    return "\r\n" if "\r\n" in text else "\n"


def _newline_style(text: str, line_end: int) -> str:
    """The newline used by the line ending at ``line_end`` (or by the file, when there is no such line)."""
    if line_end >= 0:
        return "\r\n" if line_end > 0 and text[line_end - 1] == "\r" else "\n"
    return file_newline(text)


def insert_lines(text: str, after: int, column: int, lines: Sequence[str]) -> str:
    """Insert ``lines`` (indented by ``column`` spaces) as new lines after the line containing ``after``."""
    line_end = text.find("\n", after)
    newline = _newline_style(text, line_end)
    block = "".join(" " * column + line + newline for line in lines)
    if line_end == -1:  # last line without a trailing newline: keep it that way
        return text + newline + block[: -len(newline)]
    return text[: line_end + 1] + block + text[line_end + 1 :]


def _block_mapping(stream: _Stream, located: _Located, path: str, key: str) -> yaml.MappingNode:
    """The block mapping at ``path`` that may receive ``key`` (refusing flow mappings, aliases, dupes)."""
    node = located.node
    shown = _show(path) if path else "the document root"
    _check_unshared(stream, located, path)
    if not isinstance(node, yaml.MappingNode):
        raise EditError(f"path {shown} is {_kind(node)} at line {_line(node)}, not a mapping")
    if node.flow_style:
        raise EditError(
            f"path {shown} at line {_line(node)} is a flow mapping ({{...}}); keys can only be added to "
            "block mappings without rewriting it"
        )
    for existing, _ in node.value:
        if isinstance(existing, yaml.ScalarNode) and existing.value == key:
            raise EditError(f"key {_show(key)} already exists under {shown} at line {_line(existing)}")
    return node


def _after_pair(text: str, mapping: yaml.MappingNode, after_key: str | None, path: str) -> int:
    """Index after which new keys go: after the pair ``after_key`` or after the mapping's last pair."""
    pairs: list[tuple[yaml.Node, yaml.Node]] = list(mapping.value)
    if after_key is None:
        return content_end(text, pairs[-1][1])
    for key, value in pairs:
        if isinstance(key, yaml.ScalarNode) and key.value == after_key:
            return content_end(text, value)
    where = _show(path) if path else "the document root"
    raise EditError(f"key {_show(after_key)} (to insert after) not found under {where} at line {_line(mapping)}")


def _insert_into_mapping(
    text: str,
    parent_path: str,
    key: str,
    lines: Callable[[str], list[str]],
    new_value: Any,
    after_key: str | None,
    document: int | None,
) -> str:
    """Shared body of the insert functions; ``lines(rendered_key)`` gives the new lines (relative indent)."""
    _check_text(key, "key")
    stream = _compose(text)
    located = _locate(stream, parent_path, document)
    mapping = _block_mapping(stream, located, parent_path, key)
    column = int(mapping.value[0][0].start_mark.column)
    new_text = insert_lines(
        text, _after_pair(text, mapping, after_key, parent_path), column, lines(_render_string(key))
    )
    keys = _data_path(located)
    what = f"insert {key} under {parent_path or 'the document root'}"
    _verify(text, new_text, located.document, lambda data: _added_key(data, keys, key, new_value), what)
    return new_text


def _added_key(data: Any, keys: Sequence[Any], key: str, value: Any) -> Any:
    target = data
    for part in keys:
        target = target[part]
    target[key] = value
    return data


def insert_mapping_key(
    text: str,
    parent_path: str,
    key: str,
    value: str,
    *,
    after_key: str | None = None,
    document: int | None = None,
) -> str:
    """Add ``key: value`` on its own line to the block mapping at ``parent_path`` (``""`` = document root).

    The line gets the sibling keys' indentation and the newline style of the line it follows, and goes after
    the pair ``after_key`` (or after the last pair). Key and value are written plain when they read back as
    the same string, else double-quoted. Flow mappings and existing keys are refused.
    """
    _check_text(value, "value")
    rendered = _render_string(value)
    return _insert_into_mapping(text, parent_path, key, lambda k: [f"{k}: {rendered}"], value, after_key, document)


def _sequence_offsets(root: yaml.Node) -> tuple[int, int]:
    """The document's block sequence style: (dash column - parent key column, item column - dash column)."""
    pending: list[yaml.Node] = [root]
    while pending:
        node = pending.pop(0)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(value, yaml.SequenceNode) and not value.flow_style and value.value:
                    dash = int(value.start_mark.column)
                    first = value.value[0]
                    gap = int(first.start_mark.column) - dash if first.start_mark.line == value.start_mark.line else 2
                    return max(dash - int(key.start_mark.column), 0), max(gap, 2)
                pending.append(value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return 0, 2


def _item_lines(items: Sequence[Mapping[str, str]], gap: int) -> list[str]:
    """Block sequence lines for mappings of strings: ``- k: v`` then ``  k2: v2`` (relative to the dash)."""
    lines: list[str] = []
    for item in items:
        if not item:
            raise EditError("a new sequence item needs at least one key")
        for i, (key, value) in enumerate(item.items()):
            _check_text(key, "key")
            _check_text(value, "value")
            prefix = "-" + " " * (gap - 1) if i == 0 else " " * gap
            lines.append(f"{prefix}{_render_string(key)}: {_render_string(value)}")
    return lines


def insert_mapping_sequence(
    text: str,
    parent_path: str,
    key: str,
    items: Sequence[Mapping[str, str]],
    *,
    after_key: str | None = None,
    document: int | None = None,
) -> str:
    """Add ``key:`` followed by a block sequence of string mappings (e.g. a new ``images:`` list).

    The dash indentation (indentless like kustomize, or indented) and the gap after the dash follow the first
    block sequence found in the same document; the default is kustomize's indentless ``- name: x``.
    """
    if not items:
        raise EditError(f"refusing to insert an empty sequence under key {_show(key)}")
    stream = _compose(text)
    located = _locate(stream, parent_path, document)
    offset, gap = _sequence_offsets(located.root)
    body = [" " * offset + line for line in _item_lines(items, gap)]
    return _insert_into_mapping(
        text,
        parent_path,
        key,
        lambda k: [f"{k}:", *body],
        [dict(item) for item in items],
        after_key,
        document,
    )


def append_sequence_item(text: str, path: str, item: Mapping[str, str], *, document: int | None = None) -> str:
    """Append a mapping of strings as a new item to the block sequence at ``path``.

    The new item copies the dash column and the gap after the dash of the existing first item. An empty value
    (``images:`` with nothing after it) becomes a one-item sequence in the document's sequence style. Flow
    sequences (``[a, b]``) are refused: appending would mean rewriting them.
    """
    stream = _compose(text)
    located = _locate(stream, path, document)
    node = located.node
    shown = _show(path)
    _check_unshared(stream, located, path)
    keys = _data_path(located)
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG and node.value == "" and located.steps:
        parent_key = located.steps[-1].key
        if parent_key is None:
            raise EditError(f"path {shown} is an empty sequence item, not a sequence")
        offset, gap = _sequence_offsets(located.root)
        column = int(parent_key.start_mark.column) + offset
        new_text = insert_lines(text, int(node.end_mark.index), column, _item_lines([item], gap))
        change: Callable[[Any], Any] = lambda data: _replaced(data, keys, [dict(item)])  # noqa: E731
    elif isinstance(node, yaml.SequenceNode) and not node.flow_style:
        dash = int(node.start_mark.column)
        if text[node.start_mark.index] != "-":
            raise EditError(f"cannot tell the indentation of the sequence {shown} at line {_line(node)}")
        first = node.value[0]
        gap = int(first.start_mark.column) - dash if first.start_mark.line == node.start_mark.line else 2
        new_text = insert_lines(text, content_end(text, node), dash, _item_lines([item], max(gap, 2)))
        change = lambda data: _replaced(data, keys, [*_at(data, keys), dict(item)])  # noqa: E731
    elif isinstance(node, yaml.SequenceNode):
        raise EditError(
            f"path {shown} at line {_line(node)} is a flow sequence ([...]); items can only be appended to "
            "block sequences without rewriting it"
        )
    else:
        raise EditError(f"path {shown} is {_kind(node)} at line {_line(node)}, not a sequence")
    _verify(text, new_text, located.document, change, f"append an item to {path}")
    return new_text


def _at(data: Any, keys: Sequence[Any]) -> Any:
    for key in keys:
        data = data[key]
    return data
