"""Strict reading of YAML nodes with positions; every problem becomes ``file:line:col: key: message``."""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from keptn_gitops_service.errors import ConfigError


class NodeReader:
    """Reads composed YAML nodes, recording problems instead of stopping at the first one."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        where = f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}" if node else self.source
        self.problems.append(f"{where}: {key or '<top>'}: {message}")

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def mapping(self, node: yaml.Node, key: str, allowed: Mapping[str, bool]) -> dict[str, yaml.Node] | None:
        """The entries of a mapping node; ``allowed`` maps each known key to whether it is required."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, f"must be a mapping, got {_describe(node)}")
            return None
        entries: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = f"{key}.{name}" if key else str(name)
            if name is None:
                self.problem(key_node, key, "keys must be strings")
            elif name in entries:
                self.problem(key_node, child, "duplicate key")
            elif name not in allowed:
                self.problem(key_node, child, f"unknown key (allowed: {', '.join(sorted(allowed))})")
            else:
                entries[name] = value_node
        for name, required in allowed.items():
            if required and name not in entries:
                self.problem(node, f"{key}.{name}" if key else name, "required key is missing")
        return entries

    def string(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.problem(node, key, f"must be a string, got {_describe(node)}")
            return None
        if not node.value and not allow_empty:
            self.problem(node, key, "must not be empty")
            return None
        if any(ch in node.value for ch in "\r\n\0"):
            self.problem(node, key, "must be a single line")
            return None
        return str(node.value)

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, key, f"must be a list, got {_describe(node)}")
            return None
        return list(node.value)

    def strings(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        items = self.sequence(node, key) or []
        values = (self.string(item, f"{key}[{i}]") for i, item in enumerate(items))
        return tuple(v for v in values if v is not None)


def compose(text: str, source: str) -> yaml.Node:
    """Parse one YAML document into nodes, turning syntax errors into a positioned :class:`ConfigError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: <yaml>: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: <yaml>: {exc}"]) from None
    if node is None:
        raise ConfigError([f"{source}: <top>: the file is empty"])
    return node


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing (null)"
    return f"'{node.value}'"
