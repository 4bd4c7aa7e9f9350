"""Uniform registration shapes against the derived wire fixtures (10, 11, 12) and go-utils' subscription matching."""

from __future__ import annotations

import json
from pathlib import Path

from keptn_gitops_service.keptn.uniform import Identity, Subscription, parse_subscriptions, registration_body

DERIVED = "keptn/derived"


def test_registration_body_has_the_shape_of_the_sdk(upstream_fixtures: Path) -> None:
    expected = json.loads((upstream_fixtures / DERIVED / "10-POST-v1-uniform-registration.body.json").read_text())
    identity = Identity("my-deploy-service", "keptn", "node-1", "my-deploy-service-6d9f7c-abcde", "1.0.0")
    assert registration_body(identity, ["sh.keptn.event.deployment.triggered"]) == expected


def test_subscriptions_come_from_the_ping_answer(upstream_fixtures: Path) -> None:
    answer = json.loads(
        (upstream_fixtures / DERIVED / "12-PUT-v1-uniform-registration-ID-ping.response.json").read_text()
    )
    assert parse_subscriptions(answer) == (
        Subscription("sh.keptn.event.deployment.triggered", id="b1c9d6a2-8e7f-4c1d-9a0b-2f3e4d5c6b7a"),
    )
    assert parse_subscriptions({"subscriptions": [{"event": ""}, "x", {"filter": {}}]}) == ()


def test_filters_match_like_go_utils_eventmatcher() -> None:
    sub = Subscription("sh.keptn.event.deployment.triggered", projects=("sockshop",), stages=("prod", "staging"))
    data = {"project": "sockshop", "stage": "prod", "service": "carts"}
    assert sub.matches("sh.keptn.event.deployment.triggered", data)
    assert not sub.matches("sh.keptn.event.release.triggered", data)
    assert not sub.matches("sh.keptn.event.deployment.triggered", {**data, "stage": "dev"})
    assert Subscription("sh.keptn.event.deployment.triggered").matches("sh.keptn.event.deployment.triggered", {})


def test_registration_names_the_deployment_that_runs_us() -> None:
    """K8S_DEPLOYMENT_NAME (the chart sets it from the release) is what the Bridge shows as the deployment."""
    identity = Identity("keptn-gitops-service", "keptn", "node-1", "pod-1", "1.0.0", deployment="my-release-gitops")
    body = registration_body(identity, ["sh.keptn.event.deployment.triggered"])
    assert body["metadata"]["kubernetesmetadata"]["deploymentname"] == "my-release-gitops"
