"""Turn a rule's ``updates`` into file edits for one event: render the templates, validate, bind the editors."""

from __future__ import annotations

from functools import partial

from keptn_gitops_service.config.model import KustomizeImageUpdate, Rule, YamlPathUpdate
from keptn_gitops_service.errors import EditError
from keptn_gitops_service.gitops.imageref import parse_image
from keptn_gitops_service.gitops.kustomize import set_kustomize_image
from keptn_gitops_service.gitops.writer import FileEdit
from keptn_gitops_service.gitops.yamledit import set_scalar
from keptn_gitops_service.workflow.context import TemplateContext


def file_edits(rule: Rule, context: TemplateContext) -> tuple[FileEdit, ...]:
    """The rendered edits of ``rule`` (raises a :class:`TemplateError`/:class:`EditError` naming the key)."""
    edits = []
    for index, update in enumerate(rule.updates):
        where = f"rules[{rule.index}].updates[{index}]"
        path = context.render(update.file, f"{where}.file")
        if isinstance(update, KustomizeImageUpdate):
            name = context.render(update.name, f"{where}.kustomizeImage.name")
            image = parse_image(context.render(update.image, f"{where}.kustomizeImage.image"))
            edits.append(FileEdit(path, partial(set_kustomize_image, name=name, image=image)))
        elif isinstance(update, YamlPathUpdate):
            value = context.render(update.value, f"{where}.value")
            if any(ord(ch) < 32 and ch != "\t" for ch in value):
                raise EditError(f"{where}.value: the rendered value {value!r} contains a newline or control character")
            edits.append(FileEdit(path, partial(set_scalar, path=update.yaml_path, value=value)))
    return tuple(edits)
