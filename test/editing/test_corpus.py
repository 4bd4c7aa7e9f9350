"""Every edit strategy over one corpus, property-based: only the target scalars' bytes change.

The corpus is every YAML file of ``test/fixtures/upstream/gitops`` (Flux, Argo CD, argocd-image-updater and Kargo
samples; the ``.argocd-source`` files argocd-image-updater's tests expect) plus hand-written files in the styles that
break re-serialising tools (block scalars, flow collections, comments on every line, ``---`` and ``...``, odd
indentation, anchors and aliases, every quoting style, a BOM), each also with CRLF line ends.

For each file and strategy, the expected edit is derived from the file with PyYAML alone (what the strategy's
documented rules select there, and whether a target is one the editor must refuse: block scalars, aliases, anchors,
explicit tags, duplicate keys), never from the module under test. Hypothesis draws the new values. The edit must then
either refuse with an :class:`EditError` exactly when expected, or produce a text whose structure is unchanged, whose
changed scalars are exactly the expected ones with exactly the expected values, whose every other byte is identical,
and which loads as the old data with just those values replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yamlcheck import Keys, assert_only_targets_changed

from keptn_gitops_service.editing.argocd_source import set_application_helm, set_argocd_source_file
from keptn_gitops_service.editing.helmrelease import set_helmrelease
from keptn_gitops_service.editing.imageref import ImageRef
from keptn_gitops_service.editing.kustomize import set_kustomize_image
from keptn_gitops_service.editing.manifests import set_container_images
from keptn_gitops_service.editing.markers import set_marked_values
from keptn_gitops_service.editing.yamledit import set_scalar
from keptn_gitops_service.errors import EditError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upstream" / "gitops"
DIGEST = "sha256:" + "e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9"
STR = "tag:yaml.org,2002:str"

# ------------------------------------------------------------------------------------------ hand-written files

VALUES = """\
# values for carts, tracked by Flux image automation and by keptn markers
image: # the image
    repository: "docker.io/keptnexamples/carts" # {"$imagepolicy": "flux-system:carts:name"}
    tag: '0.13.0'   # {"$imagepolicy": "flux-system:carts:tag"}
    full: docker.io/keptnexamples/carts:0.13.0 #{"$imagepolicy":"flux-system:carts"}
mongo: {repository: mongo, tag: "4.4"} # flow map, not marked
defaults: &defaults # anchored elsewhere
  replicas: 1 # one
prod: # merged
  <<: *defaults # merge
  version: "0.13.0" # {"keptn": "{image.tag}"}
  replicas: 3
notes: | # a block scalar
  tag: 0.13.0 # {"keptn": "{image.tag}"} inside a block scalar is text, not a comment
folded: >-
  folded
  text
list: [a, 'b', "c"] # flow sequence
empty:
tilde: ~
tagged: !!str 0.13.0
...
---
# second document
containers:
-   name: carts # odd indentation
    image: keptnexamples/carts:0.13.0 # {"$imagepolicy": "flux-system:carts"}
"""

KUSTOMIZATION = """\
# kustomization for carts
apiVersion: kustomize.config.k8s.io/v1beta1 # api
kind: Kustomization # kind
resources: # resources
    - deployment.yaml   # odd indentation
commonLabels: &labels {app: carts, "tier": 'backend'} # anchored
patches:
  - target: {labelSelector: *labels} # aliased
    patch: |-
      - op: add
        path: /metadata/annotations/tag
        value: 0.13.0
images: # images
    - name: docker.io/keptnexamples/carts # entry
      newTag: "0.13.0" # {"$imagepolicy": "flux-system:carts:tag"}
    -   {name: mongo, newTag: '4.4'} # flow entry
    - name: ghcr.io/acme/orders
      newName: registry.example.com/acme/orders # renamed
      newTag: 1.10 # a float to other tools
      digest: sha256:ec0119616bb8be9199575c05bfc23a6bf0fbdb0690ee15834e7b43bc3f4f6017 # pinned
"""

MANIFESTS = """\
# carts, all of it
apiVersion: apps/v1 # group
kind: Deployment # kind
metadata: # meta
  name: carts # name
  labels: &labels {app: carts, tier: backend} # anchored elsewhere
spec: # spec
  selector: {matchLabels: *labels} # alias elsewhere
  template: # pod
    metadata: {labels: *labels}
    spec: # pod spec
      initContainers: # init
        - {name: migrate, image: "docker.io/keptnexamples/carts:0.13.0", args: [migrate]} # flow map
      containers: # main
        - name: carts # c
          image: 'keptnexamples/carts:0.13.0' # single-quoted
        - name: db # not ours
          image: mongo:4.4 # other repository
---
apiVersion: v1
kind: ConfigMap
data:
  image: keptnexamples/carts:0.13.0 # a string, not a container
...
---
apiVersion: v1 # pod
kind: Pod
spec:
  containers:
  - name: carts
    image: index.docker.io/keptnexamples/carts@sha256:ec0119616bb8be9199575c05bfc23a6bf0fbdb0690ee15834e7b43bc3f4f6017
  ephemeralContainers:
  - name: debug
    image: busybox:1.36
---
apiVersion: batch/v1
kind: CronJob # nightly
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: "mongo" # untagged
          restartPolicy: OnFailure
"""

HELMRELEASES = """\
# two releases in one file
apiVersion: helm.toolkit.fluxcd.io/v2 # api
kind: HelmRelease # kind
metadata: {name: carts, namespace: dev} # flow map
spec: # spec
  chart: # chart
    spec: # chart spec
      chart: carts # name
      version: "0.13.0" # pinned
      sourceRef: {kind: HelmRepository, name: keptn} # source
  values: # values
    image: # image
      repository: docker.io/keptnexamples/carts # repo
      tag: '0.13.0' # tag
    common: &common {replicas: 1} # anchored elsewhere
    worker: *common # aliased
    replicaCount: 2 # a number
    enabled: true
    annotations: {"a.b/c": x, plain: y}
    script: |
      echo hi
---
apiVersion: helm.toolkit.fluxcd.io/v2beta2
kind: HelmRelease
metadata:
  name: orders
spec:
  chart:
    spec: {chart: orders, version: 1.0.0, sourceRef: {kind: HelmRepository, name: keptn}}
  values:
    image: {repository: docker.io/keptnexamples/orders, tag: 1.0.0}
    list: [1, "two", three]
"""

APPLICATIONS = """\
# the carts app (app of apps)
apiVersion: argoproj.io/v1alpha1 # api
kind: Application # kind
metadata: {name: carts, namespace: argocd} # flow
spec: # spec
  project: default # project
  sources: # two sources
  - repoURL: https://github.com/acme/values.git # values
    ref: values
  - repoURL: https://charts.example.com # repo
    chart: carts # chart
    targetRevision: 0.13.0 # chart version
    helm: # helm
      parameters: # parameters
        - name: image.tag # tag
          value: "0.13.0" # quoted
          forceString: true # string
        - {name: image.repository, value: docker.io/keptnexamples/carts} # flow
        - name: replicaCount
          value: '2'
      valuesObject: # inline values
        image: {pullPolicy: IfNotPresent, tag: 0.13.0} # flow
        resources: &res {cpu: 100m} # anchored elsewhere
        sidecar:
          resources: *res
          replicas: 1 # a number
      values: |
        image:
          tag: 0.13.0
"""

SOURCE_HELM = """\
# written by argocd-image-updater, then commented by a human
helm: # overrides
  parameters:
  - name: image.name # name
    value: docker.io/keptnexamples/carts
    forcestring: true
  - name: image.tag # tag
    value: 0.13.0
    forcestring: false # was set by hand
  - {name: replicas, value: "2", forceString: true} # flow item
"""

SOURCE_KUSTOMIZE = """\
kustomize: # overrides
    images: # odd indentation
    -   docker.io/keptnexamples/carts:0.13.0 # ours
    - "mongo=mongo:4.4" # renamed image
    - 'ghcr.io/acme/orders@sha256:ec0119616bb8be9199575c05bfc23a6bf0fbdb0690ee15834e7b43bc3f4f6017'
"""

HAND_WRITTEN = {
    "values.yaml": VALUES,
    "values-bom.yaml": "\ufeff" + VALUES.rstrip("\n"),
    "kustomization.yaml": KUSTOMIZATION,
    "manifests.yaml": MANIFESTS,
    "helmreleases.yaml": HELMRELEASES,
    "application.yaml": APPLICATIONS,
    ".argocd-source-helm.yaml": SOURCE_HELM,
    ".argocd-source-kustomize.yaml": SOURCE_KUSTOMIZE,
}


def _go_raw_string(path: Path) -> str:
    """The YAML inside the first Go raw string (backquotes) of an argocd-image-updater test fixture."""
    match = re.search(r"`\n(.*?)`", path.read_bytes().decode("utf-8"), re.DOTALL)
    assert match is not None
    return match.group(1)


def _upstream() -> dict[str, str]:
    files: dict[str, str] = {}
    for path in sorted(FIXTURES.rglob("*")):
        name = str(path.relative_to(FIXTURES))
        if path.name.endswith((".yaml", ".yaml.tmpl")):
            text = path.read_bytes().decode("utf-8")
            text = re.sub(r"\{\{ \.(\w+) \}\}", r"\1", text)  # Go-template placeholders of flux2's testdata
            try:
                list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                continue  # a doc snippet that is not YAML on its own (imageupdateautomation_observed_policies.yaml)
            files[name] = text
        elif path.name.startswith("argocd-source_"):
            files[name.replace(".go.txt", ".argocd-source.yaml")] = _go_raw_string(path)
    return files


def _corpus() -> dict[str, str]:
    base = {**_upstream(), **HAND_WRITTEN}
    return {**base, **{f"{name} (CRLF)": text.replace("\n", "\r\n") for name, text in base.items()}}


CORPUS = _corpus() if FIXTURES.is_dir() else {}
SOURCE_FILES = [name for name in CORPUS if "argocd-source" in name]

# ------------------------------------------------------------------------------------------ the PyYAML oracle


@dataclass(frozen=True)
class Scalar:
    """A value scalar reachable through string keys, and whether the editor must be able to change it."""

    document: int
    keys: Keys
    node: yaml.ScalarNode
    editable: bool


def _compose(text: str) -> list[yaml.Node]:
    return [root for root in yaml.compose_all(text, Loader=yaml.SafeLoader) if root is not None]


def _properties(text: str, node: yaml.Node) -> tuple[bool, str | None]:
    """Whether ``node`` is anchored (``&a``) and its explicit tag as written (``!!str``), read from the text."""
    found = re.match(r"(&\S+\s+)?(!\S*)?", text[node.start_mark.index :])
    assert found is not None
    return found.group(1) is not None, found.group(2)


def _counts(root: yaml.Node) -> dict[int, int]:
    """How often each node object is reached: more than once means it is used through an alias."""
    counts: dict[int, int] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        counts[id(node)] = counts.get(id(node), 0) + 1
        if counts[id(node)] > 1:
            continue
        if isinstance(node, yaml.MappingNode):
            pending.extend(value for _, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return counts


def scalars(text: str) -> list[Scalar]:
    """Every value scalar of every document, classified by the editor's documented refusals."""
    found: list[Scalar] = []
    for document, root in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
        if root is not None:
            found.extend(s for s in _walk(text, document, _counts(root), root, (), False, False) if s.keys)
    return found


def _walk(
    text: str, document: int, counts: dict[int, int], node: yaml.Node, keys: Keys, shared: bool, duplicated: bool
) -> Iterator[Scalar]:
    """``shared``: below a node used through an alias; ``duplicated``: below a key that appears twice."""
    shared = shared or counts[id(node)] > 1
    if isinstance(node, yaml.ScalarNode):
        anchored, tag = _properties(text, node)
        refused = shared or duplicated or anchored or tag not in (None, "!!str") or node.style in ("|", ">")
        yield Scalar(document, keys, node, not refused)
    elif isinstance(node, yaml.MappingNode):
        names = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag == STR:
                twice = duplicated or names.count(key.value) > 1
                yield from _walk(text, document, counts, value, (*keys, key.value), shared, twice)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(text, document, counts, item, (*keys, index), shared, duplicated)


def path_of(keys: Keys) -> str:
    """``keys`` in the editors' path language, every key quoted (``["spec"]["values"][0]``)."""
    quoted = (
        '["' + k.replace("\\", "\\\\").replace('"', '\\"') + '"]' if isinstance(k, str) else f"[{k}]" for k in keys
    )
    return "".join(quoted)


def changed_scalars(old: str, new: str) -> dict[tuple[int, Keys], str]:
    """The scalars whose value or type differs (as written, decoded); the structure must be the same."""
    old_roots, new_roots = _compose(old), _compose(new)
    assert len(old_roots) == len(new_roots), "the number of documents changed"
    changed: dict[tuple[int, Keys], str] = {}

    def walk(a: yaml.Node, b: yaml.Node, where: tuple[int, Keys]) -> None:
        assert type(a) is type(b), f"the structure changed at {where}"
        if isinstance(a, yaml.ScalarNode):
            if (a.value, a.tag) != (b.value, b.tag):
                changed[where] = b.value
        elif isinstance(a, yaml.MappingNode):
            assert [k.value for k, _ in a.value] == [k.value for k, _ in b.value], f"keys changed at {where}"
            for (key, x), (_, y) in zip(a.value, b.value, strict=True):
                walk(x, y, (where[0], (*where[1], key.value)))
        else:
            assert len(a.value) == len(b.value), f"a sequence changed length at {where}"
            for i, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                walk(x, y, (where[0], (*where[1], i)))

    for document, (a, b) in enumerate(zip(old_roots, new_roots, strict=True)):
        walk(a, b, (document, ()))
    return changed


def loaded_at(text: str, document: int, keys: Keys) -> Any:
    data = list(yaml.safe_load_all(text))[document]
    for key in keys:
        data = data[key]
    return data


def assert_edit(old: str, new: str, expected: dict[tuple[int, Keys], str]) -> None:
    """``new`` differs from ``old`` in exactly the ``expected`` scalars (new values as written), byte for byte."""
    changed = changed_scalars(old, new)
    assert changed == expected
    if not changed:
        assert new == old
        return
    assert_only_targets_changed(old, new, {where: loaded_at(new, *where) for where in changed})


Edits = dict[tuple[int, Keys], str]  # the changed scalars and their new values, as written
Outcome = Edits | None  # None: the editor must refuse


def check(old: str, edit: Callable[[str], str], expected: Outcome) -> None:
    if expected is None:
        with pytest.raises(EditError):
            edit(old)
        return
    assert_edit(old, edit(old), expected)


# ------------------------------------------------------------------------------------------ values

TAGS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True)
DIGESTS = st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Zl", "Zp"), exclude_characters="\ufeff"),
    max_size=16,
)
VALUES_ = st.one_of(TAGS, TEXT)


def _differs(value: str, scalar: Scalar) -> str:
    assume(value != scalar.node.value)
    return value


def _docs(text: str) -> list[Any]:
    return list(yaml.safe_load_all(text))


def _by_keys(found: list[Scalar]) -> dict[tuple[int, Keys], Scalar]:
    return {(s.document, s.keys): s for s in found}


# ------------------------------------------------------------------------------------------ yamlPath


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_yaml_path_on_every_file(name: str, data: st.DataObject) -> None:
    text = CORPUS[name]
    found = scalars(text)
    assume(found)
    target = data.draw(st.sampled_from(found))
    value = _differs(data.draw(VALUES_), target)
    edit = lambda t: set_scalar(t, path_of(target.keys), value, document=target.document)  # noqa: E731
    check(text, edit, {(target.document, target.keys): value} if target.editable else None)


# ------------------------------------------------------------------------------------------ marker

_MARKER_BODY = re.compile(r'\{\s*"(\$imagepolicy|keptn)"\s*:')


@dataclass(frozen=True)
class Marker:
    kind: str
    argument: str
    target: Scalar | None  # None: the comment follows no editable value scalar (the editor must refuse)


def markers(text: str) -> list[Marker]:
    """Marker comments found with PyYAML's spans: a ``#`` outside every scalar that starts a comment."""
    nodes = [
        node
        for root in _compose(text)
        for node in _all_nodes(root)
        if isinstance(node, yaml.ScalarNode) and node.end_mark.index > node.start_mark.index
    ]
    values = scalars(text)
    found: list[Marker] = []
    line_of_comment = -1
    for hash_at in (m.start() for m in re.finditer("#", text)):
        line = text.count("\n", 0, hash_at)
        if line == line_of_comment or any(n.start_mark.index <= hash_at < n.end_mark.index for n in nodes):
            continue
        if hash_at and text[hash_at - 1] not in " \t\r\n\ufeff":
            continue
        line_of_comment = line
        end = len(text) if (nl := text.find("\n", hash_at)) == -1 else nl
        body = text[hash_at:end].rstrip("\r").lstrip("#").strip()
        if not _MARKER_BODY.match(body):
            continue
        kind, argument = next(iter(json.loads(body).items()))
        before = [
            s
            for s in values
            if s.node.end_mark.index <= hash_at
            and re.fullmatch(r"[ \t]*(,[ \t]*)?", text[s.node.end_mark.index : hash_at])
        ]
        target = before[-1] if before and before[-1].editable else None
        found.append(Marker(kind, argument, target))
    return found


def _all_nodes(node: yaml.Node) -> Iterator[yaml.Node]:
    yield node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _all_nodes(key)
            yield from _all_nodes(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _all_nodes(item)


def _repository(reference: str) -> str:
    name = reference.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_marker_on_every_file(name: str, data: st.DataObject) -> None:
    text = CORPUS[name]
    found = markers(text)
    tag, digest, rendered = data.draw(TAGS), data.draw(DIGESTS), data.draw(VALUES_)
    keptn = [m for m in found if m.kind == "keptn"]
    policies = sorted(
        {m.argument.rsplit(":", 1)[0] if m.argument.count(":") == 2 else m.argument for m in found if m.kind != "keptn"}
    )
    policy = data.draw(st.sampled_from(policies)) if policies else None
    chosen = [m for m in found if m.kind != "keptn" and (m.argument == policy or m.argument.startswith(f"{policy}:"))]
    named = [m.target.node.value for m in chosen if m.target and not m.argument.endswith((":tag", ":digest"))]
    image = ImageRef(_repository(named[0]) if named else "docker.io/keptnexamples/carts", tag, digest)
    setters = {"": str(image), ":name": image.name, ":tag": tag, ":digest": digest}
    expected: Outcome = None  # no marker, or one the editor must refuse (misplaced markers fail the whole file)
    if (chosen or keptn) and all(m.target is not None for m in found):
        expected = {}
        for marker in [*chosen, *keptn]:
            assert marker.target is not None
            new = rendered if marker.kind == "keptn" else setters[marker.argument.removeprefix(str(policy))]
            if new != marker.target.node.value:
                expected[(marker.target.document, marker.target.keys)] = new
    edit = lambda t: set_marked_values(t, image, policy=policy, keptn_values=lambda _: rendered)  # noqa: E731
    check(text, edit, expected)


# ------------------------------------------------------------------------------------------ containerImage

POD_SPECS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _normalized(reference: str) -> str:
    """Docker's normalisation, written out independently: ``mongo`` is ``docker.io/library/mongo``."""
    name = _repository(reference)
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        first, rest = "docker.io", name
    first = "docker.io" if first == "index.docker.io" else first
    return f"{first}/{'library/' if first == 'docker.io' and '/' not in rest else ''}{rest}"


def containers(text: str) -> list[tuple[tuple[int, Keys], str]]:
    found = []
    for document, data in enumerate(_docs(text)):
        keys = POD_SPECS.get(str(data.get("kind"))) if isinstance(data, dict) else None
        spec = data if keys else None
        for key in keys or ():
            spec = spec.get(key) if isinstance(spec, dict) else None
        for list_name in ("containers", "initContainers", "ephemeralContainers"):
            items = spec.get(list_name) if isinstance(spec, dict) else None
            for i, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and isinstance(item.get("image"), str):
                    found.append(((document, (*(keys or ()), list_name, i, "image")), item["image"]))
    return found


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_container_image_on_every_file(name: str, data: st.DataObject) -> None:
    text = CORPUS[name]
    found = containers(text)
    tag = data.draw(TAGS)
    repository = data.draw(st.sampled_from([_repository(image) for _, image in found])) if found else "acme/none"
    image = ImageRef(repository, tag, None)
    editable = _by_keys(scalars(text))
    matching = [where for where, old in found if _normalized(old) == _normalized(repository)]
    expected: Outcome = {where: str(image) for where in matching if editable[where].node.value != str(image)}
    if not matching or any(not editable[where].editable for where in matching):
        expected = None
    check(text, lambda t: set_container_images(t, image), expected)


# ------------------------------------------------------------------------------------------ helmRelease


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_helm_release_on_every_file(name: str, data: st.DataObject) -> None:
    text = CORPUS[name]
    docs = _docs(text)
    releases = [
        i
        for i, doc in enumerate(docs)
        if isinstance(doc, dict)
        and doc.get("kind") == "HelmRelease"
        and str(doc.get("apiVersion", "")).startswith("helm.toolkit.fluxcd.io/v2")
    ]
    if not releases:
        check(text, lambda t: set_helmrelease(t, values={"image.tag": "1.0.0"}), None)
        return
    document = data.draw(st.sampled_from(releases))
    release_name = docs[document]["metadata"]["name"]
    assume(sum(docs[i]["metadata"]["name"] == release_name for i in releases) == 1)
    found = [s for s in scalars(text) if s.document == document]
    version = next((s for s in found if s.keys == ("spec", "chart", "spec", "version")), None)
    values = [s for s in found if s.keys[:2] == ("spec", "values")]
    if version is None and not values:
        return  # nothing exists to change in place (inserting a version: test_helmrelease.py)
    least = 0 if version else 1
    chosen = data.draw(st.lists(st.sampled_from(values), unique=True, min_size=least, max_size=3)) if values else []
    use_version = version is not None and (not chosen or data.draw(st.booleans()))
    chart_version = _differs(data.draw(TAGS), version) if use_version and version else None
    new_values = {s: _differs(data.draw(VALUES_), s) for s in chosen}
    edits: Edits = {(s.document, s.keys): value for s, value in new_values.items()}
    targets = list(chosen)
    if chart_version is not None and version is not None:
        edits[(document, version.keys)] = chart_version
        targets.append(version)
    expected = edits if all(s.editable for s in targets) else None
    values_arg = {path_of(s.keys[2:]): value for s, value in new_values.items()}
    edit = lambda t: set_helmrelease(t, name=release_name, chart_version=chart_version, values=values_arg)  # noqa: E731
    check(text, edit, expected)


# ------------------------------------------------------------------------------------------ argocdApplication


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_argocd_application_on_every_file(name: str, data: st.DataObject) -> None:
    text = CORPUS[name]
    docs = _docs(text)
    apps = [
        i
        for i, d in enumerate(docs)
        if isinstance(d, dict)
        and d.get("kind") == "Application"
        and str(d.get("apiVersion")).startswith("argoproj.io/")
    ]
    spec = docs[apps[0]].get("spec") if len(apps) == 1 else None
    sources = spec.get("sources") if isinstance(spec, dict) else None
    if isinstance(sources, list) and sources:
        helm = [i for i, s in enumerate(sources) if isinstance(s, dict) and isinstance(s.get("helm"), dict)]
        index: int | None = data.draw(st.sampled_from(helm)) if helm else None
        prefix: Keys = ("spec", "sources", index) if index is not None else ()
    else:
        index, helm_source = None, isinstance(spec, dict) and isinstance(spec.get("source"), dict)
        prefix = ("spec", "source") if helm_source and isinstance(spec["source"].get("helm"), dict) else ()  # type: ignore[index]
    if not prefix:
        check(text, lambda t: set_application_helm(t, parameters={"image.tag": "1.0.0"}), None)
        return
    found = [s for s in scalars(text) if s.document == apps[0] and s.keys[: len(prefix) + 1] == (*prefix, "helm")]
    params = loaded_at(text, apps[0], (*prefix, "helm")).get("parameters") or []
    names = [p.get("name") for p in params if isinstance(p, dict)]
    parameters = [
        s
        for s in found
        if len(s.keys) == len(prefix) + 4
        and s.keys[-3] == "parameters"
        and s.keys[-1] == "value"
        and names.count(params[int(s.keys[-2])].get("name")) == 1
    ]
    objects = [s for s in found if s.keys[len(prefix) + 1 : len(prefix) + 2] == ("valuesObject",)]
    chosen_parameters = data.draw(st.lists(st.sampled_from(parameters), unique=True, max_size=2)) if parameters else []
    chosen_values = data.draw(st.lists(st.sampled_from(objects), unique=True, max_size=2)) if objects else []
    assume(chosen_parameters or chosen_values)
    new = {s: _differs(data.draw(VALUES_), s) for s in [*chosen_parameters, *chosen_values]}
    edits: Edits = {(s.document, s.keys): value for s, value in new.items()}
    expected = edits if all(s.editable for s in new) else None
    parameters_arg = {params[int(s.keys[-2])]["name"]: new[s] for s in chosen_parameters}
    values_arg = {path_of(s.keys[len(prefix) + 2 :]): new[s] for s in chosen_values}
    edit = lambda t: set_application_helm(t, parameters=parameters_arg, values=values_arg, source_index=index)  # noqa: E731
    check(text, edit, expected)


# ------------------------------------------------------------------------------------------ kustomizeImage


@pytest.mark.parametrize("name", CORPUS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_kustomize_image_on_every_kustomization(name: str, data: st.DataObject) -> None:
    """Only where a document has a top-level ``images`` list: elsewhere the strategy adds one (by design)."""
    text = CORPUS[name]
    docs = _docs(text)
    with_images = [i for i, d in enumerate(docs) if isinstance(d, dict) and isinstance(d.get("images"), list)]
    if not with_images:
        return
    document = with_images[0]
    entries = [e for e in docs[document]["images"] if isinstance(e, dict) and isinstance(e.get("name"), str)]
    entry_index = data.draw(st.sampled_from(range(len(docs[document]["images"]))))
    entry = docs[document]["images"][entry_index]
    assume(isinstance(entry, dict) and "newTag" in entry)
    found = _by_keys(scalars(text))
    tag_at = (document, ("images", entry_index, "newTag"))
    digest_at = (document, ("images", entry_index, "digest"))
    tag = _differs(data.draw(TAGS), found[tag_at])
    digest = _differs(data.draw(DIGESTS), found[digest_at]) if digest_at in found else None
    image = ImageRef(entry.get("newName") or entry["name"], tag, digest)
    edits: Edits = {tag_at: tag, **({digest_at: digest} if digest else {})}
    duplicates = sum(e["name"] == entry["name"] for e in entries) > 1
    refused = len(with_images) > 1 or duplicates or not all(found[k].editable for k in edits)
    check(text, lambda t: set_kustomize_image(t, entry["name"], image), None if refused else edits)


# ------------------------------------------------------------------------------------------ argocdSourceFile


@pytest.mark.parametrize("name", SOURCE_FILES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_argocd_source_file_in_place(name: str, data: st.DataObject) -> None:
    """Existing entries change in place (new ones are appended as lines: test_argocd_source.py checks those)."""
    text = CORPUS[name]
    document = next(i for i, d in enumerate(_docs(text)) if d is not None)
    file = _docs(text)[document]
    found = _by_keys(scalars(text))
    expected: Edits = {}
    if "helm" in file:
        params = file["helm"]["parameters"]
        usable = [
            i
            for i, p in enumerate(params)
            if "value" in p and [k.lower() for k in p].count("forcestring") == 1 and isinstance(p.get("name"), str)
        ]
        chosen = data.draw(st.lists(st.sampled_from(usable), unique=True, min_size=1)) if usable else []
        assume(chosen)
        new = {i: _differs(data.draw(VALUES_), found[(document, ("helm", "parameters", i, "value"))]) for i in chosen}
        for i, value in new.items():
            expected[(document, ("helm", "parameters", i, "value"))] = value
            force = next(k for k in params[i] if k.lower() == "forcestring")
            if params[i][force] is not True:
                expected[(document, ("helm", "parameters", i, force))] = "true"
        edit: Callable[[str], str] = lambda t: set_argocd_source_file(  # noqa: E731
            t, helm_parameters={params[i]["name"]: v for i, v in new.items()}
        )
    else:
        images = file["kustomize"]["images"]
        i = data.draw(st.sampled_from(range(len(images))))
        old = images[i]
        repository = _repository(old.split("=", 1)[-1])
        assume(
            all(_normalized(_repository(e.split("=", 1)[-1])) != _normalized(repository) for e in images if e != old)
        )
        image = ImageRef(repository, data.draw(TAGS), None)
        entry = (old.split("=", 1)[0] + "=" if "=" in old else "") + str(image)
        if entry != old:
            expected[(document, ("kustomize", "images", i))] = entry
        edit = lambda t: set_argocd_source_file(t, kustomize_image=image)  # noqa: E731
    check(text, edit, expected)


# ------------------------------------------------------------------------------------------ the corpus itself


def test_the_corpus_has_every_kind_of_file() -> None:
    assert FIXTURES.is_dir(), f"the upstream fixtures are missing: {FIXTURES}"
    upstream = [name for name in CORPUS if "/" in name and "(CRLF)" not in name]
    assert len(upstream) >= 30, upstream
    kinds = {doc.get("kind") for text in CORPUS.values() for doc in _docs(text) if isinstance(doc, dict)}
    assert {"HelmRelease", "Kustomization", "Application", "Deployment", "CronJob", "Pod", "Stage"} <= kinds
    assert len(SOURCE_FILES) == 8
    assert sum(len(markers(text)) for text in CORPUS.values()) > 20
