"""Webhooks as hints: Flux notification-controller events and Argo CD notifications wake the matching waiters.

A hint only makes the service read the named object again (one GET through the shared watch). The status read
from the Kubernetes API decides every result, so a forged, replayed, late or lost notification can at most make
the service look sooner. Both endpoints authenticate before they parse anything:

* ``POST /webhooks/flux``: a notification-controller ``Provider`` of type ``generic-hmac`` signs the exact body
  with the Secret's ``token`` (``X-Signature: sha256=<hex>``, code ``internal/notifier/forwarder.go``); the
  body is a ``fluxcd/pkg apis/event/v1beta1.Event``.
* ``POST /webhooks/argocd``: an Argo CD notifications webhook service sends a shared secret in a header
  (Argo CD has no signing), with a JSON body naming the Application (template in docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from keptn_gitops_service import metrics
from keptn_gitops_service.errors import WebhookAuthError, WebhookError, WebhookTooLargeError
from keptn_gitops_service.settings import DEFAULT_ARGOCD_WEBHOOK_HEADER
from keptn_gitops_service.web.probes import Route

log = structlog.get_logger(__name__)

FLUX_PATH = "/webhooks/flux"
ARGOCD_PATH = "/webhooks/argocd"
SIGNATURE_HEADER = "X-Signature"
MAX_BODY_BYTES = 1 << 20
"""Flux's own verification example reads at most 1 MiB; an event's message is at most 39,000 characters."""

# Flux's Provider signs with sha256 today ("may change in the future", providers.md); its Receiver accepts
# sha1/sha256/sha512 and the documented verifier sha224/sha256/sha384/sha512. Accept that whole family.
SIGNATURE_ALGORITHMS: Mapping[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

_HEX = re.compile(r"[0-9a-fA-F]+")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")  # RFC 1123 subdomain: what Kubernetes allows as a name
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_GROUP = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


@dataclass(frozen=True)
class Hint:
    """A request to look at one object again, from a notification. Never a verdict."""

    source: str
    """``flux`` or ``argocd``."""
    kind: str
    group: str
    """The API group (``kustomize.toolkit.fluxcd.io``); empty when the notification does not say."""
    namespace: str | None
    """``None``: any namespace the service watches (an Argo CD body without ``namespace``)."""
    name: str
    revision: str = ""
    """The revision the notification mentions, for the log only."""
    reason: str = ""
    """Flux's event reason or Argo CD's phase, for the log only."""


HintSink = Callable[[Hint], bool]
"""Wakes the waiters of the hinted object without blocking; returns whether any waiter follows it."""

ForgeHookSink = Callable[[str, Mapping[str, str], bytes], bool]
"""A forge's webhook for the repository named (``repositories[].name``): checks its signature against that
repository's secret (raising :class:`WebhookError`), wakes the waits of the pull request it names, returns whether
any waited."""

FORGES_PATH = "/webhooks/forges/{repository}"


def verify_signature(header: str | None, body: bytes, key: bytes) -> None:
    """Check ``X-Signature: <algorithm>=<hex HMAC of body>`` in constant time; raise :class:`WebhookAuthError`."""
    if not header:
        raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header")
    algorithm, separator, digest = header.strip().partition("=")
    if not separator:
        raise WebhookAuthError(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
    new = SIGNATURE_ALGORITHMS.get(algorithm.lower())
    if new is None:
        supported = ", ".join(SIGNATURE_ALGORITHMS)
        raise WebhookAuthError(f"unsupported {SIGNATURE_HEADER} algorithm {algorithm[:16]!r} (supported: {supported})")
    if len(digest) % 2 or not _HEX.fullmatch(digest):
        raise WebhookAuthError(f"the {SIGNATURE_HEADER} digest is not hexadecimal")
    expected = hmac.new(key, body, new).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(digest)):
        raise WebhookAuthError(f"{SIGNATURE_HEADER} does not match the body")


def check_shared_secret(presented: str | None, secret: bytes, header: str = DEFAULT_ARGOCD_WEBHOOK_HEADER) -> None:
    """Compare a header's value with the shared secret in constant time (also in the length: both are hashed).

    With ``header`` ``Authorization`` a ``Bearer`` scheme in front of the secret is accepted."""
    if not presented:
        raise WebhookAuthError(f"missing {header} header")
    value = presented.strip()
    if header.lower() == "authorization" and value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not hmac.compare_digest(hashlib.sha256(value.encode()).digest(), hashlib.sha256(secret).digest()):
        raise WebhookAuthError(f"the {header} header does not carry the shared secret")


def parse_flux_event(body: bytes) -> Hint:
    """The object a Flux event (``eventv1.Event``) is about; :class:`WebhookError` when it names none."""
    event = _json_object(body, "Flux event")
    involved = event.get("involvedObject")
    if not isinstance(involved, dict):
        raise WebhookError("the Flux event has no involvedObject")
    kind = _field(involved, "kind", _KIND, "involvedObject.kind")
    name = _field(involved, "name", _NAME, "involvedObject.name", limit=253)
    namespace = _field(involved, "namespace", _NAMESPACE, "involvedObject.namespace", limit=63)
    api_version = involved.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    if group and not _GROUP.fullmatch(group):
        raise WebhookError("involvedObject.apiVersion is not a Kubernetes API version")
    metadata = event.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise WebhookError("the Flux event's metadata is not an object")
    reason = event.get("reason")
    return Hint(
        source="flux",
        kind=kind,
        group=group,
        namespace=namespace,
        name=name,
        revision=flux_revision(metadata, group),
        reason=reason if isinstance(reason, str) else "",
    )


def flux_revision(metadata: Mapping[str, Any], group: str) -> str:
    """The revision in an event's metadata, in either key style.

    notification-controller ≥ v1.5 (Flux 2.5, RFC-0008) strips the involved object's group (``revision``);
    older controllers, and the docs' example, send it prefixed (``kustomize.toolkit.fluxcd.io/revision``)."""
    candidates = ["revision"]
    if group:
        candidates.append(f"{group}/revision")
    else:
        candidates += sorted(key for key in metadata if isinstance(key, str) and key.endswith("/revision"))
    for key in candidates:
        value = metadata.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise WebhookError(f"the Flux event's metadata {key!r} is not a string")
            return value
    return ""


def parse_argocd_notification(body: bytes) -> Hint:
    """The Application an Argo CD notification names: ``{"app": ..., "namespace": ..., "revision": ...}``."""
    notification = _json_object(body, "Argo CD notification")
    name = _field(notification, "app", _NAME, "app", limit=253)
    namespace: str | None = None
    if notification.get("namespace") not in (None, ""):
        namespace = _field(notification, "namespace", _NAMESPACE, "namespace", limit=63)
    revision, phase = notification.get("revision"), notification.get("phase")
    return Hint(
        source="argocd",
        kind="Application",
        group="argoproj.io",
        namespace=namespace,
        name=name,
        revision=revision if isinstance(revision, str) else "",
        reason=phase if isinstance(phase, str) else "",
    )


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The exact request body, refused with :class:`WebhookTooLargeError` as soon as it exceeds ``limit``."""
    if (request.content_length or 0) > limit:
        raise WebhookTooLargeError(f"the body is larger than {limit} bytes")
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise WebhookTooLargeError(f"the body is larger than {limit} bytes")
    return bytes(body)


def webhook_routes(
    on_hint: HintSink,
    *,
    flux_secret: bytes = b"",
    argocd_secret: bytes = b"",
    argocd_header: str = DEFAULT_ARGOCD_WEBHOOK_HEADER,
    max_body: int = MAX_BODY_BYTES,
    on_forge_hook: ForgeHookSink | None = None,
) -> list[tuple[str, str, Route]]:
    """The webhook routes for :class:`~keptn_gitops_service.web.probes.ProbeServer`; only an endpoint whose
    secret is configured is mounted (an unauthenticated hint endpoint is never offered)."""

    async def flux(request: web.Request) -> web.Response:
        try:
            signature = request.headers.get(SIGNATURE_HEADER)
            if not signature:
                raise WebhookAuthError(f"missing {SIGNATURE_HEADER} header")
            body = await read_body(request, max_body)
            verify_signature(signature, body, flux_secret)
            hint = parse_flux_event(body)
        except WebhookError as exc:
            return _refuse(request, "flux", exc)
        return _accept(hint, on_hint)

    async def argocd(request: web.Request) -> web.Response:
        try:
            check_shared_secret(request.headers.get(argocd_header), argocd_secret, argocd_header)
            hint = parse_argocd_notification(await read_body(request, max_body))
        except WebhookError as exc:
            return _refuse(request, "argocd", exc)
        return _accept(hint, on_hint)

    async def forge(request: web.Request) -> web.Response:
        assert on_forge_hook is not None
        name = request.match_info["repository"]
        try:
            woke = on_forge_hook(name, request.headers, await read_body(request, max_body))
        except WebhookError as exc:
            return _refuse(request, "forge", exc)
        metrics.WEBHOOK_REQUESTS.labels(endpoint="forge", code="202").inc()
        log.info("forge webhook", repository=name, woke_waiters=woke)
        return web.json_response({"accepted": True, "wokeWaiters": woke}, status=202)

    routes: list[tuple[str, str, Route]] = []
    if on_forge_hook is not None:
        routes.append(("POST", FORGES_PATH, forge))
    if flux_secret:
        routes.append(("POST", FLUX_PATH, flux))
    if argocd_secret:
        routes.append(("POST", ARGOCD_PATH, argocd))
    return routes


def _accept(hint: Hint, on_hint: HintSink) -> web.Response:
    woke = on_hint(hint)
    metrics.WEBHOOK_REQUESTS.labels(endpoint=hint.source, code="202").inc()
    log.info(
        "webhook hint",
        source=hint.source,
        kind=hint.kind,
        namespace=hint.namespace,
        name=hint.name,
        revision=hint.revision,
        reason=hint.reason,
        woke_waiters=woke,
    )
    return web.json_response({"accepted": True, "wokeWaiters": woke}, status=202)


def _refuse(request: web.Request, endpoint: str, error: WebhookError) -> web.Response:
    metrics.WEBHOOK_REQUESTS.labels(endpoint=endpoint, code=str(error.status)).inc()
    log.warning(
        "webhook request refused", endpoint=endpoint, status=error.status, error=str(error), peer=request.remote
    )
    return web.json_response({"error": str(error)}, status=error.status)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError(f"the {what} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise WebhookError(f"the {what} is not a JSON object")
    return parsed


def _field(obj: Mapping[str, Any], key: str, pattern: re.Pattern[str], where: str, limit: int = 100) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where} is missing")
    if len(value) > limit or not pattern.fullmatch(value):
        raise WebhookError(f"{where} is not a valid Kubernetes name")
    return value
