"""The loader reads any dataclass by the schema of its fields (``field(metadata=key(...))``), not only the model:
unknown keys, required keys, constraints, selector conditions, groups and unions, every problem with its position."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.loader import BAD, _SchemaReader
from keptn_gitops_service.config.nodes import NodeReader, compose
from keptn_gitops_service.config.schema import KEY, Check, Group, Presence, Tagged, When, key

_PLAIN = When("mode", ("plain",), "required with mode plain", "only allowed with mode plain")


@dataclass(frozen=True)
class Box:
    mode: str = field(metadata=key("mode", "How.", checks=(Check("plain|fancy", "must be plain or fancy"),)))
    size: int = field(default=1, metadata=key("size", "How big.", checks=(Check("[1-9]", "must be 1 to 9"),)))
    label: str | None = field(default=None, metadata=key("label", "A name.", required=True, when=_PLAIN))
    left: str | None = field(default=None, metadata=key("left", "L.", group=Group("needs left, right or both")))
    right: str | None = field(default=None, metadata=key("right", "R.", group=Group("needs left, right or both")))
    wait: timedelta = field(default=timedelta(seconds=5), metadata=key("wait", "How long."))
    tags: tuple[str, ...] = field(default=(), metadata=key("tags", "Templates.", template=True))


@dataclass(frozen=True)
class Red:
    shade: str = field(metadata=key("red.shade", "Which red."))
    file: str = field(metadata=key("file", "Where."))


@dataclass(frozen=True)
class Blue:
    file: str = field(metadata=key("file", "Where."))
    deep: bool = field(default=False, metadata=key("deep", "Deep blue.", elsewhere="makes it deep"))
    blue: str = field(default="x", metadata=key("blue", "The blue key itself."))


@dataclass(frozen=True)
class Shelf:
    items: tuple[Red | Blue, ...] = field(
        metadata=key(
            "items", "Things.", variants=Presence({"red": Red, "blue": Blue}, "needs red or blue"), empty="empty!"
        )
    )
    lock: Box | None = field(
        default=None, metadata=key("lock", "A tagged one.", variants=Tagged("mode", {"plain": Box}, "lock mode"))
    )


def read(cls: type, text: str) -> tuple[Any, list[str]]:
    reader = NodeReader("s.yaml")
    value = _SchemaReader(reader).object(cls, compose(text, "s.yaml"), "")
    return value, reader.problems


def test_a_valid_mapping_becomes_the_dataclass_with_defaults() -> None:
    value, problems = read(Box, "mode: plain\nlabel: a\nleft: l\ntags: ['{service}']\n")
    assert problems == []
    assert value == Box(mode="plain", label="a", left="l", tags=("{service}",))


def test_every_problem_is_reported_with_its_position() -> None:
    value, problems = read(Box, "mode: fancy\nsize: 12\nlabel: a\nwait: 2 weeks\ncolour: red\ntags: ['{nope}']\n")
    assert value is BAD
    assert problems == [
        "s.yaml:5:1: colour: unknown key (allowed: label, left, mode, right, size, tags, wait)",
        "s.yaml:2:7: size: must be 1 to 9",
        "s.yaml:4:7: wait: '2 weeks' is not a duration like 30s, 10m or 1h30m",
        problems[3],  # the template's message lists the known fields
        "s.yaml:3:8: label: only allowed with mode plain",
        "s.yaml:1:1: <top>: needs left, right or both",
    ]
    assert problems[3].startswith("s.yaml:6:8: tags[0]: template '{nope}' uses unknown field '{nope}'")


def test_a_selector_requires_its_keys_and_a_bad_selector_is_one_problem() -> None:
    assert read(Box, "mode: plain\nright: r\n")[1] == ["s.yaml:1:1: label: required with mode plain"]
    assert read(Box, "mode: odd\nright: r\nlabel: a\n")[1] == ["s.yaml:1:7: mode: must be plain or fancy"]
    assert read(Box, "size: 3\n")[1][0] == "s.yaml:1:1: mode: required key is missing"


def test_unions_by_presence_and_by_tag() -> None:
    text = (
        "items:\n  - {file: a, red: {shade: dark}}\n  - {file: b, blue: c, deep: true}\n"
        "lock: {mode: plain, label: x, left: y}\n"
    )
    value, problems = read(Shelf, text)
    assert problems == []
    assert value == Shelf(items=(Red("dark", "a"), Blue("b", True, "c")), lock=Box("plain", label="x", left="y"))
    bad = "items:\n  - {file: a, red: {}, deep: true}\n  - {blue: c}\n  - {file: c}\nlock: {mode: fancy, left: y}\n"
    assert read(Shelf, bad)[1] == [
        "s.yaml:2:20: items[0].red.shade: required key is missing",
        "s.yaml:2:30: items[0].deep: not allowed with red: only blue makes it deep",
        "s.yaml:3:5: items[1].file: required key is missing",
        "s.yaml:4:5: items[2]: needs red or blue",
        "s.yaml:5:14: lock.mode: must be one of: plain",
    ]
    assert read(Shelf, "items: []\n")[1] == ["s.yaml:1:8: items: empty!"]


def test_every_model_field_has_its_schema() -> None:
    classes = [
        c for c in vars(m).values() if dataclasses.is_dataclass(c) and getattr(c, "__module__", "") == m.__name__
    ]
    assert len(classes) > 20
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if KEY not in f.metadata]
    assert missing == []
