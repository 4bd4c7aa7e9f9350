"""SIMULATED Kubernetes API server for tests and the ``demo`` command.

This is **not** a real Kubernetes API server.  It is a small in-process :mod:`aiohttp` application that
speaks the real Kubernetes REST wire protocol for custom resources closely enough that the real
``lightkube`` client (or ``kubectl``) works against it unmodified:

* paths ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]``, the cluster-wide
  ``/apis/{group}/{version}/{plural}`` and the core ``/api/v1/...`` equivalents;
* GET / LIST (``limit``/``continue``) / WATCH (``?watch=true``) / POST / PUT / PATCH / DELETE;
* a global, monotonically increasing ``resourceVersion``; ``metadata.generation`` that only moves when
  the spec changes; a status subresource that is the only way to write ``status`` (like a CRD with
  ``subresources: {status: {}}``); no-op writes that do not create a new ``resourceVersion``;
* watch streams of newline-delimited ``{"type": ..., "object": ...}`` events that resume from a
  ``resourceVersion``, answer a too-old version with an in-stream ``ERROR`` / 410 ``Expired`` Status,
  honour ``timeoutSeconds``, ``fieldSelector`` and ``labelSelector``;
* merge patch (RFC 7386), JSON patch (RFC 6902), a simplified server-side apply, and the real server's
  415 for strategic merge patches on custom resources;
* ``Status`` error bodies (``application/json``) for 401/403/404/409/410/415/422/5xx.

Test knobs (direct store access, fault injection, request counters) are methods of
:class:`KubeApiServer`; see its docstring.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hmac
import json
import logging
import re
import secrets
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import yaml
from aiohttp import web

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "DenyRule",
    "KubeApiServer",
    "KubeStatusError",
    "ResourceType",
    "Selector",
    "StoreEvent",
    "apply_json_patch",
    "merge_patch",
    "status_body",
]

log = logging.getLogger(__name__)

JSON = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"

_REASONS: Final[dict[int, str]] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

_DEFAULT_TYPES: Final = (
    ("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories", True),
    ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations", True),
    ("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases", True),
    # The Argo CD Application CRD has no status subresource: Argo CD writes status through the main resource.
    ("argoproj.io", "v1alpha1", "Application", "applications", False),
    ("", "v1", "ConfigMap", "configmaps", False),
    ("", "v1", "Secret", "secrets", False),
)

_SYSTEM_METADATA: Final = ("uid", "creationTimestamp", "generation", "namespace", "name", "resourceVersion")
_NOT_FOUND_MESSAGE: Final = "the server could not find the requested resource"


def now_rfc3339() -> str:
    """Current UTC time in the Kubernetes RFC 3339 form (``2024-07-16T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, message: str, reason: str | None = None, details: JSON | None = None) -> JSON:
    """A ``v1 Status`` failure object exactly as the real API server renders it."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json" without charset: lightkube only maps error bodies to ApiError on that value.
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers)


class KubeStatusError(Exception):
    """A request failure that is answered with a Kubernetes ``Status`` body."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: JSON | None = None):
        super().__init__(message)
        self.code = code
        self.body = status_body(code, message, reason, details)

    def response(self) -> web.Response:
        """Render as an HTTP response (with ``Retry-After`` for 429/503 like the real server)."""
        headers = {"Retry-After": "1"} if self.code in (429, 503) else None
        return _json_response(self.body, self.code, headers)


# --------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class ResourceType:
    """A registered kind: what a CRD (or a built-in type) tells the API server."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = True

    @property
    def api_version(self) -> str:
        """``group/version`` (or just ``version`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """``plural.group`` as used in API error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def store_key(self) -> tuple[str, str]:
        """Storage is shared by all versions of the same group/plural."""
        return (self.group, self.plural)

    def details(self, name: str) -> JSON:
        """``Status.details`` for an object of this type."""
        return {"name": name, "group": self.group, "kind": self.plural}

    def not_found(self, name: str) -> KubeStatusError:
        """The real 404 for a missing object."""
        return KubeStatusError(404, f'{self.resource} "{name}" not found', details=self.details(name))

    def conflict(self, name: str) -> KubeStatusError:
        """The real 409 for an optimistic-concurrency failure."""
        message = (
            f'Operation cannot be fulfilled on {self.resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        return KubeStatusError(409, message, details=self.details(name))

    def invalid(self, name: str, message: str) -> KubeStatusError:
        """The real 422 for a validation failure."""
        prefix = f'{self.kind}.{self.group} "{name}"' if self.group else f'{self.kind} "{name}"'
        return KubeStatusError(422, f"{prefix} is invalid: {message}", details=self.details(name))


@dataclass(frozen=True)
class StoreEvent:
    """One committed change.  ``object``/``old`` are shared between listeners: treat them as read-only."""

    type: str
    rtype: ResourceType
    object: JSON
    old: JSON | None
    resource_version: int


@dataclass(frozen=True)
class ApiRequest:
    """A parsed Kubernetes REST request path."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str


@dataclass(frozen=True)
class DenyRule:
    """An RBAC denial: every field that is not ``None`` must match.  ``subresource=""`` = main resource."""

    plural: str
    group: str | None = None
    verbs: frozenset[str] | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    def matches(self, req: ApiRequest) -> bool:
        """Does this rule forbid the request?"""
        checks = (
            (self.plural, req.plural),
            (self.group, req.group),
            (self.namespace, req.namespace),
            (self.name, req.name),
            (self.subresource, req.subresource or ""),
        )
        if any(want is not None and want != have for want, have in checks):
            return False
        return self.verbs is None or req.verb in self.verbs


# ----------------------------------------------------------------------------------------- selectors


Predicate = Callable[[JSON], bool]
_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")


def _split_terms(expr: str) -> list[str]:
    """Split a selector on commas that are not inside ``( )``."""
    terms: list[str] = []
    depth, current = 0, list[str]()
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


def _labels(obj: JSON) -> Mapping[str, str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


def _label_predicate(term: str) -> Predicate:
    """One label selector term: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``[!]k``."""
    match = _SET_TERM.match(term)
    if match:
        key, values = match["key"], {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["op"] == "in":
            return lambda obj: _labels(obj).get(key) in values
        return lambda obj: _labels(obj).get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = (part.strip() for part in term.partition(op))
            if op == "!=":
                return lambda obj: _labels(obj).get(key) != value
            return lambda obj: _labels(obj).get(key) == value
    if term.startswith("!"):
        absent = term[1:].strip()
        return lambda obj: absent not in _labels(obj)
    return lambda obj: term in _labels(obj)


_FIELD_GETTERS: Final[dict[str, Callable[[JSON], str | None]]] = {
    "metadata.name": lambda obj: obj.get("metadata", {}).get("name"),
    "metadata.namespace": lambda obj: obj.get("metadata", {}).get("namespace"),
}


def _field_predicate(term: str) -> Predicate:
    """One field selector term; only ``metadata.name``/``metadata.namespace`` like for custom resources."""
    negate = "!=" in term
    key, _, value = term.partition("!=" if negate else ("==" if "==" in term else "="))
    key, value = key.strip(), value.strip()
    getter = _FIELD_GETTERS.get(key)
    if getter is None:
        raise KubeStatusError(400, f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"')
    if negate:
        return lambda obj: getter(obj) != value
    return lambda obj: getter(obj) == value


@dataclass(frozen=True)
class Selector:
    """Conjunction of label and field selector predicates."""

    predicates: tuple[Predicate, ...] = ()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None, name: str | None = None) -> Selector:
        """Build from the ``labelSelector``/``fieldSelector`` query parameters."""
        preds = [_label_predicate(term) for term in _split_terms(label_selector or "")]
        preds += [_field_predicate(term) for term in _split_terms(field_selector or "")]
        if name is not None:
            preds.append(_field_predicate(f"metadata.name={name}"))
        return cls(tuple(preds))

    def matches(self, obj: JSON) -> bool:
        """True when every predicate holds."""
        return all(pred(obj) for pred in self.predicates)


# -------------------------------------------------------------------------------------------- patches


class PatchError(Exception):
    """A patch could not be applied; ``code`` is 400 (malformed) or 422 (failed to apply)."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (returns a new value; ``null`` deletes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}", 400)
    if path == "":
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(token: str, length: int, *, allow_end: bool = False) -> int:
    if allow_end and token == "-":
        return length
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    if index > (length if allow_end else length - 1):
        raise PatchError(f"array index {index} out of bounds")
    return index


def _resolve_pointer(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"missing value at path component {token!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(token, len(current))]
        else:
            raise PatchError(f"cannot descend into a scalar at {token!r}")
    return current


def _patch_add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve_pointer(doc, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(tokens[-1], len(parent), allow_end=True), value)
    else:
        raise PatchError("the parent of an added value must be an object or an array")
    return doc


def _patch_remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the document root")
    parent = _resolve_pointer(doc, tokens[:-1])
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"unable to remove nonexistent key: {tokens[-1]}: missing value")
        return doc, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(tokens[-1], len(parent)))
    raise PatchError("cannot remove from a scalar")


def _json_equal(left: Any, right: Any) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def _apply_operation(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict) or "op" not in op or "path" not in op:
        raise PatchError("each JSON patch operation needs 'op' and 'path'", 400)
    kind, tokens = op["op"], _pointer(op["path"])
    if kind in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"'{kind}' operation needs a 'value'", 400)
    if kind == "add":
        return _patch_add(doc, tokens, copy.deepcopy(op["value"]))
    if kind == "remove":
        return _patch_remove(doc, tokens)[0]
    if kind == "replace":
        _resolve_pointer(doc, tokens)
        doc = _patch_remove(doc, tokens)[0] if tokens else doc
        return _patch_add(doc, tokens, copy.deepcopy(op["value"]))
    if kind in ("move", "copy"):
        source = _pointer(op.get("from"))
        if kind == "move":
            doc, value = _patch_remove(doc, source)
        else:
            value = copy.deepcopy(_resolve_pointer(doc, source))
        return _patch_add(doc, tokens, value)
    if kind == "test":
        if not _json_equal(_resolve_pointer(doc, tokens), op["value"]):
            raise PatchError(f"testing value {op['path']} failed: test failed")
        return doc
    raise PatchError(f"Unexpected kind: {kind}", 400)


def apply_json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) applied to a deep copy of ``doc``."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be an array of operations", 400)
    result = copy.deepcopy(doc)
    for op in operations:
        result = _apply_operation(result, op)
    return result


def _deep_merge(target: Any, applied: Any) -> Any:
    """Simplified server-side apply: merge maps recursively, replace everything else, never delete."""
    if not (isinstance(target, dict) and isinstance(applied, dict)):
        return copy.deepcopy(applied)
    result = dict(target)
    for key, value in applied.items():
        result[key] = _deep_merge(result.get(key), value)
    return result


# ------------------------------------------------------------------------------------ request parsing


def _verb(method: str, name: str | None, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def parse_api_path(method: str, path: str, query: Mapping[str, str]) -> ApiRequest:
    """Parse ``/api/...`` or ``/apis/...`` into an :class:`ApiRequest` (404 Status when malformed)."""
    parts = [part for part in path.split("/") if part]
    group, rest = ("", parts[1:]) if parts[:1] == ["api"] else (parts[1] if len(parts) > 1 else "", parts[2:])
    if not rest:
        raise KubeStatusError(404, _NOT_FOUND_MESSAGE, details={})
    version, rest = rest[0], rest[1:]
    watch = query.get("watch") in ("true", "1")
    if rest[:1] == ["watch"]:  # deprecated /watch/ path prefix
        watch, rest = True, rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        raise KubeStatusError(404, _NOT_FOUND_MESSAGE, details={})
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return ApiRequest(group, version, rest[0], namespace, name, subresource, _verb(method, name, watch))


def _parse_int(value: str | None, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise KubeStatusError(400, f"invalid {what}: {value!r}") from None


def _encode_continue(rv: int, last_key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "start": list(last_key)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
        return (str(start[0]), str(start[1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        raise KubeStatusError(400, "continue key is not valid: invalid token") from None


# ---------------------------------------------------------------------------------------- the server


class _WatchStream:
    """Book-keeping for one open watch response."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        self.abort = False
        self.dropped = asyncio.Event()


def _object_key(obj: JSON) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _spec_part(rtype: ResourceType, obj: JSON) -> JSON:
    """Everything whose change bumps ``metadata.generation``."""
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.status_subresource else set())
    return {key: value for key, value in obj.items() if key not in skipped}


class KubeApiServer:
    """SIMULATED Kubernetes API server (test/demo only), embedded with ``AppRunner``/``TCPSite``.

    Lifecycle: ``await start()`` (binds ``127.0.0.1`` on a free port by default), :attr:`url`,
    :meth:`write_kubeconfig`, ``await stop()``; also usable as ``async with KubeApiServer() as server``.

    Kinds: :meth:`register`; Flux ``GitRepository``/``Kustomization``/``HelmRelease``, Argo CD
    ``Application`` and core ``ConfigMap``/``Secret`` are pre-registered.

    Test knobs (all writes go through the same code path as HTTP writes: they bump ``resourceVersion``
    and emit watch events):

    * :meth:`put_object`, :meth:`get_object`, :meth:`list_objects`, :meth:`delete_object`,
      :meth:`update_status` - direct store access;
    * :meth:`add_listener` - synchronous change notifications (every committed :class:`StoreEvent`);
    * :meth:`fail_next` - answer the next N API requests with an error Status (default 500);
    * :meth:`deny` / :meth:`clear_denials` - per-resource RBAC denials (403 Forbidden);
    * :meth:`drop_watches` - end all open watch streams (API server restart);
      :meth:`wait_for_watches` - wait until N watches are open;
    * :meth:`pause_watches` / :meth:`resume_watches` - hold watch events back (a slow watch stream) while
      GET/LIST keep answering with the current state;
    * :meth:`expire_history` - the next watch from an older ``resourceVersion`` gets 410 Expired;
    * :attr:`request_count` - a ``Counter`` with key ``"total"`` plus one key per Kubernetes verb
      (``get``, ``list``, ``watch``, ``create``, ``update``, ``patch``, ``delete``, ...);
      :meth:`reset_request_count`.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 1000,
        user: str = "system:serviceaccount:keptn:keptn-gitops-service",
        shutdown_timeout: float = 2.0,
    ) -> None:
        """``token``: require ``Authorization: Bearer <token>``; ``user``: name shown in 403 messages."""
        self.token = token
        self.user = user
        self.request_count: Counter[str] = Counter()
        self._host, self._port, self._shutdown_timeout = host, port, shutdown_timeout
        self._history_size = history_size
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._kinds: dict[tuple[str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], JSON]] = {}
        self._rv = 0
        self._history: deque[StoreEvent] = deque()
        self._history_floor = 0
        self._listeners: list[Callable[[StoreEvent], None]] = []
        self._watches: set[_WatchStream] = set()
        self._watch_changed = asyncio.Event()
        self._delivery = asyncio.Event()
        self._delivery.set()
        self._deny: list[DenyRule] = []
        self._fail_remaining, self._fail_status = 0, 500
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        for group, version, kind, plural, subresource in _DEFAULT_TYPES:
            self.register(group, version, kind, plural, status_subresource=subresource)

    # ------------------------------------------------------------------ lifecycle

    def register(
        self,
        group: str,
        version: str,
        kind: str,
        plural: str,
        namespaced: bool = True,
        *,
        status_subresource: bool = True,
    ) -> ResourceType:
        """Make a kind servable (what installing a CRD does).  Versions of one group/plural share storage."""
        rtype = ResourceType(group, version, kind, plural, namespaced, status_subresource)
        self._types[(group, version, plural)] = rtype
        self._kinds[(rtype.api_version, kind)] = rtype
        return rtype

    async def start(self) -> str:
        """Start serving; returns :attr:`url`."""
        if self._runner is not None:
            return self.url
        app = web.Application()
        app.router.add_route("*", "/api/{tail:.*}", self._dispatch)
        app.router.add_route("*", "/apis/{tail:.*}", self._dispatch)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/readyz", self._health)
        app.router.add_get("/livez", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_route("*", "/{tail:.*}", self._fallback)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        log.info("SIMULATED Kubernetes API server listening on %s", self._url)
        return self._url

    async def stop(self) -> None:
        """End all watches and stop serving (idempotent)."""
        if self._runner is None:
            return
        self.drop_watches()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        log.info("SIMULATED Kubernetes API server on %s stopped", self._url)

    async def __aenter__(self) -> KubeApiServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._url is None:
            raise RuntimeError("KubeApiServer is not started")
        return self._url

    @property
    def resource_version(self) -> str:
        """The current global ``resourceVersion``."""
        return str(self._rv)

    def kubeconfig(self, namespace: str = "default") -> JSON:
        """A kubeconfig document pointing at this server (with the bearer token if one is configured)."""
        user: JSON = {"token": self.token} if self.token else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "simulated", "cluster": {"server": self.url}}],
            # lightkube asserts that a context has a user, so there always is one (possibly empty).
            "users": [{"name": "simulated-user", "user": user}],
            "contexts": [
                {
                    "name": "simulated",
                    "context": {"cluster": "simulated", "user": "simulated-user", "namespace": namespace},
                }
            ],
            "current-context": "simulated",
        }

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write :meth:`kubeconfig` as YAML (mode 0600) and return ``path``."""
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace), sort_keys=False))
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------ test knobs

    def add_listener(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Call ``callback`` synchronously for every committed change; returns an unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` API requests (after authentication) with a ``status`` error."""
        self._fail_remaining, self._fail_status = count, status

    def deny(
        self,
        plural: str,
        *,
        group: str | None = None,
        verbs: Iterable[str] | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> DenyRule:
        """Forbid matching requests with a real RBAC 403 (``subresource="status"`` / ``""`` for main)."""
        rule = DenyRule(plural, group, frozenset(verbs) if verbs is not None else None, namespace, name, subresource)
        self._deny.append(rule)
        return rule

    def clear_denials(self) -> None:
        """Remove all :meth:`deny` rules."""
        self._deny.clear()

    def drop_watches(self, *, abort: bool = False) -> int:
        """End all open watch streams (cleanly, or by resetting the connection with ``abort=True``)."""
        for stream in self._watches:
            stream.abort = abort
            stream.dropped.set()
            stream.queue.put_nowait(None)
        return len(self._watches)

    def pause_watches(self) -> None:
        """Hold back every watch event (open and future streams) until :meth:`resume_watches`; nothing is lost.

        Models a watch stream that lags behind the store (an API server under load, a slow network), while
        GET and LIST answer with the current state at once."""
        self._delivery.clear()

    def resume_watches(self) -> None:
        """Deliver what :meth:`pause_watches` held back, in order, and everything after it."""
        self._delivery.set()

    async def wait_for_watches(self, count: int = 1, *, exactly: bool = False) -> None:
        """Return once at least (``exactly=True``: exactly) ``count`` watch streams are open.

        Bound it with ``asyncio.wait_for``.  ``wait_for_watches(0, exactly=True)`` waits until every
        watch has been closed, e.g. after a client went away.
        """
        while not (len(self._watches) == count if exactly else len(self._watches) >= count):
            self._watch_changed.clear()
            await self._watch_changed.wait()

    @property
    def open_watches(self) -> int:
        """Number of currently open watch streams."""
        return len(self._watches)

    def expire_history(self) -> None:
        """Forget the event history: watching from any older ``resourceVersion`` now yields 410 Expired."""
        self._history.clear()
        self._history_floor = self._rv

    def reset_request_count(self) -> None:
        """Zero :attr:`request_count`."""
        self.request_count.clear()

    def put_object(self, obj: Mapping[str, Any]) -> JSON:
        """Create or replace an object from its ``apiVersion``/``kind``; returns the stored copy.

        Namespaced objects default to namespace ``default``.  A given ``status`` is stored as is; without
        one, an existing object keeps its status (like applying a manifest).  ``metadata.generation``
        is computed like the API server (1 on create, +1 when the spec changes) unless a different value
        is given explicitly (to seed e.g. ``generation: 3`` with ``status.observedGeneration: 2``).
        """
        rtype = self._kinds.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if rtype is None:
            raise LookupError(f"kind {obj.get('kind')!r} of {obj.get('apiVersion')!r} is not registered")
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        if rtype.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        current = self._objects.get(rtype.store_key, {}).get(_object_key(new))
        if current is None:
            return self._create_object(rtype, new, generation=meta.get("generation"))
        for key in ("uid", "creationTimestamp"):
            meta[key] = current["metadata"].get(key)
        if "status" not in new and "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        generation = meta.get("generation")
        if generation == current["metadata"].get("generation"):
            generation = None  # a copied, unchanged generation: let spec changes bump it
        return self._store_update(rtype, current, new, generation=generation)

    def get_object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> JSON | None:
        """A copy of the stored object, or ``None``."""
        rtype = self._require_type(group, version, plural)
        obj = self._lookup(rtype, namespace, name)
        return self._render(rtype, obj) if obj is not None else None

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[JSON]:
        """Copies of all objects of a kind (in one namespace, or all), sorted by namespace/name."""
        rtype = self._require_type(group, version, plural)
        return [self._render(rtype, obj) for obj in self._select(rtype, namespace, Selector())]

    def delete_object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> JSON | None:
        """Delete an object (emits ``DELETED``); returns the deleted object or ``None``."""
        rtype = self._require_type(group, version, plural)
        current = self._lookup(rtype, namespace, name)
        if current is None:
            return None
        return self._render(rtype, self._commit(rtype, copy.deepcopy(current), current, "DELETED"))

    def update_status(
        self, group: str, version: str, plural: str, namespace: str | None, name: str, status: JSON
    ) -> JSON:
        """Replace ``status`` like a status-subresource write; a no-op write commits nothing.

        For kinds registered without a status subresource (Argo CD ``Application``) a status change also
        bumps ``metadata.generation``, as it does on a real cluster.
        """
        rtype = self._require_type(group, version, plural)
        current = self._lookup(rtype, namespace, name)
        if current is None:
            raise LookupError(f'{rtype.resource} "{name}" not found in namespace {namespace!r}')
        new = copy.deepcopy(current)
        new["status"] = copy.deepcopy(status)
        return self._render(rtype, self._store_update(rtype, current, new))

    # ------------------------------------------------------------------ store internals

    def _require_type(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self._types.get((group, version, plural))
        if rtype is None:
            raise LookupError(f"{plural}.{group}/{version} is not registered")
        return rtype

    def _lookup(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON | None:
        ns = (namespace or "") if rtype.namespaced else ""
        return self._objects.get(rtype.store_key, {}).get((ns, name))

    def _select(self, rtype: ResourceType, namespace: str | None, selector: Selector) -> list[JSON]:
        bucket = self._objects.get(rtype.store_key, {})
        return [
            bucket[key]
            for key in sorted(bucket)
            if (namespace is None or key[0] == namespace) and selector.matches(bucket[key])
        ]

    @staticmethod
    def _render(rtype: ResourceType, obj: JSON) -> JSON:
        rendered = copy.deepcopy(obj)
        rendered["apiVersion"], rendered["kind"] = rtype.api_version, rtype.kind
        return rendered

    def _create_object(self, rtype: ResourceType, obj: JSON, generation: int | None = None) -> JSON:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta["generation"] = generation if generation is not None else 1
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        return self._commit(rtype, obj, None, "ADDED")

    def _store_update(self, rtype: ResourceType, current: JSON, new: JSON, generation: int | None = None) -> JSON:
        """Commit ``new`` over ``current``; no-op writes keep the old ``resourceVersion`` and emit nothing."""
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        old_generation = int(current["metadata"].get("generation", 1))
        if generation is None:
            changed = _spec_part(rtype, new) != _spec_part(rtype, current)
            generation = old_generation + 1 if changed else old_generation
        meta["generation"] = generation
        if new == current:
            return copy.deepcopy(current)
        return self._commit(rtype, new, current, "MODIFIED")

    def _commit(self, rtype: ResourceType, obj: JSON, old: JSON | None, event_type: str) -> JSON:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        bucket = self._objects.setdefault(rtype.store_key, {})
        if event_type == "DELETED":
            bucket.pop(_object_key(obj), None)
        else:
            bucket[_object_key(obj)] = obj
        self._record(StoreEvent(event_type, rtype, copy.deepcopy(obj), old, self._rv))
        return copy.deepcopy(obj)

    def _record(self, event: StoreEvent) -> None:
        self._history.append(event)
        while len(self._history) > self._history_size:
            self._history_floor = self._history.popleft().resource_version
        for stream in self._watches:
            stream.queue.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("SIMULATED Kubernetes API server: change listener failed")

    # ------------------------------------------------------------------ HTTP plumbing

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return _json_response(
            {"major": "1", "minor": "31", "gitVersion": "v1.31.0-simulated", "platform": "linux/amd64"}
        )

    async def _fallback(self, request: web.Request) -> web.Response:
        return KubeStatusError(404, _NOT_FOUND_MESSAGE, details={}).response()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parsed: ApiRequest | KubeStatusError
        try:
            parsed = parse_api_path(request.method, request.path, request.query)
        except KubeStatusError as err:
            parsed = err
        self.request_count["total"] += 1
        self.request_count[parsed.verb if isinstance(parsed, ApiRequest) else "unknown"] += 1
        try:
            self._authenticate(request)
            self._inject_failure()
            if isinstance(parsed, KubeStatusError):
                raise parsed
            rtype = self._resolve(parsed)
            self._authorize(parsed, rtype)
            return await self._handle(request, parsed, rtype)
        except KubeStatusError as err:
            return err.response()

    def _authenticate(self, request: web.Request) -> None:
        if self.token is None:
            return
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            raise KubeStatusError(401, "Unauthorized")

    def _inject_failure(self) -> None:
        if self._fail_remaining <= 0:
            return
        self._fail_remaining -= 1
        code = self._fail_status
        prefix = "Internal error occurred: " if code == 500 else ""
        raise KubeStatusError(code, f"{prefix}failure injected by SIMULATED KubeApiServer.fail_next", details={})

    def _resolve(self, req: ApiRequest) -> ResourceType:
        rtype = self._types.get((req.group, req.version, req.plural))
        cluster_wide = req.verb in ("list", "watch") and req.name is None
        if rtype is None or (rtype.namespaced and req.namespace is None and not cluster_wide):
            raise KubeStatusError(404, _NOT_FOUND_MESSAGE, details={})
        if not rtype.namespaced and req.namespace is not None:
            raise KubeStatusError(404, _NOT_FOUND_MESSAGE, details={})
        if req.subresource is not None and (req.subresource != "status" or not rtype.status_subresource):
            raise KubeStatusError(404, _NOT_FOUND_MESSAGE, details={})
        allowed = ("get", "update", "patch") if req.subresource else ("get", "update", "patch", "delete", "watch")
        if req.name is not None and req.verb not in allowed:
            raise KubeStatusError(405, f"the server does not allow this method on the requested resource ({req.verb})")
        return rtype

    def _authorize(self, req: ApiRequest, rtype: ResourceType) -> None:
        if not any(rule.matches(req) for rule in self._deny):
            return
        resource = f"{rtype.plural}/{req.subresource}" if req.subresource else rtype.plural
        what = f'{rtype.resource} "{req.name}"' if req.name else rtype.resource
        scope = f'in the namespace "{req.namespace}"' if req.namespace else "at the cluster scope"
        message = (
            f'{what} is forbidden: User "{self.user}" cannot {req.verb} resource "{resource}" '
            f'in API group "{rtype.group}" {scope}'
        )
        raise KubeStatusError(403, message, details=rtype.details(req.name or ""))

    async def _handle(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.StreamResponse:
        if req.verb == "watch":
            return await self._watch(request, req, rtype)
        handlers = {
            "get": self._get,
            "list": self._list,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
        }
        handler = handlers.get(req.verb)
        if handler is None:
            raise KubeStatusError(405, f"the server does not allow this method on the requested resource ({req.verb})")
        return await handler(request, req, rtype)

    @staticmethod
    async def _read_body(request: web.Request, *, as_yaml: bool = False) -> Any:
        raw = await request.read()
        try:
            return yaml.safe_load(raw) if as_yaml else json.loads(raw)
        except (ValueError, yaml.YAMLError) as err:
            raise KubeStatusError(400, f"error decoding request body: {err}") from None

    def _current(self, req: ApiRequest, rtype: ResourceType) -> JSON:
        assert req.name is not None
        current = self._lookup(rtype, req.namespace, req.name)
        if current is None:
            raise rtype.not_found(req.name)
        return current

    # ------------------------------------------------------------------ verbs

    async def _get(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        return _json_response(self._render(rtype, self._current(req, rtype)))

    async def _list(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        query = request.query
        items = self._select(
            rtype, req.namespace, Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
        )
        if query.get("continue"):
            start = _decode_continue(query["continue"])
            items = [obj for obj in items if _object_key(obj) > start]
        metadata: JSON = {"resourceVersion": str(self._rv)}
        limit = _parse_int(query.get("limit"), "limit")
        if limit and 0 < limit < len(items):
            metadata["continue"] = _encode_continue(self._rv, _object_key(items[limit - 1]))
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        body = {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": [self._render(rtype, obj) for obj in items],
        }
        return _json_response(body)

    async def _create(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        body = await self._read_body(request)
        if not isinstance(body, dict) or not isinstance(body.setdefault("metadata", {}), dict):
            raise KubeStatusError(400, "the body of the request must be an object with metadata")
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        if not meta.get("name"):
            raise rtype.invalid("", "metadata.name: Required value: name or generateName is required")
        if rtype.namespaced and meta.setdefault("namespace", req.namespace) != req.namespace:
            raise KubeStatusError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        if self._lookup(rtype, req.namespace, meta["name"]) is not None:
            raise KubeStatusError(
                409,
                f'{rtype.resource} "{meta["name"]}" already exists',
                "AlreadyExists",
                rtype.details(meta["name"]),
            )
        if rtype.status_subresource:
            body.pop("status", None)
        return _json_response(self._render(rtype, self._create_object(rtype, body)), 201)

    async def _update(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        body = await self._read_body(request)
        current = self._current(req, rtype)
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise KubeStatusError(400, "the body of the request must be an object with metadata")
        if not body["metadata"].get("resourceVersion"):
            raise rtype.invalid(
                str(req.name), "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        return _json_response(self._render(rtype, self._write(req, rtype, current, body)))

    async def _patch(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        content_type = request.content_type
        if content_type == APPLY_PATCH:
            return await self._apply(request, req, rtype)
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise KubeStatusError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
            )
        body = await self._read_body(request)
        current = self._current(req, rtype)
        try:
            patch = merge_patch if content_type == MERGE_PATCH else apply_json_patch
            patched = patch(current, body)
        except PatchError as err:
            raise KubeStatusError(err.code, str(err)) from None
        if not isinstance(patched, dict):
            raise KubeStatusError(422, "the patched object is not a JSON object")
        return _json_response(self._render(rtype, self._write(req, rtype, current, patched)))

    async def _apply(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        if not request.query.get("fieldManager"):
            raise KubeStatusError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
            )
        body = await self._read_body(request, as_yaml=True)
        if not isinstance(body, dict):
            raise KubeStatusError(400, "error decoding YAML: the applied configuration must be an object")
        assert req.name is not None
        current = self._lookup(rtype, req.namespace, req.name)
        if current is None and req.subresource is None:
            body.setdefault("metadata", {}).update({"name": req.name, "namespace": req.namespace})
            if rtype.status_subresource:
                body.pop("status", None)
            return _json_response(self._render(rtype, self._create_object(rtype, body)), 201)
        current = self._current(req, rtype)
        return _json_response(self._render(rtype, self._write(req, rtype, current, _deep_merge(current, body))))

    async def _delete(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.Response:
        current = self._current(req, rtype)
        deleted = self._commit(rtype, copy.deepcopy(current), current, "DELETED")
        details = rtype.details(str(req.name)) | {"uid": deleted["metadata"].get("uid")}
        return _json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        )

    def _write(self, req: ApiRequest, rtype: ResourceType, current: JSON, candidate: JSON) -> JSON:
        """Shared PUT/PATCH path: preconditions, subresource rules, then commit."""
        meta = candidate.get("metadata")
        if not isinstance(meta, dict):
            raise KubeStatusError(400, "metadata must be an object")
        name = str(req.name)
        if meta.get("name", name) != name:
            raise KubeStatusError(
                400,
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
            )
        expected = meta.get("resourceVersion")
        if expected and expected != current["metadata"]["resourceVersion"]:
            raise rtype.conflict(name)
        return self._store_update(rtype, current, self._merge_write(rtype, current, candidate, req.subresource))

    @staticmethod
    def _merge_write(rtype: ResourceType, current: JSON, candidate: JSON, subresource: str | None) -> JSON:
        """The object to store: status-only for ``/status``, everything-but-status for the main resource."""
        if subresource == "status":
            new = copy.deepcopy(current)
            source: JSON = candidate
        else:
            new = copy.deepcopy(candidate)
            source = current
            meta = new["metadata"]
            for key in _SYSTEM_METADATA:
                if key in current["metadata"]:
                    meta[key] = current["metadata"][key]
                else:
                    meta.pop(key, None)
            if not rtype.status_subresource:
                return new
        if "status" in source:
            new["status"] = copy.deepcopy(source["status"])
        else:
            new.pop("status", None)
        return new

    # ------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, req: ApiRequest, rtype: ResourceType) -> web.StreamResponse:
        query = request.query
        selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"), req.name)
        timeout = _parse_int(query.get("timeoutSeconds"), "timeoutSeconds")
        stream = _WatchStream()
        pending, expired = self._open_watch(rtype, _parse_int(query.get("resourceVersion"), "resourceVersion"), stream)
        response = web.StreamResponse()
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if expired is not None:
                await response.write(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
            else:
                await self._pump(response, rtype, req.namespace, selector, pending, stream, timeout)
            self._close_watch(stream)  # before the client can see the end of the stream
            if stream.abort and request.transport is not None:
                request.transport.abort()
                return response
            await response.write_eof()
        except ConnectionResetError:
            pass
        finally:
            self._close_watch(stream)
        return response

    def _open_watch(
        self, rtype: ResourceType, start: int | None, stream: _WatchStream
    ) -> tuple[list[StoreEvent], JSON | None]:
        """Synchronously snapshot the backlog and subscribe, so that no event is lost or duplicated."""
        if start is None or start == 0:
            pending = [
                StoreEvent("ADDED", rtype, obj, None, int(obj["metadata"]["resourceVersion"]))
                for obj in self._select(rtype, None, Selector())
            ]
        elif start < self._history_floor:
            message = f"too old resource version: {start} ({self._history_floor})"
            return [], status_body(410, message, "Expired")
        else:
            pending = [event for event in self._history if event.resource_version > start]
        self._watches.add(stream)
        self._watch_changed.set()
        return pending, None

    def _close_watch(self, stream: _WatchStream) -> None:
        self._watches.discard(stream)
        self._watch_changed.set()

    async def _pump(
        self,
        response: web.StreamResponse,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        pending: list[StoreEvent],
        stream: _WatchStream,
        timeout: int | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        for backlog in pending:
            if not await self._delivery_open(stream):
                return
            await self._send(response, rtype, namespace, selector, backlog)
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                event = await asyncio.wait_for(stream.queue.get(), remaining)
            except TimeoutError:
                return
            if event is None or not await self._delivery_open(stream):
                return
            await self._send(response, rtype, namespace, selector, event)

    async def _delivery_open(self, stream: _WatchStream) -> bool:
        """Wait while :meth:`pause_watches` holds delivery back; ``False`` when the stream is dropped meanwhile."""
        if self._delivery.is_set():
            return True
        waits = [asyncio.ensure_future(self._delivery.wait()), asyncio.ensure_future(stream.dropped.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not stream.dropped.is_set()

    async def _send(
        self,
        response: web.StreamResponse,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        event: StoreEvent,
    ) -> None:
        translated = self._translate(rtype, namespace, selector, event)
        if translated is not None:
            kind, obj = translated
            line = json.dumps({"type": kind, "object": self._render(rtype, obj)})
            await response.write(line.encode() + b"\n")

    @staticmethod
    def _translate(
        rtype: ResourceType, namespace: str | None, selector: Selector, event: StoreEvent
    ) -> tuple[str, JSON] | None:
        """Filter an event for one watcher; selector transitions become ADDED/DELETED like the watch cache."""
        obj, old = event.object, event.old
        if event.rtype.store_key != rtype.store_key:
            return None
        if namespace is not None and obj["metadata"].get("namespace") != namespace:
            return None
        new_ok = selector.matches(obj)
        if event.type != "MODIFIED" or old is None:
            return (event.type, obj) if new_ok else None
        old_ok = selector.matches(old)
        if new_ok:
            return ("MODIFIED" if old_ok else "ADDED", obj)
        if old_ok:
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            return ("DELETED", gone)
        return None
