"""The ``updates[]`` edit strategies in the config file: every shape loads into its model, every mistake is reported
with file, line, column and key, and the chart's values schema accepts and refuses the same shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import ConfigError

SCHEMA = Path(__file__).resolve().parents[2] / "chart" / "values.schema.json"

# The update under test starts on line 10, column 9 (after "      - file: a.yaml").
HEAD = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - {name: fleet, url: "file:///tmp/fleet.git"}
rules:
  - match: {}
    repository: fleet
    updates:
      - file: a.yaml
"""
KNOWN = (
    "image, image.digest, image.name, image.tag, project, service, shkeptncontext, stage, values.<path>, labels.<key>"
)


def load(update: str) -> tuple[m.Update, ...]:
    return parse_config(HEAD + update, "c.yaml").rules[0].updates


def problems(update: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(HEAD + update, "c.yaml")
    return caught.value.problems


GOOD: list[tuple[str, m.Update]] = [
    ('        kustomizeImage: {name: "acme/{service}"}\n', m.KustomizeImageUpdate("a.yaml", "acme/{service}")),
    (
        '        kustomizeImage: {name: "acme/{service}", image: "{image}", create: true}\n'
        "        allowRepositoryChange: true\n",
        m.KustomizeImageUpdate("a.yaml", "acme/{service}", create=True, allow_repository_change=True),
    ),
    (
        "        marker: {}\n        allowRepositoryChange: false\n",
        m.MarkerUpdate(file="a.yaml", allow_repository_change=False),
    ),
    (
        '        argocdSourceFile: {kustomizeImage: "{image}", create: true}\n        allowRepositoryChange: true\n',
        m.ArgoCDSourceFileUpdate("a.yaml", kustomize_image="{image}", create=True, allow_repository_change=True),
    ),
    ("        marker: {}\n", m.MarkerUpdate(file="a.yaml")),
    (
        '        marker: {image: "{image.name}:{image.tag}", policy: "flux-system:{service}"}\n',
        m.MarkerUpdate(file="a.yaml", image="{image.name}:{image.tag}", policy="flux-system:{service}"),
    ),
    ('        marker: {policy: "{values.policy}"}\n', m.MarkerUpdate(file="a.yaml", policy="{values.policy}")),
    ("        containerImage: {}\n", m.ContainerImageUpdate(file="a.yaml")),
    (
        '        containerImage: {image: "ghcr.io/acme/{service}:{image.tag}"}\n',
        m.ContainerImageUpdate(file="a.yaml", image="ghcr.io/acme/{service}:{image.tag}"),
    ),
    (
        '        helmRelease: {chartVersion: "{values.chart}"}\n',
        m.HelmReleaseUpdate("a.yaml", chart_version="{values.chart}"),
    ),
    (
        "        helmRelease:\n"
        '          name: "{service}"\n'
        "          values:\n"
        '            image.tag: "{image.tag}"\n'
        "            replicaCount: 2\n"
        '            "containers[name={service}].image": "{image}"\n'
        "            note: ''\n",
        m.HelmReleaseUpdate(
            "a.yaml",
            name="{service}",
            values=(
                ("image.tag", "{image.tag}"),
                ("replicaCount", "2"),
                ("containers[name={service}].image", "{image}"),
                ("note", ""),
            ),
        ),
    ),
    (
        '        argocdApplication: {source: 1, parameters: {image.tag: "{image.tag}"}, values: {a.b: c}}\n',
        m.ArgoCDApplicationUpdate(
            "a.yaml", source=1, parameters=(("image.tag", "{image.tag}"),), values=(("a.b", "c"),)
        ),
    ),
    ("        argocdApplication: {values: {a: b}}\n", m.ArgoCDApplicationUpdate("a.yaml", values=(("a", "b"),))),
    (
        '        argocdSourceFile: {kustomizeImage: "{image}"}\n',
        m.ArgoCDSourceFileUpdate("a.yaml", kustomize_image="{image}"),
    ),
    (
        '        argocdSourceFile: {helmParameters: {image.tag: "{image.tag}", "{service}.enabled": true}}\n',
        m.ArgoCDSourceFileUpdate(
            "a.yaml", helm_parameters=(("image.tag", "{image.tag}"), ("{service}.enabled", "true"))
        ),
    ),
    (
        '        yamlPath: "spec.template.spec.containers[name={service}].image"\n        value: "{image}"\n',
        m.YamlPathUpdate("a.yaml", "spec.template.spec.containers[name={service}].image", "{image}"),
    ),
    (
        "        yamlPath: spec.template.spec.containers[0].image\n        value: '{image}'\n",
        m.YamlPathUpdate("a.yaml", "spec.template.spec.containers[0].image", "{image}"),
    ),
]


@pytest.mark.parametrize(("update", "expected"), GOOD, ids=[type(u).__name__ for _, u in GOOD])
def test_every_strategy_loads_into_its_model(update: str, expected: m.Update) -> None:
    assert load(update) == (expected,)


STRATEGIES = "kustomizeImage, yamlPath, marker, containerImage, helmRelease, argocdApplication or argocdSourceFile"
U = "rules[0].updates[0]"

# (update text, every problem the loader reports, whether the chart's values schema must refuse it too)
BAD: dict[str, tuple[str, list[str], bool]] = {
    "no strategy": (
        "        wait: x\n",
        [
            f"c.yaml:10:9: {U}.wait: unknown key (allowed: allowRepositoryChange, argocdApplication, "
            "argocdSourceFile, containerImage, file, helmRelease, kustomizeImage, marker, value, yamlPath)",
            f"c.yaml:9:9: {U}: needs exactly one edit strategy: {STRATEGIES}",
        ],
        True,
    ),
    "allowRepositoryChange where no repository changes": (
        "        containerImage: {}\n        allowRepositoryChange: true\n",
        [
            f"c.yaml:11:32: {U}.allowRepositoryChange: not allowed with containerImage: only kustomizeImage, marker, "
            "argocdSourceFile can change an image repository"
        ],
        True,
    ),
    "allowRepositoryChange not a flag": (
        "        marker: {}\n        allowRepositoryChange: 'yes'\n",
        [f"c.yaml:11:32: {U}.allowRepositoryChange: must be true or false"],
        True,
    ),
    "create not a flag": (
        "        kustomizeImage: {name: x, create: 1}\n",
        [f"c.yaml:10:43: {U}.kustomizeImage.create: must be true or false"],
        True,
    ),
    "two strategies": (
        "        marker: {}\n        containerImage: {}\n",
        [f"c.yaml:9:9: {U}: needs exactly one edit strategy: {STRATEGIES}"],
        True,
    ),
    "value with marker": (
        '        marker: {policy: "flux-system"}\n        value: x\n',
        [
            f"c.yaml:10:26: {U}.marker.policy: must have the form '<namespace>:<name>'",
            f"c.yaml:11:16: {U}.value: not allowed with marker",
        ],
        True,
    ),
    "marker not a mapping": (
        "        marker: flux-system:carts\n",
        [f"c.yaml:10:17: {U}.marker: must be a mapping, got 'flux-system:carts'"],
        True,
    ),
    "marker typo": (
        "        marker: {polcy: a:b}\n",
        [f"c.yaml:10:18: {U}.marker.polcy: unknown key (allowed: image, policy)"],
        True,
    ),
    "marker policy of three parts": (
        "        marker: {policy: 'flux-system:carts:tag'}\n",
        [f"c.yaml:10:26: {U}.marker.policy: must have the form '<namespace>:<name>'"],
        False,
    ),
    "marker image template": (
        '        marker: {image: "{image.tga}"}\n',
        [
            f"c.yaml:10:25: {U}.marker.image: template '{{image.tga}}' uses unknown field '{{image.tga}}' "
            f"(known: {KNOWN})"
        ],
        False,
    ),
    "containerImage empty image": (
        '        containerImage: {image: ""}\n',
        [f"c.yaml:10:33: {U}.containerImage.image: must not be empty"],
        True,
    ),
    "containerImage typo": (
        "        containerImage: {name: carts}\n",
        [f"c.yaml:10:26: {U}.containerImage.name: unknown key (allowed: image)"],
        True,
    ),
    "helmRelease with nothing to set": (
        '        helmRelease: {name: "{service}"}\n',
        [f"c.yaml:10:22: {U}.helmRelease: needs chartVersion, values or both"],
        True,
    ),
    "helmRelease values not a mapping": (
        "        helmRelease: {values: [image.tag]}\n",
        [f"c.yaml:10:31: {U}.helmRelease.values: must be a mapping, got a list"],
        True,
    ),
    "helmRelease values empty": (
        "        helmRelease: {values: {}}\n",
        [f"c.yaml:10:31: {U}.helmRelease.values: must not be empty"],
        True,
    ),
    "helmRelease values of every wrong kind": (
        "        helmRelease:\n"
        "          values:\n"
        "            a: x\n"
        "            a: y\n"
        "            ~: z\n"
        "            [1]: 2\n"
        '            "{nope}": 1\n'
        '            b: "{nope}"\n'
        "            c: [1]\n"
        "            d: |\n"
        "              two\n"
        "              lines\n",
        [
            f"c.yaml:13:13: {U}.helmRelease.values.a: duplicate key",
            f"c.yaml:15:13: {U}.helmRelease.values: keys must be strings",
            f"c.yaml:14:13: {U}.helmRelease.values.~: must be a string, got nothing (null)",
            f"c.yaml:16:13: {U}.helmRelease.values.{{nope}}: template '{{nope}}' uses unknown field '{{nope}}' "
            f"(known: {KNOWN})",
            f"c.yaml:17:16: {U}.helmRelease.values.b: template '{{nope}}' uses unknown field '{{nope}}' "
            f"(known: {KNOWN})",
            f"c.yaml:18:16: {U}.helmRelease.values.c: must be a string, got a list",
            f"c.yaml:19:16: {U}.helmRelease.values.d: must be a single line",
        ],
        False,
    ),
    "helmRelease empty chart version": (
        "        helmRelease: {chartVersion: ''}\n",
        [f"c.yaml:10:37: {U}.helmRelease.chartVersion: must not be empty"],
        True,
    ),
    "argocdApplication with nothing to set": (
        "        argocdApplication: {source: 0}\n",
        [f"c.yaml:10:28: {U}.argocdApplication: needs parameters, values or both"],
        True,
    ),
    "argocdApplication negative source": (
        "        argocdApplication: {source: -1, parameters: {a: b}}\n",
        [f"c.yaml:10:37: {U}.argocdApplication.source: must be the index of a source in spec.sources: 0, 1, …"],
        True,
    ),
    "argocdApplication source as a string": (
        "        argocdApplication: {source: '0', values: {a: b}}\n",
        [f"c.yaml:10:37: {U}.argocdApplication.source: must be the index of a source in spec.sources: 0, 1, …"],
        True,
    ),
    "argocdApplication source with a leading zero": (
        "        argocdApplication: {source: 010, values: {a: b}}\n",
        [f"c.yaml:10:37: {U}.argocdApplication.source: must be the index of a source in spec.sources: 0, 1, …"],
        False,
    ),
    "argocdApplication typo": (
        "        argocdApplication: {name: carts, values: {a: b}}\n",
        [f"c.yaml:10:29: {U}.argocdApplication.name: unknown key (allowed: parameters, source, values)"],
        True,
    ),
    "argocdSourceFile with both": (
        "        argocdSourceFile: {kustomizeImage: '{image}', helmParameters: {a: b}}\n",
        [f"c.yaml:10:27: {U}.argocdSourceFile: needs exactly one of: kustomizeImage, helmParameters"],
        True,
    ),
    "argocdSourceFile with neither": (
        "        argocdSourceFile: {}\n",
        [f"c.yaml:10:27: {U}.argocdSourceFile: needs exactly one of: kustomizeImage, helmParameters"],
        True,
    ),
    "argocdSourceFile empty parameters": (
        "        argocdSourceFile: {helmParameters: {}}\n",
        [f"c.yaml:10:44: {U}.argocdSourceFile.helmParameters: must not be empty"],
        True,
    ),
    "yamlPath is a template": (
        "        yamlPath: 'containers[name={servce}].image'\n        value: x\n",
        [
            f"c.yaml:10:19: {U}.yamlPath: template 'containers[name={{servce}}].image' uses unknown field '{{servce}}' "
            f"(known: {KNOWN})"
        ],
        False,
    ),
    "yamlPath without value": (
        "        yamlPath: image.tag\n",
        [f"c.yaml:9:9: {U}.value: required with yamlPath"],
        True,
    ),
}


@pytest.mark.parametrize(("update", "expected"), [(u, e) for u, e, _ in BAD.values()], ids=list(BAD))
def test_each_mistake_is_reported_with_file_line_column_and_key(update: str, expected: list[str]) -> None:
    assert problems(update) == expected


def test_a_broken_update_does_not_hide_the_other_updates_problems() -> None:
    text = "        helmRelease: {}\n      - file: '{nope}'\n        containerImage: []\n"
    assert problems(text) == [
        f"c.yaml:10:22: {U}.helmRelease: needs chartVersion, values or both",
        f"c.yaml:11:15: rules[0].updates[1].file: template '{{nope}}' uses unknown field '{{nope}}' (known: {KNOWN})",
        "c.yaml:12:25: rules[0].updates[1].containerImage: must be a mapping, got a list",
    ]


# ---- the chart's values schema mirrors the loader ----


@pytest.fixture(scope="module")
def update_schema() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator({"definitions": schema["definitions"], "$ref": "#/definitions/update"})


def as_data(update: str) -> Any:
    """The update as the chart's ``config`` value carries it (loaded YAML)."""
    return yaml.safe_load(HEAD + update)["rules"][0]["updates"][0]


@pytest.mark.parametrize("update", [u for u, _ in GOOD], ids=[type(u).__name__ for _, u in GOOD])
def test_the_chart_schema_accepts_every_good_shape(update_schema: jsonschema.Draft7Validator, update: str) -> None:
    assert not [e.message for e in update_schema.iter_errors(as_data(update))]


@pytest.mark.parametrize(
    "update", [u for u, _, refused in BAD.values() if refused], ids=[k for k, v in BAD.items() if v[2]]
)
def test_the_chart_schema_refuses_the_structural_mistakes(
    update_schema: jsonschema.Draft7Validator, update: str
) -> None:
    assert not update_schema.is_valid(as_data(update))
