"""Load and validate a ``GitOpsConfig`` file strictly: unknown keys, bad values and unknown template fields
are errors, all reported at once with file, line and key.

The reading is driven by the schema next to each model field (:mod:`.schema`); only the checks across entries
(duplicate names, shared clones, references to repositories) are written out here."""

from __future__ import annotations

import dataclasses
import typing
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.forge import forge_location
from keptn_gitops_service.config.nodes import NodeReader, compose
from keptn_gitops_service.config.schema import (
    Check,
    Group,
    Key,
    Presence,
    Tagged,
    default_of,
    has_default,
    is_required,
    key_of,
)
from keptn_gitops_service.config.templates import parse_template, template_fields
from keptn_gitops_service.errors import ConfigError, TemplateError

#: Where the rules live in the Helm chart's values, for the message about a configuration without rules.
CHART_RULES_KEY = m.CHART_RULES_KEY


class _Bad:
    """The value of a key with a problem (already reported)."""


BAD: Final = _Bad()
_WHOLE_NUMBER: Final = Check("[+-]?[0-9]+", "must be a whole number")


def load_config(path: str | Path) -> m.GitOpsConfig:
    """Read ``path``; raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.__class__.__name__}: {exc}"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> m.GitOpsConfig:
    """Validate config text (``source`` names it in error messages). Every problem is reported at once:
    references to undefined repositories too, also from rules with other problems."""
    reader = NodeReader(source)
    schema = _SchemaReader(reader)
    node = compose(text, source)
    top = reader.mapping(node, "", {"apiVersion": True, "kind": True} | _allowed(m.GitOpsConfig))
    if top is None:
        reader.raise_if_problems()
    assert top is not None
    for name, want in (("apiVersion", m.API_VERSION), ("kind", m.KIND)):
        got = reader.string(top[name], name) if name in top else None
        if got is not None and got != want:
            reader.problem(top[name], name, f"must be '{want}', got '{got}'")
    fields = {f.name: f for f in dataclasses.fields(m.GitOpsConfig)}
    repos: list[m.Repository] = []
    if "repositories" in top:
        found = schema.items(key_of(fields["repositories"]), m.Repository, top["repositories"], "repositories")
        repos = [r for r in found if r is not BAD]
    rules = schema.field(m.GitOpsConfig, fields["rules"], node, "", top)
    names = [r.name for r in repos]
    for i, name in enumerate(names):
        if name in names[:i]:
            reader.problem(top["repositories"], f"repositories[{i}].name", f"repository '{name}' is defined twice")
    _shared_clones(reader, top.get("repositories"), repos)
    _clusters(reader, top.get("rules"), rules)
    _forges(reader, top.get("repositories"), top.get("rules"), repos, rules)
    if "repositories" in top:
        declared = _declared_names(top["repositories"])
        for index, ref in _rule_repositories(top.get("rules")):
            if ref.value not in declared:
                reader.problem(ref, f"rules[{index}].repository", f"no repository named '{ref.value}'")
    reader.raise_if_problems()
    return m.GitOpsConfig(repositories=tuple(repos), rules=rules, source=source)


# ---------------------------------------------------------------------------------------------------------------
# Reading by the schema
# ---------------------------------------------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> Any:
    """``X | None`` -> ``X``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is not tuple else []
    return args[0] if len(args) == 1 else hint


def _allowed(cls: type) -> dict[str, bool]:
    """The keys of a mapping that holds ``cls`` (each to whether the mapping must have it)."""
    allowed: dict[str, bool] = {}
    for f in dataclasses.fields(cls):
        k = key_of(f)
        if k.yaml is None and isinstance(k.variants, Presence):
            allowed |= dict.fromkeys(k.variants.members, False)
        elif k.yaml is not None:
            allowed[k.yaml] = is_required(f) and k.when is None
    return allowed


def _scalar_tag(node: yaml.Node, tag: str) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == f"tag:yaml.org,2002:{tag}"


class _SchemaReader:
    """Reads model objects from YAML nodes by the schema of their fields, reporting every problem."""

    def __init__(self, reader: NodeReader) -> None:
        self.reader = reader

    def object(self, cls: type, node: yaml.Node, key: str, index: int | None = None) -> Any:
        entries = self.reader.mapping(node, key, _allowed(cls))
        return BAD if entries is None else self.build(cls, node, key, entries, index=index)

    def build(
        self,
        cls: type,
        node: yaml.Node,
        key: str,
        entries: dict[str, yaml.Node],
        *,
        missing: str | None = None,
        reported: frozenset[str] = frozenset(),
        index: int | None = None,
        inner: tuple[yaml.Node, dict[str, bool]] | None = None,
    ) -> Any:
        """``cls`` from the ``entries`` of its mapping (``missing``: the problem for a required key that is not
        there, except for the keys the mapping ``reported``; ``index``: the item's position in its list, for a field
        not read from the file; ``inner``: the mapping of the dotted keys and its keys, read when the first dotted
        field is, see :class:`Presence`)."""
        fields = dataclasses.fields(cls)
        values: dict[str, Any] = {}
        inner_read = False
        for f in fields:
            k = key_of(f)
            if inner is not None and not inner_read and "." in (k.yaml or ""):
                inner_read = True
                prefix = str(k.yaml).split(".")[0]
                found = self.reader.mapping(inner[0], _join(key, prefix), inner[1])
                if found is None:
                    return BAD  # reader.mapping reported it
                entries = entries | {f"{prefix}.{name}": child for name, child in found.items()}
            if k.yaml is None and not isinstance(k.variants, Presence):
                if not has_default(f):
                    values[f.name] = index  # the item's position in its list (a rule's index)
                continue
            absent = k.yaml and k.yaml not in entries and k.yaml not in reported and "." not in k.yaml
            if absent and missing and is_required(f) and not k.when:
                self.reader.problem(node, _join(key, str(k.yaml)), missing)
                values[f.name] = BAD
                continue
            values[f.name] = self.field(cls, f, node, key, entries)
        ok = self._conditions(cls, node, key, entries, values)
        ok = self._groups(cls, inner[0] if inner else node, key, entries, values) and ok
        if not ok or any(v is BAD for v in values.values()):
            return BAD
        return cls(**values)

    def field(self, cls: type, f: dataclasses.Field[Any], node: yaml.Node, key: str, entries: dict[str, Any]) -> Any:
        """The value of one field: read from ``entries``, else its default."""
        k = key_of(f)
        if isinstance(k.variants, Presence) and k.yaml is None:
            present = [p for p in k.variants.members if p in entries]
            if len(present) != 1:
                self.reader.problem(node, key, k.variants.missing)
                return BAD
            (chosen,) = present
            return self.object(k.variants.members[chosen], entries[chosen], _join(key, chosen))
        assert k.yaml is not None
        where = _join(key, k.yaml)
        child = entries.get(k.yaml)
        empty = child is None or _scalar_tag(child, "null") or _is_empty_list(child)
        if k.empty is not None and empty and (child is not None or not is_required(f)):
            self.reader.problem(child or node, where, k.empty)
            return BAD
        if child is None:
            return default_of(f) if has_default(f) else BAD
        return self.value(_hints(cls)[f.name], k, child, where)

    def value(self, hint: Any, k: Key, node: yaml.Node, key: str) -> Any:
        """A value of the type ``hint`` (``X | None`` reads as ``X``)."""
        hint = _optional(hint)
        if isinstance(k.variants, Tagged):
            return self.tagged(k.variants, node, key)
        if dataclasses.is_dataclass(hint):
            return self.object(typing.cast(type, hint), node, key)
        if hint is bool:
            if _scalar_tag(node, "bool"):
                return bool(yaml.safe_load(node.value))
            self.reader.problem(node, key, "must be true or false")
            return BAD
        if hint is int:
            number = str(node.value) if _scalar_tag(node, "int") else ""
            failed = next((c for c in k.checks or (_WHOLE_NUMBER,) if not (number and c.ok(number))), None)
            if failed is not None:
                self.reader.problem(node, key, failed.message)
                return BAD
            return int(number)
        if hint is timedelta:
            text = self.reader.string(node, key)
            if text is None:
                return BAD
            try:
                return parse_duration(text)
            except ValueError as exc:
                self.reader.problem(node, key, str(exc))
                return BAD
        if hint is str:
            return self.text(k, node, key)
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            if typing.get_origin(item) is tuple:  # a TemplateMap
                return self.template_map(node, key)
            items = self.items(k, item, node, key)
            return BAD if BAD in items else tuple(items)
        raise TypeError(f"the loader cannot read {hint!r} ({key}); teach _SchemaReader.value about it")

    def items(self, k: Key, item_hint: Any, node: yaml.Node, key: str) -> list[Any]:
        """The items of a list (``BAD`` for each item with a problem, and after them when it is no list)."""
        found = []
        for i, child in enumerate(self.reader.sequence(node, key) or []):
            where = f"{key}[{i}]"
            if isinstance(k.variants, Presence):
                found.append(self.presence(k.variants, child, where))
            elif dataclasses.is_dataclass(item_hint):
                found.append(self.object(typing.cast(type, item_hint), child, where, index=i))
            else:
                found.append(self.text(k, child, where))
        if not isinstance(node, yaml.SequenceNode):
            found.append(BAD)
        return found

    def text(self, k: Key, node: yaml.Node, key: str) -> Any:
        """A string or template, checked (a template with fields is checked once rendered)."""
        read = self.template if k.template else self.reader.string
        text = read(node, key, allow_empty=k.allow_empty)
        if text is None:
            return BAD
        if k.template and template_fields(text):
            return text
        failed = next((c for c in k.checks if not c.ok(text)), None)
        if failed is not None:
            self.reader.problem(node, key, failed.message)
            return BAD
        return text

    def template_map(self, node: yaml.Node, key: str) -> Any:
        """A mapping whose keys (paths, parameter names) and values are both templates; the user chooses the keys."""
        names = (
            [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            if isinstance(node, yaml.MappingNode)
            else []
        )
        entries = self.reader.mapping(node, key, dict.fromkeys(names, False))
        if entries is None:
            return BAD
        items: list[tuple[yaml.Node, yaml.Node]] = node.value
        if not items:
            self.reader.problem(node, key, "must not be empty")
            return BAD
        pairs = []
        for key_node, value_node in items:
            if entries.get(str(key_node.value)) is not value_node:
                continue  # a duplicate or non-string key: reader.mapping reported it
            where = f"{key}.{key_node.value}"
            pairs.append((self.template(key_node, where), self.template(value_node, where, allow_empty=True)))
        if len(pairs) != len(items) or any(k is None or v is None for k, v in pairs):
            return BAD
        return tuple((str(k), str(v)) for k, v in pairs)

    def template(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str | None:
        text = self.reader.string(node, key, allow_empty=allow_empty)
        if text is None:
            return None
        try:
            parse_template(text)
        except TemplateError as exc:
            self.reader.problem(node, key, str(exc))
            return None
        return text

    def tagged(self, union: Tagged, node: yaml.Node, key: str) -> Any:
        """A union member chosen by the value of a key (``type: token``)."""
        allowed = {union.tag: True}
        for cls in union.members.values():
            allowed |= dict.fromkeys(_allowed(cls), False)
        entries = self.reader.mapping(node, key, allowed)
        if entries is None or union.tag not in entries:
            return BAD
        tag = self.reader.string(entries[union.tag], _join(key, union.tag))
        if tag is None:
            return BAD
        if tag not in union.members:
            self.reader.problem(
                entries[union.tag], _join(key, union.tag), f"must be one of: {', '.join(union.members)}"
            )
            return BAD
        cls = union.members[tag]
        mine = _allowed(cls)
        extras = sorted(name for name in entries if name != union.tag and name not in mine)
        for name in extras:
            self.reader.problem(entries[name], _join(key, name), f"not allowed for {union.noun} '{tag}'")
        own = {name: child for name, child in entries.items() if name in mine}
        built = self.build(cls, node, key, own, missing=f"required for {union.noun} '{tag}'")
        return BAD if extras else built

    def presence(self, union: Presence, node: yaml.Node, key: str) -> Any:
        """A union member chosen by which of its keys is present (an update's ``kustomizeImage``)."""
        outer: dict[str, dict[type, bool]] = {}  # key next to the union's keys -> member -> required
        for cls in union.members.values():
            for f in dataclasses.fields(cls):
                name = key_of(f).yaml
                if name is not None and "." not in name:
                    outer.setdefault(name, {})[cls] = is_required(f)
        everyone = {
            name for name, owners in outer.items() if len(owners) == len(union.members) and all(owners.values())
        }
        allowed = {name: name in everyone for name in outer} | dict.fromkeys(union.members, False)
        entries = self.reader.mapping(node, key, allowed)
        if entries is None:
            return BAD
        present = [p for p in union.members if p in entries]
        if len(present) != 1:
            self.reader.problem(node, key, union.missing)
            return BAD
        (chosen,) = present
        cls = union.members[chosen]
        prefix = f"{chosen}."
        inner_fields = [f for f in dataclasses.fields(cls) if (key_of(f).yaml or "").startswith(prefix)]
        flat = {name: child for name, child in entries.items() if name in outer and cls in outer[name]}
        inner = None
        if inner_fields:
            inner = (entries[chosen], {str(key_of(f).yaml)[len(prefix) :]: is_required(f) for f in inner_fields})
        built = self.build(
            cls, node, key, flat, missing=f"required with {chosen}", reported=frozenset(everyone), inner=inner
        )
        ok = True
        for name in entries:
            if name in outer and cls not in outer[name]:
                note = next(
                    (
                        key_of(f).elsewhere
                        for c in outer[name]
                        for f in dataclasses.fields(c)
                        if key_of(f).yaml == name and key_of(f).elsewhere
                    ),
                    "",
                )
                owners = ", ".join(p for p, c in union.members.items() if c in outer[name])
                self.reader.problem(
                    entries[name],
                    _join(key, name),
                    f"not allowed with {chosen}" + (f": only {owners} {note}" if note else ""),
                )
                ok = False
        return built if ok else BAD

    def _conditions(
        self, cls: type, node: yaml.Node, key: str, entries: dict[str, yaml.Node], values: dict[str, Any]
    ) -> bool:
        """Keys that belong to some values of a selector key (:class:`When`)."""
        ok = True
        for f in dataclasses.fields(cls):
            k = key_of(f)
            if k.when is None or k.yaml is None:
                continue
            selected = _selector(cls, k.when.selector, values)
            if selected is None:
                continue  # the selector has a problem of its own
            if selected in k.when.values:
                if k.yaml not in entries and is_required(f):
                    self.reader.problem(node, _join(key, k.yaml), k.when.required.format(value=selected))
                    ok = False
            elif k.yaml in entries:
                self.reader.problem(entries[k.yaml], _join(key, k.yaml), k.when.forbidden.format(value=selected))
                ok = False
        return ok

    def _groups(
        self, cls: type, node: yaml.Node, key: str, entries: dict[str, yaml.Node], values: dict[str, Any]
    ) -> bool:
        """Keys of which at least (or exactly) one must be given (:class:`Group`)."""
        groups: dict[Group, list[str]] = {}
        for f in dataclasses.fields(cls):
            k = key_of(f)
            if k.group is not None and k.yaml is not None:
                groups.setdefault(k.group, []).append(k.yaml)
        ok = True
        for group, names in groups.items():
            if group.when is not None and _selector(cls, group.when.selector, values) not in group.when.values:
                continue
            given = sum(name in entries for name in names)
            if given == 0 or (group.exactly and given > 1):
                where = key if "." not in names[0] else _join(key, names[0].split(".")[0])
                self.reader.problem(node, where, group.message)
                ok = False
        return ok


def _selector(cls: type, yaml_key: str, values: dict[str, Any]) -> str | None:
    """The value of the selector key ``yaml_key`` of ``cls`` (its default when absent; ``None`` after a problem)."""
    for f in dataclasses.fields(cls):
        if key_of(f).yaml == yaml_key:
            value = values.get(f.name, BAD)
            return None if value is BAD else str(value)
    raise KeyError(yaml_key)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_empty_list(node: yaml.Node) -> bool:
    return isinstance(node, yaml.SequenceNode) and not node.value


# ---------------------------------------------------------------------------------------------------------------
# Checks across entries
# ---------------------------------------------------------------------------------------------------------------
def _shared_clones(reader: NodeReader, node: yaml.Node | None, repos: list[m.Repository]) -> None:
    """Entries with the same URL and branch share one working clone (and one push queue), so they must write
    with the same credentials and identity: otherwise the first entry's would be used for all of them."""
    items = node.value if isinstance(node, yaml.SequenceNode) else []
    first: dict[tuple[str, str], m.Repository] = {}
    for repo in repos:
        other = first.setdefault((repo.url, repo.branch), repo)
        if other is repo:
            continue
        differ = [
            what
            for what, mine, theirs in (
                ("auth", repo.auth, other.auth),
                ("author", repo.author, other.author),
                ("signing", repo.signing, other.signing),
                ("clone", repo.clone, other.clone),
            )
            if mine != theirs
        ]
        if differ:
            index = next(i for i, item in enumerate(items) if _entry_name(item) == repo.name)
            reader.problem(
                items[index],
                f"repositories[{index}]",
                f"'{repo.name}' has the same url and branch as '{other.name}' but a different "
                f"{', '.join(differ)}: entries for one branch share one working clone, so they must use the same "
                "auth, author, signing and clone options (merge them into one entry)",
            )


def _clusters(reader: NodeReader, node: yaml.Node | None, rules: Any) -> None:
    """What a multi-cluster wait's fields cannot say one by one: unique names, one way to reach each cluster, and an
    ``atLeast`` the clusters can meet."""
    for rule in rules if isinstance(rules, tuple) else ():
        target = rule.wait.target if isinstance(rule, m.Rule) else None
        if not isinstance(target, m.ClustersWait) or node is None:
            continue
        where = f"rules[{rule.index}].wait.clusters"
        names = [cluster.name for cluster in target.targets]
        for i, cluster in enumerate(target.targets):
            if cluster.name in names[:i]:
                reader.problem(node, f"{where}.targets[{i}].name", f"cluster '{cluster.name}' is listed twice")
            if cluster.in_cluster is not None and (
                not cluster.in_cluster or cluster.kubeconfig is not None or cluster.context is not None
            ):
                reader.problem(
                    node, f"{where}.targets[{i}].inCluster", "must be true and not given with kubeconfig or context"
                )
        if target.at_least is not None and target.at_least > len(target.targets):
            reader.problem(
                node, f"{where}.atLeast", f"is {target.at_least}, but only {len(target.targets)} clusters are listed"
            )


def _forges(
    reader: NodeReader, node: yaml.Node | None, rules_node: yaml.Node | None, repos: list[m.Repository], rules: Any
) -> None:
    """A forge must be locatable (type, API, path), and a rule in pull-request mode needs its repository's forge."""
    located: dict[str, bool] = {}
    for index, repo in enumerate(repos):
        if repo.forge is None or node is None:
            continue
        try:
            forge_location(repo)
            located[repo.name] = True
        except ValueError as exc:
            reader.problem(node, f"repositories[{index}].forge", str(exc))
            located[repo.name] = False
    for rule in rules if isinstance(rules, tuple) else ():
        pull_request = isinstance(rule, m.Rule) and rule.mode == "pullRequest"
        if pull_request and rule.repository not in located and any(r.name == rule.repository for r in repos):
            reader.problem(
                rules_node,
                f"rules[{rule.index}].mode",
                f"is pullRequest, but repository '{rule.repository}' has no forge (repositories[].forge)",
            )


def _entry_name(node: yaml.Node) -> str | None:
    for key, value in node.value if isinstance(node, yaml.MappingNode) else []:
        if getattr(key, "value", None) == "name" and isinstance(value, yaml.ScalarNode):
            return str(value.value)
    return None


def _rule_repositories(node: yaml.Node | None) -> list[tuple[int, yaml.ScalarNode]]:
    """``(index, repository value node)`` of every rule as written, even of rules with other problems."""
    found = []
    for index, item in enumerate(node.value if isinstance(node, yaml.SequenceNode) else []):
        for key, value in item.value if isinstance(item, yaml.MappingNode) else []:
            if getattr(key, "value", None) == "repository" and isinstance(value, yaml.ScalarNode) and value.value:
                found.append((index, value))
    return found


def _declared_names(node: yaml.Node) -> set[str]:
    """Repository names as written, even of entries with other problems (no follow-on errors)."""
    return {name for item in (node.value if isinstance(node, yaml.SequenceNode) else []) if (name := _entry_name(item))}
