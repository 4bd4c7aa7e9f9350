"""Set a Flux HelmRelease's chart version and values with a minimal diff.

A ``helm.toolkit.fluxcd.io/v2`` (or ``v2beta1``/``v2beta2``) ``HelmRelease`` names its chart in
``spec.chart.spec`` (``chart``, ``version``, ``sourceRef``) and carries inline Helm values in ``spec.values``
(fixture ``flux/image_policy_setter_markers.yaml``, first document; Flux's own
image automation writes into these values through markers). Flux rewrites such files whole; here each
scalar is changed through :mod:`.yamledit`, so everything else stays byte for byte and every edit is re-parsed
and checked.

Decisions:

* ``spec.chart.spec.version`` is written as a string (``1.10`` must not become the float ``1.1``). When the
  key is missing (Flux then installs the latest chart), it is inserted after ``chart``. A HelmRelease that uses
  ``spec.chartRef`` has no version of its own: that is an :class:`EditError`.
* ``values`` paths are relative to ``spec.values`` and use :func:`.yamledit.parse_path` syntax
  (``image.tag``, ``containers[0].image``, ``["a.b"].c``). Each must already exist as a scalar: a typo must not
  silently add a value that the chart ignores. The scalar keeps its type (``replicaCount: 2`` stays a number).
* With several HelmReleases in one text, ``name`` (``metadata.name``) selects one; without it that is an
  error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.editing.imageref import show
from keptn_gitops_service.editing.yamledit import (
    get_scalar,
    insert_mapping_key,
    load_documents,
    missing_reason,
    parse_path,
    set_scalar,
)
from keptn_gitops_service.errors import EditError

__all__ = ["HELMRELEASE_API_PREFIX", "set_helmrelease"]

HELMRELEASE_API_PREFIX = "helm.toolkit.fluxcd.io/v2"


@dataclass(frozen=True)
class _Release:
    """The selected HelmRelease: its document index, its loaded data and its name for messages."""

    document: int
    data: dict[str, Any]

    @property
    def name(self) -> str:
        metadata = self.data.get("metadata")
        return str(metadata.get("name")) if isinstance(metadata, dict) else "?"

    @property
    def shown(self) -> str:
        return f"HelmRelease {show(self.name)}"


def _is_helmrelease(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "HelmRelease"
        and str(document.get("apiVersion", "")).startswith(HELMRELEASE_API_PREFIX)
    )


def _select(documents: list[Any], name: str | None) -> _Release:
    """The one HelmRelease to edit (by ``metadata.name`` when given)."""
    releases = [_Release(i, doc) for i, doc in enumerate(documents) if _is_helmrelease(doc)]
    if not releases:
        raise EditError(f"the text has no HelmRelease ({HELMRELEASE_API_PREFIX}*)")
    names = ", ".join(show(r.name) for r in releases)
    if name is not None:
        releases = [r for r in releases if r.name == name]
        if not releases:
            raise EditError(f"the text has no HelmRelease named {show(name)} (HelmReleases: {names})")
    if len(releases) > 1:
        documents_list = ", ".join(str(r.document) for r in releases)
        what = f"named {show(name)} " if name is not None else ""
        raise EditError(
            f"the text has {len(releases)} HelmReleases {what}(documents {documents_list}: {names}); "
            "pass the name of the one to change"
        )
    return releases[0]


def _chart_spec(release: _Release) -> dict[str, Any]:
    """``spec.chart.spec``, or an error explaining why there is no chart version to set."""
    spec = release.data.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    if "chartRef" in spec:
        raise EditError(
            f"{release.shown} uses spec.chartRef; its chart version is set in the referenced "
            "OCIRepository or HelmChart, not in the HelmRelease"
        )
    chart = spec.get("chart")
    chart_spec = chart.get("spec") if isinstance(chart, dict) else None
    if not isinstance(chart_spec, dict):
        raise EditError(f"{release.shown} has no spec.chart.spec mapping to set the chart version in")
    return chart_spec


def _set_chart_version(text: str, release: _Release, version: str) -> str:
    if version.strip() == "":
        raise EditError(f"the chart version for {release.shown} is empty")
    chart_spec = _chart_spec(release)
    if "version" in chart_spec:
        return set_scalar(text, "spec.chart.spec.version", version, document=release.document, force_string=True)
    after = "chart" if "chart" in chart_spec else None
    return insert_mapping_key(text, "spec.chart.spec", "version", version, after_key=after, document=release.document)


def _values_path(path: str) -> str:
    """``image.tag`` -> ``spec.values.image.tag`` (validated with :func:`.yamledit.parse_path`)."""
    if not parse_path(path):
        raise EditError("a values path must not be empty; spec.values itself cannot be replaced by a scalar")
    return "spec.values" + ("" if path.startswith("[") else ".") + path


def _set_value(text: str, release: _Release, path: str, value: str) -> str:
    full = _values_path(path)
    if get_scalar(text, full, document=release.document) is None:
        spec = release.data.get("spec")
        from_elsewhere = isinstance(spec, dict) and "valuesFrom" in spec
        hint = " (it may come from spec.valuesFrom, which is not edited)" if from_elsewhere else ""
        reason = missing_reason(text, full, document=release.document)
        raise EditError(
            f"{release.shown} has no value at {show(full)} ({reason}); values are changed, never created{hint}"
        )
    return set_scalar(text, full, value, document=release.document)


def set_helmrelease(
    text: str,
    *,
    chart_version: str | None = None,
    values: Mapping[str, str] | None = None,
    name: str | None = None,
) -> str:
    """Set ``spec.chart.spec.version`` and/or existing ``spec.values`` scalars of one Flux HelmRelease.

    ``values`` maps paths below ``spec.values`` to new values. Raises :class:`EditError` when there is nothing
    to set, no (or no single) HelmRelease, a missing values path, and for whatever :mod:`.yamledit` refuses.
    """
    if chart_version is None and not values:
        raise EditError("nothing to set: pass a chart version and/or values")
    release = _select(load_documents(text), name)
    if chart_version is not None:
        text = _set_chart_version(text, release, chart_version)
    for path, value in (values or {}).items():
        text = _set_value(text, release, path, value)
    return text
