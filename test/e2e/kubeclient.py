"""A small synchronous client for the test's own calls to the API server: create, read, wait for a condition.

The service under test talks to the API server with its own client (lightkube); this one only sets the stage and
checks the outcome, so it stays independent of the code it checks.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

JSON = dict[str, Any]
POLL = 0.2  # seconds between reads while waiting; deadlines bound every wait

# (apiVersion, kind) -> (path prefix, plural, namespaced): the kinds the tests create.
RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "Node"): ("/api/v1", "nodes", False),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): ("/apis/source.toolkit.fluxcd.io/v1", "gitrepositories", True),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): (
        "/apis/kustomize.toolkit.fluxcd.io/v1",
        "kustomizations",
        True,
    ),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): ("/apis/helm.toolkit.fluxcd.io/v2", "helmreleases", True),
    ("argoproj.io/v1alpha1", "Application"): ("/apis/argoproj.io/v1alpha1", "applications", True),
    ("argoproj.io/v1alpha1", "AppProject"): ("/apis/argoproj.io/v1alpha1", "appprojects", True),
}


class KubeError(RuntimeError):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeClient:
    """Bearer-token calls to ``server`` over TLS verified against ``ca_file``."""

    def __init__(self, server: str, token: str, ca_file: str) -> None:
        self.server = server
        self._token = token
        self._tls = ssl.create_default_context(cafile=ca_file)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> JSON:
        parsed: JSON = json.loads(self.send(method, path, body) or b"{}")
        return parsed

    def send(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, content_type: str = "application/json"
    ) -> bytes:
        """The raw response body; a ``KubeError`` for an error status."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=30) as response:
                body_bytes: bytes = response.read()
                return body_bytes
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise KubeError(exc.code, detail) from None

    def create(self, obj: Mapping[str, Any]) -> JSON:
        return self.request("POST", collection_path(obj), obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> JSON:
        return self.request("GET", object_path(api_version, kind, name, namespace))

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str, patch: Mapping[str, Any]) -> JSON:
        path = object_path(api_version, kind, name, namespace)
        parsed: JSON = json.loads(self.send("PATCH", path, patch, "application/merge-patch+json") or b"{}")
        return parsed

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        predicate: Callable[[JSON], bool],
        *,
        what: str,
        timeout: float,
    ) -> JSON:
        """Read the object until ``predicate`` holds; on timeout, fail showing its last status."""
        deadline = time.monotonic() + timeout
        last: JSON = {}
        while True:
            try:
                last = self.get(api_version, kind, name, namespace)
            except KubeError as exc:
                if exc.status != 404:
                    raise
            else:
                if predicate(last):
                    return last
            if time.monotonic() > deadline:
                status = json.dumps(last.get("status"), indent=1)
                raise AssertionError(f"{kind} {namespace}/{name}: not {what} after {timeout:.0f}s; status: {status}")
            time.sleep(POLL)


class Recorder:
    """Every version of one object, as a watch delivers them, recorded by a thread until :meth:`stop`."""

    def __init__(self, client: KubeClient, api_version: str, kind: str, name: str, namespace: str) -> None:
        self.versions: list[JSON] = []
        self._client = client
        collection = collection_path({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}})
        self._path = f"{collection}?watch=1&fieldSelector=metadata.name%3D{name}&allowWatchBookmarks=false"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {kind} {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = ""
        while not self._stopped.is_set():
            resume = f"&resourceVersion={last}" if last else ""  # no version is lost between two watches
            req = urllib.request.Request(self._client.server + self._path + "&timeoutSeconds=10" + resume)
            req.add_header("Authorization", f"Bearer {self._client._token}")
            try:
                with urllib.request.urlopen(req, context=self._client._tls, timeout=30) as response:
                    for line in response:
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._note(event["object"])
                            last = event["object"]["metadata"]["resourceVersion"]
            except (OSError, ValueError):
                time.sleep(POLL)

    def _note(self, obj: JSON) -> None:
        version = obj["metadata"]["resourceVersion"]
        if not any(v["metadata"]["resourceVersion"] == version for v in self.versions):
            self.versions.append(obj)

    def stop(self) -> list[JSON]:
        self._stopped.set()
        self._thread.join(timeout=10)
        return sorted(self.versions, key=lambda v: int(v["metadata"]["resourceVersion"]))


def wait_until(probe: Callable[[], bool], *, what: str, timeout: float) -> None:
    """Call ``probe`` until it returns True; on timeout, fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout:.0f}s")
        time.sleep(POLL)


def collection_path(obj: Mapping[str, Any]) -> str:
    prefix, plural, namespaced = RESOURCES[(obj["apiVersion"], obj["kind"])]
    namespace = obj["metadata"].get("namespace", "")
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"


def object_path(api_version: str, kind: str, name: str, namespace: str = "") -> str:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}
    return f"{collection_path(obj)}/{name}"


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """The status condition of type ``kind`` (empty when there is none)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}
