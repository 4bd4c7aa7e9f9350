"""The config file: the documented example loads, and every mistake is reported with file, line and key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.loader import load_config, parse_config
from keptn_gitops_service.config.templates import Field, parse_template, render, template_fields
from keptn_gitops_service.errors import ConfigError, TemplateError

EXAMPLE = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: https://git.example.com/org/fleet.git     # https://, ssh://, git@host:path, file:///
    branch: main
    auth: {type: token, tokenEnv: GIT_TOKEN}
    author: {name: keptn-gitops-service, email: gitops@keptn.invalid}
rules:                                             # first match wins; "*" globs allowed
  - match: {project: sockshop, stage: "*", service: "*"}
    repository: fleet
    updates:                                       # one commit carries all of them
      - file: "apps/{stage}/{service}/kustomization.yaml"
        kustomizeImage: {name: "docker.io/keptnexamples/{service}"}
      - file: "apps/{stage}/{service}/values.yaml"
        yamlPath: image.tag                        # dotted path into the document
        value: "{image.tag}"                       # template over the event (see below)
    wait:
      flux: {kind: Kustomization, name: "{service}", namespace: "{project}-{stage}"}
      timeout: 10m
    deploymentURIs:
      local: ["http://{service}.{project}-{stage}:80"]
      public: []
"""


def test_the_product_brief_example_loads() -> None:
    config = parse_config(EXAMPLE, "gitops.yaml")
    repo = config.repository("fleet")
    assert repo.auth == m.TokenAuth(token_env="GIT_TOKEN")
    assert repo.author == m.Author("keptn-gitops-service", "gitops@keptn.invalid")
    rule = config.rules[0]
    assert rule.match == m.Match(project="sockshop", stage="*", service="*")
    assert rule.updates == (
        m.KustomizeImageUpdate(
            file="apps/{stage}/{service}/kustomization.yaml", name="docker.io/keptnexamples/{service}"
        ),
        m.YamlPathUpdate(file="apps/{stage}/{service}/values.yaml", yaml_path="image.tag", value="{image.tag}"),
    )
    assert rule.wait == m.Wait(m.FluxWait("Kustomization", "{service}", "{project}-{stage}"), timedelta(minutes=10))
    assert rule.deployment_uris == m.DeploymentURIs(local=("http://{service}.{project}-{stage}:80",), public=())


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE)
    assert load_config(path).source == str(path)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    branch: main\n", "    branch: main\n    brnach: x\n", "c.yaml:7:5: repositories[0].brnach: unknown key"),
        ("kind: GitOpsConfig", "kind: Config", "c.yaml:2:7: kind: must be 'GitOpsConfig', got 'Config'"),
        ("type: token, tokenEnv: GIT_TOKEN", "type: token", "c.yaml:7:11: repositories[0].auth.tokenEnv: required"),
        ("type: token, tokenEnv: GIT_TOKEN", "type: password", "repositories[0].auth.type: must be one of"),
        ("timeout: 10m", "timeout: 10 minutes", "c.yaml:20:16: rules[0].wait.timeout: '10 minutes' is not a duration"),
        ("repository: fleet", "repository: flet", "rules[0].repository: no repository named 'flet'"),
        (
            'value: "{image.tag}"',
            'value: "{image.tga}"',
            "c.yaml:17:16: rules[0].updates[1].value: template '{image.tga}' uses unknown field",
        ),
        (
            "yamlPath: image.tag ",
            "kustomizeImage: {name: x}\n        yamlPath: image.tag ",
            "exactly one edit strategy",
        ),
        ("url: https://git.example.com", "url: https://user:pw@git.example.com", "must not carry credentials"),
        ("url: https://git.example.com/org/fleet.git", "url: /tmp/fleet", "repositories[0].url: must be an https://"),
        (
            "flux: {kind: Kustomization,",
            "argocd: {kind: Kustomization,",
            "c.yaml:19:16: rules[0].wait.argocd.kind: unknown",
        ),
    ],
)
def test_each_mistake_is_reported_with_file_line_and_key(old: str, new: str, expected: str) -> None:
    assert old in EXAMPLE
    found = problems(EXAMPLE.replace(old, new, 1))
    assert any(expected in p for p in found), found


def test_all_problems_are_reported_at_once() -> None:
    text = EXAMPLE.replace("kind: GitOpsConfig", "kind: X").replace("branch: main", "branch: [main]")
    found = problems(text)
    assert len(found) == 2
    assert found[0].startswith("c.yaml:2:") and found[1].startswith("c.yaml:6:")


def test_duplicate_keys_and_syntax_errors_have_positions() -> None:
    assert "c.yaml:9:1: repositories: duplicate key" in problems(EXAMPLE.replace("rules:", "repositories:", 1))[0]
    assert problems("apiVersion: [x\n")[0].startswith("c.yaml:2:1: <yaml>:")
    assert problems("") == ["c.yaml: <top>: the file is empty"]
    only_rule_broken = problems(EXAMPLE.replace("repository: fleet\n", "repository: [fleet]\n"))
    assert only_rule_broken == ["c.yaml:11:17: rules[0].repository: must be a string, got a list"]
    assert problems(EXAMPLE[: EXAMPLE.index("rules:")] + "rules: []\n")[0].endswith(
        "rules: at least one rule is needed: without rules the service owns no deployment "
        "(with the Helm chart, set the values key config.rules)"
    )


@pytest.mark.parametrize("rules", ["", "rules:\n", "rules: []\n"])
def test_no_rules_points_to_the_chart_values_key(rules: str) -> None:
    found = problems(EXAMPLE[: EXAMPLE.index("rules:")] + rules)
    assert len(found) == 1, found
    assert found[0].endswith(
        ": rules: at least one rule is needed: without rules the service owns no deployment "
        "(with the Helm chart, set the values key config.rules)"
    )


def test_every_problem_in_one_run_including_references_of_broken_rules() -> None:
    text = (
        EXAMPLE.replace("kind: GitOpsConfig\n", "")
        .replace("    branch: main\n", "    brnch: main\n")
        .replace("repository: fleet", "repository: flet")
        .replace('kustomizeImage: {name: "docker.io/keptnexamples/{service}"}', "kustomizeImage: {nam: x}")
    )
    text += """\
  - match: {project: other}
    repository: nowhere
    updates:
      - {file: a.yaml, yamlPath: a, value: "{image.tag}"}
"""
    assert problems(text) == [
        "c.yaml:1:1: kind: required key is missing",
        "c.yaml:5:5: repositories[0].brnch: unknown key "
        "(allowed: auth, author, branch, clone, forge, name, signing, url)",
        "c.yaml:13:26: rules[0].updates[0].kustomizeImage.nam: unknown key (allowed: create, image, name)",
        "c.yaml:13:25: rules[0].updates[0].kustomizeImage.name: required key is missing",
        "c.yaml:10:17: rules[0].repository: no repository named 'flet'",
        "c.yaml:24:17: rules[1].repository: no repository named 'nowhere'",
    ]


def test_entries_sharing_a_clone_must_share_credentials_and_author() -> None:
    second = """\
  - name: fleet-ci
    url: https://git.example.com/org/fleet.git
    auth: {type: token, tokenEnv: CI_TOKEN}
    author: {name: ci, email: ci@example.com}
rules:"""
    found = problems(EXAMPLE.replace("rules:", second, 1))
    assert found == [
        "c.yaml:9:5: repositories[1]: 'fleet-ci' has the same url and branch as 'fleet' but a different auth, "
        "author: entries for one branch share one working clone, so they must use the same auth, author, signing "
        "and clone options (merge them into one entry)"
    ]
    same = second.replace("CI_TOKEN", "GIT_TOKEN").replace(
        "{name: ci, email: ci@example.com}", "{name: keptn-gitops-service, email: gitops@keptn.invalid}"
    )
    assert len(parse_config(EXAMPLE.replace("rules:", same, 1)).repositories) == 2
    other_branch = second.replace("    auth:", "    branch: ci\n    auth:")
    assert len(parse_config(EXAMPLE.replace("rules:", other_branch, 1)).repositories) == 2


def test_may_appear() -> None:
    wait = 'flux: {kind: Kustomization, name: "{service}", namespace: "{project}-{stage}"'
    assert parse_config(EXAMPLE).rules[0].wait.target == m.FluxWait("Kustomization", "{service}", "{project}-{stage}")
    config = parse_config(EXAMPLE.replace(wait, wait + ", mayAppear: true"))
    assert config.rules[0].wait.target == m.FluxWait("Kustomization", "{service}", "{project}-{stage}", may_appear=True)
    assert problems(EXAMPLE.replace(wait, wait + ", mayAppear: sometimes")) == [
        "c.yaml:19:97: rules[0].wait.flux.mayAppear: must be true or false"
    ]


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")


def test_templates_parse_render_and_reject_unknown_fields() -> None:
    assert parse_template("apps/{stage}/x") == ("apps/", Field("stage"), "/x")
    assert template_fields("{values.a.b}-{labels.team}") == ("values.a.b", "labels.team")
    assert render("{{literal}} {project}", lambda name: name.upper()) == "{literal} PROJECT"
    with pytest.raises(TemplateError, match=r"unknown field '\{nope\}'"):
        parse_template("{nope}")
    with pytest.raises(TemplateError, match="unmatched '}'"):
        parse_template("a}")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("1.5s", 2), ("2.4s", 2), ("500ms", 1), ("720h", 30 * 86400)],
)
def test_durations_count_whole_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "0s", "1x", "10m junk"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0001ms", "duration '0.0001ms' is shorter than the minimum of 1s (durations count whole seconds)"),
        ("499ms", "duration '499ms' is shorter than the minimum of 1s"),
        ("721h", "duration '721h' is longer than the maximum of 30 days (720h)"),
        ("99999999999h", "duration '99999999999h' is longer than the maximum of 30 days (720h)"),
        ("9" * 400 + "h", "is longer than the maximum of 30 days"),  # beyond a float: was an OverflowError
    ],
)
def test_durations_out_of_range_are_rejected_after_rounding(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


def test_a_config_file_duration_out_of_range_is_a_config_error() -> None:
    for bad, problem in (("0.2s", "shorter than the minimum of 1s"), ("800h", "longer than the maximum of 30 days")):
        text = EXAMPLE.replace("timeout: 10m", f"timeout: {bad}")
        with pytest.raises(ConfigError, match=re.escape(f"wait.timeout: duration '{bad}' is {problem}")):
            parse_config(text, "c.yaml")


# ---- waits: Flux HelmRelease and Argo CD ----

WAIT_AT = EXAMPLE.index("    wait:\n")


def with_wait(wait: str) -> str:
    """EXAMPLE with its ``wait:`` block replaced by ``wait`` (``wait:`` is on line 18, ``wait`` starts on line 19)."""
    end = EXAMPLE.index("    deploymentURIs:")
    return EXAMPLE[:WAIT_AT] + "    wait:\n" + "".join(f"      {line}\n" for line in wait.splitlines()) + EXAMPLE[end:]


def test_a_helmrelease_wait_names_its_kustomization_and_may_expect_a_chart_version() -> None:
    config = parse_config(
        with_wait(
            "flux:\n"
            "  kind: HelmRelease\n"
            '  name: "{service}"\n'
            '  namespace: "{project}-{stage}"\n'
            "  kustomization: {name: apps, namespace: flux-system}\n"
            '  chartVersion: "{values.chart}"\n'
            "timeout: 15m"
        ),
        "c.yaml",
    )
    assert config.rules[0].wait == m.Wait(
        m.FluxWait(
            "HelmRelease",
            "{service}",
            "{project}-{stage}",
            kustomization=m.KustomizationRef(name="apps", namespace="flux-system"),
            chart_version="{values.chart}",
        ),
        timedelta(minutes=15),
    )


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (
            "flux: {kind: HelmRelease, name: carts, namespace: dev}",
            [
                "c.yaml:19:13: rules[0].wait.flux.kustomization: required with kind HelmRelease: the Kustomization "
                "that applies it"
            ],
        ),
        (
            "flux: {kind: Kustomization, name: carts, namespace: dev, chartVersion: '1.0'}",
            ["c.yaml:19:78: rules[0].wait.flux.chartVersion: only allowed with kind HelmRelease"],
        ),
        (
            "flux: {kind: Kustomization, name: carts, namespace: dev, kustomization: {name: a, namespace: b}}",
            ["c.yaml:19:79: rules[0].wait.flux.kustomization: only allowed with kind HelmRelease"],
        ),
        (
            "flux: {kind: GitRepository, name: carts, namespace: dev}",
            ["c.yaml:19:20: rules[0].wait.flux.kind: must be Kustomization or HelmRelease"],
        ),
        (
            "flux: {kind: HelmRelease, name: carts, namespace: dev, kustomization: {name: a}}",
            ["c.yaml:19:77: rules[0].wait.flux.kustomization.namespace: required key is missing"],
        ),
        (
            "flux: {kind: HelmRelease, name: carts, namespace: dev, kustomization: {name: a, namespace: b}, "
            "chartVersion: '{chart}'}",
            ["c.yaml:19:116: rules[0].wait.flux.chartVersion: template '{chart}' uses unknown field '{chart}'"],
        ),
        (
            "argocd: {application: carts, api: grpc}",
            ["c.yaml:19:41: rules[0].wait.argocd.api: must be kubernetes or rest"],
        ),
        (
            "argocd: {application: carts, server: https://argocd.example.com}",
            ["c.yaml:19:44: rules[0].wait.argocd.server: only allowed with api: rest"],
        ),
        (
            "argocd: {application: carts, api: rest, tokenEnv: ARGOCD_TOKEN}",
            ["c.yaml:19:15: rules[0].wait.argocd.server: required with api: rest"],
        ),
        (
            "argocd: {application: carts, api: rest, server: https://argocd.example.com}",
            ["c.yaml:19:15: rules[0].wait.argocd: api: rest needs exactly one of tokenEnv, tokenFile"],
        ),
        (
            "argocd: {application: carts, api: rest, server: https://argocd.example.com, tokenEnv: A, tokenFile: /t}",
            ["c.yaml:19:15: rules[0].wait.argocd: api: rest needs exactly one of tokenEnv, tokenFile"],
        ),
        (
            "argocd: {application: carts, api: rest, server: 'https://admin:pw@argocd.example.com', tokenEnv: A}",
            ["c.yaml:19:55: rules[0].wait.argocd.server: must be an https:// or http:// URL without credentials"],
        ),
        (
            "argocd: {application: carts, api: rest, server: https://argocd.example.com, tokenEnv: 'my token'}",
            ["c.yaml:19:93: rules[0].wait.argocd.tokenEnv: must be an environment variable name"],
        ),
        (
            "argocd: {application: carts, sync: maybe, refresh: 1}",
            [
                "c.yaml:19:58: rules[0].wait.argocd.refresh: must be true or false",
                "c.yaml:19:42: rules[0].wait.argocd.sync: must be true or false",
            ],
        ),
        (
            "argocd: {application: carts, sourceIndex: -1}",
            [
                "c.yaml:19:49: rules[0].wait.argocd.sourceIndex: must be a whole number, 0 or more (0 is the first "
                "of spec.sources)"
            ],
        ),
        (
            "argocd: {application: carts, degradedGrace: soon}",
            ["c.yaml:19:51: rules[0].wait.argocd.degradedGrace: 'soon' is not a duration"],
        ),
        (
            "argocd: {namespace: argocd}",
            ["c.yaml:19:15: rules[0].wait.argocd.application: required key is missing"],
        ),
        (
            "argocd: {application: carts}\nnone: {}",
            ["c.yaml:19:7: rules[0].wait: needs exactly one of: argocd, flux, clusters, none"],
        ),
    ],
)
def test_wait_mistakes_are_reported_exactly(wait: str, expected: list[str]) -> None:
    found = problems(with_wait(wait))
    assert len(found) == len(expected), found
    for got, want in zip(found, expected, strict=True):
        assert got.startswith(want), found


def test_an_argocd_wait_through_the_kubernetes_api_has_defaults() -> None:
    wait = parse_config(with_wait('argocd: {application: "{project}-{stage}-{service}"}'), "c.yaml").rules[0].wait
    assert wait.target == m.ArgoWait(application="{project}-{stage}-{service}")
    assert wait.target.api == "kubernetes" and wait.target.refresh and not wait.target.sync
    assert wait.target.degraded_grace == timedelta(minutes=1)


def test_an_argocd_wait_through_the_rest_api_reads_every_key() -> None:
    wait = (
        parse_config(
            with_wait(
                "argocd:\n"
                '  application: "{project}-{stage}-{service}"\n'
                "  namespace: apps\n"
                "  api: rest\n"
                "  server: https://argocd.example.com\n"
                "  tokenFile: /var/run/secrets/argocd/token\n"
                "  caFile: /etc/ssl/argocd-ca.crt\n"
                '  project: "{project}"\n'
                "  refresh: false\n"
                "  sync: yes\n"
                "  sourceIndex: 1\n"
                "  degradedGrace: 2m30s"
            ),
            "c.yaml",
        )
        .rules[0]
        .wait
    )
    assert wait.target == m.ArgoWait(
        application="{project}-{stage}-{service}",
        namespace="apps",
        api="rest",
        server="https://argocd.example.com",
        token_file="/var/run/secrets/argocd/token",
        ca_file="/etc/ssl/argocd-ca.crt",
        project="{project}",
        refresh=False,
        sync=True,
        source_index=1,
        degraded_grace=timedelta(minutes=2, seconds=30),
    )
