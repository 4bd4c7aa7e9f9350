"""Container images in plain manifests: every matching ``image`` scalar changes, nothing else does."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yamlcheck import Keys, assert_only_targets_changed

from keptn_gitops_service.editing.imageref import ImageRef, parse_image
from keptn_gitops_service.editing.manifests import set_container_images
from keptn_gitops_service.errors import EditError

DIGEST = "sha256:" + "e59349a6d8cf01d625de9fe73efd94b5e2a8cc8453d1b893ec367cfa2105bae9"

# Comments on every line, quotes, flow maps, anchors and aliases elsewhere, `---` and `...`, a ConfigMap that
# mentions the image (it must not change), a Service (skipped).
MANIFESTS = """\
# carts, all of it
apiVersion: apps/v1 # group
kind: Deployment # kind
metadata: # meta
  name: carts # name
  labels: &labels {app: carts, tier: backend} # anchored elsewhere
spec: # spec
  selector: {matchLabels: *labels} # alias elsewhere
  template: # pod
    metadata: {labels: *labels}
    spec: # pod spec
      initContainers: # init
        - {name: migrate, image: "docker.io/keptnexamples/carts:0.13.1", args: [migrate]} # flow map
      containers: # main
        - name: carts # c
          image: 'keptnexamples/carts:0.13.1' # single-quoted
        - name: db # not ours
          image: mongo:4.4 # other repository
---
apiVersion: v1
kind: ConfigMap
data:
  image: keptnexamples/carts:0.13.1 # a string, not a container
...
---
apiVersion: v1 # pod
kind: Pod
spec:
  containers:
  - name: carts
    image: index.docker.io/keptnexamples/carts@DIGEST # by digest
  ephemeralContainers:
  - name: debug
    image: busybox:1.36
---
apiVersion: batch/v1
kind: CronJob # nightly
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: "keptnexamples/carts" # untagged
          restartPolicy: OnFailure
---
apiVersion: v1
kind: Service
spec: {selector: {app: carts}}
""".replace("@DIGEST", "@" + DIGEST)

CARTS_TARGETS: list[tuple[int, Keys]] = [
    (0, ("spec", "template", "spec", "initContainers", 0, "image")),
    (0, ("spec", "template", "spec", "containers", 0, "image")),
    (2, ("spec", "containers", 0, "image")),
    (3, ("spec", "jobTemplate", "spec", "template", "spec", "containers", 0, "image")),
]


def rejected(text: str, image: str | ImageRef) -> str:
    with pytest.raises(EditError) as caught:
        set_container_images(text, parse_image(image) if isinstance(image, str) else image)
    return str(caught.value)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_matching_container_changes_and_nothing_else(newline: str) -> None:
    text = MANIFESTS.replace("\n", newline)
    new = set_container_images(text, parse_image("docker.io/keptnexamples/carts:0.14.0"))
    assert_only_targets_changed(text, new, dict.fromkeys(CARTS_TARGETS, "docker.io/keptnexamples/carts:0.14.0"))
    assert "image: keptnexamples/carts:0.13.1 # a string, not a container" in new
    assert (
        '- {name: migrate, image: "docker.io/keptnexamples/carts:0.14.0", args: [migrate]} # flow map' + newline
    ) in new
    assert "image: 'docker.io/keptnexamples/carts:0.14.0' # single-quoted" + newline in new


def test_the_new_spelling_is_written_and_digests_replace_tags() -> None:
    image = parse_image(f"keptnexamples/carts:0.14.0@{DIGEST}")
    new = set_container_images(MANIFESTS, image)
    assert_only_targets_changed(MANIFESTS, new, dict.fromkeys(CARTS_TARGETS, str(image)))


def test_another_repository_in_the_same_pod() -> None:
    new = set_container_images(MANIFESTS, parse_image("mongo:7.0"))
    target = (0, ("spec", "template", "spec", "containers", 1, "image"))
    assert_only_targets_changed(MANIFESTS, new, {target: "mongo:7.0"})
    assert "          image: mongo:7.0 # other repository\n" in new


def test_ephemeral_and_init_containers_and_statefulsets_jobs_daemonsets() -> None:
    text = (
        "kind: StatefulSet\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: 'redis:7'}]\n"
        "---\nkind: Job\nspec:\n  template:\n    spec:\n      initContainers:\n      - image: redis:7 # init\n"
        "---\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      containers:\n      - image: redis\n"
        "---\nkind: Pod\nspec:\n  ephemeralContainers:\n  - image: docker.io/library/redis:6\n"
    )
    new = set_container_images(text, parse_image("redis:7.2"))
    assert new == text.replace("'redis:7'", "'redis:7.2'").replace("redis:7 #", "redis:7.2 #").replace(
        "- image: redis\n", "- image: redis:7.2\n"
    ).replace("docker.io/library/redis:6", "redis:7.2")


def test_a_value_that_is_already_there_returns_the_text_as_is() -> None:
    text = "kind: Pod\nspec:\n  containers:\n  - image: carts:1.0 # pinned\n"
    assert set_container_images(text, parse_image("carts:1.0")) is text


def test_a_numeric_looking_tag_stays_a_string() -> None:
    text = "kind: Pod\nspec:\n  containers:\n  - image: carts:1.0\n"
    new = set_container_images(text, parse_image("carts:1.10"))
    assert yaml.safe_load(new)["spec"]["containers"][0]["image"] == "carts:1.10"


# ------------------------------------------------------------------------------------------ rejections


def test_no_matching_container() -> None:
    assert rejected(MANIFESTS, "redis:7") == (
        "no container image names the repository of 'redis:7' (images in the text: "
        "'keptnexamples/carts:0.13.1', 'mongo:4.4', 'docker.io/keptnexamples/carts:0.13.1', "
        f"'index.docker.io/keptnexamples/carts@{DIGEST}', 'busybox:1.36', 'keptnexamples/carts')"
    )


def test_no_workload() -> None:
    assert rejected("kind: ConfigMap\ndata: {image: 'carts:1'}\n", "carts:2") == (
        "the text has no container image to set to 'carts:2' (no Pod, Deployment, StatefulSet, DaemonSet, "
        "ReplicaSet, Job, CronJob with containers)"
    )


def test_untagged_image_and_line_breaks() -> None:
    assert rejected(MANIFESTS, "keptnexamples/carts") == (
        "image reference 'keptnexamples/carts' has neither tag nor digest; refusing to deploy ':latest'"
    )
    assert rejected(MANIFESTS, ImageRef("keptnexamples/carts", "1\nx: y", None)) == (
        "value 'keptnexamples/carts:1\\nx: y' contains a line break; only single-line values can be written"
    )


def test_aliases_and_duplicate_keys_are_refused() -> None:
    aliased = "kind: Pod\nimages: {carts: &carts 'carts:1'}\nspec:\n  containers:\n  - image: *carts\n"
    assert rejected(aliased, "carts:2") == (
        "path 'spec.containers[0].image' goes through the alias '*carts' at line 5; edit the anchored node "
        "'&carts' at line 2 instead, knowing that every alias shares it"
    )
    duplicated = "kind: Pod\nspec:\n  containers:\n  - image: carts:1\n    image: carts:1\n"
    assert rejected(duplicated, "carts:2") == (
        "key 'image' appears 2 times under 'spec.containers[0]' at line 4 (lines 4 and 5); duplicate keys are "
        "invalid YAML and readers disagree on which one wins"
    )


# ------------------------------------------------------------------------------------------ property


@settings(max_examples=30, deadline=None)
@given(
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True),
    digest=st.none() | st.just(DIGEST),
    registry=st.sampled_from(["", "docker.io/", "index.docker.io/"]),
)
def test_property_only_the_image_scalars_change(tag: str, digest: str | None, registry: str) -> None:
    image = ImageRef(f"{registry}keptnexamples/carts", tag, digest)
    new = set_container_images(MANIFESTS, image)
    assert_only_targets_changed(MANIFESTS, new, dict.fromkeys(CARTS_TARGETS, str(image)))
