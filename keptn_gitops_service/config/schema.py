"""How each field of the model (:mod:`.model`) is written in the configuration file: its YAML key, documentation and
constraints, kept next to the field as ``field(metadata=key(...))``.

The loader (:mod:`.loader`) reads the file by this schema and ``scripts/gen-config-reference`` documents it from
the same data, so a key is described in one place.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY = "keptn_gitops_service.key"
"""The metadata entry of a model field that holds its :class:`Key`."""


@dataclass(frozen=True)
class Check:
    """A constraint on a scalar: its text must match ``pattern`` in full, else ``message`` is the problem.

    Checks of a template apply only to a template without fields (a rendered one is checked when it is used)."""

    pattern: str
    message: str

    def ok(self, text: str) -> bool:
        return re.fullmatch(self.pattern, text) is not None


@dataclass(frozen=True)
class When:
    """A field that belongs to some values of a sibling key (the selector): ``format: ssh`` takes ``keyFile``.

    ``required`` and ``forbidden`` are the problems when a required field is missing or a field is given with another
    value; ``{value}`` is replaced by the selector's value."""

    selector: str
    values: tuple[str, ...]
    required: str
    forbidden: str


@dataclass(frozen=True)
class Group:
    """Fields of one mapping of which at least one (``exactly``: exactly one) must be given, else ``message``."""

    message: str
    exactly: bool = False
    when: When | None = None
    """Only while this selector condition holds."""


@dataclass(frozen=True)
class Tagged:
    """A union whose member is chosen by the value of the key ``tag`` (``type: token``)."""

    tag: str
    members: Mapping[str, type]
    """Tag value -> member class, in the order of the documentation."""
    noun: str
    """Names the tag in problems: ``required for <noun> 'token'``."""


@dataclass(frozen=True)
class Presence:
    """A union whose member is chosen by which of its keys is present (``kustomizeImage``, ``flux``).

    A member's fields named ``<key>.<name>`` live in the mapping under ``<key>``; its other fields sit next to the
    key (an update's ``file``). A member without dotted fields is read from the mapping under its key as a whole
    (a wait's ``flux``)."""

    members: Mapping[str, type]
    """Key -> member class, in the order of the documentation."""
    missing: str
    """The problem when none or several of the keys are present."""


@dataclass(frozen=True)
class Key:
    """How one model field is written in the file."""

    yaml: str | None
    """The YAML key (``<key>.<name>`` inside a :class:`Presence` member's mapping); ``None``: not read from the file
    (the loader gives such a field without default the item's position in its list: a rule's ``index``)."""
    doc: str = ""
    """What the key means (reST-style ``literals``; Markdown links)."""
    template: bool = False
    """A string that is a [template](#templates), rendered for each event."""
    required: bool | None = None
    """Whether the key must be given; ``None``: when the field has no default."""
    allow_empty: bool = False
    """Whether a string may be empty."""
    checks: tuple[Check, ...] = ()
    """Constraints on the value's text (the first that fails is the problem)."""
    when: When | None = None
    group: Group | None = None
    variants: Tagged | Presence | None = None
    """For a field holding a union: how the file chooses the member."""
    empty: str | None = None
    """For a list: the problem when it is empty (or null, or missing when it is not required)."""
    elsewhere: str = ""
    """For a key next to a :class:`Presence` key: what it does, named when another member is chosen (``only a, b
    <elsewhere>``)."""
    type: str | None = None
    """The type the reference shows instead of the one derived from the annotation (e.g. ``glob``)."""
    requirement: str | None = None
    """The reference's "required / default" text instead of the derived one."""


def key(yaml: str | None, doc: str = "", **options: Any) -> dict[str, Key]:
    """The metadata of a model field: ``field(default=..., metadata=key("tokenEnv", "What it means."))``."""
    return {KEY: Key(yaml, doc, **options)}


def key_of(field: dataclasses.Field[Any]) -> Key:
    """The :class:`Key` of a model field (a field without one is not read from the file)."""
    found = field.metadata.get(KEY)
    return found if isinstance(found, Key) else Key(None)


def has_default(field: dataclasses.Field[Any]) -> bool:
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"the field {field.name} has no default")


def is_required(field: dataclasses.Field[Any]) -> bool:
    """Whether the key must be in the file (given the :class:`When` condition, if any)."""
    found = key_of(field)
    return (not has_default(field)) if found.required is None else found.required
