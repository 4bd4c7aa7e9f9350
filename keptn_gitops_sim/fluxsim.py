"""SIMULATED Flux source-controller + kustomize-controller (tests and the ``keptn-gitops-demo`` command only).

This is **not** Flux.  :class:`SimulatedFlux` plays the two controllers against a
:class:`~keptn_gitops_sim.kubeapi.KubeApiServer` so that code watching Flux objects through the
real Kubernetes API sees the same status shapes and transitions that real Flux v2 produces
(source-controller's and kustomize-controller's ``docs/spec``):

* ``GitRepository``: the branch/tag/commit/name ref is resolved in a local bare repository (the "remote");
  ``status.artifact.revision`` is ``main@sha1:<sha>`` (or legacy ``main/<sha>``), ``Ready=True/Succeeded``
  ``stored artifact for revision '...'``, ``ArtifactInStorage``, ``observedGeneration``,
  ``lastHandledReconcileAt``.
* ``Kustomization``: the reconcile sequence of kustomize-controller, one status write per step, so a watcher
  sees ``Ready=Unknown/Progressing`` + ``Reconciling=True``, ``lastAttemptedRevision``, then either
  ``Ready=True/ReconciliationSucceeded "Applied revision: <rev>"`` + ``lastAppliedRevision`` or a failure
  (``ArtifactFailed``, ``BuildFailed``, ``DependencyNotReady``, or a forced reason) that keeps
  ``lastAppliedRevision`` and turns ``Reconciling`` into ``ProgressingWithRetry``.  Nothing is applied to
  any cluster: the "build" only checks that the path's ``kustomization.yaml`` exists, is a YAML mapping and
  that its local ``resources`` exist.

Differences from real Flux: no artifact server, no inventory/history, no health checking of workloads
(``spec.wait``/``healthChecks`` just produce ``Healthy=True`` unless a failure is forced with
:meth:`SimulatedFlux.fail_with`), a directory without a kustomization file is ``ArtifactFailed`` instead
of being auto-generated, ``semver`` refs are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import os
import posixpath
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.reconcile.revisions import revision_sha
from keptn_gitops_sim.kubeapi import JSON, KubeApiServer, StoreEvent, now_rfc3339

__all__ = [
    "REQUESTED_AT",
    "RepoResolver",
    "SimulatedFlux",
    "clean_path",
    "find_condition",
    "format_duration",
    "format_revision",
    "run_git",
    "set_condition",
]

log = logging.getLogger(__name__)

REQUESTED_AT: Final = "reconcile.fluxcd.io/requestedAt"
RepoResolver = Callable[[str], "str | Path | None"] | Mapping[str, "str | Path"]


@dataclass(frozen=True)
class _Kind:
    group: str
    version: str
    plural: str
    kind: str


GITREPOSITORY: Final = _Kind("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
KUSTOMIZATION: Final = _Kind("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")

_GIT_ENV: Final = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
_SHA: Final = re.compile(r"[0-9a-fA-F]{40}")
_KUSTOMIZATION_FILES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_CONDITION_ORDER: Final = {"Reconciling": 0, "Stalled": 1, "Ready": 2}


# ------------------------------------------------------------------------------------------ helpers


async def run_git(git_dir: Path, *args: str, git: str = "git") -> bytes:
    """Run ``git --git-dir <git_dir> <args>`` without a shell and with user/system config disabled."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")} | _GIT_ENV
    proc = await asyncio.create_subprocess_exec(
        git,
        "--git-dir",
        str(git_dir),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise GitError(err.decode(errors="replace").strip() or f"git {args[0]} exited with {proc.returncode}")
    return out


def format_revision(pointer: str, sha: str, *, legacy: bool = False) -> str:
    """Flux artifact revision: ``main@sha1:<sha>``/``sha1:<sha>``, or legacy ``main/<sha>``/``HEAD/<sha>``."""
    if legacy:
        return f"{pointer or 'HEAD'}/{sha}"
    return f"{pointer}@sha1:{sha}" if pointer else f"sha1:{sha}"


def seconds(text: Any, default: float) -> float:
    """Seconds in a Go duration string (``5m``, ``1h30m``, ``90s``); ``default`` when absent or invalid."""
    try:
        return parse_duration(text).total_seconds() if isinstance(text, str) else default
    except ValueError:
        return default


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for whole seconds (``4m30s``, ``1h0m0s``, ``30s``)."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def clean_path(path: Any) -> str:
    """``spec.path`` relative to the repository root (``./apps/dev`` → ``apps/dev``; root → ``""``)."""
    cleaned = posixpath.normpath("/" + str(path or "").strip()).lstrip("/")
    return "" if cleaned == "." else cleaned


def find_condition(status: Mapping[str, Any], type_: str) -> JSON | None:
    """The condition of type ``type_`` or ``None``."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: JSON, type_: str, value: str, reason: str, message: str, generation: int) -> None:
    """``meta.SetStatusCondition``: ``lastTransitionTime`` only moves when ``status`` changes."""
    old = find_condition(status, type_)
    since = old["lastTransitionTime"] if old and old.get("status") == value else now_rfc3339()
    new = {
        "lastTransitionTime": since,
        "message": message,
        "observedGeneration": generation,
        "reason": reason,
        "status": value,
        "type": type_,
    }
    others = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    status["conditions"] = sorted([*others, new], key=lambda c: _CONDITION_ORDER.get(str(c.get("type")), 9))


def remove_condition(status: JSON, type_: str) -> None:
    """Delete a condition if present."""
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def _generation(obj: JSON) -> int:
    return int(obj["metadata"].get("generation", 1))


def _requested_at(obj: JSON) -> str | None:
    value = (obj["metadata"].get("annotations") or {}).get(REQUESTED_AT)
    return str(value) if value is not None else None


def _handle_request(status: JSON, obj: JSON) -> None:
    requested = _requested_at(obj)
    if requested is not None:
        status["lastHandledReconcileAt"] = requested


def _scratch_dir() -> str:
    return f"/tmp/kustomization-{1_000_000_000 + secrets.randbelow(9_000_000_000)}"


def _go_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


def _yaml_error(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        return f"yaml: line {err.problem_mark.line + 1}: {err.problem}"
    return "yaml: " + " ".join(str(err).split())


@dataclass(frozen=True)
class _Ref:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Failure:
    reason: str
    message: str


# ------------------------------------------------------------------------------------ the simulator


class SimulatedFlux:
    """SIMULATED Flux source-controller + kustomize-controller acting on a :class:`KubeApiServer`.

    ``repos`` maps a GitRepository ``spec.url`` to a local bare repository path (a mapping, or a function
    returning ``None`` for unknown URLs).  Every status change is a separate
    :meth:`KubeApiServer.update_status` call, i.e. a new ``resourceVersion`` and a watch event.

    Tests drive it with :meth:`reconcile_once`; the demo uses :meth:`run` / :meth:`start` + :meth:`stop`.
    """

    def __init__(
        self,
        server: KubeApiServer,
        repos: RepoResolver,
        *,
        legacy_revisions: bool = False,
        git: str = "git",
        artifact_host: str = "source-controller.flux-system.svc.cluster.local.",
    ) -> None:
        """``legacy_revisions=True`` renders ``main/<sha>`` like source-controller < v0.35."""
        self._server = server
        self._repos = repos
        self._legacy = legacy_revisions
        self._git_binary = git
        self._artifact_host = artifact_host
        self._failures: dict[_Ref, _Failure] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self.reconcile_count = 0

    # ------------------------------------------------------------------ public API

    def fail_with(
        self, namespace: str, name: str, reason: str = "HealthCheckFailed", message: str | None = None
    ) -> None:
        """Force every following reconcile of Kustomization ``namespace/name`` to fail after the build."""
        text = message or f"Health check failed after 0s: timeout waiting for: [Deployment/{namespace}/{name}]"
        self._failures[_Ref(namespace, name)] = _Failure(reason, text)

    def clear_failure(self, namespace: str, name: str) -> None:
        """Undo :meth:`fail_with`."""
        self._failures.pop(_Ref(namespace, name), None)

    async def reconcile_once(self) -> None:
        """One pass: every GitRepository, then every Kustomization (serialised with concurrent callers)."""
        async with self._lock:
            for repo in self._server.list_objects(GITREPOSITORY.group, GITREPOSITORY.version, GITREPOSITORY.plural):
                await self._reconcile_source(repo)
            for ks in self._server.list_objects(KUSTOMIZATION.group, KUSTOMIZATION.version, KUSTOMIZATION.plural):
                await self._reconcile_kustomization(ks)
            self.reconcile_count += 1

    async def run(self, interval: float) -> None:
        """Reconcile every ``interval`` seconds and immediately when a reconcile is requested, until stopped.

        "Requested" = a ``reconcile.fluxcd.io/requestedAt`` annotation or ``metadata.generation`` change,
        or a new GitRepository/Kustomization (learnt from the store's change notifications, not polling).
        """
        self._stopped = False
        unsubscribe = self._server.add_listener(self._on_change)
        log.info("SIMULATED Flux controllers started (interval %ss)", interval)
        try:
            while not self._stopped:
                self._wake.clear()
                await self._reconcile_logged()
                if self._stopped:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
        finally:
            unsubscribe()
            log.info("SIMULATED Flux controllers stopped")

    def start(self, interval: float) -> asyncio.Task[None]:
        """:meth:`run` in a background task (stop it with :meth:`stop` + ``await`` or :meth:`aclose`)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(interval), name="simulated-flux")
        return self._task

    def stop(self) -> None:
        """Make :meth:`run` return after the pass in progress."""
        self._stopped = True
        self._wake.set()

    async def aclose(self) -> None:
        """:meth:`stop` and wait for the task created by :meth:`start`."""
        self.stop()
        if self._task is not None:
            await self._task
            self._task = None

    # ------------------------------------------------------------------ plumbing

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile_once()
        except Exception:
            log.exception("SIMULATED Flux: reconcile pass failed")

    def _on_change(self, event: StoreEvent) -> None:
        if event.rtype.group not in (GITREPOSITORY.group, KUSTOMIZATION.group) or event.type == "DELETED":
            return
        old, new = event.old, event.object
        if old is None or _requested_at(old) != _requested_at(new) or _generation(old) != _generation(new):
            self._wake.set()

    def _repo_path(self, url: str) -> Path:
        found = self._repos(url) if callable(self._repos) else self._repos.get(url)
        if found is None:
            raise GitError("repository not found")
        return Path(found)

    def _write(self, kind: _Kind, ref: _Ref, mutate: Callable[[JSON, JSON], None]) -> JSON | None:
        """Read the latest object, let ``mutate(status, obj)`` edit a copy of its status, write it back."""
        obj = self._server.get_object(kind.group, kind.version, kind.plural, ref.namespace, ref.name)
        if obj is None:
            return None
        status = copy.deepcopy(obj.get("status") or {})
        mutate(status, obj)
        return self._server.update_status(kind.group, kind.version, kind.plural, ref.namespace, ref.name, status)

    async def _git(self, git_dir: Path, *args: str) -> bytes:
        return await run_git(git_dir, *args, git=self._git_binary)

    async def _object_type(self, git_dir: Path, spec: str) -> str | None:
        try:
            return (await self._git(git_dir, "cat-file", "-t", spec)).decode().strip()
        except GitError:
            return None

    # ------------------------------------------------------------------ source-controller

    async def _reconcile_source(self, repo: JSON) -> None:
        spec = repo.get("spec") or {}
        if spec.get("suspend"):
            return
        ref = _Ref(repo["metadata"]["namespace"], repo["metadata"]["name"])
        url = str(spec.get("url", ""))
        try:
            git_dir = self._repo_path(url)
            pointer, sha = await self._resolve_ref(git_dir, spec.get("ref") or {})
        except GitError as err:
            self._source_failed(ref, f"failed to checkout and determine revision: unable to clone '{url}': {err}")
            return
        revision = format_revision(pointer, sha, legacy=self._legacy)
        status = repo.get("status") or {}
        artifact = status.get("artifact") or {}
        if artifact.get("revision") != revision:
            self._source_progress(ref, f"building artifact: new upstream revision '{revision}'", revision)
            artifact = await self._build_artifact(git_dir, ref, sha, revision)
        elif status.get("observedGeneration") != _generation(repo):
            observed = status.get("observedGeneration", 0)
            message = f"processing object: new generation {observed} -> {_generation(repo)}"
            self._source_progress(ref, message, None)
        self._source_ready(ref, artifact)

    async def _resolve_ref(self, git_dir: Path, ref: Mapping[str, Any]) -> tuple[str, str]:
        """``(pointer, sha)`` for a GitRepository ``spec.ref`` (default branch ``master`` like Flux)."""
        commit = ref.get("commit")
        if commit:
            if not _SHA.fullmatch(str(commit)):
                raise GitError(f"invalid commit SHA '{commit}'")
            sha = await self._rev_parse(git_dir, f"{commit}^{{commit}}", f"unable to resolve commit '{commit}'")
            return str(ref.get("branch") or ""), sha
        if ref.get("semver"):
            raise GitError("semver references are not supported by the SIMULATED source-controller")
        if ref.get("name"):
            pointer = target = str(ref["name"])
        elif ref.get("tag"):
            pointer, target = str(ref["tag"]), f"refs/tags/{ref['tag']}"
        else:
            pointer = str(ref.get("branch") or "master")
            target = f"refs/heads/{pointer}"
        if target.startswith("-"):
            raise GitError(f"invalid reference '{target}'")
        sha = await self._rev_parse(git_dir, f"{target}^{{commit}}", f'couldn\'t find remote ref "{target}"')
        return pointer, sha

    async def _rev_parse(self, git_dir: Path, spec: str, missing: str) -> str:
        try:
            out = await self._git(git_dir, "rev-parse", "--verify", "--quiet", spec)
        except GitError:
            raise GitError(missing) from None
        return out.decode().strip()

    async def _build_artifact(self, git_dir: Path, ref: _Ref, sha: str, revision: str) -> JSON:
        tarball = await self._git(git_dir, "archive", "--format=tar.gz", sha)
        path = f"gitrepository/{ref.namespace}/{ref.name}/{sha}.tar.gz"
        return {
            "digest": f"sha256:{hashlib.sha256(tarball).hexdigest()}",
            "lastUpdateTime": now_rfc3339(),
            "path": path,
            "revision": revision,
            "size": len(tarball),
            "url": f"http://{self._artifact_host}/{path}",
        }

    def _source_progress(self, ref: _Ref, message: str, revision: str | None) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            set_condition(status, "Reconciling", "True", "Progressing", message, generation)
            set_condition(status, "Ready", "Unknown", "Progressing", message, generation)
            if revision is not None:
                outdated = f"new upstream revision '{revision}'"
                set_condition(status, "ArtifactOutdated", "True", "NewRevision", outdated, generation)

        log.info("SIMULATED source-controller: GitRepository %s: %s", ref, message)
        self._write(GITREPOSITORY, ref, mutate)

    def _source_ready(self, ref: _Ref, artifact: JSON) -> None:
        message = f"stored artifact for revision '{artifact['revision']}'"

        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            status["artifact"] = artifact
            for stale in ("Reconciling", "ArtifactOutdated", "FetchFailed"):
                remove_condition(status, stale)
            set_condition(status, "Ready", "True", "Succeeded", message, generation)
            set_condition(status, "ArtifactInStorage", "True", "Succeeded", message, generation)
            status["observedGeneration"] = generation
            _handle_request(status, obj)

        before = self._server.resource_version
        self._write(GITREPOSITORY, ref, mutate)
        if self._server.resource_version != before:
            log.info("SIMULATED source-controller: GitRepository %s: %s", ref, message)

    def _source_failed(self, ref: _Ref, message: str) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            rec = find_condition(status, "Reconciling")
            progress = rec["message"] if rec else f"processing object: new generation 0 -> {generation}"
            set_condition(status, "Reconciling", "True", "ProgressingWithRetry", progress, generation)
            set_condition(status, "Ready", "False", "GitOperationFailed", message, generation)
            set_condition(status, "FetchFailed", "True", "GitOperationFailed", message, generation)
            _handle_request(status, obj)

        log.warning("SIMULATED source-controller: GitRepository %s: GitOperationFailed: %s", ref, message)
        self._write(GITREPOSITORY, ref, mutate)

    # ------------------------------------------------------------------ kustomize-controller

    async def _reconcile_kustomization(self, ks: JSON) -> None:
        spec = ks.get("spec") or {}
        source_ref = spec.get("sourceRef") or {}
        if spec.get("suspend") or source_ref.get("kind", "GitRepository") != "GitRepository":
            return
        ref = _Ref(ks["metadata"]["namespace"], ks["metadata"]["name"])
        source = self._server.get_object(
            GITREPOSITORY.group,
            GITREPOSITORY.version,
            GITREPOSITORY.plural,
            source_ref.get("namespace") or ref.namespace,
            str(source_ref.get("name", "")),
        )
        blocker = self._precheck(ks, source)
        if blocker is not None:
            self._ks_failed(ref, *blocker)
            return
        assert source is not None
        await self._apply_revision(ref, spec, source)

    def _precheck(self, ks: JSON, source: JSON | None) -> tuple[str, str] | None:
        """Steps 2-4 of the reconcile sequence: source exists, has an artifact, dependencies are ready."""
        spec = ks["spec"]
        if source is None:
            name = spec["sourceRef"].get("name", "")
            return "ArtifactFailed", f'GitRepository.source.toolkit.fluxcd.io "{name}" not found'
        revision = ((source.get("status") or {}).get("artifact") or {}).get("revision")
        if not revision:
            retry = format_duration(seconds(spec.get("retryInterval") or spec.get("interval"), 600))
            return "ArtifactFailed", f"Source artifact not found, retrying in {retry}"
        for dep in spec.get("dependsOn") or []:
            dep_ref = _Ref(dep.get("namespace") or ks["metadata"]["namespace"], str(dep.get("name", "")))
            if not self._dependency_ready(dep_ref, spec["sourceRef"], revision):
                return "DependencyNotReady", f"dependency '{dep_ref}' is not ready"
        return None

    def _dependency_ready(self, dep: _Ref, source_ref: Mapping[str, Any], revision: str) -> bool:
        obj = self._server.get_object(
            KUSTOMIZATION.group, KUSTOMIZATION.version, KUSTOMIZATION.plural, dep.namespace, dep.name
        )
        if obj is None:
            return False
        status = obj.get("status") or {}
        ready = find_condition(status, "Ready")
        if status.get("observedGeneration") != _generation(obj) or not ready or ready.get("status") != "True":
            return False
        same_source = (obj.get("spec") or {}).get("sourceRef", {}).get("name") == source_ref.get("name")
        return not same_source or status.get("lastAppliedRevision") == revision

    async def _apply_revision(self, ref: _Ref, spec: JSON, source: JSON) -> None:
        """Steps 5-13: progress, path check, lastAttemptedRevision, build, (health), success."""
        revision = str(source["status"]["artifact"]["revision"])
        interval = seconds(spec.get("interval"), 600)
        timeout = format_duration(max(30.0, seconds(spec.get("timeout"), interval - 30)))
        self._ks_progress(ref, revision, timeout)
        try:
            git_dir = self._repo_path(str((source.get("spec") or {}).get("url", "")))
        except GitError as err:
            self._ks_failed(ref, "ArtifactFailed", f"failed to download artifact from source: {err}")
            return
        sha, path = revision_sha(revision), clean_path(spec.get("path"))
        kfile, missing = await self._find_kustomization(git_dir, sha, path)
        if kfile is None:
            self._ks_failed(ref, "ArtifactFailed", missing)
            return
        self._ks_attempted(ref, revision, timeout)
        build_error = await self._build(git_dir, sha, kfile)
        if build_error:
            self._ks_failed(ref, "BuildFailed", build_error)
            return
        health = bool(spec.get("wait") or spec.get("healthChecks"))
        if health:
            self._ks_health_progress(ref, revision, timeout)
        failure = self._failures.get(ref)
        if failure is not None:
            self._ks_failed(ref, failure.reason, failure.message)
            return
        self._ks_succeeded(ref, revision, health)

    async def _find_kustomization(self, git_dir: Path, sha: str, path: str) -> tuple[str | None, str]:
        """The kustomization file under ``path``, or ``(None, "kustomization path not found: ...")``."""
        if path and await self._object_type(git_dir, f"{sha}:{path}") != "tree":
            return (
                None,
                f"kustomization path not found: stat {_scratch_dir()}/{path}: no such file or directory",
            )
        for name in _KUSTOMIZATION_FILES:
            candidate = posixpath.join(path, name)
            if await self._object_type(git_dir, f"{sha}:{candidate}") == "blob":
                return candidate, ""
        missing = posixpath.join(path, "kustomization.yaml")
        return (
            None,
            f"kustomization path not found: stat {_scratch_dir()}/{missing}: no such file or directory",
        )

    async def _build(self, git_dir: Path, sha: str, kfile: str) -> str | None:
        """``None`` when the kustomization file is a YAML mapping whose local resources exist."""
        raw = await self._git(git_dir, "cat-file", "blob", f"{sha}:{kfile}")
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            return f"kustomize build failed: MalformedYAMLError: {_yaml_error(err)} in File: {kfile}"
        if doc is None:
            return f"kustomize build failed: kustomization file is empty: {kfile}"
        if not isinstance(doc, dict):
            return (
                f"kustomize build failed: invalid Kustomization: json: cannot unmarshal {_go_type(doc)} "
                "into Go value of type types.Kustomization"
            )
        return await self._missing_resource(git_dir, sha, posixpath.dirname(kfile), doc.get("resources"))

    async def _missing_resource(self, git_dir: Path, sha: str, base: str, resources: Any) -> str | None:
        for entry in resources if isinstance(resources, list) else []:
            if not isinstance(entry, str) or "://" in entry or "?" in entry or entry.startswith("github.com/"):
                continue
            target = posixpath.normpath(posixpath.join(base, entry))
            if target.startswith("..") or await self._object_type(git_dir, f"{sha}:{target}") is not None:
                continue
            return (
                "kustomize build failed: accumulating resources: accumulation err='accumulating resources "
                f"from '{entry}': open {_scratch_dir()}/{target}: no such file or directory'"
            )
        return None

    def _ks_progress(self, ref: _Ref, revision: str, timeout: str) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            status.setdefault("observedGeneration", -1)
            set_condition(status, "Ready", "Unknown", "Progressing", "Reconciliation in progress", generation)
            message = f"Fetching manifests for revision {revision} with a timeout of {timeout}"
            set_condition(status, "Reconciling", "True", "Progressing", message, generation)

        self._write(KUSTOMIZATION, ref, mutate)

    def _ks_attempted(self, ref: _Ref, revision: str, timeout: str) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            status["lastAttemptedRevision"] = revision
            message = f"Building manifests for revision {revision} with a timeout of {timeout}"
            set_condition(status, "Reconciling", "True", "Progressing", message, _generation(obj))

        self._write(KUSTOMIZATION, ref, mutate)

    def _ks_health_progress(self, ref: _Ref, revision: str, timeout: str) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            message = f"Running health checks for revision {revision} with a timeout of {timeout}"
            set_condition(status, "Reconciling", "True", "Progressing", message, generation)
            set_condition(status, "Healthy", "Unknown", "Progressing", message, generation)

        self._write(KUSTOMIZATION, ref, mutate)

    def _ks_failed(self, ref: _Ref, reason: str, message: str) -> None:
        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            set_condition(status, "Ready", "False", reason, message, generation)
            if reason == "HealthCheckFailed":
                set_condition(status, "Healthy", "False", reason, message, generation)
            rec = find_condition(status, "Reconciling")
            if rec is not None:
                set_condition(status, "Reconciling", "True", "ProgressingWithRetry", rec["message"], generation)
            _handle_request(status, obj)

        log.warning("SIMULATED kustomize-controller: Kustomization %s: %s: %s", ref, reason, message)
        self._write(KUSTOMIZATION, ref, mutate)

    def _ks_succeeded(self, ref: _Ref, revision: str, health: bool) -> None:
        message = f"Applied revision: {revision}"

        def mutate(status: JSON, obj: JSON) -> None:
            generation = _generation(obj)
            status["lastAppliedRevision"] = revision
            set_condition(status, "Ready", "True", "ReconciliationSucceeded", message, generation)
            if health:
                set_condition(status, "Healthy", "True", "Succeeded", "Health check passed in 0s", generation)
            else:
                remove_condition(status, "Healthy")
            remove_condition(status, "Reconciling")
            status["observedGeneration"] = generation
            _handle_request(status, obj)

        log.info("SIMULATED kustomize-controller: Kustomization %s: ReconciliationSucceeded: %s", ref, message)
        self._write(KUSTOMIZATION, ref, mutate)
