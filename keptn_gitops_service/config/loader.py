"""Load and validate a ``GitOpsConfig`` file strictly: unknown keys, bad values and unknown template fields
are errors, all reported at once with file, line and key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.nodes import NodeReader, compose
from keptn_gitops_service.config.templates import parse_template
from keptn_gitops_service.errors import ConfigError, TemplateError

_REPO_URL = re.compile(r"^(https://|http://|ssh://|file://|git@[^:\s]+:)\S+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WAITS_LATER = ("argocd",)
_T = TypeVar("_T")


def load_config(path: str | Path) -> m.GitOpsConfig:
    """Read ``path``; raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.__class__.__name__}: {exc}"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> m.GitOpsConfig:
    """Validate config text (``source`` names it in error messages)."""
    reader = NodeReader(source)
    top = reader.mapping(
        compose(text, source), "", {"apiVersion": True, "kind": True, "repositories": True, "rules": True}
    )
    reader.raise_if_problems()
    assert top is not None
    _expect(reader, top["apiVersion"], "apiVersion", m.API_VERSION)
    _expect(reader, top["kind"], "kind", m.KIND)
    repos = _list(reader, top["repositories"], "repositories", _repository)
    rules = _list(reader, top["rules"], "rules", _rule)
    names = [r.name for r in repos]
    declared = _declared_names(top["repositories"])
    for i, name in enumerate(names):
        if name in names[:i]:
            reader.problem(top["repositories"], f"repositories[{i}].name", f"repository '{name}' is defined twice")
    for rule in rules:
        if rule.repository not in declared:
            reader.problem(top["rules"], f"rules[{rule.index}].repository", f"no repository named '{rule.repository}'")
    if isinstance(top["rules"], yaml.SequenceNode) and not top["rules"].value:
        reader.problem(top["rules"], "rules", "at least one rule is needed")
    reader.raise_if_problems()
    return m.GitOpsConfig(repositories=tuple(repos), rules=tuple(rules), source=source)


def _declared_names(node: yaml.Node) -> set[str]:
    """Repository names as written, even of entries with other problems (no follow-on errors)."""
    names = set()
    for item in node.value if isinstance(node, yaml.SequenceNode) else []:
        for key, value in item.value if isinstance(item, yaml.MappingNode) else []:
            if getattr(key, "value", None) == "name" and isinstance(value, yaml.ScalarNode):
                names.add(str(value.value))
    return names


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
    if name is None or url is None or branch is None or auth is None or author is None:
        return None
    return m.Repository(name=name, url=url, branch=branch, auth=auth, author=author)


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
    if "updates" in entries and not updates and not reader.problems:
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


def _update(reader: NodeReader, node: yaml.Node, key: str, _: int) -> m.Update | None:
    allowed = {"file": True, "kustomizeImage": False, "yamlPath": False, "value": False}
    entries = reader.mapping(node, key, allowed)
    if entries is None or "file" not in entries:
        return None
    file = _template(reader, entries["file"], f"{key}.file")
    strategies = [k for k in ("kustomizeImage", "yamlPath") if k in entries]
    if len(strategies) != 1:
        reader.problem(node, key, "needs exactly one edit strategy: kustomizeImage or yamlPath")
        return None
    if strategies == ["kustomizeImage"]:
        if "value" in entries:
            reader.problem(entries["value"], f"{key}.value", "not allowed with kustomizeImage")
            return None
        image = reader.mapping(entries["kustomizeImage"], f"{key}.kustomizeImage", {"name": True, "image": False})
        if image is None or "name" not in image:
            return None
        name = _template(reader, image["name"], f"{key}.kustomizeImage.name")
        ref = _template(reader, image["image"], f"{key}.kustomizeImage.image") if "image" in image else "{image}"
        return m.KustomizeImageUpdate(file=file, name=name, image=ref) if file and name and ref else None
    path = reader.string(entries["yamlPath"], f"{key}.yamlPath")
    if "value" not in entries:
        reader.problem(node, f"{key}.value", "required with yamlPath")
        return None
    value = _template(reader, entries["value"], f"{key}.value", allow_empty=True)
    if file is None or path is None or value is None:
        return None
    return m.YamlPathUpdate(file=file, yaml_path=path, value=value)


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
    allowed = {"flux": False, "none": False, "timeout": False, **{k: False for k in _WAITS_LATER}}
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
        reader.problem(node, key, "needs exactly one of: flux, none")
        return None
    if targets[0] in _WAITS_LATER:
        reader.problem(entries[targets[0]], f"{key}.{targets[0]}", "this wait is not available in this version")
        return None
    if targets[0] == "none":
        if reader.mapping(entries["none"], f"{key}.none", {}) is None:
            return None
        return m.Wait(target=m.NoWait(), timeout=timeout)
    flux = reader.mapping(entries["flux"], f"{key}.flux", {"kind": True, "name": True, "namespace": True})
    if flux is None or len(flux) != 3:
        return None
    kind = reader.string(flux["kind"], f"{key}.flux.kind")
    if kind is not None and kind != "Kustomization":
        reader.problem(flux["kind"], f"{key}.flux.kind", "must be Kustomization in this version")
        return None
    name = _template(reader, flux["name"], f"{key}.flux.name")
    namespace = _template(reader, flux["namespace"], f"{key}.flux.namespace")
    if kind is None or name is None or namespace is None:
        return None
    return m.Wait(target=m.FluxWait(kind=kind, name=name, namespace=namespace), timeout=timeout)


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
