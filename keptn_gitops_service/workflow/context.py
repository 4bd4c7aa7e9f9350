"""The values templates are rendered with, taken from one triggered event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.config.templates import render
from keptn_gitops_service.errors import TemplateError
from keptn_gitops_service.gitops.imageref import ImageRef, parse_image
from keptn_gitops_service.keptn.data import EventScope


@dataclass(frozen=True)
class TemplateContext:
    """Resolves template fields for one event."""

    scope: EventScope
    values: Mapping[str, Any]
    shkeptncontext: str

    def render(self, template: str, where: str) -> str:
        """Render ``template``; errors name the config key ``where``."""
        try:
            return render(template, self.resolve)
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None

    def image(self) -> ImageRef:
        """``configurationChange.values.image`` as a validated OCI reference."""
        raw = self.values.get("image")
        if raw is None:
            raise TemplateError("the event has no data.configurationChange.values.image")
        if not isinstance(raw, str):
            raise TemplateError("data.configurationChange.values.image must be a string")
        return parse_image(raw)

    def resolve(self, name: str) -> str:
        simple = {"project": self.scope.project, "stage": self.scope.stage, "service": self.scope.service}
        if name in simple:
            return simple[name]
        if name == "shkeptncontext":
            return self.shkeptncontext
        if name == "image":
            return str(self.image())
        if name.startswith("image."):
            return self._image_part(name)
        if name.startswith("labels."):
            key = name.removeprefix("labels.")
            if key not in self.scope.labels:
                raise TemplateError(f"'{{{name}}}': the event has no label '{key}'")
            return self.scope.labels[key]
        return self._value(name.removeprefix("values."))

    def _image_part(self, name: str) -> str:
        image = self.image()
        part = {"image.name": image.name, "image.tag": image.tag, "image.digest": image.digest}[name]
        if not part:
            raise TemplateError(f"'{{{name}}}': the image '{image}' has no {name.removeprefix('image.')}")
        return part

    def _value(self, path: str) -> str:
        node: Any = self.values
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                raise TemplateError(f"'{{values.{path}}}': data.configurationChange.values has no '{path}'")
            node = node[key]
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, str | int | float):
            return str(node)
        raise TemplateError(f"'{{values.{path}}}' is not a single value (got {type(node).__name__})")
