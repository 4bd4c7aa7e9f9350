"""Where a repository's forge is: inferred from the URL where it can be, refused at load where it cannot."""

from __future__ import annotations

import pytest

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.forge import forge_location
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import ConfigError


def repository(url: str, **forge: str) -> m.Repository:
    return m.Repository(name="fleet", url=url, forge=m.Forge(token_env="TOKEN", **forge))


@pytest.mark.parametrize(
    ("url", "forge", "expected"),
    [
        ("https://github.com/acme/fleet.git", {}, ("github", "https://api.github.com", "acme/fleet")),
        ("git@github.com:acme/fleet.git", {}, ("github", "https://api.github.com", "acme/fleet")),
        ("https://gitlab.com/acme/team/fleet.git", {}, ("gitlab", "https://gitlab.com/api/v4", "acme/team/fleet")),
        (
            "https://ghe.example.com/acme/fleet",
            {"type": "github"},
            ("github", "https://ghe.example.com/api/v3", "acme/fleet"),
        ),
        (
            "http://127.0.0.1:3000/acme/fleet.git",
            {"type": "gitea"},
            ("gitea", "http://127.0.0.1:3000/api/v1", "acme/fleet"),
        ),
        (
            "ssh://git@git.example.com:2222/acme/fleet.git",
            {"type": "gitlab", "api_url": "https://git.example.com/api/v4/"},
            ("gitlab", "https://git.example.com/api/v4", "acme/fleet"),
        ),
        (
            "https://git.example.com/x.git",
            {"type": "gitea", "path": "acme/fleet"},
            ("gitea", "https://git.example.com/api/v1", "acme/fleet"),
        ),
    ],
)
def test_the_forge_is_located_from_the_url_and_its_settings(
    url: str, forge: dict[str, str], expected: tuple[str, str, str]
) -> None:
    found = forge_location(repository(url, **forge))
    assert (found.type, found.api_url, found.path) == expected
    assert found.token_env == "TOKEN"


@pytest.mark.parametrize(
    ("url", "forge", "problem"),
    [
        (
            "https://git.example.com/acme/fleet.git",
            {},
            "cannot tell which forge hosts 'git.example.com': set forge.type",
        ),
        ("git@git.example.com:acme/fleet.git", {"type": "gitea"}, "set forge.apiURL"),
        ("https://git.example.com/fleet.git", {"type": "gitea"}, "set forge.path (owner/name)"),
    ],
)
def test_a_forge_that_cannot_be_located_is_refused(url: str, forge: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        forge_location(repository(url, **forge))


CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: {url}
{forge}
rules:
  - match: {{}}
    repository: fleet
    mode: pullRequest
    pullRequest: {{labels: [keptn], autoMerge: true, mergeMethod: squash, timeout: 2h}}
    updates:
      - file: app.yaml
        yamlPath: image
        value: "{{image}}"
"""


def test_a_pull_request_rule_loads_with_its_options() -> None:
    config = parse_config(CONFIG.format(url="https://github.com/acme/fleet.git", forge="    forge: {tokenEnv: GH}"))
    rule = config.rules[0]
    assert rule.mode == "pullRequest"
    assert rule.pull_request.labels == ("keptn",) and rule.pull_request.auto_merge
    assert rule.pull_request.merge_method == "squash" and rule.pull_request.timeout.total_seconds() == 7200
    assert forge_location(config.repository("fleet")).type == "github"


def test_a_pull_request_rule_needs_a_located_forge() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(url="https://github.com/acme/fleet.git", forge=""), "c.yaml")
    assert caught.value.problems == [
        "c.yaml:8:3: rules[0].mode: is pullRequest, but repository 'fleet' has no forge (repositories[].forge)"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(url="https://git.example.com/a/b.git", forge="    forge: {tokenEnv: T}"), "c.yaml")
    assert caught.value.problems == [
        "c.yaml:4:3: repositories[0].forge: cannot tell which forge hosts 'git.example.com': set forge.type "
        "(gitea, github or gitlab)"
    ]
