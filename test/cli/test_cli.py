"""The command line as a user runs it: a real subprocess of the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import make_remote, read_remote, service_config

from keptn_gitops_sim import content


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keptn_gitops_service", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_config_check_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "gitops.yaml"
    path.write_text(service_config(tmp_path / "remote.git"))
    result = cli("config", "check", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"{path}: OK (1 repositories, 1 rules)")


def test_config_check_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "gitops.yaml"
    path.write_text(
        service_config(tmp_path / "remote.git").replace("    branch: main\n", "    branch: main\n    brnch: x\n")
    )
    result = cli("config", "check", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:7:5: repositories[0].brnch: unknown key (allowed: ")


def test_deploy_without_keptn_commits_and_reports(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, content.REPOSITORY_FILES)
    path = tmp_path / "gitops.yaml"
    path.write_text(service_config(remote))
    result = cli(
        "deploy",
        "--project",
        "sockshop",
        "--stage",
        "dev",
        "--service",
        "carts",
        "--image",
        "docker.io/keptnexamples/carts:0.15.0",
        "--config",
        str(path),
        "--no-wait",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "deployment.started: status=succeeded"
    assert lines[1].startswith('deployment.finished: status=succeeded result=pass message="commit ')
    assert lines[2].startswith("commit: ")
    assert "newTag: 0.15.0 #" in read_remote(remote, "apps/dev/carts/kustomization.yaml")


def test_deploy_exit_codes_tell_the_outcome(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, content.REPOSITORY_FILES)
    path = tmp_path / "gitops.yaml"
    path.write_text(service_config(remote))
    base = ("deploy", "--stage", "dev", "--service", "carts", "--config", str(path), "--no-wait")
    unmatched = cli(*base, "--project", "other", "--image", "docker.io/x/carts:1", cwd=tmp_path)
    assert unmatched.returncode == 2 and "no rule in" in unmatched.stderr
    bad = cli(*base, "--project", "sockshop", "--image", "docker.io/x/Carts:1", cwd=tmp_path)
    assert bad.returncode == 1 and "is not a valid OCI reference" in bad.stdout


def test_run_without_config_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("run", cwd=tmp_path, env={"KEPTN_GITOPS_CONFIG": ""})
    assert result.returncode == 2 and "no config file" in result.stderr


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: kube-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_config_check_online_reaches_every_repository_and_loads_the_kubeconfig(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, content.REPOSITORY_FILES)
    path = tmp_path / "gitops.yaml"
    text = service_config(remote).replace(
        "    branch: main\n", "    branch: main\n    auth: {type: token, tokenEnv: CLI_GIT_TOKEN}\n"
    )
    text = text.replace("rules:\n", f"  - name: archive\n    url: file://{tmp_path}/archive.git\nrules:\n")
    path.write_text(text)
    kubeconfig = tmp_path / "kubeconfig"
    env = {"CLI_GIT_TOKEN": "", "KUBECONFIG": str(kubeconfig)}
    result = cli("config", "check", "--online", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: the git token environment variable CLI_GIT_TOKEN of repository 'fleet' (file://{remote}, branch main)"
        " is not set",
        f"error: git ls-remote for repository 'archive' (file://{tmp_path}/archive.git, branch main) failed: "
        "fatal: Could not read from remote repository. / Please make sure you have the correct access rights / and "
        "the repository exists.",
        f"error: cannot load the Kubernetes configuration from {kubeconfig}: ConfigError: Configuration file "
        f"{kubeconfig} not found (needed by the Kubernetes waits of rules[0])",
    ]
    assert result.stdout == ""
    make_remote(tmp_path / "second", {"README.md": "archive\n"}).rename(tmp_path / "archive.git")
    kubeconfig.write_text(KUBECONFIG)
    result = cli("config", "check", "--online", str(path), cwd=tmp_path, env={**env, "CLI_GIT_TOKEN": "t0ken"})
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: OK (2 repositories, 1 rules; every repository reachable)\n"


def test_run_without_rules_refuses_to_start_and_names_the_chart_key(tmp_path: Path) -> None:
    path = tmp_path / "gitops.yaml"
    text = service_config(tmp_path / "remote.git")
    path.write_text(text[: text.index("rules:")] + "rules: []\n")
    for args in (("run", "--config", str(path)), ("config", "check", str(path))):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == (
            f"error: {path}:8:8: rules: at least one rule is needed: without rules the service owns no deployment "
            "(with the Helm chart, set the values key config.rules)\n"
        )
