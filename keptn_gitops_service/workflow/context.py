"""The values templates are rendered with, taken from one triggered event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.config.templates import render
from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.errors import TemplateError
from keptn_gitops_service.keptn.data import EventScope

LATEST = "latest"
"""The tag of an image delivered without tag and digest (``keptn trigger delivery --image repo``)."""


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
        """``configurationChange.values.image`` as a validated OCI reference; without tag and digest it is
        ``:latest``, as Kubernetes (and so helm-service) would pull it."""
        raw = self.values.get("image")
        if raw is None:
            raise TemplateError("the event has no data.configurationChange.values.image")
        if isinstance(raw, Mapping):
            keys = ", ".join(f"image.{key}" for key in raw) or "none"
            raise TemplateError(
                "data.configurationChange.values.image is an object, not an image reference (it has the values "
                f"{keys}, as 'keptn trigger delivery --values image.<key>=…' sends them); use {{image.tag}} or "
                "{values.image.<key>} in the rule, or deliver with --image"
            )
        if not isinstance(raw, str):
            raise TemplateError("data.configurationChange.values.image must be a string")
        image = parse_image(raw)
        if image.tag is None and image.digest is None:
            return ImageRef(image.name, LATEST, None)
        return image

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
        part_name = name.removeprefix("image.")
        raw = self.values.get("image")
        if isinstance(raw, Mapping):
            return self._image_object_part(raw, part_name)
        image = self.image()
        part = {"name": image.name, "tag": image.tag, "digest": image.digest}[part_name]
        if not part:
            raise TemplateError(f"'{{{name}}}': the image '{image}' has no {part_name}")
        return part

    def _image_object_part(self, raw: Mapping[str, Any], part_name: str) -> str:
        """``{image.tag}`` and friends from ``values.image`` sent as an object (``--values image.tag=1.2``);
        ``{image.name}`` is its ``name``, else its ``repository`` (the Helm charts' spelling)."""
        keys = ("name", "repository") if part_name == "name" else (part_name,)
        for key in keys:
            if key in raw:
                return self._value(f"image.{key}")
        listed = ", ".join(f"image.{key}" for key in raw) or "none"
        raise TemplateError(
            f"'{{image.{part_name}}}': data.configurationChange.values.image is an object without "
            f"{' or '.join(keys)} (it has {listed})"
        )

    def _value(self, path: str) -> str:
        node: Any = self.values
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                raise TemplateError(f"'{{values.{path}}}': data.configurationChange.values has no '{path}'")
            node = node[key]
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, float):
            return _yaml_float(node)
        if isinstance(node, str | int):
            return str(node)
        raise TemplateError(f"'{{values.{path}}}' is not a single value (got {type(node).__name__})")


def _yaml_float(number: float) -> str:
    """A JSON number with a fraction or exponent, spelt so that YAML 1.1 and 1.2 readers both read a float
    (``1e-07`` is a string to YAML 1.1, ``1.0e-07`` is not)."""
    text = repr(number)
    mantissa, exponent, power = text.partition("e")
    if exponent and "." not in mantissa:
        return f"{mantissa}.0e{power}"
    return text
