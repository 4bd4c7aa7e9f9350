"""Templates over an event: ``"apps/{stage}/{service}/values.yaml"``, ``"{image.tag}"``.

Fields: ``project stage service image image.name image.tag image.digest shkeptncontext``,
``values.<dotted.path>`` (from ``configurationChange.values``) and ``labels.<key>``. ``{{`` and ``}}`` are
literal braces. Parsing is separate from rendering so the config loader can reject unknown fields before any
event arrives; rendering takes a resolver so this module knows nothing about events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from keptn_gitops_service.errors import TemplateError

SIMPLE_FIELDS = frozenset(
    {"project", "stage", "service", "image", "image.name", "image.tag", "image.digest", "shkeptncontext"}
)
PREFIX_FIELDS = ("values.", "labels.")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"[A-Za-z0-9_.\-/]+")


@dataclass(frozen=True)
class Field:
    """A ``{name}`` placeholder."""

    name: str


Part = str | Field


def parse_template(template: str) -> tuple[Part, ...]:
    """Split a template into literal text and fields; raise :class:`TemplateError` on bad syntax/fields."""
    parts: list[Part] = []
    literal: list[str] = []
    pos = 0
    for token in _TOKEN.finditer(template):
        literal.append(template[pos : token.start()])
        pos = token.end()
        text = token.group(0)
        if text in ("{{", "}}"):
            literal.append(text[0])
        elif token.group(1) is None:
            raise TemplateError(f"template '{template}' has an unmatched '{text}' (write '{text * 2}')")
        else:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Field(_check_field(template, token.group(1).strip())))
    literal.append(template[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(parts)


def template_fields(template: str) -> tuple[str, ...]:
    """The field names a template uses."""
    return tuple(p.name for p in parse_template(template) if isinstance(p, Field))


def render(template: str, resolve: Callable[[str], str]) -> str:
    """Render ``template``; ``resolve`` returns a field's value or raises :class:`TemplateError`."""
    return "".join(p if isinstance(p, str) else resolve(p.name) for p in parse_template(template))


def _check_field(template: str, name: str) -> str:
    if name in SIMPLE_FIELDS:
        return name
    for prefix in PREFIX_FIELDS:
        if name.startswith(prefix) and len(name) > len(prefix) and _FIELD.fullmatch(name):
            return name
    known = ", ".join(sorted(SIMPLE_FIELDS)) + ", values.<path>, labels.<key>"
    raise TemplateError(f"template '{template}' uses unknown field '{{{name}}}' (known: {known})")
