"""Limits a repository's YAML cannot defeat: file size, documents per file, alias expansion, nesting, time.

A GitOps repository is input from people and tools we do not control. A 422-byte file of nested aliases
(``a1: &a1 [*a0, *a0, ...]`` eight levels deep) expands to tens of millions of nodes when loaded, and every
walk over the loaded data (the edit's safety net, a rollback's diff) would take minutes. So every loader of
this package (:class:`LimitedLoader`) checks, while it composes and before anything walks the result:

* the text's size in UTF-8 bytes (``max_file_bytes``);
* the number of documents (``max_documents``);
* the nesting depth, counted while composing (before PyYAML's recursive composer can run out of stack) and
  again through aliases;
* the nodes aliases bring in: the expanded size of each document minus its distinct nodes, counted over the
  node graph with memoisation (linear in the graph, whatever the expansion), refusing recursive aliases;
* optionally a deadline (time.monotonic), checked every few hundred composed nodes, so work on a file that is
  within every limit but slow still stops in time — also in a worker thread nobody waits for anymore.

Within one :func:`limited` context a text is scanned and parsed once: an edit reads its file's data, composes it
to find the node to change and loads it again in its safety net, and the loaders that opt in
(:attr:`LimitedLoader.replay_events`) replay the parser's events of a text already parsed completely in the
context instead of scanning it again. The events are a pure function of the text, and every check above runs on
the replayed events as it does on parsed ones, so only the time changes.

The limits in force are a context variable set by :func:`limited` (the writer sets them around each round's
work in its worker thread); without it the defaults apply, so no caller can load unbounded YAML. Exceeding a
limit raises :class:`YamlLimitError`, whose message names the limit's setting; callers prefix the file.
"""

from __future__ import annotations

import contextvars
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from keptn_gitops_service.errors import EditError, EditTimeoutError, YamlLimitError

__all__ = ["DEFAULT_LIMITS", "LimitedLoader", "YamlLimits", "check_deadline", "check_size", "limited", "remembered"]

T = TypeVar("T")


@dataclass(frozen=True)
class YamlLimits:
    """The bounds on one file of a repository (the settings ``KEPTN_GITOPS_MAX_FILE_BYTES`` and
    ``KEPTN_GITOPS_YAML_MAX_*``)."""

    max_file_bytes: int = 4 * 1024 * 1024
    max_documents: int = 1000
    max_alias_nodes: int = 100_000
    max_depth: int = 100


DEFAULT_LIMITS = YamlLimits()
CHECK_EVERY = 256
"""Composed nodes between two looks at the clock."""


REPLAY_MAX_CHARS = 64 * 1024
"""Texts longer than this are parsed each time (their events, kept for the context, would take megabytes)."""
REPLAY_TEXTS = 4
"""The texts whose events one context keeps (the newest used)."""


@dataclass(frozen=True)
class _Active:
    limits: YamlLimits
    deadline: float | None
    seconds: float
    events: OrderedDict[str, tuple[yaml.Event, ...]] | None = None
    """The complete event streams of texts parsed in this context, by text (``None``: nothing is kept)."""
    memo: OrderedDict[tuple[str, str], Any] | None = None
    """Results of pure functions of a text computed in this context (:func:`remembered`)."""


_DEFAULT = _Active(DEFAULT_LIMITS, None, 0.0)
_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("keptn_gitops_yaml_limits", default=None)


def _active() -> _Active:
    return _ACTIVE.get() or _DEFAULT


@contextmanager
def limited(limits: YamlLimits, *, seconds: float | None = None) -> Iterator[None]:
    """Apply ``limits`` (and a deadline ``seconds`` from now) to the YAML loaded in this context."""
    deadline = None if seconds is None else time.monotonic() + seconds
    token = _ACTIVE.set(_Active(limits, deadline, seconds or 0.0, OrderedDict(), OrderedDict()))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def remembered(kind: str, text: str, compute: Callable[[str], T], copy: Callable[[T], T]) -> T:
    """``compute(text)``, computed once per :func:`limited` context (for the :data:`REPLAY_TEXTS` newest texts of
    at most :data:`REPLAY_MAX_CHARS`): a later call gets ``copy`` of the first result, so callers may change what
    they get. ``kind`` names the function. Outside a context, or for a longer text, it is computed each time;
    an exception is never remembered."""
    memo = _active().memo
    if memo is None or len(text) > REPLAY_MAX_CHARS:
        return compute(text)
    key = (kind, text)
    if key in memo:
        memo.move_to_end(key)
        return copy(memo[key])
    result = compute(text)
    memo[key] = copy(result)
    while len(memo) > REPLAY_TEXTS:
        memo.popitem(last=False)
    return result


def active_limits() -> YamlLimits:
    """The limits in force in this context."""
    return _active().limits


def check_deadline() -> None:
    """Raise :class:`EditTimeoutError` when the deadline of this context has passed."""
    active = _active()
    if active.deadline is not None and time.monotonic() > active.deadline:
        raise EditTimeoutError(
            f"editing took longer than {active.seconds:g} s; the file is too slow to process "
            "(limit KEPTN_GITOPS_EDIT_TIMEOUT)"
        )


def check_size(size: int) -> None:
    """Refuse a file of ``size`` bytes when it is larger than ``max_file_bytes``."""
    limit = _active().limits.max_file_bytes
    if size > limit:
        raise YamlLimitError(
            f"the file has {size} bytes, more than the {limit} bytes allowed (limit KEPTN_GITOPS_MAX_FILE_BYTES)"
        )


def _check_text(text: str) -> None:
    limit = _active().limits.max_file_bytes
    if len(text) > limit or len(text) * 4 > limit:  # a character is 1 to 4 bytes: count only when it matters
        check_size(len(text.encode("utf-8", "surrogatepass")))


def _target(node: yaml.Node) -> yaml.Node:
    """The anchored node behind an alias placeholder (:class:`.yamledit.AliasNode` has ``target``)."""
    target = getattr(node, "target", None)
    return target if isinstance(target, yaml.Node) else node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def measure(root: yaml.Node, limits: YamlLimits, composed: int) -> tuple[int, int]:
    """``(expanded nodes, depth)`` of the document at ``root``, raising :class:`YamlLimitError` as soon as the
    aliases bring in more than ``limits.max_alias_nodes`` nodes, the depth through aliases exceeds
    ``limits.max_depth``, or an alias refers to a node that contains it.

    Each distinct node is visited once (iteratively: no recursion limit) and its expanded size memoised, so a
    billion laughs is refused after a few hundred steps. ``composed`` (at least the number of distinct nodes)
    caps the sizes so they never grow into huge numbers."""
    cap = composed + limits.max_alias_nodes
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(_target(root), False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        kids = [_target(child) for child in _children(node)]
        if finished:
            on_path.discard(key)
            size[key] = min(cap + 1, 1 + sum(size[id(child)] for child in kids))
            depth[key] = 1 + max((depth[id(child)] for child in kids), default=0)
            if depth[key] > limits.max_depth:
                raise _too_deep(limits, node)
            if size[key] > cap:
                raise _too_many(limits)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in kids:
            if id(child) in on_path:
                raise YamlLimitError(
                    f"a YAML alias at or below line {_line(node)} refers to the node at line {_line(child)} that "
                    "contains it (a recursive alias); such a structure is infinite"
                )
            if id(child) not in size:
                stack.append((child, False))
    expanded = size[id(_target(root))]
    if expanded - len(size) > limits.max_alias_nodes:
        raise _too_many(limits)
    return expanded, depth[id(_target(root))]


def _too_many(limits: YamlLimits) -> YamlLimitError:
    return YamlLimitError(
        f"YAML aliases expand to more than {limits.max_alias_nodes} nodes (limit KEPTN_GITOPS_YAML_MAX_NODES)"
    )


def _too_deep(limits: YamlLimits, node: yaml.Node) -> YamlLimitError:
    return YamlLimitError(
        f"YAML nesting is deeper than {limits.max_depth} levels at line {_line(node)} "
        "(limit KEPTN_GITOPS_YAML_MAX_DEPTH)"
    )


class LimitedLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader with the limits of this context checked while composing."""

    replay_events = False
    """Whether this loader's events may come from (and go to) the context's parsed texts; only for loaders
    that do not hook into the scanner (one that records comments while scanning must scan)."""

    def __init__(self, stream: Any) -> None:
        active = _active()
        self._limits = active.limits
        self._replay: tuple[yaml.Event, ...] | None = None
        self._replayed = 0
        self._recording: list[yaml.Event] | None = None
        self._events = active.events if self.replay_events and isinstance(stream, str) else None
        if self._events is not None and len(stream) <= REPLAY_MAX_CHARS:
            self._replay = self._events.get(stream)
            if self._replay is not None:
                self._events.move_to_end(stream)
            else:
                self._recording = []
        self._text = stream
        if isinstance(stream, str):
            _check_text(stream)
        try:
            super().__init__(stream)
        except yaml.reader.ReaderError as error:  # raised before any caller's YAMLError handling
            character = error.character if isinstance(error.character, int) else ord(error.character[:1] or "?")
            line = stream[: error.position].count("\n") + 1 if isinstance(stream, str) else 0
            raise EditError(
                f"the text is not valid YAML: it contains the character U+{character:04X}, which YAML does not "
                f"allow, at line {line}"
            ) from None
        self._documents = 0
        self._nesting = 0
        self._composed = 0  # in the current document
        self._all_composed = 0  # in the whole stream: when to look at the clock

    def compose_document(self) -> yaml.Node | None:
        self._documents += 1
        if self._documents > self._limits.max_documents:
            raise YamlLimitError(
                f"the file has more than {self._limits.max_documents} YAML documents "
                "(limit KEPTN_GITOPS_YAML_MAX_DOCUMENTS)"
            )
        self._composed = 0
        # Composer.compose_document, with a look at the anchors before they are forgotten: without one the
        # document has no alias, so it is a tree whose depth the composing checked and which expands to nothing
        self.get_event()  # DOCUMENT-START
        node = self.compose_node(None, None)
        self.get_event()  # DOCUMENT-END
        anchored = bool(self.anchors)
        self.anchors = {}
        if node is not None and anchored:
            measure(node, self._limits, self._composed)
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._composed += 1
        self._all_composed += 1
        if self._all_composed % CHECK_EVERY == 0:
            check_deadline()
        self._nesting += 1
        try:
            if self._nesting > self._limits.max_depth:
                mark = self.peek_event().start_mark
                raise YamlLimitError(
                    f"YAML nesting is deeper than {self._limits.max_depth} levels at line {mark.line + 1} "
                    "(limit KEPTN_GITOPS_YAML_MAX_DEPTH)"
                )
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    # ---- events: parsed, or replayed from an earlier complete parse of the same text in this context ---------

    def check_event(self, *choices: Any) -> bool:
        if self._replay is None:
            return bool(super().check_event(*choices))
        if self._replayed >= len(self._replay):
            return False
        return not choices or isinstance(self._replay[self._replayed], choices)

    def peek_event(self) -> Any:
        if self._replay is None:
            return super().peek_event()  # type: ignore[no-untyped-call]
        return self._replay[self._replayed] if self._replayed < len(self._replay) else None

    def get_event(self) -> Any:
        if self._replay is None:
            event = super().get_event()  # type: ignore[no-untyped-call]
            if self._recording is not None and event is not None:
                self._recording.append(event)
            return event
        if self._replayed >= len(self._replay):
            return None
        self._replayed += 1
        return self._replay[self._replayed - 1]

    def dispose(self) -> None:
        """Keep the events of a text parsed to its end (a parse that failed or stopped early keeps nothing)."""
        recording, self._recording = self._recording, None
        if recording is not None and self._events is not None:
            if isinstance(self.current_event, yaml.StreamEndEvent):  # peeked at the end, never taken
                recording.append(self.current_event)
            if recording and isinstance(recording[-1], yaml.StreamEndEvent):
                self._events[self._text] = tuple(recording)
                while len(self._events) > REPLAY_TEXTS:
                    self._events.popitem(last=False)
        super().dispose()
