"""Load and validate a ``GitOpsConfig`` file strictly: unknown keys, bad values and unknown template fields
are errors, all reported at once with file, line and key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.nodes import NodeReader, compose
from keptn_gitops_service.config.templates import parse_template, template_fields
from keptn_gitops_service.errors import ConfigError, TemplateError

_REPO_URL = re.compile(r"^(https://|http://|ssh://|file://|git@[^:\s]+:)\S+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLONE_FILTER = re.compile(r"blob:none|tree:0|blob:limit=[0-9]+[kmg]?")
_WAITS_LATER: tuple[str, ...] = ()
_HTTP_URL = re.compile(r"^https?://[^\s/@]+(/\S*)?$")
_ARGO_REST_ONLY = ("server", "tokenEnv", "tokenFile", "caFile", "project")
_T = TypeVar("_T")


#: Where the rules live in the Helm chart's values, for the message about a configuration without rules.
CHART_RULES_KEY = "config.rules"
_NO_RULES = (
    "at least one rule is needed: without rules the service owns no deployment "
    f"(with the Helm chart, set the values key {CHART_RULES_KEY})"
)


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
    allowed = {"apiVersion": True, "kind": True, "repositories": True, "rules": False}  # no rules: see below
    top = reader.mapping(compose(text, source), "", allowed)
    if top is None:
        reader.raise_if_problems()
    assert top is not None
    if "apiVersion" in top:
        _expect(reader, top["apiVersion"], "apiVersion", m.API_VERSION)
    if "kind" in top:
        _expect(reader, top["kind"], "kind", m.KIND)
    repos = _list(reader, top["repositories"], "repositories", _repository) if "repositories" in top else []
    rules_node = top.get("rules")
    if (
        rules_node is None
        or _is_null(rules_node)
        or (isinstance(rules_node, yaml.SequenceNode) and not rules_node.value)
    ):
        reader.problem(rules_node, "rules", _NO_RULES)
        rules: list[m.Rule] = []
    else:
        rules = _list(reader, rules_node, "rules", _rule)
    names = [r.name for r in repos]
    for i, name in enumerate(names):
        if name in names[:i]:
            reader.problem(top["repositories"], f"repositories[{i}].name", f"repository '{name}' is defined twice")
    _shared_clones(reader, top.get("repositories"), repos)
    if "repositories" in top:
        declared = _declared_names(top["repositories"])
        for index, node in _rule_repositories(rules_node):
            if node.value not in declared:
                reader.problem(node, f"rules[{index}].repository", f"no repository named '{node.value}'")
    reader.raise_if_problems()
    return m.GitOpsConfig(repositories=tuple(repos), rules=tuple(rules), source=source)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _is_empty_list(node: yaml.Node) -> bool:
    return isinstance(node, yaml.SequenceNode) and not node.value


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


def _expect(reader: NodeReader, node: yaml.Node, key: str, want: str) -> None:
    got = reader.string(node, key)
    if got is not None and got != want:
        reader.problem(node, key, f"must be '{want}', got '{got}'")


def _list(
    reader: NodeReader,
    node: yaml.Node,
    key: str,
    item: Callable[[NodeReader, yaml.Node, str, int], _T | None],
) -> list[_T]:
    items = reader.sequence(node, key) or []
    parsed = (item(reader, child, f"{key}[{i}]", i) for i, child in enumerate(items))
    return [p for p in parsed if p is not None]


def _repository(reader: NodeReader, node: yaml.Node, key: str, _: int) -> m.Repository | None:
    allowed = {"name": True, "url": True, "branch": False, "auth": False, "author": False}
    allowed |= {"clone": False, "signing": False}
    entries = reader.mapping(node, key, allowed)
    if entries is None:
        return None
    name = reader.string(entries["name"], f"{key}.name") if "name" in entries else None
    url = reader.string(entries["url"], f"{key}.url") if "url" in entries else None
    if url is not None and not _REPO_URL.match(url):
        reader.problem(entries["url"], f"{key}.url", "must be an https://, ssh://, git@host:path or file:// URL")
        url = None
    if url is not None and re.match(r"^https?://[^/]*@", url):
        reader.problem(entries["url"], f"{key}.url", "must not carry credentials; use auth.tokenEnv")
        url = None
    branch = reader.string(entries["branch"], f"{key}.branch") if "branch" in entries else "main"
    auth = _auth(reader, entries["auth"], f"{key}.auth") if "auth" in entries else m.NoAuth()
    author = _author(reader, entries["author"], f"{key}.author") if "author" in entries else m.Author()
    clone = _clone(reader, entries["clone"], f"{key}.clone") if "clone" in entries else m.CloneOptions()
    signing = _signing(reader, entries["signing"], f"{key}.signing") if "signing" in entries else None
    if name is None or url is None or branch is None or auth is None or author is None or clone is None:
        return None
    if "signing" in entries and signing is None:
        return None
    return m.Repository(name=name, url=url, branch=branch, auth=auth, author=author, clone=clone, signing=signing)


def _clone(reader: NodeReader, node: yaml.Node, key: str) -> m.CloneOptions | None:
    entries = reader.mapping(node, key, {"depth": False, "filter": False})
    if entries is None:
        return None
    depth = None
    if "depth" in entries:
        node = entries["depth"]
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if not re.fullmatch(r"[1-9][0-9]{0,8}", str(text)):
            reader.problem(node, f"{key}.depth", "must be a positive whole number of commits")
            return None
        depth = int(text)
    clone_filter = reader.string(entries["filter"], f"{key}.filter") if "filter" in entries else None
    if clone_filter is not None and not _CLONE_FILTER.fullmatch(clone_filter):
        reader.problem(entries["filter"], f"{key}.filter", "must be blob:none, tree:0 or blob:limit=<n>[k|m|g]")
        return None
    if "filter" in entries and clone_filter is None:
        return None
    return m.CloneOptions(depth=depth, filter=clone_filter)


def _signing(reader: NodeReader, node: yaml.Node, key: str) -> m.Signing | None:
    allowed = {"format": True, "keyFile": False, "keyId": False, "gnupgHome": False}
    entries = reader.mapping(node, key, allowed)
    if entries is None or "format" not in entries:
        return None
    kind = reader.string(entries["format"], f"{key}.format")
    fields = {k: reader.string(v, f"{key}.{k}") for k, v in entries.items() if k != "format"}
    needs = {"ssh": {"keyFile"}, "openpgp": {"keyId", "gnupgHome"}}
    if kind not in needs:
        if kind is not None:
            reader.problem(entries["format"], f"{key}.format", "must be one of: ssh, openpgp")
        return None
    for missing in sorted(needs[kind] - fields.keys()):
        reader.problem(node, f"{key}.{missing}", f"required for signing format '{kind}'")
    for extra in sorted(fields.keys() - needs[kind]):
        reader.problem(entries[extra], f"{key}.{extra}", f"not allowed for signing format '{kind}'")
    if any(v is None for v in fields.values()) or fields.keys() != needs[kind]:
        return None
    return m.Signing(
        format=kind, key_file=fields.get("keyFile"), key_id=fields.get("keyId"), gnupg_home=fields.get("gnupgHome")
    )


def _auth(reader: NodeReader, node: yaml.Node, key: str) -> m.Auth | None:
    allowed = {
        "type": True,
        "tokenEnv": False,
        "username": False,
        "privateKeyFile": False,
        "knownHostsFile": False,
    }
    entries = reader.mapping(node, key, allowed)
    if entries is None or "type" not in entries:
        return None
    kind = reader.string(entries["type"], f"{key}.type")
    fields = {k: reader.string(v, f"{key}.{k}") for k, v in entries.items() if k != "type"}
    needs = {"none": set(), "token": {"tokenEnv"}, "ssh": {"privateKeyFile"}}
    extras = {"none": set(), "token": {"tokenEnv", "username"}, "ssh": {"privateKeyFile", "knownHostsFile"}}
    if kind not in needs:
        reader.problem(entries["type"], f"{key}.type", "must be one of: none, token, ssh")
        return None
    for missing in sorted(needs[kind] - fields.keys()):
        reader.problem(node, f"{key}.{missing}", f"required for auth type '{kind}'")
    for extra in sorted(fields.keys() - extras[kind]):
        reader.problem(entries[extra], f"{key}.{extra}", f"not allowed for auth type '{kind}'")
    if any(v is None for v in fields.values()) or needs[kind] - fields.keys() or fields.keys() - extras[kind]:
        return None
    if kind == "token":
        env = str(fields["tokenEnv"])
        if not _ENV_NAME.match(env):
            reader.problem(entries["tokenEnv"], f"{key}.tokenEnv", "must be an environment variable name")
            return None
        return m.TokenAuth(token_env=env, username=fields.get("username") or "x-access-token")
    if kind == "ssh":
        return m.SshAuth(private_key_file=str(fields["privateKeyFile"]), known_hosts_file=fields.get("knownHostsFile"))
    return m.NoAuth()


def _author(reader: NodeReader, node: yaml.Node, key: str) -> m.Author | None:
    entries = reader.mapping(node, key, {"name": True, "email": True})
    if entries is None or len(entries) != 2:
        return None
    name, email = (
        reader.string(entries["name"], f"{key}.name"),
        reader.string(entries["email"], f"{key}.email"),
    )
    if email is not None and ("@" not in email or "<" in email or ">" in email):
        reader.problem(entries["email"], f"{key}.email", "must be an e-mail address")
        return None
    return m.Author(name=name, email=email) if name and email else None


def _rule(reader: NodeReader, node: yaml.Node, key: str, index: int) -> m.Rule | None:
    allowed = {"match": True, "repository": True, "updates": True, "wait": False, "deploymentURIs": False}
    entries = reader.mapping(node, key, allowed)
    if entries is None:
        return None
    match = _match(reader, entries["match"], f"{key}.match") if "match" in entries else None
    repo = reader.string(entries["repository"], f"{key}.repository") if "repository" in entries else None
    updates: list[m.Update] = (
        _list(reader, entries["updates"], f"{key}.updates", _update) if "updates" in entries else []
    )
    if "updates" in entries and isinstance(entries["updates"], yaml.SequenceNode) and not entries["updates"].value:
        reader.problem(entries["updates"], f"{key}.updates", "at least one update is needed")
    wait = _wait(reader, entries["wait"], f"{key}.wait") if "wait" in entries else m.Wait()
    uris = _uris(reader, entries["deploymentURIs"], f"{key}.deploymentURIs") if "deploymentURIs" in entries else None
    if match is None or repo is None or not updates or wait is None:
        return None
    return m.Rule(index=index, match=match, repository=repo, updates=tuple(updates), wait=wait, deployment_uris=uris)


def _match(reader: NodeReader, node: yaml.Node, key: str) -> m.Match | None:
    entries = reader.mapping(node, key, {"project": False, "stage": False, "service": False})
    if entries is None:
        return None
    globs = {k: reader.string(v, f"{key}.{k}") for k, v in entries.items()}
    if any(v is None for v in globs.values()):
        return None
    return m.Match(**{k: str(v) for k, v in globs.items()})


_STRATEGIES = (
    "kustomizeImage",
    "yamlPath",
    "marker",
    "containerImage",
    "helmRelease",
    "argocdApplication",
    "argocdSourceFile",
)
_POLICY = re.compile(r"[^:\s]+:[^:\s]+")  # a policy with template fields is checked once rendered


_MOVE_REPOSITORY = ("kustomizeImage", "marker", "argocdSourceFile")  # the strategies that can change a repository


def _update(reader: NodeReader, node: yaml.Node, key: str, _: int) -> m.Update | None:
    allowed = {"file": True, "value": False, "allowRepositoryChange": False, **dict.fromkeys(_STRATEGIES, False)}
    entries = reader.mapping(node, key, allowed)
    if entries is None or "file" not in entries:
        return None
    file = _template(reader, entries["file"], f"{key}.file")
    strategies = [k for k in _STRATEGIES if k in entries]
    if len(strategies) != 1:
        names = ", ".join(_STRATEGIES[:-1]) + f" or {_STRATEGIES[-1]}"
        reader.problem(node, key, f"needs exactly one edit strategy: {names}")
        return None
    (strategy,) = strategies
    allow = _allow_repository_change(reader, entries, key, strategy)
    if strategy == "yamlPath":
        return _yaml_path(reader, node, entries, key, file) if allow is not None else None
    update = _STRATEGY_READERS[strategy](reader, entries[strategy], f"{key}.{strategy}", file)
    if "value" in entries:
        reader.problem(entries["value"], f"{key}.value", f"not allowed with {strategy}")
        return None
    if update is None or allow is None:
        return None
    if isinstance(update, m.KustomizeImageUpdate | m.MarkerUpdate | m.ArgoCDSourceFileUpdate):
        return dataclasses.replace(update, allow_repository_change=allow)
    return update


def _allow_repository_change(reader: NodeReader, entries: dict[str, yaml.Node], key: str, strategy: str) -> bool | None:
    """The update's ``allowRepositoryChange`` (false when absent; ``None`` after a problem)."""
    if "allowRepositoryChange" not in entries:
        return False
    where = f"{key}.allowRepositoryChange"
    if strategy not in _MOVE_REPOSITORY:
        names = ", ".join(_MOVE_REPOSITORY)
        reader.problem(
            entries["allowRepositoryChange"],
            where,
            f"not allowed with {strategy}: only {names} can change an image repository",
        )
        return None
    return _flag(reader, entries["allowRepositoryChange"], where)


def _yaml_path(
    reader: NodeReader, node: yaml.Node, entries: dict[str, yaml.Node], key: str, file: str | None
) -> m.YamlPathUpdate | None:
    path = _template(reader, entries["yamlPath"], f"{key}.yamlPath")
    if "value" not in entries:
        reader.problem(node, f"{key}.value", "required with yamlPath")
        return None
    value = _template(reader, entries["value"], f"{key}.value", allow_empty=True)
    if file is None or path is None or value is None:
        return None
    return m.YamlPathUpdate(file=file, yaml_path=path, value=value)


def _kustomize_image(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"name": True, "image": False, "create": False})
    if entries is None or "name" not in entries:
        return None
    create = _flag(reader, entries["create"], f"{key}.create") if "create" in entries else False
    fields = _templates(reader, {k: v for k, v in entries.items() if k != "create"}, key)
    if file is None or create is None or None in fields.values():
        return None
    image = fields.get("image") or "{image}"
    return m.KustomizeImageUpdate(file=file, name=str(fields["name"]), image=image, create=create)


def _marker(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"image": False, "policy": False})
    if entries is None:
        return None
    fields = _templates(reader, entries, key)
    policy = fields.get("policy")
    if policy is not None and not template_fields(policy) and not _POLICY.fullmatch(policy):
        reader.problem(entries["policy"], f"{key}.policy", "must have the form '<namespace>:<name>'")
        return None
    if file is None or None in fields.values():
        return None
    return m.MarkerUpdate(file=file, image=fields.get("image") or "{image}", policy=policy)


def _container_image(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"image": False})
    if entries is None:
        return None
    fields = _templates(reader, entries, key)
    if file is None or None in fields.values():
        return None
    return m.ContainerImageUpdate(file=file, image=fields.get("image") or "{image}")


def _helm_release(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"name": False, "chartVersion": False, "values": False})
    if entries is None:
        return None
    fields = _templates(reader, {k: v for k, v in entries.items() if k != "values"}, key)
    values = _template_map(reader, entries["values"], f"{key}.values") if "values" in entries else ()
    if not entries.keys() & {"chartVersion", "values"}:
        reader.problem(node, key, "needs chartVersion, values or both")
        return None
    if file is None or values is None or None in fields.values():
        return None
    return m.HelmReleaseUpdate(
        file=file, name=fields.get("name"), chart_version=fields.get("chartVersion"), values=values
    )


def _argocd_application(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"source": False, "parameters": False, "values": False})
    if entries is None:
        return None
    source = _source_index(reader, entries["source"], f"{key}.source") if "source" in entries else None
    parameters = _template_map(reader, entries["parameters"], f"{key}.parameters") if "parameters" in entries else ()
    values = _template_map(reader, entries["values"], f"{key}.values") if "values" in entries else ()
    if not entries.keys() & {"parameters", "values"}:
        reader.problem(node, key, "needs parameters, values or both")
        return None
    if file is None or parameters is None or values is None or ("source" in entries and source is None):
        return None
    return m.ArgoCDApplicationUpdate(file=file, source=source, parameters=parameters, values=values)


def _argocd_source_file(reader: NodeReader, node: yaml.Node, key: str, file: str | None) -> m.Update | None:
    entries = reader.mapping(node, key, {"kustomizeImage": False, "helmParameters": False, "create": False})
    if entries is None:
        return None
    if len(entries.keys() - {"create"}) != 1:
        reader.problem(node, key, "needs exactly one of: kustomizeImage, helmParameters")
        return None
    create = _flag(reader, entries["create"], f"{key}.create") if "create" in entries else False
    if create is None:
        return None
    if "kustomizeImage" in entries:
        image = _template(reader, entries["kustomizeImage"], f"{key}.kustomizeImage")
        return m.ArgoCDSourceFileUpdate(file=file, kustomize_image=image, create=create) if file and image else None
    parameters = _template_map(reader, entries["helmParameters"], f"{key}.helmParameters")
    return (
        m.ArgoCDSourceFileUpdate(file=file, helm_parameters=parameters, create=create) if file and parameters else None
    )


_STRATEGY_READERS: dict[str, Callable[[NodeReader, yaml.Node, str, str | None], m.Update | None]] = {
    "kustomizeImage": _kustomize_image,
    "marker": _marker,
    "containerImage": _container_image,
    "helmRelease": _helm_release,
    "argocdApplication": _argocd_application,
    "argocdSourceFile": _argocd_source_file,
}


def _templates(reader: NodeReader, entries: dict[str, yaml.Node], key: str) -> dict[str, str | None]:
    """Every entry read as a template (``None`` for one with a problem)."""
    return {name: _template(reader, child, f"{key}.{name}") for name, child in entries.items()}


def _template_map(reader: NodeReader, node: yaml.Node, key: str) -> m.TemplateMap | None:
    """A mapping whose keys (paths, parameter names) and values are both templates; the user chooses the keys."""
    names = (
        [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)] if isinstance(node, yaml.MappingNode) else []
    )
    entries = reader.mapping(node, key, dict.fromkeys(names, False))
    if entries is None:
        return None
    items: list[tuple[yaml.Node, yaml.Node]] = node.value
    if not items:
        reader.problem(node, key, "must not be empty")
        return None
    pairs = []
    for key_node, value_node in items:
        if entries.get(str(key_node.value)) is not value_node:
            continue  # a duplicate or non-string key: reader.mapping reported it
        where = f"{key}.{key_node.value}"
        pairs.append((_template(reader, key_node, where), _template(reader, value_node, where, allow_empty=True)))
    if len(pairs) != len(items) or any(k is None or v is None for k, v in pairs):
        return None
    return tuple((str(k), str(v)) for k, v in pairs)


def _source_index(reader: NodeReader, node: yaml.Node, key: str) -> int | None:
    if not (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:int"
        and re.fullmatch("0|[1-9][0-9]*", node.value)
    ):
        reader.problem(node, key, "must be the index of a source in spec.sources: 0, 1, …")
        return None
    return int(node.value)


def _template(reader: NodeReader, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str | None:
    text = reader.string(node, key, allow_empty=allow_empty)
    if text is None:
        return None
    try:
        parse_template(text)
    except TemplateError as exc:
        reader.problem(node, key, str(exc))
        return None
    return text


def _wait(reader: NodeReader, node: yaml.Node, key: str) -> m.Wait | None:
    allowed = {"flux": False, "argocd": False, "none": False, "timeout": False, **{k: False for k in _WAITS_LATER}}
    entries = reader.mapping(node, key, allowed)
    if entries is None:
        return None
    timeout = m.DEFAULT_WAIT_TIMEOUT
    if "timeout" in entries:
        text = reader.string(entries["timeout"], f"{key}.timeout")
        try:
            timeout = parse_duration(text) if text is not None else timeout
        except ValueError as exc:
            reader.problem(entries["timeout"], f"{key}.timeout", str(exc))
            return None
    targets = [k for k in entries if k != "timeout"]
    if len(targets) != 1:
        reader.problem(node, key, "needs exactly one of: argocd, flux, none")
        return None
    if targets[0] in _WAITS_LATER:
        reader.problem(entries[targets[0]], f"{key}.{targets[0]}", "this wait is not available in this version")
        return None
    target: m.WaitTarget | None
    if targets[0] == "none":
        target = m.NoWait() if reader.mapping(entries["none"], f"{key}.none", {}) is not None else None
    elif targets[0] == "argocd":
        target = _argocd(reader, entries["argocd"], f"{key}.argocd")
    else:
        target = _flux(reader, entries["flux"], f"{key}.flux")
    return None if target is None else m.Wait(target=target, timeout=timeout)


def _flux(reader: NodeReader, node: yaml.Node, key: str) -> m.FluxWait | None:
    allowed = {"kind": True, "name": True, "namespace": True, "kustomization": False, "chartVersion": False}
    allowed["mayAppear"] = False
    flux = reader.mapping(node, key, allowed)
    if flux is None or not {"kind", "name", "namespace"} <= flux.keys():
        return None
    kind = reader.string(flux["kind"], f"{key}.kind")
    if kind is not None and kind not in ("Kustomization", "HelmRelease"):
        reader.problem(flux["kind"], f"{key}.kind", "must be Kustomization or HelmRelease")
        return None
    name = _template(reader, flux["name"], f"{key}.name")
    namespace = _template(reader, flux["namespace"], f"{key}.namespace")
    if kind == "Kustomization":
        for extra in ("kustomization", "chartVersion"):
            if extra in flux:
                reader.problem(flux[extra], f"{key}.{extra}", "only allowed with kind HelmRelease")
                return None
    parent = None
    if kind == "HelmRelease":
        if "kustomization" not in flux:
            reader.problem(
                node, f"{key}.kustomization", "required with kind HelmRelease: the Kustomization that applies it"
            )
            return None
        parent = _kustomization(reader, flux["kustomization"], f"{key}.kustomization")
    chart = _template(reader, flux["chartVersion"], f"{key}.chartVersion") if "chartVersion" in flux else None
    may_appear = _flag(reader, flux["mayAppear"], f"{key}.mayAppear") if "mayAppear" in flux else False
    if kind is None or name is None or namespace is None or (kind == "HelmRelease" and parent is None):
        return None
    if ("chartVersion" in flux and chart is None) or may_appear is None:
        return None
    return m.FluxWait(
        kind=kind, name=name, namespace=namespace, kustomization=parent, chart_version=chart, may_appear=may_appear
    )


def _kustomization(reader: NodeReader, node: yaml.Node, key: str) -> m.KustomizationRef | None:
    entries = reader.mapping(node, key, {"name": True, "namespace": True})
    if entries is None or len(entries) != 2:
        return None
    name = _template(reader, entries["name"], f"{key}.name")
    namespace = _template(reader, entries["namespace"], f"{key}.namespace")
    return m.KustomizationRef(name=name, namespace=namespace) if name and namespace else None


def _argocd(reader: NodeReader, node: yaml.Node, key: str) -> m.ArgoWait | None:
    allowed = {
        "application": True,
        "namespace": False,
        "api": False,
        "refresh": False,
        "sync": False,
        "sourceIndex": False,
        "degradedGrace": False,
        **{k: False for k in _ARGO_REST_ONLY},
    }
    entries = reader.mapping(node, key, allowed)
    if entries is None or "application" not in entries:
        return None
    read = {name: _template if name in ("application", "namespace", "project") else _string for name in entries}
    text = {
        name: read[name](reader, child, f"{key}.{name}")
        for name, child in entries.items()
        if name not in ("refresh", "sync", "sourceIndex")
    }
    refresh = _flag(reader, entries["refresh"], f"{key}.refresh") if "refresh" in entries else True
    sync = _flag(reader, entries["sync"], f"{key}.sync") if "sync" in entries else False
    index = _index(reader, entries["sourceIndex"], f"{key}.sourceIndex") if "sourceIndex" in entries else None
    if any(v is None for v in text.values()) or refresh is None or sync is None:
        return None
    if "sourceIndex" in entries and index is None:
        return None
    api = text.get("api", "kubernetes")
    if not _argocd_access_ok(reader, node, key, entries, text):
        return None
    grace = m.ArgoWait.degraded_grace
    if "degradedGrace" in text:
        try:
            grace = parse_duration(str(text["degradedGrace"]))
        except ValueError as exc:
            reader.problem(entries["degradedGrace"], f"{key}.degradedGrace", str(exc))
            return None
    return m.ArgoWait(
        application=str(text["application"]),
        namespace=text.get("namespace"),
        api=str(api),
        server=text.get("server"),
        token_env=text.get("tokenEnv"),
        token_file=text.get("tokenFile"),
        ca_file=text.get("caFile"),
        project=text.get("project"),
        refresh=refresh,
        sync=sync,
        source_index=index,
        degraded_grace=grace,
    )


def _argocd_access_ok(
    reader: NodeReader, node: yaml.Node, key: str, entries: dict[str, yaml.Node], text: dict[str, str | None]
) -> bool:
    """``api: kubernetes`` takes no REST settings; ``api: rest`` needs a server URL and one token source."""
    api = text.get("api", "kubernetes")
    if api not in ("kubernetes", "rest"):
        reader.problem(entries["api"], f"{key}.api", "must be kubernetes or rest")
        return False
    if api == "kubernetes":
        extras = [k for k in _ARGO_REST_ONLY if k in entries]
        for extra in extras:
            reader.problem(entries[extra], f"{key}.{extra}", "only allowed with api: rest")
        return not extras
    if "server" not in entries:
        reader.problem(node, f"{key}.server", "required with api: rest")
        return False
    if not _HTTP_URL.match(str(text["server"])):
        reader.problem(entries["server"], f"{key}.server", "must be an https:// or http:// URL without credentials")
        return False
    if ("tokenEnv" in entries) == ("tokenFile" in entries):
        reader.problem(node, key, "api: rest needs exactly one of tokenEnv, tokenFile")
        return False
    if "tokenEnv" in entries and not _ENV_NAME.match(str(text["tokenEnv"])):
        reader.problem(entries["tokenEnv"], f"{key}.tokenEnv", "must be an environment variable name")
        return False
    return True


def _string(reader: NodeReader, node: yaml.Node, key: str) -> str | None:
    return reader.string(node, key)


def _flag(reader: NodeReader, node: yaml.Node, key: str) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
        return bool(yaml.safe_load(node.value))
    reader.problem(node, key, "must be true or false")
    return None


def _index(reader: NodeReader, node: yaml.Node, key: str) -> int | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int" and node.value.isdigit():
        return int(node.value)
    reader.problem(node, key, "must be a whole number, 0 or more (0 is the first of spec.sources)")
    return None


def _uris(reader: NodeReader, node: yaml.Node, key: str) -> m.DeploymentURIs | None:
    entries = reader.mapping(node, key, {"local": False, "public": False})
    if entries is None:
        return None
    lists = {}
    for name, child in entries.items():
        items = reader.sequence(child, f"{key}.{name}") or []
        lists[name] = tuple(
            t for i, item in enumerate(items) if (t := _template(reader, item, f"{key}.{name}[{i}]")) is not None
        )
    return m.DeploymentURIs(local=lists.get("local", ()), public=lists.get("public", ()))
