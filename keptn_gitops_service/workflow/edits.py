"""Turn a rule's ``updates`` into file edits for one event: render the templates, validate, bind the editors.

Everything the event decides is rendered and checked here, before the repository is touched, so a bad event fails
naming the configuration key it broke. Only what the file itself carries (the templates of ``keptn`` markers) is
rendered while the file is edited.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
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
from keptn_gitops_service.editing.argocd_source import set_application_helm, set_argocd_source_file
from keptn_gitops_service.editing.helmrelease import set_helmrelease
from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.editing.kustomize import set_kustomize_image
from keptn_gitops_service.editing.manifests import set_container_images
from keptn_gitops_service.editing.markers import set_marked_values
from keptn_gitops_service.editing.yamledit import parse_path, set_scalar
from keptn_gitops_service.errors import EditError
from keptn_gitops_service.gitops.writer import FileEdit
from keptn_gitops_service.workflow.context import TemplateContext

# Characters no single-line scalar can carry: control characters (newlines, tabs), line and paragraph separators,
# lone surrogates, and the byte order mark.
_NOT_IN_A_LINE = frozenset({"Cc", "Cs", "Zl", "Zp"})


@dataclass
class EditNotes:
    """What the edits of one change reported the last time they were applied (a push race applies them again).

    ``notes`` are sentences worth putting into the finished message (``image repository changed from … to …``);
    ``unchanged`` holds, per edit, what it sets when the file already held it (the edit changed nothing)."""

    notes: dict[int, list[str]] = field(default_factory=dict)
    unchanged: dict[int, str] = field(default_factory=dict)

    def messages(self) -> list[str]:
        """The notes of every edit, each once, in update order."""
        return list(dict.fromkeys(note for index in sorted(self.notes) for note in self.notes[index]))


def file_edits(rule: Rule, context: TemplateContext, notes: EditNotes | None = None) -> tuple[FileEdit, ...]:
    """The rendered edits of ``rule`` (raises a :class:`TemplateError`/:class:`EditError` naming the key).

    With ``notes``, each edit records there what it reports and whether it left its file as it was."""
    edits = []
    for index, update in enumerate(rule.updates):
        where = f"rules[{rule.index}].updates[{index}]"
        path = context.render(update.file, f"{where}.file")
        # argocd-image-updater's write-back file appears with the first update, so ours may create it too
        create = isinstance(update, ArgoCDSourceFileUpdate)
        record = notes if notes is not None else EditNotes()
        transform, sets = _transform(update, _Renderer(context, where), partial(_note, record, index))
        edits.append(FileEdit(path, partial(_recorded, record, index, sets, transform), create=create))
    return tuple(edits)


def _note(notes: EditNotes, index: int, message: str) -> None:
    notes.notes.setdefault(index, []).append(message)


def _recorded(notes: EditNotes, index: int, sets: str, transform: Callable[[str], str], text: str) -> str:
    """Apply ``transform``, first forgetting what an earlier application of edit ``index`` recorded."""
    notes.notes.pop(index, None)
    notes.unchanged.pop(index, None)
    new = transform(text)
    if new == text:
        notes.unchanged[index] = sets
    return new


def _transform(update: Update, r: _Renderer, note: Callable[[str], None]) -> tuple[Callable[[str], str], str]:
    """The editor of ``update`` with every value the event decides already rendered and checked, and what it sets
    (for messages)."""
    if isinstance(update, KustomizeImageUpdate):
        name = r.text(update.name, "kustomizeImage.name")
        image = r.image(update.image, "kustomizeImage.image")
        return partial(
            set_kustomize_image,
            name=name,
            image=image,
            create=update.create,
            allow_repository_change=update.allow_repository_change,
            note=note,
        ), str(image)
    if isinstance(update, YamlPathUpdate):
        path, value = r.path(update.yaml_path, "yamlPath"), r.text(update.value, "value")
        return partial(set_scalar, path=path, value=value), f"{path}: {value}"
    if isinstance(update, MarkerUpdate):
        policy = r.optional(update.policy, "marker.policy")
        image = r.image(update.image, "marker.image")
        return partial(
            set_marked_values,
            image=image,
            policy=policy,
            keptn_values=r.marker_value,
            allow_repository_change=update.allow_repository_change,
            note=note,
        ), str(image)
    if isinstance(update, ContainerImageUpdate):
        image = r.image(update.image, "containerImage.image")
        return partial(set_container_images, image=image), str(image)
    if isinstance(update, HelmReleaseUpdate):
        chart_version = r.optional(update.chart_version, "helmRelease.chartVersion")
        values = r.pairs(update.values, "helmRelease.values", paths=True)
        sets = ([f"chart version {chart_version}"] if chart_version is not None else []) + _listed(values)
        return partial(
            set_helmrelease,
            name=r.optional(update.name, "helmRelease.name"),
            chart_version=chart_version,
            values=values,
        ), ", ".join(sets)
    if isinstance(update, ArgoCDApplicationUpdate):
        parameters = r.pairs(update.parameters, "argocdApplication.parameters", paths=False)
        values = r.pairs(update.values, "argocdApplication.values", paths=True)
        return partial(
            set_application_helm, parameters=parameters, values=values, source_index=update.source
        ), ", ".join(_listed(parameters) + _listed(values))
    if isinstance(update, ArgoCDSourceFileUpdate):
        source_file = partial(
            set_argocd_source_file,
            create=update.create,
            allow_repository_change=update.allow_repository_change,
            note=note,
        )
        if update.kustomize_image is not None:
            image = r.image(update.kustomize_image, "argocdSourceFile.kustomizeImage")
            return partial(source_file, kustomize_image=image), str(image)
        parameters = r.pairs(update.helm_parameters, "argocdSourceFile.helmParameters", paths=False)
        return partial(source_file, helm_parameters=parameters), ", ".join(_listed(parameters))
    assert_never(update)


def _listed(pairs: dict[str, str]) -> list[str]:
    return [f"{name}: {value}" for name, value in pairs.items()]


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
