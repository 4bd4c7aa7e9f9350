"""A rule's ``updates`` bound for one event: every strategy renders its templates, refuses values that would not fit
in one YAML line and malformed paths naming the configuration key, and edits only its target scalars."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from yamlcheck import Keys, assert_only_targets_changed

from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import EditError, GitOpsServiceError, TemplateError
from keptn_gitops_service.keptn.data import EventScope
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.edits import EditNotes, file_edits

HEAD = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - {name: fleet, url: "file:///tmp/fleet.git"}
rules:
  - match: {}
    repository: fleet
    updates:
"""
IMAGE = "ghcr.io/acme/carts:1.10"


def context(**values: Any) -> TemplateContext:
    scope = EventScope("sockshop", "dev", "carts", {"team": "blue"})
    return TemplateContext(scope, {"image": IMAGE, **values}, "ctx-1")


def bind(updates: str, **values: Any) -> list[Any]:
    rule = parse_config(HEAD + updates, "c.yaml").rules[0]
    return list(file_edits(rule, context(**values)))


def apply(updates: str, text: str, **values: Any) -> str:
    [edit] = bind(updates, **values)
    result: str = edit.transform(text)
    return result


def refused(updates: str, text: str = "a: b\n", **values: Any) -> str:
    """The message of the error binding or applying the single update raises."""
    with pytest.raises(GitOpsServiceError) as caught:
        apply(updates, text, **values)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ each strategy

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: carts}   # flow
spec:
  template:
    spec:
      containers:
        - name: sidecar
          image: envoy:1.0 # not ours
        - name: carts
          image: "ghcr.io/acme/carts:1.9" # ours
"""


def test_yaml_path_renders_a_selector_and_changes_one_scalar() -> None:
    update = '      - file: d.yaml\n        yamlPath: "spec.template.spec.containers[name={service}].image"\n'
    new = apply(update + '        value: "{image}"\n', DEPLOYMENT)
    assert_only_targets_changed(DEPLOYMENT, new, {(0, ("spec", "template", "spec", "containers", 1, "image")): IMAGE})
    by_index = apply(
        "      - file: d.yaml\n        yamlPath: spec.template.spec.containers[0].image\n        value: envoy:1.1\n",
        DEPLOYMENT,
    )
    assert by_index == DEPLOYMENT.replace("envoy:1.0", "envoy:1.1")


def test_container_image_sets_every_matching_container() -> None:
    new = apply("      - file: d.yaml\n        containerImage: {}\n", DEPLOYMENT)
    assert new == DEPLOYMENT.replace('"ghcr.io/acme/carts:1.9"', f'"{IMAGE}"')


MARKED = """\
image:
  repository: ghcr.io/acme/carts # {"$imagepolicy": "flux-system:carts:name"}
  tag: "1.9" # {"$imagepolicy": "flux-system:carts:tag"}
owner: blue-1.9 # {"keptn": "{labels.team}-{image.tag}"}
replicas: 2 # {"keptn": "{values.replicas}"}
"""


def test_marker_sets_flux_markers_and_renders_keptn_templates_from_the_file() -> None:
    new = apply('      - file: v.yaml\n        marker: {policy: "flux-system:{service}"}\n', MARKED, replicas=3)
    targets: dict[tuple[int, Keys], Any] = {
        (0, ("image", "tag")): "1.10",
        (0, ("owner",)): "blue-1.10",
        (0, ("replicas",)): 3,
    }
    assert_only_targets_changed(MARKED, new, targets)
    assert 'tag: "1.10" # {"$imagepolicy": "flux-system:carts:tag"}' in new


def test_marker_templates_in_the_file_are_checked_like_config_templates() -> None:
    update = "      - file: v.yaml\n        marker: {}\n"
    assert refused(update, 'x: 1 # {"keptn": "{nope}"}\n') == (
        "rules[0].updates[0].marker: the 'keptn' marker '{nope}': template '{nope}' uses unknown field '{nope}' "
        "(known: image, image.digest, image.name, image.tag, project, service, shkeptncontext, stage, "
        "values.<path>, labels.<key>)"
    )
    assert refused(update, 'x: 1 # {"keptn": "{values.note}"}\n', note="a\nb") == (
        "rules[0].updates[0].marker: the 'keptn' marker '{values.note}': the rendered value 'a\\nb' contains a "
        "newline or control character"
    )


HELMRELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: carts
spec:
  chart:
    spec:
      chart: carts
      version: 0.13.0 # chart
  values:
    image: {tag: "1.9"}   # flow
    replicaCount: 1
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: orders
spec:
  chart: {spec: {chart: orders, version: 1.0.0}}
"""


def test_helm_release_sets_chart_version_and_values_of_the_named_release() -> None:
    update = """\
      - file: hr.yaml
        helmRelease:
          name: "{service}"
          chartVersion: "{values.chart}"
          values: {image.tag: "{image.tag}", replicaCount: "{values.replicas}"}
"""
    new = apply(update, HELMRELEASE, chart="0.14.0", replicas=2)
    targets: dict[tuple[int, Keys], Any] = {
        (0, ("spec", "chart", "spec", "version")): "0.14.0",
        (0, ("spec", "values", "image", "tag")): "1.10",
        (0, ("spec", "values", "replicaCount")): 2,
    }
    assert_only_targets_changed(HELMRELEASE, new, targets)


APPLICATION = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: carts}
spec:
  sources:
    - repoURL: https://github.com/acme/values.git
      ref: values
    - repoURL: https://charts.example.com
      chart: carts
      helm:
        parameters:
          - {name: image.tag, value: "1.9"} # flow
        valuesObject:
          containers:
            - name: carts
              image: ghcr.io/acme/carts:1.9
"""


def test_argocd_application_sets_parameters_and_values_object_of_the_chosen_source() -> None:
    update = """\
      - file: app.yaml
        argocdApplication:
          source: 1
          parameters: {image.tag: "{image.tag}"}
          values: {"containers[name={service}].image": "{image}"}
"""
    new = apply(update, APPLICATION)
    source: Keys = ("spec", "sources", 1, "helm")
    targets: dict[tuple[int, Keys], Any] = {
        (0, (*source, "parameters", 0, "value")): "1.10",
        (0, (*source, "valuesObject", "containers", 0, "image")): IMAGE,
    }
    assert_only_targets_changed(APPLICATION, new, targets)


def test_argocd_source_file_writes_kustomize_images_or_helm_parameters() -> None:
    kustomize = apply('      - file: s.yaml\n        argocdSourceFile: {kustomizeImage: "{image}"}\n', "")
    assert kustomize == f"kustomize:\n  images:\n  - {IMAGE}\n"
    existing = "# overrides\nhelm:\n  parameters:\n  - name: image.tag\n    value: '1.9'\n    forcestring: true\n"
    update = '      - file: s.yaml\n        argocdSourceFile: {helmParameters: {image.tag: "{image.tag}"}}\n'
    assert apply(update, existing) == existing.replace("'1.9'", "'1.10'")


def test_updates_are_bound_in_order_with_their_rendered_files() -> None:
    edits = bind(
        '      - file: "apps/{stage}/{service}/values.yaml"\n        marker: {}\n'
        '      - file: "{project}.yaml"\n        containerImage: {}\n'
    )
    assert [edit.path for edit in edits] == ["apps/dev/carts/values.yaml", "sockshop.yaml"]


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            "yamlPath: a\n        value: '{values.bad}'",
            "rules[0].updates[0].value: the rendered value {bad!r} contains a newline or control character",
        ),
        (
            "yamlPath: 'a.{values.bad}'\n        value: x",
            "rules[0].updates[0].yamlPath: the rendered value 'a.'+{bad!r} contains a newline or control character",
        ),
        (
            "helmRelease: {chartVersion: '{values.bad}'}",
            "rules[0].updates[0].helmRelease.chartVersion: the rendered value {bad!r} contains a newline or "
            "control character",
        ),
        (
            "helmRelease: {name: '{values.bad}', chartVersion: '1'}",
            "rules[0].updates[0].helmRelease.name: the rendered value {bad!r} contains a newline or control character",
        ),
        (
            "helmRelease: {values: {'{values.bad}': x}}",
            "rules[0].updates[0].helmRelease.values.{{values.bad}}: the rendered value {bad!r} contains a newline or "
            "control character",
        ),
        (
            "argocdApplication: {values: {a: '{values.bad}'}}",
            "rules[0].updates[0].argocdApplication.values.a: the rendered value {bad!r} contains a newline or "
            "control character",
        ),
        (
            "argocdApplication: {parameters: {'{values.bad}': x}}",
            "rules[0].updates[0].argocdApplication.parameters.{{values.bad}}: the rendered value {bad!r} contains a "
            "newline or control character",
        ),
        (
            "argocdSourceFile: {helmParameters: {a: '{values.bad}'}}",
            "rules[0].updates[0].argocdSourceFile.helmParameters.a: the rendered value {bad!r} contains a newline or "
            "control character",
        ),
        (
            "marker: {policy: 'ns:{values.bad}'}",
            "rules[0].updates[0].marker.policy: the rendered value 'ns:'+{bad!r} contains a newline or control "
            "character",
        ),
        (
            "kustomizeImage: {name: '{values.bad}'}",
            "rules[0].updates[0].kustomizeImage.name: the rendered value {bad!r} contains a newline or control "
            "character",
        ),
    ],
)
@pytest.mark.parametrize("bad", ["1.0\nevil: true", "tab\there", "line\u2028sep", "\ufeffbom", "nul\x00"])
def test_values_that_would_not_fit_in_one_line_are_refused_before_any_file_is_read(
    update: str, message: str, bad: str
) -> None:
    expected = message.replace("'a.'+{bad!r}", repr("a." + bad)).replace("'ns:'+{bad!r}", repr("ns:" + bad))
    expected = expected.replace("{bad!r}", repr(bad)).replace("{{", "{").replace("}}", "}")
    with pytest.raises(EditError) as caught:
        bind(f"      - file: a.yaml\n        {update}\n", bad=bad)
    assert str(caught.value) == expected


def test_yaml_syntax_in_a_value_is_written_as_a_string_never_as_structure() -> None:
    for value in ("a: b", "*alias", "&anchor x", "[1, 2]", "{x: y}", "- item", "# comment", "1.10", "true"):
        new = apply(
            "      - file: a.yaml\n        yamlPath: image.tag\n        value: '{values.v}'\n",
            DEPLOYMENT_VALUES,
            v=value,
        )
        assert_only_targets_changed(DEPLOYMENT_VALUES, new, {(0, ("image", "tag")): value})


DEPLOYMENT_VALUES = "image:\n  tag: 0.13.0 # the tag\n  pullPolicy: Always\n"


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            "yamlPath: 'image..{service}'\n        value: x",
            "rules[0].updates[0].yamlPath: invalid path 'image..carts': expected a key but found '.' at position 6",
        ),
        (
            "helmRelease: {values: {'containers[name={service}': x}}",
            "rules[0].updates[0].helmRelease.values.containers[name={service}: invalid path 'containers[name=carts': "
            "expected ']' at position 21",
        ),
        (
            "argocdApplication: {values: {'a[': x}}",
            "rules[0].updates[0].argocdApplication.values.a[: invalid path 'a[': expected a field name but found the "
            "end at position 2",
        ),
        (
            "helmRelease: {values: {'{values.a}': x, '{values.b}': y}}",
            "rules[0].updates[0].helmRelease.values.{values.b}: renders to 'image.tag', which an earlier key of "
            "helmRelease.values also sets",
        ),
    ],
)
def test_malformed_or_colliding_paths_are_refused_naming_the_key(update: str, message: str) -> None:
    with pytest.raises(EditError) as caught:
        bind(f"      - file: a.yaml\n        {update}\n", a="image.tag", b="image.tag")
    assert str(caught.value) == message


def test_images_are_validated_when_bound() -> None:
    for update in (
        "containerImage: {}",
        "marker: {}",
        "argocdSourceFile: {kustomizeImage: '{image}'}",
        "kustomizeImage: {name: x}",
    ):
        with pytest.raises(
            EditError, match=re.escape("image reference 'ghcr.io/ACME/carts:1' is not a valid OCI reference")
        ):
            bind(f"      - file: a.yaml\n        {update}\n", image="ghcr.io/ACME/carts:1")
    with pytest.raises(TemplateError, match=r"rules\[0\]\.updates\[0\]\.marker\.image: '\{image.digest\}'"):
        bind("      - file: a.yaml\n        marker: {image: 'x@{image.digest}'}\n")


# ------------------------------------------------------------------------------------------ what Keptn sends


def test_an_image_without_tag_or_digest_is_latest() -> None:
    """``keptn trigger delivery --image repo`` sends the name alone; Kubernetes (and helm-service) pull :latest."""
    new = apply(
        "      - file: k.yaml\n        kustomizeImage: {name: ghcr.io/acme/carts}\n",
        "images:\n- name: ghcr.io/acme/carts\n  newTag: '1.9'\n",
        image="ghcr.io/acme/carts",
    )
    assert new == "images:\n- name: ghcr.io/acme/carts\n  newTag: 'latest'\n"
    ctx = context(image="ghcr.io/acme/carts")
    assert [ctx.render(t, "k") for t in ("{image}", "{image.tag}", "{image.name}")] == [
        "ghcr.io/acme/carts:latest",
        "latest",
        "ghcr.io/acme/carts",
    ]
    by_digest = context(image=f"ghcr.io/acme/carts@sha256:{'a' * 64}")
    assert by_digest.render("{image}", "k") == f"ghcr.io/acme/carts@sha256:{'a' * 64}"
    with pytest.raises(TemplateError, match="has no tag"):
        by_digest.render("{image.tag}", "k")


def test_image_sent_as_an_object_serves_its_parts_and_refuses_the_whole() -> None:
    """``keptn trigger delivery --values image.tag=1.2`` sends ``{"image": {"tag": "1.2"}}``."""
    ctx = context(image={"repository": "ghcr.io/acme/carts", "tag": 13})
    assert ctx.render("{image.name}:{image.tag}", "k") == "ghcr.io/acme/carts:13"
    assert ctx.render("{values.image.tag}", "k") == "13"
    with pytest.raises(TemplateError) as caught:
        ctx.render("{image}", "rules[0].updates[0].value")
    assert str(caught.value) == (
        "rules[0].updates[0].value: data.configurationChange.values.image is an object, not an image reference (it "
        "has the values image.repository, image.tag, as 'keptn trigger delivery --values image.<key>=…' sends them); "
        "use {image.tag} or {values.image.<key>} in the rule, or deliver with --image"
    )
    with pytest.raises(TemplateError) as caught:
        ctx.render("{image.digest}", "k")
    assert str(caught.value) == (
        "k: '{image.digest}': data.configurationChange.values.image is an object without digest (it has "
        "image.repository, image.tag)"
    )


def test_values_keep_the_types_keptn_sent_where_the_target_is_typed() -> None:
    text = "replicas: 1\nenabled: false\nratio: 0.5\nlabel: '1'\nname: x\nsmall: 0.1\n"
    updates = "".join(
        f"      - file: v.yaml\n        yamlPath: {key}\n        value: '{{values.{key}}}'\n"
        for key in ("replicas", "enabled", "ratio", "label", "name", "small")
    )
    edits = bind(updates, replicas=3, enabled=True, ratio=0.75, label=2, name=4, small=1e-07)
    for edit in edits:
        text = edit.transform(text)
    assert yaml.safe_load(text) == {
        "replicas": 3,
        "enabled": True,
        "ratio": 0.75,
        "label": "2",
        "name": "4",
        "small": 1e-07,
    }
    assert text == "replicas: 3\nenabled: true\nratio: 0.75\nlabel: '2'\nname: \"4\"\nsmall: 1.0e-07\n"


# ------------------------------------------------------------------------------------------ notes


def test_notes_record_what_is_already_in_place_and_each_application_starts_afresh() -> None:
    rule = parse_config(
        HEAD
        + "      - file: k.yaml\n        kustomizeImage: {name: carts}\n        allowRepositoryChange: true\n"
        + "      - file: v.yaml\n        yamlPath: image.tag\n        value: '{image.tag}'\n",
        "c.yaml",
    ).rules[0]
    notes = EditNotes()
    kustomize, values = file_edits(rule, context(), notes)
    kustomization = "images:\n- name: carts\n  newTag: '1.9'\n"
    moved = kustomize.transform(kustomization)
    assert notes.messages() == ["image repository changed from carts to ghcr.io/acme/carts"]
    assert values.transform("image:\n  tag: '1.10'\n") == "image:\n  tag: '1.10'\n"
    assert notes.unchanged == {1: "image.tag: 1.10"}
    assert kustomize.transform(moved) == moved  # applied again on a tip that already holds it
    assert notes.messages() == [] and notes.unchanged == {0: IMAGE, 1: "image.tag: 1.10"}
