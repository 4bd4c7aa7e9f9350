"""Turn a rule's ``updates`` into file edits for one event: render the templates, validate, bind the editors.

Everything the event decides is rendered and checked here, before the repository is touched, so a bad event fails
naming the configuration key it broke. Only what the file itself carries (the templates of ``keptn`` markers) is
rendered while the file is edited.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import assert_never

from keptn_gitops_service.config.model import (
    ArgoCDApplicationUpdate,
    ArgoCDSourceFileUpdate,
    ContainerImageUpdate,
    HelmReleaseUpdate,
    KustomizeImageUpdate,
    MarkerUpdate,
    Rule,
    TemplateMap,
    Update,
    YamlPathUpdate,
)
from keptn_gitops_service.errors import EditError
from keptn_gitops_service.gitops.argocd_source import set_application_helm, set_argocd_source_file
from keptn_gitops_service.gitops.helmrelease import set_helmrelease
from keptn_gitops_service.gitops.imageref import ImageRef, parse_image
from keptn_gitops_service.gitops.kustomize import set_kustomize_image
from keptn_gitops_service.gitops.manifests import set_container_images
from keptn_gitops_service.gitops.markers import set_marked_values
from keptn_gitops_service.gitops.writer import FileEdit
from keptn_gitops_service.gitops.yamledit import parse_path, set_scalar
from keptn_gitops_service.workflow.context import TemplateContext

# Characters no single-line scalar can carry: control characters (newlines, tabs), line and paragraph separators,
# lone surrogates, and the byte order mark.
_NOT_IN_A_LINE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def file_edits(rule: Rule, context: TemplateContext) -> tuple[FileEdit, ...]:
    """The rendered edits of ``rule`` (raises a :class:`TemplateError`/:class:`EditError` naming the key)."""
    edits = []
    for index, update in enumerate(rule.updates):
        where = f"rules[{rule.index}].updates[{index}]"
        path = context.render(update.file, f"{where}.file")
        # argocd-image-updater's write-back file appears with the first update, so ours may create it too
        create = isinstance(update, ArgoCDSourceFileUpdate)
        edits.append(FileEdit(path, _transform(update, _Renderer(context, where)), create=create))
    return tuple(edits)


def _transform(update: Update, r: _Renderer) -> Callable[[str], str]:
    """The editor of ``update`` with every value the event decides already rendered and checked."""
    if isinstance(update, KustomizeImageUpdate):
        name = r.text(update.name, "kustomizeImage.name")
        return partial(set_kustomize_image, name=name, image=r.image(update.image, "kustomizeImage.image"))
    if isinstance(update, YamlPathUpdate):
        return partial(set_scalar, path=r.path(update.yaml_path, "yamlPath"), value=r.text(update.value, "value"))
    if isinstance(update, MarkerUpdate):
        policy = r.optional(update.policy, "marker.policy")
        image = r.image(update.image, "marker.image")
        return partial(set_marked_values, image=image, policy=policy, keptn_values=r.marker_value)
    if isinstance(update, ContainerImageUpdate):
        return partial(set_container_images, image=r.image(update.image, "containerImage.image"))
    if isinstance(update, HelmReleaseUpdate):
        return partial(
            set_helmrelease,
            name=r.optional(update.name, "helmRelease.name"),
            chart_version=r.optional(update.chart_version, "helmRelease.chartVersion"),
            values=r.pairs(update.values, "helmRelease.values", paths=True),
        )
    if isinstance(update, ArgoCDApplicationUpdate):
        return partial(
            set_application_helm,
            parameters=r.pairs(update.parameters, "argocdApplication.parameters", paths=False),
            values=r.pairs(update.values, "argocdApplication.values", paths=True),
            source_index=update.source,
        )
    if isinstance(update, ArgoCDSourceFileUpdate):
        if update.kustomize_image is not None:
            image = r.image(update.kustomize_image, "argocdSourceFile.kustomizeImage")
            return partial(set_argocd_source_file, kustomize_image=image)
        parameters = r.pairs(update.helm_parameters, "argocdSourceFile.helmParameters", paths=False)
        return partial(set_argocd_source_file, helm_parameters=parameters)
    assert_never(update)


@dataclass(frozen=True)
class _Renderer:
    """Renders the templates of one update; every error names the key below ``where``."""

    context: TemplateContext
    where: str

    def text(self, template: str, key: str) -> str:
        """A rendered value that fits in one line of YAML (anything else would change more than the scalar)."""
        where = f"{self.where}.{key}"
        return _single_line(self.context.render(template, where), where)

    def optional(self, template: str | None, key: str) -> str | None:
        return None if template is None else self.text(template, key)

    def image(self, template: str, key: str) -> ImageRef:
        return parse_image(self.context.render(template, f"{self.where}.{key}"))

    def path(self, template: str, key: str) -> str:
        """A rendered path, checked for syntax now rather than when the file is edited."""
        path = self.text(template, key)
        try:
            parse_path(path)
        except EditError as exc:
            raise EditError(f"{self.where}.{key}: {exc}") from None
        return path

    def pairs(self, pairs: TemplateMap, key: str, *, paths: bool) -> dict[str, str]:
        """Rendered ``{path or name: value}``; two keys that render to the same one are an error."""
        rendered: dict[str, str] = {}
        for name_template, value_template in pairs:
            where = f"{key}.{name_template}"
            name = self.path(name_template, where) if paths else self.text(name_template, where)
            if name in rendered:
                raise EditError(f"{self.where}.{where}: renders to {name!r}, which an earlier key of {key} also sets")
            rendered[name] = self.text(value_template, where)
        return rendered

    def marker_value(self, template: str) -> str:
        """The value of a ``keptn`` marker, rendered from the template the file carries."""
        where = f"{self.where}.marker: the 'keptn' marker {template!r}"
        return _single_line(self.context.render(template, where), where)


def _single_line(value: str, where: str) -> str:
    if "\ufeff" in value or any(unicodedata.category(ch) in _NOT_IN_A_LINE for ch in value):
        raise EditError(f"{where}: the rendered value {value!r} contains a newline or control character")
    return value
