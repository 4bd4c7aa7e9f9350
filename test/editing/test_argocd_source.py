"""Argo CD write-back: Application Helm settings and ``.argocd-source-<app>.yaml``, with minimal diffs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yamlcheck import assert_only_targets_changed, read

from keptn_gitops_service.editing.argocd_source import set_application_helm, set_argocd_source_file
from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.errors import EditError

DIGEST = "sha256:" + "e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9"

APP = """\
# the carts app
apiVersion: argoproj.io/v1alpha1 # api
kind: Application # kind
metadata: {name: carts, namespace: argocd} # flow
spec: # spec
  project: default # project
  source: # single source
    repoURL: https://charts.example.com # repo
    chart: carts # chart
    targetRevision: 0.13.1 # chart version
    helm: # helm
      parameters: # parameters
        - name: image.tag # tag
          value: "0.13.1" # quoted
          forceString: true # string
        - {name: image.repository, value: docker.io/keptnexamples/carts} # flow
        - name: replicaCount
          value: '2'
      valuesObject: # inline values
        image: {pullPolicy: IfNotPresent, tag: 0.13.1} # flow
        resources: &res {cpu: 100m} # anchored elsewhere
        sidecar:
          resources: *res
          replicas: 1 # a number
"""

MULTI = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: orders
spec:
  source: {repoURL: ignored, chart: ignored} # Argo CD ignores this once sources is set
  sources:
  - repoURL: https://github.com/example/values.git
    ref: values
  - repoURL: https://charts.example.com
    chart: orders
    helm:
      valueFiles: [$values/orders/values.yaml]
      parameters:
      - name: image.tag
        value: 1.0.0
  - repoURL: https://charts.example.com
    chart: orders-db
    helm:
      parameters:
      - name: image.tag
        value: 1.0.0
      values: |
        image:
          tag: 1.0.0
"""

SOURCE_FILE = """\
# written by argocd-image-updater, then commented by a human
helm: # overrides
  parameters:
  - name: image.name # name
    value: docker.io/keptnexamples/carts
    forcestring: true
  - name: image.tag # tag
    value: 0.13.1
    forcestring: false # was set by hand
  - {name: replicas, value: "2"} # flow item
"""


def go_raw_string(root: Path, name: str) -> str:
    """The YAML inside the first Go raw string (backquotes) of an argocd-image-updater test fixture."""
    text = (root / "gitops" / "argocd-image-updater" / name).read_bytes().decode("utf-8")
    match = re.search(r"`\n(.*?)`", text, re.DOTALL)
    assert match is not None
    return match.group(1)


def added_lines(old: str, new: str) -> list[str]:
    """Lines of ``new`` that are not in ``old`` (every old line must be kept, in order)."""
    remaining = iter(new.splitlines(keepends=True))
    added: list[str] = []
    for line in old.splitlines(keepends=True):
        for candidate in remaining:
            if candidate == line:
                break
            added.append(candidate)
        else:
            raise AssertionError(f"line {line!r} was lost")
    return added + list(remaining)


def app_rejected(text: str, **kwargs: Any) -> str:
    with pytest.raises(EditError) as caught:
        set_application_helm(text, **kwargs)
    return str(caught.value)


def file_rejected(text: str | None, **kwargs: Any) -> str:
    with pytest.raises(EditError) as caught:
        set_argocd_source_file(text, **kwargs)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ Application


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_application_parameters_and_values_object(newline: str) -> None:
    text = APP.replace("\n", newline)
    new = set_application_helm(
        text,
        parameters={"image.tag": "0.14.0", "image.repository": "ghcr.io/acme/carts", "replicaCount": "3"},
        values={"image.tag": "0.14.0", "sidecar.replicas": "2"},
    )
    parameters = ("spec", "source", "helm", "parameters")
    values = ("spec", "source", "helm", "valuesObject")
    assert_only_targets_changed(
        text,
        new,
        {
            (0, (*parameters, 0, "value")): "0.14.0",
            (0, (*parameters, 1, "value")): "ghcr.io/acme/carts",
            (0, (*parameters, 2, "value")): "3",
            (0, (*values, "image", "tag")): "0.14.0",
            (0, (*values, "sidecar", "replicas")): 2,
        },
    )
    assert f'          value: "0.14.0" # quoted{newline}' in new
    assert f"        - {{name: image.repository, value: ghcr.io/acme/carts}} # flow{newline}" in new
    assert f"          value: '3'{newline}" in new


def test_multi_source_selection() -> None:
    assert app_rejected(MULTI, parameters={"image.tag": "2.0.0"}) == (
        "Application 'orders' has 3 sources (with helm: 1, 2); choose one with argocdApplication.source"
    )
    new = set_application_helm(MULTI, parameters={"image.tag": "2.0.0"}, source_index=2)
    assert_only_targets_changed(MULTI, new, {(0, ("spec", "sources", 2, "helm", "parameters", 0, "value")): "2.0.0"})
    single_helm = MULTI.replace("    chart: orders-db\n    helm:", "    chart: orders-db\n    kustomize:")
    new = set_application_helm(single_helm, parameters={"image.tag": "2.0.0"})
    target = (0, ("spec", "sources", 1, "helm", "parameters", 0, "value"))
    assert_only_targets_changed(single_helm, new, {target: "2.0.0"})


def test_equal_values_return_the_text_as_is() -> None:
    assert set_application_helm(APP, parameters={"image.tag": "0.13.1"}) is APP


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (APP, {}, "nothing to set: pass Helm parameters and/or valuesObject values"),
        (
            APP,
            {"parameters": {"image.digest": "x"}},
            "Application 'carts' spec.source has no Helm parameter 'image.digest' in helm.parameters (parameters: "
            "'image.tag', 'image.repository', 'replicaCount'); parameters are changed, never added",
        ),
        (
            APP.replace("name: replicaCount", "name: image.tag"),
            {"parameters": {"image.tag": "x"}},
            "Application 'carts' spec.source has 2 Helm parameters named 'image.tag' (items [0, 2])",
        ),
        (
            APP.replace("          value: '2'\n", ""),
            {"parameters": {"replicaCount": "3"}},
            "Application 'carts' spec.source Helm parameter 'replicaCount' has no value key",
        ),
        (
            APP,
            {"values": {"image.digest": "x"}},
            "Application 'carts' spec.source has no value at 'spec.source.helm.valuesObject.image.digest' (no key "
            "'digest' under 'spec.source.helm.valuesObject.image' at line 20, which has the keys 'pullPolicy', 'tag'); "
            "values are changed, never created",
        ),
        (
            APP,
            {"values": {"resources.cpu": "200m"}},
            "path 'spec.source.helm.valuesObject.resources.cpu' is inside the anchored node '&res' at line 21, "
            "which is used through aliases; changing it would change every alias",
        ),
        (APP, {"values": {"": "x"}}, "a valuesObject path must not be empty"),
        (
            APP,
            {"parameters": {"image.tag": "0.14.0\nreplicaCount: 9"}},
            "value '0.14.0\\nreplicaCount: 9' contains a line break; only single-line values can be written",
        ),
        (
            APP,
            {"parameters": {"image.tag": "x"}, "source_index": 0},
            "Application 'carts' has no spec.sources, so source_index 0 cannot apply",
        ),
        (
            MULTI,
            {"parameters": {"image.tag": "x"}, "source_index": 3},
            "Application 'orders' has 3 sources; there is no source 3",
        ),
        (
            MULTI,
            {"values": {"image.tag": "x"}, "source_index": 2},
            "Application 'orders' spec.sources[2] has no value at 'spec.sources[2].helm.valuesObject.image.tag' (no "
            "key 'valuesObject' under 'spec.sources[2].helm' at line 20, which has the keys 'parameters', 'values'); "
            "values are changed, never created (helm.values is a YAML string, which is not edited)",
        ),
        (
            APP + "---\n" + MULTI,
            {"parameters": {"image.tag": "x"}},
            "the text has 2 Applications ('carts', 'orders'); keep one Application per file",
        ),
        (
            "kind: Application\napiVersion: v1\n",
            {"parameters": {"a": "b"}},
            "the text has no Argo CD Application (argoproj.io/*)",
        ),
        (
            "kind: Application\napiVersion: argoproj.io/v1alpha1\nmetadata: {name: x}\nspec: {}\n",
            {"parameters": {"a": "b"}},
            "Application 'x' has neither spec.source nor spec.sources",
        ),
    ],
)
def test_application_rejections(text: str, kwargs: dict[str, Any], message: str) -> None:
    assert app_rejected(text, **kwargs) == message


def test_upstream_application_without_helm_is_refused(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "argocd/application_status_synced_succeeded.yaml")
    assert app_rejected(text, parameters={"image.tag": "1.0.0"}) == (
        "Application 'velero-test' spec.source has no Helm parameter 'image.tag' in helm.parameters (parameters: "
        "none); parameters are changed, never added"
    )


# ------------------------------------------------------------------------------------------ .argocd-source file


def test_new_files_in_argocd_image_updater_format(upstream_fixtures: Path) -> None:
    helm = set_argocd_source_file(None, helm_parameters={"baz": "baz"})
    upstream = go_raw_string(upstream_fixtures, "argocd-source_helm_expected.go.txt")
    assert helm == upstream.replace("forcestring: false", "forcestring: true")
    kustomize = set_argocd_source_file(None, kustomize_image=parse_image("ghcr.io/acme/carts:1.10"))
    upstream = go_raw_string(upstream_fixtures, "argocd-source_kustomize_expected.go.txt")
    assert kustomize == "kustomize:\n  images:\n  - ghcr.io/acme/carts:1.10\n"
    assert upstream.startswith("kustomize:\n  images:\n  - baz\n")
    sorted_params = set_argocd_source_file("", helm_parameters={"image.tag": "1.10", "image.name": "carts"})
    assert sorted_params == (
        "helm:\n  parameters:\n"
        "  - name: image.name\n    value: carts\n    forcestring: true\n"
        '  - name: image.tag\n    value: "1.10"\n    forcestring: true\n'
    )
    assert yaml.safe_load(sorted_params)["helm"]["parameters"][1]["value"] == "1.10"


def test_a_comment_only_file_keeps_its_comments_and_newlines() -> None:
    text = "# managed by keptn\r\n# do not edit"
    new = set_argocd_source_file(text, kustomize_image=parse_image("carts:1.0"))
    assert new == "# managed by keptn\r\n# do not edit\r\nkustomize:\r\n  images:\r\n  - carts:1.0\r\n"


def test_upstream_files_are_updated_in_place(upstream_fixtures: Path) -> None:
    helm = go_raw_string(upstream_fixtures, "argocd-source_helm_expected.go.txt")
    new = set_argocd_source_file(helm, helm_parameters={"baz": "qux"})
    assert new == "helm:\n  parameters:\n  - name: baz\n    value: qux\n    forcestring: true\n"
    kustomize = go_raw_string(upstream_fixtures, "argocd-source_kustomize_expected.go.txt")
    new = set_argocd_source_file(kustomize, kustomize_image=parse_image("foo:1.0"))
    assert new == "kustomize:\n  images:\n  - baz\n  - foo:1.0\n  - bar\n"
    with pytest.raises(EditError) as caught:
        set_argocd_source_file(kustomize, kustomize_image=parse_image("docker.io/library/qux:2"))
    assert str(caught.value) == (
        "no kustomize.images entry names the repository of 'docker.io/library/qux:2' (entries: 'baz', 'foo', 'bar'); "
        "an entry that matches no image of the Application would deploy nothing. Deliver an image of a listed "
        "repository, or set argocdSourceFile.create: true to add the entry"
    )
    new = set_argocd_source_file(kustomize, kustomize_image=parse_image("docker.io/library/qux:2"), create=True)
    assert new == kustomize + "  - docker.io/library/qux:2\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_existing_parameters_change_in_place_and_new_ones_are_appended_sorted(newline: str) -> None:
    text = SOURCE_FILE.replace("\n", newline)
    new = set_argocd_source_file(
        text,
        helm_parameters={"image.tag": "0.14.0", "zeta": "z", "alpha": "1.10", "image.name": "ghcr.io/acme/carts"},
        create=True,
    )
    updated = text.replace("0.13.1", "0.14.0").replace("docker.io/keptnexamples", "ghcr.io/acme")
    assert added_lines(updated.replace("forcestring: false", "forcestring: true"), new) == [
        line + newline
        for line in [
            "  - name: alpha",
            '    value: "1.10"',
            "    forcestring: true",
            "  - name: zeta",
            "    value: z",
            "    forcestring: true",
        ]
    ]
    assert f"    forcestring: true # was set by hand{newline}" in new
    assert yaml.safe_load(new)["helm"]["parameters"] == [
        {"name": "image.name", "value": "ghcr.io/acme/carts", "forcestring": True},
        {"name": "image.tag", "value": "0.14.0", "forcestring": True},
        {"name": "replicas", "value": "2"},
        {"name": "alpha", "value": "1.10", "forcestring": True},
        {"name": "zeta", "value": "z", "forcestring": True},
    ]


def test_a_parameter_without_forcestring_or_value_gets_the_missing_line() -> None:
    text = "helm:\n    parameters:\n    -   name: a # a\n        value: x\n    -   name: b\n"
    new = set_argocd_source_file(text, helm_parameters={"a": "w", "b": "z"})
    assert new == (
        "helm:\n    parameters:\n    -   name: a # a\n        value: w\n        forcestring: true\n"
        "    -   name: b\n        value: z\n        forcestring: true\n"
    )


def test_forcestring_in_argo_cd_spelling_is_flipped_not_duplicated() -> None:
    text = "helm:\n  parameters:\n  - name: a\n    value: x\n    forceString: false # camel case\n"
    new = set_argocd_source_file(text, helm_parameters={"a": "1.10"})
    assert new == text.replace("value: x", 'value: "1.10"').replace("false", "true")


def test_sections_and_keys_are_added_where_missing() -> None:
    text = "kustomize:\n  namePrefix: dev- # prefix\n"
    new = set_argocd_source_file(text, kustomize_image=parse_image("carts:1.0"))
    assert new == text + "  images:\n  - carts:1.0\n"
    new = set_argocd_source_file(text, helm_parameters={"a": "b"})
    assert new == text + "helm:\n  parameters:\n  - name: a\n    value: b\n    forcestring: true\n"
    text = "helm:\n  valueFiles: [a.yaml]\n"
    new = set_argocd_source_file(text, helm_parameters={"a": "b"})
    assert new == text + "  parameters:\n  - name: a\n    value: b\n    forcestring: true\n"


def test_kustomize_entries_match_by_repository_and_keep_their_old_name() -> None:
    text = "kustomize:\n    images: # pinned\n    -   carts=ghcr.io/acme/carts:1.0 # renamed\n    -   nginx:1.25\n"
    new = set_argocd_source_file(text, kustomize_image=parse_image(f"ghcr.io/acme/carts:1.1@{DIGEST}"))
    assert new == text.replace("carts=ghcr.io/acme/carts:1.0", f"carts=ghcr.io/acme/carts:1.1@{DIGEST}")
    new = set_argocd_source_file(text, kustomize_image=parse_image("docker.io/library/nginx:1.27"))
    assert_only_targets_changed(text, new, {(0, ("kustomize", "images", 1)): "docker.io/library/nginx:1.27"})
    with pytest.raises(EditError) as caught:
        set_argocd_source_file(text, kustomize_image=parse_image("carts:2.0"))
    assert str(caught.value) == (
        "the kustomize.images entry 'carts=ghcr.io/acme/carts:1.0' deploys the repository 'ghcr.io/acme/carts', but "
        "the image 'carts:2.0' is from 'carts'; refusing to change the image repository (set allowRepositoryChange: "
        "true on the update if the move is intended)"
    )
    notes: list[str] = []
    new = set_argocd_source_file(
        text, kustomize_image=parse_image("carts:2.0"), allow_repository_change=True, note=notes.append
    )
    assert new == text.replace("carts=ghcr.io/acme/carts:1.0", "carts=carts:2.0")
    assert notes == ["image repository changed from ghcr.io/acme/carts to carts"]
    new = set_argocd_source_file(text, kustomize_image=parse_image("redis:7"), create=True)
    assert new == text + "    -   redis:7\n"
    no_final_newline = "kustomize:\r\n  images:\r\n  - a:1 # a"
    new = set_argocd_source_file(no_final_newline, kustomize_image=parse_image("redis:7"), create=True)
    assert new == no_final_newline + "\r\n  - redis:7"


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (None, {}, "pass either kustomize_image or helm_parameters: an Argo CD source is Kustomize or Helm"),
        (
            None,
            {"kustomize_image": parse_image("a:1"), "helm_parameters": {"a": "b"}},
            "pass either kustomize_image or helm_parameters: an Argo CD source is Kustomize or Helm",
        ),
        (None, {"kustomize_image": parse_image("carts")}, "image reference 'carts' has neither tag nor digest"),
        (
            None,
            {"helm_parameters": {"a": "b\nc"}},
            "value 'b\\nc' contains a line break; only single-line values can be written",
        ),
        (
            "helm: {parameters: [{name: a, value: b}]}\n",
            {"helm_parameters": {"c": "d"}, "create": True},
            "'helm.parameters' in the .argocd-source file is a flow or empty sequence; new lines can only be added "
            "to a block one",
        ),
        (
            "helm:\n  parameters:\n  - name: a\n    value: b\n",
            {"helm_parameters": {"a": "x", "c": "d"}},
            "helm.parameters has no parameter 'c' (parameters: 'a'); a parameter the chart does not use would deploy "
            "nothing. Correct argocdSourceFile.helmParameters, or set argocdSourceFile.create: true to add it",
        ),
        (
            "helm: {}\n",
            {"helm_parameters": {"c": "d"}},
            "'helm' in the .argocd-source file is a flow or empty mapping; new lines can only be added to a block one",
        ),
        (
            "kustomize: {images: [a:1, docker.io/library/a:2]}\n",
            {"kustomize_image": parse_image("a:3")},
            "several kustomize.images entries name the repository of 'a:3' (items [0, 1])",
        ),
        (
            "helm:\n  parameters:\n  - {name: a, value: b}\n  - {name: a, value: c}\n",
            {"helm_parameters": {"a": "d"}},
            "the .argocd-source file has 2 helm.parameters named 'a' (items [0, 1])",
        ),
        (
            "helm:\n  parameters:\n  - {name: a, value: b, forcestring: 'no'}\n",
            {"helm_parameters": {"a": "d"}},
            "helm.parameters[0].forcestring in the .argocd-source file is 'no', not a boolean",
        ),
        (
            "a: 1\n---\nb: 2\n",
            {"helm_parameters": {"a": "b"}},
            "the .argocd-source file has 2 YAML documents; Argo CD reads a single one",
        ),
        ("- a\n", {"helm_parameters": {"a": "b"}}, "the .argocd-source file is not a YAML mapping"),
        (
            "kustomize: [a]\n",
            {"kustomize_image": parse_image("a:1")},
            "'kustomize' in the .argocd-source file is not a mapping",
        ),
        (
            "kustomize:\n  images: a\n",
            {"kustomize_image": parse_image("a:1")},
            "'kustomize.images' in the .argocd-source file is not a list",
        ),
        (
            "helm:\n  parameters: 1\n",
            {"helm_parameters": {"a": "b"}},
            "'helm.parameters' in the .argocd-source file is not a list",
        ),
        (
            "helm: [\n",
            {"helm_parameters": {"a": "b"}},
            "the text is not valid YAML: expected the node content, but found '<stream end>' at line 2, column 1",
        ),
    ],
)
def test_source_file_rejections(text: str | None, kwargs: dict[str, Any], message: str) -> None:
    assert file_rejected(text, **kwargs) == message


# ------------------------------------------------------------------------------------------ property


@settings(max_examples=30, deadline=None)
@given(
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True),
    replicas=st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12),
    crlf=st.booleans(),
)
def test_property_in_place_updates_change_only_the_values(tag: str, replicas: str, crlf: bool) -> None:
    text = SOURCE_FILE.replace("\n", "\r\n") if crlf else SOURCE_FILE
    text = text.replace("forcestring: false # was set by hand", "forcestring: true")
    text = text.replace('{name: replicas, value: "2"}', '{name: replicas, value: "2", forcestring: true}')
    new = set_argocd_source_file(text, helm_parameters={"image.tag": tag, "replicas": replicas})
    assert_only_targets_changed(
        text,
        new,
        {
            (0, ("helm", "parameters", 1, "value")): tag,
            (0, ("helm", "parameters", 2, "value")): replicas,
        },
    )
    kustomize = set_argocd_source_file(None, kustomize_image=ImageRef("ghcr.io/acme/carts", tag, None))
    assert yaml.safe_load(kustomize) == {"kustomize": {"images": [f"ghcr.io/acme/carts:{tag}"]}}
