"""Checks shared by the edit-strategy tests: only the target scalars' bytes may change, and the data must be the
old data with just the new values (PyYAML's own marks are the oracle, independent of the module under test); and
the YAML inputs the limit tests share."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

Keys = tuple[str | int, ...]


def read(root: Path, name: str) -> str:
    return (root / "gitops" / name).read_bytes().decode("utf-8")


def child(node: yaml.Node, key: str | int) -> yaml.Node:
    if isinstance(key, int):
        item: yaml.Node = node.value[key]
        return item
    found: yaml.Node = next(value for k, value in node.value if k.value == key)
    return found


def scalar_span(text: str, document: int, keys: Keys) -> tuple[int, int]:
    """[start, end) of a scalar, from PyYAML's own marks (independent of the module under test)."""
    node = list(yaml.compose_all(text, Loader=yaml.SafeLoader))[document]
    for key in keys:
        node = child(node, key)
    assert isinstance(node, yaml.ScalarNode)
    return node.start_mark.index, node.end_mark.index


def assert_only_targets_changed(old: str, new: str, targets: dict[tuple[int, Keys], Any]) -> None:
    """Bytes outside the target scalars are identical, and the data is the old data with the new values."""
    spans = sorted(scalar_span(old, document, keys) for document, keys in targets)
    pieces = [old[: spans[0][0]]]
    pieces += [old[end:start] for (_, end), (start, _) in itertools.pairwise(spans)]
    pieces.append(old[spans[-1][1] :])
    pattern = "([^\r\n]*)".join(re.escape(piece) for piece in pieces)
    assert re.fullmatch(pattern, new, re.DOTALL), "bytes outside the target scalars changed"
    expected = list(yaml.safe_load_all(old))
    for (document, keys), value in targets.items():
        parent = expected[document]
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = value
    assert list(yaml.safe_load_all(new)) == expected


TAIL = "image:\n  tag: v1\n"


def nested_aliases(levels: int = 8, fanout: int = 9) -> str:
    """The issue's file: ``a0: &a0 [x]``, ``a1: &a1 [*a0, ...x9]``, ... (expands to ``fanout ** levels`` nodes)."""
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]")
    return "\n".join(lines) + "\n" + TAIL
