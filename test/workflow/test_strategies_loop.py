"""Every edit strategy through the whole loop: deployment.triggered over a real NATS → commit pushed to a bare git
remote → (simulated) Flux applied it → deployment.finished. The pushed file differs from the seeded one only in the
target scalars' bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import start_loop, stop_loop, triggered
from support import git, read_remote, service_config
from yamlcheck import Keys, assert_only_targets_changed

from keptn_gitops_service.state.store import Phase

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
    text = service_config(remote)
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
            "apps/dev/carts/helmrelease.yaml: HelmRelease 'carts' has no value at 'spec.values.image.tga' (no key "
            "'tga' under 'spec.values.image' at line 12, which has the keys 'repository', 'tag'); values are changed, "
            "never created"
        )
        assert git("rev-parse", "main", cwd=loop.remote) == head
    finally:
        await stop_loop(loop)


# ------------------------------------------------------------------------------------------ nothing passes silently


async def deliver(loop: Any, **data: Any) -> dict[str, Any]:
    """Publish a trigger with ``data`` and return its finished data."""
    event = triggered(IMAGE, **data)
    await loop.publish(event)
    finished: dict[str, Any] = (await loop.finished(event["id"]))["data"]
    return finished


def kustomize_update(name: str, extra: str = "") -> str:
    return f'      - file: "apps/{{stage}}/{{service}}/kustomization.yaml"\n        kustomizeImage: {{{name}}}\n{extra}'


async def test_a_name_no_entry_has_fails_naming_the_entries_and_commits_nothing(tmp_path: Path, nats_url: str) -> None:
    """The user's rule had a typo (keptn-examples): the entry used to be appended, matching no container, and pass."""
    update = kustomize_update('name: "docker.io/keptn-examples/{service}"')
    loop = await start_loop(tmp_path, nats_url, config=with_update(tmp_path / "remote.git", update))
    try:
        head = git("rev-parse", "main", cwd=loop.remote)
        data = await deliver(loop, configurationChange={"values": {"image": "docker.io/keptn-examples/carts:0.13.1"}})
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"] == (
            "apps/dev/carts/kustomization.yaml: no 'images' entry is named 'docker.io/keptn-examples/carts' or names "
            "its repository (entries: 'docker.io/keptnexamples/carts'); an entry that matches no container would "
            "deploy nothing. Correct kustomizeImage.name, or set kustomizeImage.create: true to add the entry"
        )
        assert git("rev-parse", "main", cwd=loop.remote) == head
    finally:
        await stop_loop(loop)


async def test_an_entry_is_created_where_the_rule_asks_for_it(tmp_path: Path, nats_url: str) -> None:
    update = kustomize_update('name: "docker.io/keptnexamples/{service}-db", create: true')
    loop = await start_loop(tmp_path, nats_url, config=with_update(tmp_path / "remote.git", update))
    try:
        data = await deliver(loop, configurationChange={"values": {"image": "docker.io/keptnexamples/carts-db:1.0"}})
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        text = read_remote(loop.remote, "apps/dev/carts/kustomization.yaml")
        assert text.endswith("  - name: docker.io/keptnexamples/carts-db\n    newTag: '1.0'\n") or text.endswith(
            '  - name: docker.io/keptnexamples/carts-db\n    newTag: "1.0"\n'
        )
    finally:
        await stop_loop(loop)


@pytest.mark.parametrize("allowed", [False, True])
async def test_a_repository_change_is_refused_unless_allowed_and_then_reported(
    tmp_path: Path, nats_url: str, allowed: bool
) -> None:
    """``--image carts:0.13.3`` against the entry docker.io/keptnexamples/carts used to set ``newName: carts``."""
    extra = "        allowRepositoryChange: true\n" if allowed else ""
    update = kustomize_update('name: "docker.io/keptnexamples/{service}"', extra)
    loop = await start_loop(tmp_path, nats_url, config=with_update(tmp_path / "remote.git", update))
    try:
        head = git("rev-parse", "main", cwd=loop.remote)
        data = await deliver(loop, configurationChange={"values": {"image": "carts:0.13.3"}})
        if not allowed:
            assert (data["status"], data["result"]) == ("errored", "fail")
            assert data["message"] == (
                "apps/dev/carts/kustomization.yaml: the 'images' entry 'docker.io/keptnexamples/carts' deploys the "
                "repository 'docker.io/keptnexamples/carts', but the image 'carts:0.13.3' is from 'carts'; refusing "
                "to change the image repository (set allowRepositoryChange: true on the update if the move is "
                "intended)"
            )
            assert git("rev-parse", "main", cwd=loop.remote) == head
            return
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        commit = data["deployment"]["gitCommit"]
        assert data["message"].startswith(
            f"image repository changed from docker.io/keptnexamples/carts to carts. Flux applied commit {commit[:12]}: "
        )
        entry = yaml.safe_load(read_remote(loop.remote, "apps/dev/carts/kustomization.yaml"))["images"][0]
        assert entry == {"name": "docker.io/keptnexamples/carts", "newName": "carts", "newTag": "0.13.3"}
    finally:
        await stop_loop(loop)


async def test_a_value_already_in_place_makes_no_commit_and_passes_once_the_tip_is_applied(
    tmp_path: Path, nats_url: str
) -> None:
    """Delivering the version the repository already holds verifies that Flux applied the tip."""
    loop = await start_loop(tmp_path, nats_url)
    try:
        head = git("rev-parse", "main", cwd=loop.remote).strip()
        data = await deliver(loop, configurationChange={"values": {"image": "docker.io/keptnexamples/carts:0.13.0"}})
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert git("rev-parse", "main", cwd=loop.remote).strip() == head
        assert data["deployment"]["gitCommit"] == head
        assert data["message"].startswith(
            "no commit made: apps/dev/carts/kustomization.yaml already has docker.io/keptnexamples/carts:0.13.0 at "
            f"main@{head[:12]}. Flux applied commit {head[:12]}: Kustomization sockshop-dev/carts: Ready=True"
        )
    finally:
        await stop_loop(loop)


async def test_a_value_already_in_place_waits_for_the_tip_to_be_applied(tmp_path: Path, nats_url: str) -> None:
    """Someone else pushed the version and Flux has not applied it yet: the deployment waits for that commit."""
    loop = await start_loop(tmp_path, nats_url, run_flux=False)
    try:
        work = tmp_path / "someone"
        git("clone", "--quiet", str(loop.remote), str(work))
        path = work / "apps/dev/carts/kustomization.yaml"
        path.write_text(path.read_text().replace("newTag: 0.13.0", "newTag: 0.13.1"))
        git("commit", "--quiet", "-am", "carts 0.13.1 by hand", cwd=work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=work)
        tip = git("rev-parse", "HEAD", cwd=work).strip()
        event = triggered(IMAGE)
        await loop.publish(event)
        while (record := await loop.service.store.get(event["id"])) is None or record.phase is not Phase.COMMITTED:
            await asyncio.sleep(0.01)
        assert record.commit == tip  # no commit of ours: the tip is what Flux must apply
        assert not [r for r in loop.replies_to(event["id"]) if r["type"].endswith(".finished")]
        await loop.flux.reconcile_once()
        data = (await loop.finished(event["id"]))["data"]
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert data["deployment"]["gitCommit"] == tip == git("rev-parse", "main", cwd=loop.remote).strip()
        assert data["message"].startswith(
            f"no commit made: apps/dev/carts/kustomization.yaml already has {IMAGE} at main@{tip[:12]}. Flux applied "
            f"commit {tip[:12]}: "
        )
    finally:
        await stop_loop(loop)


@pytest.mark.parametrize("change", [None, {}, {"values": {}}])
async def test_a_trigger_without_configuration_change_redeploys_the_tip(
    tmp_path: Path, nats_url: str, change: dict[str, Any] | None
) -> None:
    """A sequence re-run without configurationChange: nothing to edit, the tip must be applied."""
    loop = await start_loop(tmp_path, nats_url)
    try:
        head = git("rev-parse", "main", cwd=loop.remote).strip()
        data = await deliver(loop, configurationChange=change)
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert git("rev-parse", "main", cwd=loop.remote).strip() == head == data["deployment"]["gitCommit"]
        assert data["message"].startswith(
            "no commit made: the event carries no configurationChange.values (a redeploy), so what "
            f"main@{head[:12]} holds is what must be deployed. Flux applied commit {head[:12]}: "
        )
    finally:
        await stop_loop(loop)


async def test_an_image_without_tag_is_deployed_as_latest(tmp_path: Path, nats_url: str) -> None:
    """``keptn trigger delivery --image docker.io/keptnexamples/carts`` sends the name alone."""
    loop = await start_loop(tmp_path, nats_url)
    try:
        data = await deliver(loop, configurationChange={"values": {"image": "docker.io/keptnexamples/carts"}})
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        entry = yaml.safe_load(read_remote(loop.remote, "apps/dev/carts/kustomization.yaml"))["images"][0]
        assert entry == {"name": "docker.io/keptnexamples/carts", "newTag": "latest"}
    finally:
        await stop_loop(loop)


async def test_values_image_tag_as_an_object(tmp_path: Path, nats_url: str) -> None:
    """``--values image.tag=0.13.2`` sends ``{"image": {"tag": "0.13.2"}}``: {image.tag} reads it, {image} cannot."""
    update = (
        '      - file: "apps/{stage}/{service}/values.yaml"\n'
        '        yamlPath: image.tag\n        value: "{image.tag}"\n'
    )
    loop = await start_loop(tmp_path, nats_url, config=with_update(tmp_path / "remote.git", update))
    try:
        data = await deliver(loop, configurationChange={"values": {"image": {"tag": "0.13.2"}}})
        assert (data["status"], data["result"]) == ("succeeded", "pass"), data["message"]
        assert yaml.safe_load(read_remote(loop.remote, "apps/dev/carts/values.yaml"))["image"]["tag"] == "0.13.2"
    finally:
        await stop_loop(loop)
    loop = await start_loop(tmp_path / "default", nats_url)
    try:
        head = git("rev-parse", "main", cwd=loop.remote)
        data = await deliver(loop, configurationChange={"values": {"image": {"tag": "0.13.2"}}})
        assert (data["status"], data["result"]) == ("errored", "fail")
        assert data["message"] == (
            "rules[0].updates[0].kustomizeImage.image: data.configurationChange.values.image is an object, not an "
            "image reference (it has the values image.tag, as 'keptn trigger delivery --values image.<key>=…' sends "
            "them); use {image.tag} or {values.image.<key>} in the rule, or deliver with --image"
        )
        assert git("rev-parse", "main", cwd=loop.remote) == head
    finally:
        await stop_loop(loop)
