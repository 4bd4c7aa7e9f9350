"""docs/configuration.md is generated from the schema, is current, and describes every key the loader accepts.

The full example in the reference is loaded with the real loader, and the loader itself is asked which keys it
accepts at every level (an unknown key makes it list the allowed ones), so neither the example nor the reference
can drift from the code.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.util
import re
import sys
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import keptn_gitops_service.settings as settings_module
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen-config-reference"
REFERENCE = ROOT / "docs" / "configuration.md"
PROBE = "zzProbeKey"


def _load_script() -> ModuleType:
    loader = SourceFileLoader("gen_config_reference", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up while they are created
    try:
        loader.exec_module(module)
    finally:
        del sys.modules[loader.name]
    return module


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def full_example(reference: str) -> str:
    section = reference.split("## Full example", 1)[1]
    found = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert found, "docs/configuration.md has no yaml block under '## Full example'"
    return found.group(1)


def test_the_script_is_an_executable_python_script() -> None:
    assert SCRIPT.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    assert SCRIPT.stat().st_mode & 0o111, "scripts/gen-config-reference must be executable"


def test_the_reference_is_current(reference: str) -> None:
    fresh = _load_script().render()
    if fresh != reference:
        diff = "".join(
            list(
                difflib.unified_diff(
                    reference.splitlines(True), fresh.splitlines(True), "docs/configuration.md", "fresh"
                )
            )[:60]
        )
        pytest.fail(
            "docs/configuration.md differs from a fresh generation: run scripts/gen-config-reference "
            f"(with the project's interpreter, .venv/bin/python scripts/gen-config-reference)\n{diff}"
        )


def test_the_full_example_loads(full_example: str) -> None:
    config = parse_config(full_example, "docs/configuration.md (full example)")
    assert len(config.repositories) >= 1 and len(config.rules) >= 1


def _documented_rows(reference: str) -> dict[str, str]:
    """``{"rules[].wait.flux.kind": "<the whole table row>"}`` for every key row of the reference."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Za-z][\w.\[\]]*)` \|.*$", reference, re.MULTILINE)}


def _free_form(rows: dict[str, str]) -> set[str]:
    """Mappings whose keys the user chooses (``helmRelease.values`` paths, parameter names), not the schema."""
    return {key for key, row in rows.items() if row.split(" | ")[1].startswith("mapping of ")}


def _mappings(node: Any, free_form: set[str], path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and list indices) of every mapping in loaded YAML data, except the free-form ones."""
    if isinstance(node, dict) and _notation(path) not in free_form:
        yield path
        for key, value in node.items():
            yield from _mappings(value, free_form, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _mappings(item, free_form, (*path, index))


def _key_paths(data: Any, free_form: set[str]) -> set[str]:
    """Every key path of loaded YAML data in the reference's notation (``rules[].wait.flux.kind``)."""
    paths = set()
    for path in _mappings(data, free_form):
        node = data
        for part in path:
            node = node[part]
        paths.update(_notation((*path, key)) for key in node)
    return paths


def _notation(path: tuple[Any, ...]) -> str:
    """The path in the reference's notation; a key of a mapping documented under another path (a cluster's ``flux``
    is a rule's ``wait.flux``: the script's ``ALIASES``) by the path it is documented under."""
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return str(_script().unalias(text))


@functools.cache
def _script() -> ModuleType:
    return _load_script()


def _accepted_keys(data: dict[str, Any], path: tuple[Any, ...]) -> list[str]:
    """The keys the loader accepts in the mapping at ``path``: insert an unknown key and read its complaint."""
    probe = copy.deepcopy(data)
    target: Any = probe
    for part in path:
        target = target[part]
    target[PROBE] = "x"
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml.safe_dump(probe, sort_keys=False), "probe")
    for problem in raised.value.problems:
        found = re.search(rf"\b{PROBE}: unknown key \(allowed: ([^)]*)\)", problem)
        if found:
            return [key for key in found.group(1).split(", ") if key]
    raise AssertionError(f"the loader did not reject {PROBE} at {_notation(path) or 'the top level'}: {raised.value}")


def test_every_key_the_loader_accepts_is_in_the_reference(reference: str, full_example: str) -> None:
    rows = _documented_rows(reference)
    data = yaml.safe_load(full_example)
    missing = []
    probed = 0
    for path in _mappings(data, _free_form(rows)):
        for key in _accepted_keys(data, path):
            probed += 1
            documented = _notation((*path, key))
            if documented not in rows:
                missing.append(documented)
    assert probed > 20, "the probe should have seen every level of the file"
    assert not missing, f"keys the loader accepts but docs/configuration.md does not describe: {sorted(set(missing))}"
    for top in ("apiVersion", "kind", "repositories", "rules"):
        assert top in rows


def test_the_full_example_uses_every_supported_key(reference: str, full_example: str) -> None:
    rows = _documented_rows(reference)
    used = _key_paths(yaml.safe_load(full_example), _free_form(rows))
    supported = {key for key, row in rows.items() if "**planned**" not in row and not key.isupper()}
    assert supported - used == set(), "the full example should show every supported key"
    assert used - set(rows) == set(), "the full example uses keys the reference does not describe"


def test_planned_keys_are_rejected_by_the_loader(reference: str, full_example: str) -> None:
    planned = [key for key, row in _documented_rows(reference).items() if "**planned**" in row]
    for key in planned:  # none since the Argo CD wait landed; a wait documented as planned must stay rejected
        assert key.startswith("rules[].wait."), key
        data = yaml.safe_load(full_example)
        data["rules"][0]["wait"] = {key.rsplit(".", 1)[1]: {}}
        with pytest.raises(ConfigError, match="not available in this version"):
            parse_config(yaml.safe_dump(data, sort_keys=False), "planned")


def test_every_environment_variable_of_the_settings_is_documented(reference: str) -> None:
    env_section = reference.split("## Environment variables", 1)[1]
    variables = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", env_section, re.MULTILINE)
    text = Path(settings_module.__file__).read_text(encoding="utf-8")
    read = set(re.findall(r'env\.get\("([A-Z][A-Z0-9_]*)"', text))
    assert read, "Settings.from_env reads variables with env.get(...)"
    assert read <= set(variables), f"variables Settings.from_env reads but the reference omits: {read - set(variables)}"
