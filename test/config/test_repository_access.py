"""The repository keys for big repositories and signed commits: ``clone`` and ``signing``, strictly checked."""

from __future__ import annotations

import pytest

from keptn_gitops_service.config import model as m
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.errors import ConfigError

CONFIG = """\
apiVersion: gitops.keptn-contrib/v1
kind: GitOpsConfig
repositories:
  - name: fleet
    url: https://git.example.com/org/fleet.git
{extra}rules:
  - match: {{}}
    repository: fleet
    updates:
      - file: "apps/{{service}}/kustomization.yaml"
        kustomizeImage: {{name: "{{image.name}}"}}
"""


def repository(extra: str) -> m.Repository:
    return parse_config(CONFIG.format(extra=extra), "c.yaml").repository("fleet")


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(extra=extra), "c.yaml")
    return info.value.problems


def test_without_the_keys_a_full_unsigned_clone() -> None:
    repo = repository("")
    assert repo.clone == m.CloneOptions() and repo.clone.depth is None and repo.clone.filter is None
    assert repo.signing is None


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("{depth: 50}", m.CloneOptions(depth=50)),
        ("{filter: blob:none}", m.CloneOptions(filter="blob:none")),
        ('{depth: 1, filter: "tree:0"}', m.CloneOptions(depth=1, filter="tree:0")),
        ("{filter: blob:limit=512k}", m.CloneOptions(filter="blob:limit=512k")),
        ("{}", m.CloneOptions()),
    ],
)
def test_clone_options(text: str, options: m.CloneOptions) -> None:
    assert repository(f"    clone: {text}\n").clone == options


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{depth: 0}", "c.yaml:6:20: repositories[0].clone.depth: must be a positive whole number of commits"),
        ("{depth: -3}", "repositories[0].clone.depth: must be a positive whole number of commits"),
        ("{depth: 1.5}", "repositories[0].clone.depth: must be a positive whole number of commits"),
        ("{depth: [1]}", "repositories[0].clone.depth: must be a positive whole number of commits"),
        ("{depth: }", "repositories[0].clone.depth: must be a positive whole number of commits"),
        ("{filter: blob}", "repositories[0].clone.filter: must be blob:none, tree:0 or blob:limit=<n>[k|m|g]"),
        ("{filter: 'blob:none --upload-pack=x'}", "repositories[0].clone.filter: must be blob:none, tree:0"),
        ("{dept: 1}", "repositories[0].clone.dept: unknown key (allowed: depth, filter)"),
        ("shallow", "repositories[0].clone: must be a mapping, got 'shallow'"),
    ],
)
def test_bad_clone_options_are_precise(text: str, problem: str) -> None:
    found = problems(f"    clone: {text}\n")
    assert len(found) == 1 and problem in found[0], found


def test_signing_keys() -> None:
    ssh = repository("    signing: {format: ssh, keyFile: /keys/signing}\n").signing
    assert ssh == m.Signing(format="ssh", key_file="/keys/signing")
    pgp = repository("    signing: {format: openpgp, keyId: 0xABCDEF, gnupgHome: /gnupg}\n").signing
    assert pgp == m.Signing(format="openpgp", key_id="0xABCDEF", gnupg_home="/gnupg")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{format: x509, keyFile: /k}", ["c.yaml:6:23: repositories[0].signing.format: must be one of: ssh, openpgp"]),
        ("{format: ssh}", ["c.yaml:6:14: repositories[0].signing.keyFile: required for signing format 'ssh'"]),
        (
            "{format: ssh, keyFile: /k, keyId: A}",
            ["repositories[0].signing.keyId: not allowed for signing format 'ssh'"],
        ),
        (
            "{format: openpgp, keyId: A}",
            ["repositories[0].signing.gnupgHome: required for signing format 'openpgp'"],
        ),
        (
            "{format: openpgp, keyFile: /k, keyId: A, gnupgHome: /g}",
            ["repositories[0].signing.keyFile: not allowed for signing format 'openpgp'"],
        ),
        ("{keyFile: /k}", ["repositories[0].signing.format: required key is missing"]),
        ("{format: ssh, keyFile: /k, passphrase: x}", ["repositories[0].signing.passphrase: unknown key"]),
    ],
)
def test_bad_signing_is_precise(text: str, expected: list[str]) -> None:
    found = problems(f"    signing: {text}\n")
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found, strict=True)), found
