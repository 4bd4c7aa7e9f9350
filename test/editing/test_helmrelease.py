"""Flux HelmRelease chart version and values: only the target scalars change (or one line is inserted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yamlcheck import Keys, assert_only_targets_changed, read

from keptn_gitops_service.editing.helmrelease import set_helmrelease
from keptn_gitops_service.errors import EditError

TWO_RELEASES = """\
# two releases in one file
apiVersion: helm.toolkit.fluxcd.io/v2beta1 # old API
kind: HelmRelease # kind
metadata: {name: carts, namespace: dev} # flow map
spec: # spec
  chart: # chart
    spec: # chart spec
      chart: carts # name
      version: "0.13.1" # pinned
      sourceRef: {kind: HelmRepository, name: keptn} # source
  values: # values
    image: # image
      repository: docker.io/keptnexamples/carts # repo
      tag: '0.13.1' # tag
    common: &common {replicas: 1} # anchored elsewhere
    worker: *common # aliased
    replicaCount: 2 # a number
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: orders
spec:
  chart:
    spec: {chart: orders, version: 1.0.0, sourceRef: {kind: HelmRepository, name: keptn}}
  values:
    image: {repository: docker.io/keptnexamples/orders, tag: 1.0.0}
"""


def rejected(text: str, **kwargs: Any) -> str:
    with pytest.raises(EditError) as caught:
        set_helmrelease(text, **kwargs)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ upstream fixtures


def test_chart_version_and_values_of_an_upstream_helmrelease(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/argocd_lua_testdata_helmrelease_healthy.yaml")
    new = set_helmrelease(text, chart_version="6.5.4", values={"replicaCount": "3"})
    assert_only_targets_changed(
        text,
        new,
        {(0, ("spec", "chart", "spec", "version")): "6.5.4", (0, ("spec", "values", "replicaCount")): 3},
    )
    assert "      version: '6.5.4'\n" in new


def test_values_in_the_flux_marker_fixture(upstream_fixtures: Path) -> None:
    text = read(upstream_fixtures, "flux/image_policy_setter_markers.yaml")
    new = set_helmrelease(text, values={"image.tag": "5.0.3", "image.repository": "ghcr.io/acme/podinfo"})
    assert_only_targets_changed(
        text,
        new,
        {
            (0, ("spec", "values", "image", "tag")): "5.0.3",
            (0, ("spec", "values", "image", "repository")): "ghcr.io/acme/podinfo",
        },
    )
    assert '      tag: 5.0.3  # {"$imagepolicy": "flux-system:podinfo:tag"}\n' in new
    assert rejected(text, chart_version="6.0.0") == (
        "HelmRelease 'podinfo' has no spec.chart.spec mapping to set the chart version in"
    )


def test_a_missing_version_is_inserted_after_chart(upstream_fixtures: Path) -> None:
    template = read(upstream_fixtures, "flux/flux2_trace_hr_ks_gitrepo.yaml.tmpl")
    text = template.replace("{{ .fluxns }}", "flux-system").replace("{{ .ns }}", "default")
    new = set_helmrelease(text, chart_version="6.3.6")
    assert new == text.replace("      chart: podinfo\n", "      chart: podinfo\n      version: 6.3.6\n", 1)


# ------------------------------------------------------------------------------------------ hand-written


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_name_selects_a_release_and_only_its_scalars_change(newline: str) -> None:
    text = TWO_RELEASES.replace("\n", newline)
    new = set_helmrelease(text, chart_version="1.10", values={"image.tag": "0.14.0", "replicaCount": "3"}, name="carts")
    assert_only_targets_changed(
        text,
        new,
        {
            (0, ("spec", "chart", "spec", "version")): "1.10",
            (0, ("spec", "values", "image", "tag")): "0.14.0",
            (0, ("spec", "values", "replicaCount")): 3,
        },
    )
    assert f'      version: "1.10" # pinned{newline}' in new
    new = set_helmrelease(text, chart_version="1.1.0", values={"image.tag": "1.10"}, name="orders")
    assert_only_targets_changed(
        text,
        new,
        {(1, ("spec", "chart", "spec", "version")): "1.1.0", (1, ("spec", "values", "image", "tag")): "1.10"},
    )
    assert 'image: {repository: docker.io/keptnexamples/orders, tag: "1.10"}' in new


def test_equal_values_return_the_text_as_is() -> None:
    assert set_helmrelease(TWO_RELEASES, chart_version="0.13.1", name="carts") is TWO_RELEASES


def test_bracketed_values_paths() -> None:
    text = 'kind: HelmRelease\napiVersion: helm.toolkit.fluxcd.io/v2\nspec:\n  values:\n    "a.b": {c: x}\n'
    new = set_helmrelease(text, values={'["a.b"].c': "z"})
    assert new == text.replace("{c: x}", "{c: z}")


# ------------------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"chart_version": "1.0.0"},
            "the text has 2 HelmReleases (documents 0, 1: 'carts', 'orders'); pass the name of the one to change",
        ),
        (
            {"chart_version": "1.0.0", "name": "cart"},
            "the text has no HelmRelease named 'cart' (HelmReleases: 'carts', 'orders')",
        ),
        ({"name": "carts"}, "nothing to set: pass a chart version and/or values"),
        ({"chart_version": " ", "name": "carts"}, "the chart version for HelmRelease 'carts' is empty"),
        (
            {"chart_version": "1.0\n", "name": "carts"},
            "value '1.0\\n' contains a line break; only single-line values can be written",
        ),
        (
            {"values": {"image.digest": "sha256:x"}, "name": "carts"},
            "HelmRelease 'carts' has no value at 'spec.values.image.digest' (no key 'digest' under 'spec.values.image' "
            "at line 13, which has the keys 'repository', 'tag'); values are changed, never created",
        ),
        ({"values": {"image": "x"}, "name": "carts"}, "path 'spec.values.image' is a mapping at line 13, not a scalar"),
        (
            {"values": {"": "x"}, "name": "carts"},
            "a values path must not be empty; spec.values itself cannot be replaced by a scalar",
        ),
        (
            {"values": {"image..tag": "x"}, "name": "carts"},
            "invalid path 'image..tag': expected a key but found '.' at position 6",
        ),
        (
            {"values": {"common.replicas": "2"}, "name": "carts"},
            "path 'spec.values.common.replicas' is inside the anchored node '&common' at line 15, which is used "
            "through aliases; changing it would change every alias",
        ),
        (
            {"values": {"image.tag": "x: y\nz"}, "name": "orders"},
            "value 'x: y\\nz' contains a line break; only single-line values can be written",
        ),
    ],
)
def test_rejections(kwargs: dict[str, Any], message: str) -> None:
    assert rejected(TWO_RELEASES, **kwargs) == message


def test_yaml_syntax_in_values_is_written_as_a_string() -> None:
    for value in ("a: b", "x # y", "[1]", "{a: 1}", "*alias", "- item", "true", "~", "7e12345"):
        new = set_helmrelease(TWO_RELEASES, values={"image.tag": value}, name="carts")
        assert next(yaml.safe_load_all(new))["spec"]["values"]["image"]["tag"] == value
        assert new.count("\n") == TWO_RELEASES.count("\n")


def test_other_documents_are_not_helmreleases() -> None:
    assert rejected("apiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nspec: {}\n", chart_version="1") == (
        "the text has no HelmRelease (helm.toolkit.fluxcd.io/v2*)"
    )
    chart_ref = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: a}\nspec:\n  chartRef: {}\n"
    assert rejected(chart_ref, chart_version="1") == (
        "HelmRelease 'a' uses spec.chartRef; its chart version is set in the referenced OCIRepository or "
        "HelmChart, not in the HelmRelease"
    )
    values_from = chart_ref + "  valuesFrom: [{kind: ConfigMap, name: v}]\n"
    assert rejected(values_from, values={"image.tag": "1"}) == (
        "HelmRelease 'a' has no value at 'spec.values.image.tag' (no key 'values' under 'spec' at line 5, which "
        "has the keys 'chartRef', 'valuesFrom'); values are changed, never created (it may come from spec.valuesFrom, "
        "which is not edited)"
    )
    twice = TWO_RELEASES.replace("name: orders", "name: carts")
    assert rejected(twice, chart_version="1", name="carts") == (
        "the text has 2 HelmReleases named 'carts' (documents 0, 1: 'carts', 'carts'); pass the name of the one "
        "to change"
    )


# ------------------------------------------------------------------------------------------ property


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?(-[a-z0-9.]{1,8})?(\+[a-z0-9]{1,8})?", fullmatch=True),
    replicas=st.integers(min_value=0, max_value=10_000),
)
def test_property_only_version_and_values_change(upstream_fixtures: Path, version: str, replicas: int) -> None:
    text = read(upstream_fixtures, "flux/argocd_lua_testdata_helmrelease_healthy.yaml")
    new = set_helmrelease(text, chart_version=version, values={"replicaCount": str(replicas)})
    targets: dict[tuple[int, Keys], Any] = {
        (0, ("spec", "chart", "spec", "version")): version,
        (0, ("spec", "values", "replicaCount")): replicas,
    }
    assert_only_targets_changed(text, new, targets)
