"""The webhook endpoints: Flux ``generic-hmac`` signatures over the exact body, both metadata key styles, Argo CD's
shared-secret header, and the 401/413/400 answers — through the real aiohttp server the service runs.

Payloads: the notification-controller docs' generic event (``upstream/gitops/flux/notification_generic_event.json``:
the pre-v1.5 prefixed key ``kustomize.toolkit.fluxcd.io/revision``) sent byte for byte, and the modern shape built
from the upstream structs: ``fluxcd/pkg apis/event/v1beta1.Event`` (involvedObject, severity, timestamp, message,
reason, metadata, reportingController, reportingInstance) with metadata as notification-controller ≥ v1.5 sends it
(``internal/server/event_handlers.go combineEventMetadata``: the object's group prefix stripped, the Alert's
``eventMetadata`` merged — keys from ``notification_alert_metadata_payload.json``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from keptn_gitops_service.errors import WebhookAuthError, WebhookError
from keptn_gitops_service.web.probes import ProbeServer
from keptn_gitops_service.web.webhooks import (
    ARGOCD_PATH,
    FLUX_PATH,
    SIGNATURE_ALGORITHMS,
    Hint,
    check_shared_secret,
    flux_revision,
    parse_argocd_notification,
    parse_flux_event,
    verify_signature,
    webhook_routes,
)

SECRET = b"flux-hmac-token-9f3c"
ARGO_SECRET = b"argo-shared-secret-51aa"
SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"


def sign(body: bytes, key: bytes = SECRET, algorithm: str = "sha256") -> str:
    return f"{algorithm}={hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()}"


def go_json(obj: Any) -> bytes:
    """Compact like Go's json.Marshal (what notification-controller signs and sends)."""
    return json.dumps(obj, separators=(",", ":")).encode()


@pytest.fixture
def docs_event(upstream_fixtures: Path) -> bytes:
    return (upstream_fixtures / "gitops" / "flux" / "notification_generic_event.json").read_bytes()


@pytest.fixture
def modern_event(upstream_fixtures: Path) -> dict[str, Any]:
    """A Kustomization success as notification-controller ≥ v1.5 posts it (prefix stripped, Alert metadata merged)."""
    docs = json.loads((upstream_fixtures / "gitops" / "flux" / "notification_generic_event.json").read_bytes())
    alert = json.loads(
        (upstream_fixtures / "gitops" / "flux" / "notification_alert_metadata_payload.json").read_bytes()
    )
    return {
        "involvedObject": docs["involvedObject"],
        "severity": "info",
        "timestamp": "2026-03-02T10:15:00Z",
        "message": "Reconciliation finished in 1.2s, next run in 10m0s",
        "reason": "ReconciliationSucceeded",
        "metadata": {**alert["metadata"], "revision": f"main@sha1:{SHA}", "commit_status": "update"},
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller-7c7b47f5f-8bhrp",
    }


# ------------------------------------------------------------------------------------------ pure functions


@pytest.mark.parametrize("algorithm", sorted(SIGNATURE_ALGORITHMS))
def test_every_hash_flux_signs_or_verifies_with_is_accepted(algorithm: str, docs_event: bytes) -> None:
    signature = sign(docs_event, algorithm=algorithm)
    verify_signature(signature, docs_event, SECRET)  # accepted: no WebhookAuthError
    with pytest.raises(WebhookAuthError):  # and the same signature does not cover another body
        verify_signature(signature, docs_event + b" ", SECRET)


def test_uppercase_hex_is_the_same_signature(docs_event: bytes) -> None:
    upper = sign(docs_event).upper().replace("SHA256=", "sha256=")
    assert upper != sign(docs_event)
    verify_signature(upper, docs_event, SECRET)  # accepted: no WebhookAuthError
    with pytest.raises(WebhookAuthError):  # while the same digits under another key are not
        verify_signature(upper, docs_event, SECRET + b"x")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing X-Signature header"),
        ("", "missing X-Signature header"),
        ("abc123", "must look like sha256=<hex>"),
        ("md5=" + hmac.new(SECRET, b"x", "md5").hexdigest(), "unsupported X-Signature algorithm 'md5'"),
        ("sha256=zz", "not hexadecimal"),
        ("sha256=abc", "not hexadecimal"),
        ("sha256=" + "00" * 32, "does not match the body"),
    ],
)
def test_bad_signature_headers_are_refused(header: str | None, problem: str, docs_event: bytes) -> None:
    with pytest.raises(WebhookAuthError, match=problem) as caught:
        verify_signature(header, docs_event, SECRET)
    assert caught.value.status == 401


def test_a_signature_made_with_another_key_is_refused(docs_event: bytes) -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify_signature(sign(docs_event, key=b"someone-else"), docs_event, SECRET)


def test_a_signature_labelled_with_the_wrong_algorithm_is_refused(docs_event: bytes) -> None:
    sha512_digest = sign(docs_event, algorithm="sha512").partition("=")[2]
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify_signature(f"sha256={sha512_digest}", docs_event, SECRET)


@pytest.mark.parametrize("position", [0, 57, -1])
def test_a_body_altered_by_one_byte_is_refused(position: int, docs_event: bytes) -> None:
    signature = sign(docs_event)
    altered = bytearray(docs_event)
    altered[position] ^= 0x01
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify_signature(signature, bytes(altered), SECRET)


def test_the_signature_covers_the_exact_bytes_not_the_json_value(docs_event: bytes) -> None:
    """Re-serialising the same JSON (as a proxy or a framework might) breaks the signature: we verify raw bytes."""
    same_value = go_json(json.loads(docs_event))
    assert json.loads(same_value) == json.loads(docs_event) and same_value != docs_event
    with pytest.raises(WebhookAuthError):
        verify_signature(sign(docs_event), same_value, SECRET)


def test_the_docs_event_with_the_prefixed_revision_key(docs_event: bytes) -> None:
    hint = parse_flux_event(docs_event)
    assert hint == Hint(
        source="flux",
        kind="Kustomization",
        group="kustomize.toolkit.fluxcd.io",
        namespace="apps",
        name="webapp",
        revision=f"main/{SHA}",
        reason="ValidationFailed",
    )


def test_the_modern_event_with_the_stripped_revision_key(modern_event: dict[str, Any]) -> None:
    hint = parse_flux_event(go_json(modern_event))
    assert (hint.kind, hint.namespace, hint.name) == ("Kustomization", "apps", "webapp")
    assert hint.revision == f"main@sha1:{SHA}" and hint.reason == "ReconciliationSucceeded"


def test_a_helmrelease_event_with_helm_controllers_prefixed_key(upstream_fixtures: Path) -> None:
    """helm-controller's metadata (upstream helmrelease_event.yaml annotations) as pre-v1.5 sends it."""
    import yaml

    k8s_event = yaml.safe_load((upstream_fixtures / "gitops" / "flux" / "helmrelease_event.yaml").read_text())
    event = {
        "involvedObject": k8s_event["involvedObject"],
        "severity": "info",
        "timestamp": k8s_event["lastTimestamp"],
        "message": k8s_event["message"],
        "reason": k8s_event["reason"],
        "metadata": k8s_event["metadata"]["annotations"],
        "reportingController": k8s_event["source"]["component"],
    }
    hint = parse_flux_event(go_json(event))
    assert (hint.kind, hint.group, hint.namespace, hint.name) == (
        "HelmRelease",
        "helm.toolkit.fluxcd.io",
        "default",
        "podinfo",
    )
    assert hint.revision == "6.6.1+0cc9a8446c95" and hint.reason == "TestSucceeded"


def test_revision_key_styles() -> None:
    group = "kustomize.toolkit.fluxcd.io"
    assert flux_revision({"revision": "main@sha1:a"}, group) == "main@sha1:a"
    assert flux_revision({f"{group}/revision": "main/a"}, group) == "main/a"
    assert flux_revision({"revision": "new", f"{group}/revision": "old"}, group) == "new"
    assert flux_revision({"helm.toolkit.fluxcd.io/revision": "1.0.0"}, group) == ""  # another object's group
    assert flux_revision({f"{group}/revision": "main/b"}, "") == "main/b"  # no apiVersion: any */revision
    assert flux_revision({"summary": "x"}, group) == ""


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda e: e.pop("involvedObject"), "has no involvedObject"),
        (lambda e: e["involvedObject"].pop("name"), "involvedObject.name is missing"),
        (lambda e: e["involvedObject"].pop("namespace"), "involvedObject.namespace is missing"),
        (lambda e: e["involvedObject"].update(name="../../secrets/x"), "involvedObject.name is not a valid"),
        (lambda e: e["involvedObject"].update(namespace="Apps"), "involvedObject.namespace is not a valid"),
        (lambda e: e["involvedObject"].update(kind="Kustom ization"), "involvedObject.kind is not a valid"),
        (lambda e: e["involvedObject"].update(apiVersion="x/y/../v1"), "apiVersion is not a Kubernetes"),
        (lambda e: e.update(metadata=["revision"]), "metadata is not an object"),
        (lambda e: e.update(metadata={"revision": 7}), "'revision' is not a string"),
    ],
)
def test_flux_events_that_name_no_object_are_refused(
    modern_event: dict[str, Any], mutate: Callable[[dict[str, Any]], object], problem: str
) -> None:
    mutate(modern_event)
    with pytest.raises(WebhookError, match=problem) as caught:
        parse_flux_event(go_json(modern_event))
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"\xff\xfe"])
def test_bodies_that_are_no_json_object_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_flux_event(body)
    assert caught.value.status == 400


def test_argocd_notification_body() -> None:
    body = go_json({"app": "carts", "namespace": "argocd", "revision": SHA, "phase": "Succeeded", "health": "Healthy"})
    assert parse_argocd_notification(body) == Hint(
        source="argocd",
        kind="Application",
        group="argoproj.io",
        namespace="argocd",
        name="carts",
        revision=SHA,
        reason="Succeeded",
    )
    # A Go template renders a missing field as "": any namespace the service watches.
    assert parse_argocd_notification(go_json({"app": "carts", "namespace": ""})).namespace is None
    for bad in ({"namespace": "argocd"}, {"app": ""}, {"app": "Carts!"}, {"app": "carts", "namespace": "a/b"}):
        with pytest.raises(WebhookError):
            parse_argocd_notification(go_json(bad))


def test_shared_secret_check() -> None:
    check_shared_secret(ARGO_SECRET.decode(), ARGO_SECRET)
    check_shared_secret(f"Bearer {ARGO_SECRET.decode()}", ARGO_SECRET, "Authorization")
    for presented in (
        None,
        "",
        ARGO_SECRET.decode()[:-1],
        ARGO_SECRET.decode() + "x",
        f"Bearer {ARGO_SECRET.decode()}",
    ):
        with pytest.raises(WebhookAuthError) as caught:
            check_shared_secret(presented, ARGO_SECRET)
        assert caught.value.status == 401


def test_no_secret_mounts_no_endpoint() -> None:
    def sink(_: Hint) -> bool:
        return True

    assert webhook_routes(sink) == []
    assert [path for _, path, _ in webhook_routes(sink, flux_secret=SECRET)] == [FLUX_PATH]
    assert [path for _, path, _ in webhook_routes(sink, argocd_secret=ARGO_SECRET)] == [ARGOCD_PATH]


# ------------------------------------------------------------------------------------------ over HTTP


class Endpoint:
    """The webhook routes on the service's real HTTP server, with a sink recording the hints."""

    def __init__(self, port: int, hints: list[Hint]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.hints = hints

    async def post(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.post(self.base + path, data=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    hints: list[Hint] = []

    def sink(hint: Hint) -> bool:
        hints.append(hint)
        return hint.name == "webapp"

    async def ready() -> dict[str, Any]:
        return {}

    routes = webhook_routes(sink, flux_secret=SECRET, argocd_secret=ARGO_SECRET, max_body=4096)
    server = ProbeServer(ready, host="127.0.0.1", port=0, routes=routes)
    await server.start()
    try:
        yield Endpoint(server.port, hints)
    finally:
        await server.stop()


async def test_a_signed_flux_event_is_accepted_as_a_hint(endpoint: Endpoint, docs_event: bytes) -> None:
    status, body = await endpoint.post(FLUX_PATH, docs_event, {"X-Signature": sign(docs_event)})
    assert (status, body) == (202, {"accepted": True, "wokeWaiters": True})
    assert [(h.kind, h.namespace, h.name, h.revision) for h in endpoint.hints] == [
        ("Kustomization", "apps", "webapp", f"main/{SHA}")
    ]


async def test_unsigned_or_badly_signed_flux_events_get_401(endpoint: Endpoint, docs_event: bytes) -> None:
    altered = docs_event.replace(b"webapp", b"webapq")
    cases = [
        {},
        {"X-Signature": sign(docs_event, key=b"guess")},
        {"X-Signature": sign(docs_event, algorithm="md5")},
        {"X-Signature": sign(docs_event)},  # sent with the altered body below
    ]
    bodies = [docs_event, docs_event, docs_event, altered]
    for headers, body in zip(cases, bodies, strict=True):
        status, answer = await endpoint.post(FLUX_PATH, body, headers)
        assert status == 401, (headers, answer)
    assert endpoint.hints == []


async def test_a_body_above_the_limit_gets_413(endpoint: Endpoint, modern_event: dict[str, Any]) -> None:
    modern_event["message"] = "x" * 5000
    big = go_json(modern_event)
    status, answer = await endpoint.post(FLUX_PATH, big, {"X-Signature": sign(big)})
    assert status == 413 and "larger than 4096 bytes" in answer["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    status, _ = await endpoint.post(FLUX_PATH, chunked(), {"X-Signature": sign(big)})
    assert status == 413
    assert endpoint.hints == []


async def test_a_signed_body_that_names_no_object_gets_400(endpoint: Endpoint, modern_event: dict[str, Any]) -> None:
    for body in (b"not json", go_json({**modern_event, "involvedObject": {"kind": "Kustomization"}})):
        status, answer = await endpoint.post(FLUX_PATH, body, {"X-Signature": sign(body)})
        assert status == 400, answer
    assert endpoint.hints == []


async def test_argocd_notifications_need_the_shared_secret(endpoint: Endpoint) -> None:
    body = go_json({"app": "carts", "namespace": "argocd", "revision": SHA, "phase": "Succeeded"})
    for headers in ({}, {"X-Webhook-Secret": "wrong"}, {"Authorization": f"Bearer {ARGO_SECRET.decode()}"}):
        status, _ = await endpoint.post(ARGOCD_PATH, body, headers)
        assert status == 401
    assert endpoint.hints == []
    status, answer = await endpoint.post(ARGOCD_PATH, body, {"X-Webhook-Secret": ARGO_SECRET.decode()})
    assert (status, answer) == (202, {"accepted": True, "wokeWaiters": False})
    assert [(h.kind, h.group, h.namespace, h.name) for h in endpoint.hints] == [
        ("Application", "argoproj.io", "argocd", "carts")
    ]
    status, _ = await endpoint.post(ARGOCD_PATH, b"{}", {"X-Webhook-Secret": ARGO_SECRET.decode()})
    assert status == 400
    status, _ = await endpoint.post(ARGOCD_PATH, b"x" * 5000, {"X-Webhook-Secret": ARGO_SECRET.decode()})
    assert status == 413


async def test_secrets_never_reach_the_log(endpoint: Endpoint, docs_event: bytes) -> None:
    with capture_logs() as logs:
        await endpoint.post(FLUX_PATH, docs_event, {"X-Signature": sign(docs_event)})
        await endpoint.post(FLUX_PATH, docs_event, {"X-Signature": sign(docs_event, key=b"other")})
        await endpoint.post(ARGOCD_PATH, b'{"app":"carts"}', {"X-Webhook-Secret": ARGO_SECRET.decode()})
        await endpoint.post(ARGOCD_PATH, b'{"app":"carts"}', {"X-Webhook-Secret": ARGO_SECRET.decode() + "x"})
    assert [entry["event"] for entry in logs] == [
        "webhook hint",
        "webhook request refused",
        "webhook hint",
        "webhook request refused",
    ]
    text = repr(logs)
    assert SECRET.decode() not in text and ARGO_SECRET.decode() not in text
    assert sign(docs_event).partition("=")[2] not in text
