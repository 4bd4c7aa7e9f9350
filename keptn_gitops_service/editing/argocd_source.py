"""Argo CD write-back with a minimal diff: Helm settings of an ``Application`` and ``.argocd-source-<app>.yaml``.

Two targets:

* :func:`set_application_helm` edits an ``argoproj.io/v1alpha1`` ``Application`` kept in Git (app-of-apps):
  existing ``helm.parameters[].value`` entries and ``helm.valuesObject`` scalars of ``spec.source`` or of
  one of ``spec.sources`` (Argo CD ignores ``spec.source`` once ``spec.sources`` is set).
* :func:`set_argocd_source_file` writes the parameter-override file that argocd-image-updater commits with the
  ``git`` write-back method and that Argo CD's repo-server merges into the source. Its format is the one of
  ``marshalParamsOverride`` in argocd-image-updater ``pkg/argocd/update.go`` (fixtures
  ``argocd-image-updater/argocd-source_kustomize_expected.go.txt`` and ``argocd-source_helm_expected.go.txt``)::

      kustomize:                        helm:
        images:                           parameters:
        - ghcr.io/acme/carts:1.2.3        - name: image.tag
                                            value: 1.2.3
                                            forcestring: true

  Upstream unmarshals the file, merges (``mergeKustomizeOverride`` replaces the entry naming the same image
  and registry, ``docker.io`` = no registry; ``mergeHelmOverride`` replaces the parameter of the same name),
  sorts the parameters by name and marshals the whole file again. Here existing entries are changed in place
  through :func:`.yamledit.set_scalar`, new ones are appended as new lines (new parameters sorted by name
  among themselves) and existing ones are never reordered, so comments and layout survive; every step is
  re-parsed and compared with the intended data.

Decisions:

* An existing kustomize entry matches when its image name (the part before ``=``, or the image after it)
  names the same repository as the new image (:func:`.imageref.same_repository`); it is replaced by the new
  reference as the new image spells it, keeping an ``<old>=`` prefix (kustomize's "replace image *old*").
* Helm parameters are strings: values are written as strings and ``forcestring: true`` is set (inserted when
  missing, flipped when ``false``; Argo CD's own spelling ``forceString`` is recognised, as its JSON decoding
  ignores case), as argocd-image-updater writes them, so Helm never reads ``1.10`` as a number.
* ``set_application_helm`` only changes what exists: a missing parameter or values path is an error, as is a
  source selection that is ambiguous.
* In an ``.argocd-source`` file that already lists kustomize images or Helm parameters, an image whose repository
  no entry names, or a parameter not listed, is an error naming the entries there are (an added entry that the
  Application does not use would deploy nothing), unless ``create`` asks for it. A file or section that does not
  exist yet is written, as argocd-image-updater's first write-back does.
* An entry ``old=new:tag`` matched through ``old`` deploys ``new``: pointing it at another repository is refused
  unless ``allow_repository_change`` (then ``note`` hears it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from keptn_gitops_service.editing.imageref import ImageRef, same_repository, show
from keptn_gitops_service.editing.yamledit import (
    content_end,
    file_newline,
    get_scalar,
    insert_lines,
    load_documents,
    missing_reason,
    parse_path,
    same_data,
    set_scalar,
)
from keptn_gitops_service.editing.yamllimits import LimitedLoader
from keptn_gitops_service.errors import EditError, YamlLimitError

__all__ = ["APPLICATION_API_PREFIX", "set_application_helm", "set_argocd_source_file"]

APPLICATION_API_PREFIX = "argoproj.io/"

# ---------------------------------------------------------------------------------------------------------
# Application: spec.source / spec.sources[i] helm parameters and valuesObject
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """The selected source of an Application: where it is and its loaded data."""

    app: str
    document: int
    path: str
    data: dict[str, Any]

    @property
    def shown(self) -> str:
        return f"Application {show(self.app)} {self.path}"


def _is_application(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "Application"
        and str(document.get("apiVersion", "")).startswith(APPLICATION_API_PREFIX)
    )


def _application(documents: list[Any]) -> tuple[int, dict[str, Any], str]:
    """The single Application in the text: document index, data and name."""
    found = [(i, doc) for i, doc in enumerate(documents) if _is_application(doc)]
    names = [str(_mapping(doc.get("metadata")).get("name", "?")) for _, doc in found]
    if not found:
        raise EditError(f"the text has no Argo CD Application ({APPLICATION_API_PREFIX}*)")
    if len(found) > 1:
        listed = ", ".join(show(n) for n in names)
        raise EditError(f"the text has {len(found)} Applications ({listed}); keep one Application per file")
    return found[0][0], found[0][1], names[0]


def _source(document: int, app: dict[str, Any], name: str, source_index: int | None) -> _Source:
    """``spec.sources[source_index]``, the one Helm source of ``spec.sources``, or ``spec.source``."""
    spec = _mapping(app.get("spec"))
    sources = spec.get("sources")
    if isinstance(sources, list) and sources:
        index = _source_position(sources, name, source_index)
        return _Source(name, document, f"spec.sources[{index}]", _mapping(sources[index]))
    if source_index is not None:
        raise EditError(f"Application {show(name)} has no spec.sources, so source_index {source_index} cannot apply")
    if not isinstance(spec.get("source"), dict):
        raise EditError(f"Application {show(name)} has neither spec.source nor spec.sources")
    return _Source(name, document, "spec.source", spec["source"])


def _source_position(sources: list[Any], name: str, source_index: int | None) -> int:
    if source_index is not None:
        if not 0 <= source_index < len(sources):
            raise EditError(f"Application {show(name)} has {len(sources)} sources; there is no source {source_index}")
        return source_index
    if len(sources) == 1:
        return 0
    helm = [i for i, source in enumerate(sources) if isinstance(source, dict) and "helm" in source]
    if len(helm) == 1:
        return helm[0]
    listed = ", ".join(str(i) for i in helm) or "none"
    raise EditError(
        f"Application {show(name)} has {len(sources)} sources (with helm: {listed});"
        " choose one with argocdApplication.source"
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parameter_position(source: _Source, name: str) -> int:
    """The index of the existing parameter ``name`` in ``helm.parameters``."""
    parameters = _mapping(source.data.get("helm")).get("parameters")
    items = parameters if isinstance(parameters, list) else []
    found = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == name]
    if not found:
        names = [str(item.get("name")) for item in items if isinstance(item, dict) and "name" in item]
        listed = ", ".join(show(n) for n in names) or "none"
        raise EditError(
            f"{source.shown} has no Helm parameter {show(name)} in helm.parameters (parameters: {listed}); "
            "parameters are changed, never added"
        )
    if len(found) > 1:
        raise EditError(f"{source.shown} has {len(found)} Helm parameters named {show(name)} (items {found})")
    if "value" not in items[found[0]]:
        raise EditError(f"{source.shown} Helm parameter {show(name)} has no value key")
    return found[0]


def _set_parameter(text: str, source: _Source, name: str, value: str) -> str:
    path = f"{source.path}.helm.parameters[{_parameter_position(source, name)}].value"
    return set_scalar(text, path, value, document=source.document, force_string=True)


def _set_values_object(text: str, source: _Source, path: str, value: str) -> str:
    """Set an existing scalar below ``helm.valuesObject`` (never created; ``helm.values`` strings refused)."""
    if not parse_path(path):
        raise EditError("a valuesObject path must not be empty")
    full = f"{source.path}.helm.valuesObject" + ("" if path.startswith("[") else ".") + path
    if get_scalar(text, full, document=source.document) is None:
        helm = _mapping(source.data.get("helm"))
        hint = " (helm.values is a YAML string, which is not edited)" if "values" in helm else ""
        reason = missing_reason(text, full, document=source.document)
        raise EditError(
            f"{source.shown} has no value at {show(full)} ({reason}); values are changed, never created{hint}"
        )
    return set_scalar(text, full, value, document=source.document)


def set_application_helm(
    text: str,
    *,
    parameters: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    source_index: int | None = None,
) -> str:
    """Set existing ``helm.parameters[name=X].value`` entries and ``helm.valuesObject`` scalars of an Application.

    The source is ``spec.sources[source_index]``; without an index, the only source of ``spec.sources`` or the
    only one with a ``helm`` key, else ``spec.source``. ``values`` paths are below ``helm.valuesObject`` in
    :func:`.yamledit.parse_path` syntax. Parameter values are written as strings; ``valuesObject`` scalars keep
    their type. Raises :class:`EditError` for anything missing or ambiguous.
    """
    if not parameters and not values:
        raise EditError("nothing to set: pass Helm parameters and/or valuesObject values")
    document, app, name = _application(load_documents(text))
    source = _source(document, app, name, source_index)
    for parameter, value in (parameters or {}).items():
        text = _set_parameter(text, source, parameter, value)
    for path, value in (values or {}).items():
        text = _set_values_object(text, source, path, value)
    return text


# ---------------------------------------------------------------------------------------------------------
# .argocd-source-<app>.yaml: lines appended to block collections, checked by re-parsing
# ---------------------------------------------------------------------------------------------------------

KeyPath = Sequence[str | int]


def _scalar(value: str) -> str:
    """``value`` as :mod:`.yamledit` writes a new string: plain when every reader reads it back, else quoted."""
    return set_scalar("v: _\n", "v", value, force_string=True)[len("v: ") : -1]


def _parameter_lines(name: str, value: str) -> list[str]:
    """One ``helm.parameters`` item, relative to its dash (field order of argocd-image-updater's output)."""
    return [f"- name: {_scalar(name)}", f"  value: {_scalar(value)}", "  forcestring: true"]


def _parameter_item(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value, "forcestring": True}


@dataclass(frozen=True)
class _File:
    """The single document of an ``.argocd-source`` file: text, composed root, loaded documents."""

    text: str
    document: int
    root: yaml.Node
    documents: list[Any]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.documents[self.document]
        return data


def _parse_file(text: str) -> _File | None:
    """The file's one mapping document, or ``None`` when the text holds no data (empty or comments)."""
    documents = load_documents(text)
    present = [i for i, doc in enumerate(documents) if doc is not None]
    if not present:
        return None
    if len(present) > 1:
        raise EditError(f"the .argocd-source file has {len(present)} YAML documents; Argo CD reads a single one")
    document = present[0]
    if not isinstance(documents[document], dict):
        raise EditError("the .argocd-source file is not a YAML mapping")
    root = list(yaml.compose_all(text, Loader=LimitedLoader))[document]
    return _File(text, document, root, documents)


def _child(node: yaml.Node, key: str | int, shown: str) -> yaml.Node:
    if isinstance(key, int):
        item: yaml.Node = node.value[key]
        return item
    found: list[yaml.Node] = [value for k, value in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    if len(found) != 1:
        raise EditError(f"the .argocd-source file has {len(found)} keys {show(key)} under {shown}")
    return found[0]


def _node_at(file: _File, keys: KeyPath) -> yaml.Node:
    node = file.root
    for depth, key in enumerate(keys):
        node = _child(node, key, _shown(keys[:depth]))
    return node


def _shown(keys: KeyPath) -> str:
    """``helm.parameters[2]`` — a key path as messages show it."""
    text = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in keys).lstrip(".")
    return show(text) if text else "the top level"


def _data_at(data: Any, keys: KeyPath) -> Any:
    for key in keys:
        data = data[key]
    return data


def _verified(file: _File, new_text: str, change: Callable[[dict[str, Any]], None], what: str) -> str:
    """``new_text`` if it loads to the old data with ``change`` applied, else :class:`EditError`."""
    expected = copy.deepcopy(file.documents)
    change(expected[file.document])
    try:
        after = load_documents(new_text)
    except YamlLimitError:
        raise
    except EditError as error:
        raise EditError(f"refusing to {what}: the edited text would not parse ({error})") from error
    if not same_data(after, expected):
        raise EditError(f"refusing to {what}: the edited text would change more than intended")
    return new_text


def _block(file: _File, keys: KeyPath, kind: type[yaml.CollectionNode]) -> yaml.CollectionNode:
    """The non-empty block collection at ``keys`` (flow collections cannot take new lines)."""
    node = _node_at(file, keys)
    noun = "mapping" if kind is yaml.MappingNode else "sequence"
    if not isinstance(node, kind):
        raise EditError(f"{_shown(keys)} in the .argocd-source file is not a {noun}")
    if node.flow_style or not node.value:
        raise EditError(
            f"{_shown(keys)} in the .argocd-source file is a flow or empty {noun}; new lines can only be added "
            "to a block one"
        )
    return node


def _add_keys(file: _File, keys: KeyPath, lines: Sequence[str], pairs: Mapping[str, Any]) -> str:
    """Add ``pairs`` (written as ``lines``, relative to the sibling keys) at the end of the mapping at ``keys``."""
    node = _block(file, keys, yaml.MappingNode)
    column = int(node.value[0][0].start_mark.column)
    new_text = insert_lines(file.text, content_end(file.text, node), column, lines)
    return _verified(file, new_text, lambda data: _data_at(data, keys).update(pairs), f"add to {_shown(keys)}")


def _append_items(file: _File, keys: KeyPath, lines: Sequence[str], items: Sequence[Any]) -> str:
    """Append ``items`` (written as ``lines``, relative to the dash) to the block sequence at ``keys``."""
    node = _block(file, keys, yaml.SequenceNode)
    dash = int(node.start_mark.column)
    first = node.value[0]
    gap = int(first.start_mark.column) - dash if first.start_mark.line == node.start_mark.line else 2
    spaced = [("-" + " " * (gap - 1) + line[2:]) if line.startswith("- ") else " " * (gap - 2) + line for line in lines]
    new_text = insert_lines(file.text, content_end(file.text, node), dash, spaced)
    return _verified(file, new_text, lambda data: _data_at(data, keys).extend(items), f"append to {_shown(keys)}")


def _create(text: str, lines: Sequence[str], data: dict[str, Any]) -> str:
    """A file holding only ``lines`` after whatever comments ``text`` already has."""
    newline = file_newline(text)
    prefix = text if text == "" or text.endswith("\n") else text + newline
    new_text = prefix + "".join(line + newline for line in lines)
    loaded = [doc for doc in load_documents(new_text) if doc is not None]
    if not same_data(loaded, [data]):
        raise EditError("refusing to write the .argocd-source file: its content would not read back as intended")
    return new_text


def _section(file: _File | None, text: str, lines: Sequence[str], data: dict[str, Any]) -> str:
    """Write a whole new top-level section (``kustomize:`` or ``helm:``), in a new or an existing file."""
    if file is None:
        return _create(text, lines, data)
    return _add_keys(file, [], lines, data)


# ---------------------------------------------------------------------------------------------------------
# .argocd-source-<app>.yaml: kustomize images
# ---------------------------------------------------------------------------------------------------------


def _entry_names(entry: str) -> list[str]:
    """The image names a kustomize images entry matches on: ``old`` and ``new`` of ``old=new:tag@digest``."""
    names: list[str] = []
    for part in entry.split("=", 1):
        name = part.split("@", 1)[0]
        colon = name.rfind(":")
        names.append(name[:colon] if colon > name.rfind("/") else name)
    return names


def _kustomize_entry(existing: str, image: ImageRef) -> str:
    """The new entry: the new reference, keeping an existing ``old=`` prefix."""
    if "=" in existing:
        return existing.split("=", 1)[0] + "=" + str(image)
    return str(image)


def _matching_entry(images: list[Any], image: ImageRef) -> int | None:
    found = [
        i
        for i, entry in enumerate(images)
        if isinstance(entry, str) and any(same_repository(name, image) for name in _entry_names(entry))
    ]
    if len(found) > 1:
        raise EditError(f"several kustomize.images entries name the repository of {show(str(image))} (items {found})")
    return found[0] if found else None


def _set_kustomize(
    text: str,
    file: _File | None,
    image: ImageRef,
    create: bool,
    allow_repository_change: bool,
    note: Callable[[str], None] | None,
) -> str:
    entry = _scalar(str(image))
    if file is None or "kustomize" not in file.data:
        return _section(
            file,
            text,
            ["kustomize:", "  images:", f"  - {entry}"],
            {"kustomize": {"images": [str(image)]}},
        )
    section = file.data["kustomize"]
    if not isinstance(section, dict):
        raise EditError("'kustomize' in the .argocd-source file is not a mapping")
    if "images" not in section:
        return _add_keys(file, ["kustomize"], ["images:", f"- {entry}"], {"images": [str(image)]})
    images = section["images"]
    if not isinstance(images, list):
        raise EditError("'kustomize.images' in the .argocd-source file is not a list")
    index = _matching_entry(images, image)
    if index is None:
        if images and not create:
            listed = ", ".join(show(str(e)) for e in images)
            raise EditError(
                f"no kustomize.images entry names the repository of {show(str(image))} (entries: {listed}); an entry "
                "that matches no image of the Application would deploy nothing. Deliver an image of a listed "
                "repository, or set argocdSourceFile.create: true to add the entry"
            )
        return _append_items(file, ["kustomize", "images"], [f"- {entry}"], [str(image)])
    _check_repository(images[index], image, allow_repository_change, note)
    new_entry = _kustomize_entry(images[index], image)
    return set_scalar(file.text, f"kustomize.images[{index}]", new_entry, document=file.document, force_string=True)


def _check_repository(existing: str, image: ImageRef, allow: bool, note: Callable[[str], None] | None) -> None:
    """An ``old=new`` entry deploys ``new``: refuse (or report) replacing it with another repository."""
    if "=" not in existing:
        return
    deployed = _entry_names(existing)[1]
    if same_repository(deployed, image):
        return
    if not allow:
        raise EditError(
            f"the kustomize.images entry {show(existing)} deploys the repository {show(deployed)}, but the image "
            f"{show(str(image))} is from {show(image.name)}; refusing to change the image repository (set "
            "allowRepositoryChange: true on the update if the move is intended)"
        )
    if note is not None:
        note(f"image repository changed from {deployed} to {image.name}")


# ---------------------------------------------------------------------------------------------------------
# .argocd-source-<app>.yaml: helm parameters
# ---------------------------------------------------------------------------------------------------------


def _parameter_index(parameters: list[Any], name: str) -> int | None:
    found = [i for i, item in enumerate(parameters) if isinstance(item, dict) and item.get("name") == name]
    if len(found) > 1:
        raise EditError(f"the .argocd-source file has {len(found)} helm.parameters named {show(name)} (items {found})")
    return found[0] if found else None


def _update_parameter(file: _File, index: int, value: str) -> str:
    """Set an existing parameter's value (inserting ``value`` when absent), then make sure it is force-string."""
    keys: list[str | int] = ["helm", "parameters", index]
    item = _data_at(file.data, keys)
    if "value" in item:
        text = set_scalar(
            file.text, f"helm.parameters[{index}].value", value, document=file.document, force_string=True
        )
    else:
        text = _add_keys(file, keys, [f"value: {_scalar(value)}"], {"value": value})
    file = _reparse(text)
    spelled = [key for key in item if isinstance(key, str) and key.lower() == "forcestring"]
    if not spelled:
        return _add_keys(file, keys, ["forcestring: true"], {"forcestring": True})
    force = item[spelled[-1]]
    if force is True:
        return text
    if force is False:
        return set_scalar(text, f"helm.parameters[{index}].{spelled[-1]}", "true", document=file.document)
    raise EditError(
        f"helm.parameters[{index}].{spelled[-1]} in the .argocd-source file is {show(str(force))}, not a boolean"
    )


def _reparse(text: str) -> _File:
    file = _parse_file(text)
    if file is None:  # pragma: no cover - an edit never empties the file
        raise EditError("the .argocd-source file became empty")
    return file


def _set_helm(text: str, file: _File | None, parameters: Mapping[str, str], create: bool) -> str:
    new = sorted(parameters.items())
    lines = [line for name, value in new for line in _parameter_lines(name, value)]
    items = [_parameter_item(name, value) for name, value in new]
    if file is None or "helm" not in file.data:
        section = ["helm:", "  parameters:", *("  " + line for line in lines)]
        return _section(file, text, section, {"helm": {"parameters": items}})
    helm = file.data["helm"]
    if not isinstance(helm, dict):
        raise EditError("'helm' in the .argocd-source file is not a mapping")
    if "parameters" not in helm:
        return _add_keys(file, ["helm"], ["parameters:", *lines], {"parameters": items})
    if not isinstance(helm["parameters"], list):
        raise EditError("'helm.parameters' in the .argocd-source file is not a list")
    added: list[tuple[str, str]] = []
    for name, value in new:
        index = _parameter_index(file.data["helm"]["parameters"], name)
        if index is None:
            added.append((name, value))
            continue
        file = _reparse(_update_parameter(file, index, value))
    if not added:
        return file.text
    existing = [p for p in file.data["helm"]["parameters"] if isinstance(p, dict)]
    if existing and not create:
        listed = ", ".join(show(str(p.get("name"))) for p in existing)
        missing = ", ".join(show(name) for name, _ in added)
        raise EditError(
            f"helm.parameters has no parameter {missing} (parameters: {listed}); a parameter the chart does not "
            "use would deploy nothing. Correct argocdSourceFile.helmParameters, or set argocdSourceFile.create: "
            "true to add it"
        )
    lines = [line for name, value in added for line in _parameter_lines(name, value)]
    return _append_items(file, ["helm", "parameters"], lines, [_parameter_item(n, v) for n, v in added])


def set_argocd_source_file(
    text: str | None,
    *,
    kustomize_image: ImageRef | None = None,
    helm_parameters: Mapping[str, str] | None = None,
    create: bool = False,
    allow_repository_change: bool = False,
    note: Callable[[str], None] | None = None,
) -> str:
    """Write a kustomize image or Helm parameters into ``.argocd-source-<app>.yaml`` content.

    ``text=None`` (no file yet), an empty text or one with only comments gets the section written as
    argocd-image-updater writes it. Otherwise the entry for the same image repository, or the parameter of the
    same name, is updated in place; new ones are appended to a list that has entries only with ``create`` (see
    the module docstring). Exactly one of ``kustomize_image`` and ``helm_parameters`` must be given.
    """
    if (kustomize_image is None) == (not helm_parameters):
        raise EditError("pass either kustomize_image or helm_parameters: an Argo CD source is Kustomize or Helm")
    if kustomize_image is not None and kustomize_image.tag is None and kustomize_image.digest is None:
        raise EditError(f"image reference {show(str(kustomize_image))} has neither tag nor digest")
    original = text or ""
    file = _parse_file(original)
    if kustomize_image is not None:
        return _set_kustomize(original, file, kustomize_image, create, allow_repository_change, note)
    assert helm_parameters is not None
    return _set_helm(original, file, helm_parameters, create)
