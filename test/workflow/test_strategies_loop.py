"""Every edit strategy through the whole loop: deployment.triggered over a real NATS → commit pushed to a bare git
remote → (simulated) Flux applied it → deployment.finished. The pushed file differs from the seeded one only in the
target scalars' bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import config_text, start_loop, stop_loop, triggered
from support import git, read_remote
from yamlcheck import Keys, assert_only_targets_changed

IMAGE = "docker.io/keptnexamples/carts:0.13.1"
DEFAULT_UPDATE = (
    '      - file: "apps/{stage}/{service}/kustomization.yaml"\n'
    '        kustomizeImage: {name: "docker.io/keptnexamples/{service}"}\n'
)


@dataclass(frozen=True)
class Case:
    """One strategy: the files to seed, the ``updates`` entry, and the scalars the pushed file must differ in."""

    files: dict[str, str]
    update: str
    path: str
    targets: dict[tuple[int, Keys], Any]


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


CASES = {
    "yamlPath": Case(
        {},  # the demo's deployment.yaml
        '      - file: "apps/{stage}/{service}/deployment.yaml"\n'
        '        yamlPath: "spec.template.spec.containers[name={service}].image"\n'
        '        value: "{image}"\n',
        "apps/dev/carts/deployment.yaml",
        {(0, ("spec", "template", "spec", "containers", 0, "image")): IMAGE},
    ),
    "marker": Case(
        {
            "apps/dev/carts/release.yaml": crlf(
                "# carts, tracked by Flux image automation\n"
                "image: # the image\n"
                '  repository: docker.io/keptnexamples/carts # {"$imagepolicy": "flux-system:carts:name"}\n'
                '  tag: \'0.13.0\'   # {"$imagepolicy": "flux-system:carts:tag"}\n'
                "notes: |\n"
                "  tag: 0.13.0\n"
                "---\n"
                'deployedBy: "keptn ctx" # {"keptn": "keptn {shkeptncontext}"}\n'
            )
        },
        '      - file: "apps/{stage}/{service}/release.yaml"\n        marker: {policy: "flux-system:{service}"}\n',
        "apps/dev/carts/release.yaml",
        {(0, ("image", "tag")): "0.13.1", (1, ("deployedBy",)): "keptn {context}"},
    ),
    "containerImage": Case(
        {
            "apps/dev/carts/manifests.yaml": (
                "apiVersion: apps/v1\n"
                "kind: Deployment # main\n"
                "spec:\n"
                "  template:\n"
                "    spec:\n"
                "      initContainers: [{name: migrate, image: 'keptnexamples/carts:0.13.0'}]\n"
                "      containers:\n"
                "      - name: carts\n"
                "        image: docker.io/keptnexamples/carts:0.13.0 # ours\n"
                "      - name: db\n"
                "        image: mongo:4.4\n"
                "---\n"
                "apiVersion: v1\n"
                "kind: ConfigMap\n"
                "data: {image: 'keptnexamples/carts:0.13.0'}\n"
            )
        },
        '      - file: "apps/{stage}/{service}/manifests.yaml"\n        containerImage: {}\n',
        "apps/dev/carts/manifests.yaml",
        {
            (0, ("spec", "template", "spec", "initContainers", 0, "image")): IMAGE,
            (0, ("spec", "template", "spec", "containers", 0, "image")): IMAGE,
        },
    ),
    "helmRelease": Case(
        {
            "apps/dev/carts/helmrelease.yaml": (
                "apiVersion: helm.toolkit.fluxcd.io/v2\n"
                "kind: HelmRelease\n"
                "metadata: {name: carts, namespace: sockshop-dev}\n"
                "spec:\n"
                "  chart:\n"
                "    spec:\n"
                "      chart: carts\n"
                "      version: '0.1.0' # chart\n"
                "      sourceRef: {kind: HelmRepository, name: keptn}\n"
                "  values:\n"
                "    image:\n"
                "      repository: docker.io/keptnexamples/carts\n"
                "      tag: 0.13.0 # app\n"
                "    replicaCount: 1\n"
            )
        },
        '      - file: "apps/{stage}/{service}/helmrelease.yaml"\n'
        "        helmRelease:\n"
        '          name: "{service}"\n'
        '          chartVersion: "{values.chart}"\n'
        '          values: {image.tag: "{image.tag}", replicaCount: "{values.replicas}"}\n',
        "apps/dev/carts/helmrelease.yaml",
        {
            (0, ("spec", "chart", "spec", "version")): "0.2.0",
            (0, ("spec", "values", "image", "tag")): "0.13.1",
            (0, ("spec", "values", "replicaCount")): 3,
        },
    ),
    "argocdApplication": Case(
        {
            "argocd/dev/carts.yaml": crlf(
                "apiVersion: argoproj.io/v1alpha1\n"
                "kind: Application\n"
                "metadata:\n"
                "  name: carts # app of apps\n"
                "spec:\n"
                "  source:\n"
                "    repoURL: https://charts.example.com\n"
                "    chart: carts\n"
                "    helm:\n"
                "      parameters:\n"
                "      - name: image.tag\n"
                '        value: "0.13.0"\n'
                "      valuesObject:\n"
                "        image: {repository: docker.io/keptnexamples/carts, tag: 0.13.0}\n"
            )
        },
        '      - file: "argocd/{stage}/{service}.yaml"\n'
        '        argocdApplication: {parameters: {image.tag: "{image.tag}"}, values: {image.tag: "{image.tag}"}}\n',
        "argocd/dev/carts.yaml",
        {
            (0, ("spec", "source", "helm", "parameters", 0, "value")): "0.13.1",
            (0, ("spec", "source", "helm", "valuesObject", "image", "tag")): "0.13.1",
        },
    ),
    "argocdSourceFile": Case(
        {
            "apps/dev/carts/.argocd-source-carts.yaml": (
                "# written by argocd-image-updater\n"
                "helm:\n"
                "  parameters:\n"
                "  - name: image.tag\n"
                "    value: 0.13.0\n"
                "    forcestring: true\n"
            )
        },
        '      - file: "apps/{stage}/{service}/.argocd-source-{service}.yaml"\n'
        '        argocdSourceFile: {helmParameters: {image.tag: "{image.tag}"}}\n',
        "apps/dev/carts/.argocd-source-carts.yaml",
        {(0, ("helm", "parameters", 0, "value")): "0.13.1"},
    ),
}


def with_update(remote: Path, update: str) -> str:
    text = config_text(remote)
    assert DEFAULT_UPDATE in text
    return text.replace(DEFAULT_UPDATE, update)


@pytest.mark.parametrize("name", list(CASES))
async def test_each_strategy_through_the_whole_loop(tmp_path: Path, nats_url: str, name: str) -> None:
    case = CASES[name]
    config = with_update(tmp_path / "remote.git", case.update)
    loop = await start_loop(tmp_path, nats_url, config=config, files=case.files)
    try:
        before = read_remote(loop.remote, case.path)
        event = triggered(IMAGE, configurationChange={"values": {"image": IMAGE, "chart": "0.2.0", "replicas": 3}})
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        commit = data["deployment"]["gitCommit"]
        assert git("diff", "--name-only", f"{commit}~1", commit, cwd=loop.remote).split() == [case.path]
        after = read_remote(loop.remote, case.path)
        targets = {
            k: (v.format(context=event["shkeptncontext"]) if isinstance(v, str) else v) for k, v in case.targets.items()
        }
        assert_only_targets_changed(before, after, targets)
    finally:
        await stop_loop(loop)


async def test_all_strategies_in_one_rule_make_one_commit(tmp_path: Path, nats_url: str) -> None:
    files = {path: text for case in CASES.values() for path, text in case.files.items()}
    config = with_update(tmp_path / "remote.git", "".join(case.update for case in CASES.values()))
    loop = await start_loop(tmp_path, nats_url, config=config, files=files)
    try:
        before = {case.path: read_remote(loop.remote, case.path) for case in CASES.values()}
        event = triggered(IMAGE, configurationChange={"values": {"image": IMAGE, "chart": "0.2.0", "replicas": 3}})
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert data["result"] == "pass", data["message"]
        commit = data["deployment"]["gitCommit"]
        assert git("rev-list", "--count", "main", cwd=loop.remote).strip() == "2"
        assert sorted(git("diff", "--name-only", f"{commit}~1", commit, cwd=loop.remote).split()) == sorted(before)
    finally:
        await stop_loop(loop)


async def test_a_refused_edit_fails_the_deployment_and_writes_nothing(tmp_path: Path, nats_url: str) -> None:
    """The second update would create a value that is not there: the first update's change is not pushed either."""
    update = CASES["yamlPath"].update + (
        '      - file: "apps/{stage}/{service}/helmrelease.yaml"\n'
        '        helmRelease: {values: {image.tga: "{image.tag}"}}\n'
    )
    loop = await start_loop(
        tmp_path, nats_url, config=with_update(tmp_path / "remote.git", update), files=CASES["helmRelease"].files
    )
    try:
        head = git("rev-parse", "main", cwd=loop.remote)
        event = triggered(IMAGE)
        await loop.publish(event)
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"] == (
            "apps/dev/carts/helmrelease.yaml: HelmRelease 'carts' has no value at 'spec.values.image.tga'; values are "
            "changed, never created"
        )
        assert git("rev-parse", "main", cwd=loop.remote) == head
    finally:
        await stop_loop(loop)
