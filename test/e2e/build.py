"""Build the end-to-end programs from their Go modules once, into a cache outside the repository.

Each build module here (``kube/``, ``source-controller/``, ``kustomize-controller/``) is a ``go.mod`` that
requires one upstream release and names its main packages as ``tool`` lines. Its binaries land in
``${KEPTN_GITOPS_CACHE:-~/.cache/keptn-gitops-service}/e2e/<module>-<hash>/``, where ``<hash>`` covers the
module's ``go.mod`` and ``go.sum`` and how this file builds it: a changed pin builds anew, an unchanged one is
reused without invoking Go at all. Flux's CRDs are copied next to the controller from the same module version.
Go's own module and build caches stay at their defaults under ``~``, shared with every other build.

``python test/e2e/build.py`` builds (or finds) everything and prints where it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GO_FALLBACK = Path("/usr/local/go/bin/go")
BUILD_TIMEOUT = 3600  # seconds; a cold kube-apiserver build on two cores takes about a quarter of that


@dataclass(frozen=True)
class Program:
    """One binary of a build module: ``package`` built to ``name``."""

    name: str
    package: str


@dataclass(frozen=True)
class BuildModule:
    """A directory under ``test/e2e`` holding a ``go.mod`` that pins what ``programs`` are built from."""

    directory: str
    programs: tuple[Program, ...]
    crds_from: str = ""
    """A required module whose ``<crds_dir>/*.yaml`` are copied to ``crds/`` in the cache."""
    crds_dir: str = "config/crd/bases"
    files: tuple[str, ...] = ()
    """Further files (or whole directories) of ``files_from`` (paths in its module) copied to ``files/`` in the
    cache, by base name."""
    files_from: str = ""
    """The required module ``files`` come from; ``crds_from`` unless given."""
    cgo: bool = False
    """Build with ``CGO_ENABLED=1`` (a C compiler must be installed), as Gitea's SQLite driver needs."""
    tags: tuple[str, ...] = ()
    """Go build tags."""
    version_ldflags: str = ""
    """``-X`` flags with ``{version}`` standing for the required version of ``version_of`` (``{number}``: without
    its ``v``)."""
    version_of: str = ""

    @property
    def source(self) -> Path:
        return HERE / self.directory

    def required_version(self, module: str) -> str:
        """The version ``go.mod`` requires of ``module`` (the build modules pin exactly one release)."""
        text = (self.source / "go.mod").read_text(encoding="utf-8")
        found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
        if found is None:
            raise BuildError(f"{self.source / 'go.mod'} does not require {module}")
        return found.group(1)

    def ldflags(self) -> str:
        flags = "-s -w"
        if self.version_ldflags:
            version = self.required_version(self.version_of)
            flags += " " + self.version_ldflags.format(version=version, number=version.removeprefix("v"))
        return flags

    def cache_key(self) -> str:
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            content = (self.source / name).read_bytes()
            digest.update(f"{name}\0{len(content)}\0".encode())
            digest.update(content)
        recipe = json.dumps([self.ldflags(), [(p.name, p.package) for p in self.programs], self.crds_from])
        if self.crds_dir != "config/crd/bases" or self.files:  # keeps the keys of the modules that existed before
            recipe += json.dumps([self.crds_dir, self.files])
        if self.files_from or self.cgo or self.tags:
            recipe += json.dumps([self.files_from, self.cgo, self.tags])
        digest.update(recipe.encode())
        return f"{self.directory}-{digest.hexdigest()[:16]}"


KUBE = BuildModule(
    "kube",
    (Program("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"), Program("etcd", "go.etcd.io/etcd/server/v3")),
    # Without it, /version says v0.0.0-master; the controllers only log it, but the true version helps reading logs.
    version_ldflags="-X k8s.io/component-base/version.gitVersion={version}",
    version_of="k8s.io/kubernetes",
)
SOURCE_CONTROLLER = BuildModule(
    "source-controller",
    (Program("source-controller", "github.com/fluxcd/source-controller"),),
    crds_from="github.com/fluxcd/source-controller",
)
KUSTOMIZE_CONTROLLER = BuildModule(
    "kustomize-controller",
    (Program("kustomize-controller", "github.com/fluxcd/kustomize-controller"),),
    crds_from="github.com/fluxcd/kustomize-controller",
)
MODULES = (KUBE, SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER)
GITEA = BuildModule(
    "gitea",
    (Program("gitea", "code.gitea.io/gitea"),),
    # Without the bindata tag Gitea reads options/ (locales, labels, licences) and templates/ from STATIC_ROOT_PATH
    # at run time: both are copied from the same module version, and the harness points STATIC_ROOT_PATH at files/.
    files=("options", "templates"),
    files_from="code.gitea.io/gitea",
    cgo=True,  # mattn/go-sqlite3
    tags=("sqlite", "sqlite_unlock_notify"),
    version_ldflags="-X main.Version={number}",  # what /api/v1/version reports; "development" otherwise
    version_of="code.gitea.io/gitea",
)
HELM_CONTROLLER = BuildModule(
    "helm-controller",
    (Program("helm-controller", "github.com/fluxcd/helm-controller"),),
    crds_from="github.com/fluxcd/helm-controller",
)
KUBE_CONTROLLERS = BuildModule(
    "kubecontrollers",
    (
        Program("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
        Program("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    ),
    version_ldflags="-X k8s.io/component-base/version.gitVersion={version}",
    version_of="k8s.io/kubernetes",
)
KWOK = BuildModule(
    "kwok",
    (Program("kwok", "sigs.k8s.io/kwok/cmd/kwok"),),  # its version is a constant in the module's source
    # The stages kwokctl configures by default: nodes become Ready and keep a heartbeat, pods become Ready.
    crds_from="sigs.k8s.io/kwok",
    files=(
        "kustomize/stage/node/fast/node-initialize.yaml",
        "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
        "kustomize/stage/pod/fast/pod-ready.yaml",
        "kustomize/stage/pod/fast/pod-complete.yaml",
        "kustomize/stage/pod/fast/pod-delete.yaml",
    ),
)
ARGOCD = BuildModule(
    "argocd",
    # One binary for every component: cmd/main.go picks it by ARGOCD_BINARY_NAME (or the name it is run as).
    (Program("argocd", "github.com/argoproj/argo-cd/v2/cmd"),),
    crds_from="github.com/argoproj/argo-cd/v2",
    crds_dir="manifests/crds",
    version_ldflags="-X github.com/argoproj/argo-cd/v2/common.version={number}",  # Argo prints v{number}
    version_of="github.com/argoproj/argo-cd/v2",
)


class BuildError(RuntimeError):
    """A program of the end-to-end environment could not be built; the message holds Go's output."""


@dataclass(frozen=True)
class Toolchain:
    """Where the built programs and the Flux CRDs are."""

    etcd: Path
    kube_apiserver: Path
    source_controller: Path
    kustomize_controller: Path
    crds: tuple[Path, ...]
    kubernetes_version: str
    flux_versions: dict[str, str]


def cache_root() -> Path:
    configured = os.environ.get("KEPTN_GITOPS_CACHE")
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "keptn-gitops-service"
    if root.resolve() == ROOT or ROOT in root.resolve().parents:
        raise BuildError(f"the build cache must be outside the repository, not {root}")
    return root / "e2e"


def go_binary() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
    if not found:
        raise BuildError(
            "the Go toolchain is missing: install Go >= 1.26 (https://go.dev/dl/) and put `go` on PATH "
            f"(or at {GO_FALLBACK}); the end-to-end programs are built from their Go modules"
        )
    return found


def _go_env(module: BuildModule | None = None) -> dict[str, str]:
    cgo = "1" if module is not None and module.cgo else "0"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": cgo, "GOTOOLCHAIN": "local"}
    for name in ("GOMODCACHE", "GOCACHE", "GOWORK"):  # Go's defaults under ~, shared with every other build
        env.pop(name, None)
    return env


def _go(args: list[str], module: BuildModule) -> str:
    proc = subprocess.run(
        [go_binary(), *args],
        cwd=module.source,
        env=_go_env(module),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"`go {' '.join(args)}` in {module.source} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def _build(module: BuildModule, target: Path) -> None:
    """Build every program of ``module`` into a staging directory next to ``target``, then rename it into place,
    so that a concurrent or interrupted build never leaves a half-filled cache entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for program in module.programs:
            _go(
                [
                    "build",
                    "-trimpath",
                    *([f"-tags={','.join(module.tags)}"] if module.tags else []),
                    f"-ldflags={module.ldflags()}",
                    "-o",
                    str(staging / program.name),
                    program.package,
                ],
                module,
            )
        if module.crds_from:
            listing = json.loads(_go(["list", "-m", "-json", module.crds_from], module))
            bases = Path(listing["Dir"]) / module.crds_dir
            (staging / "crds").mkdir()
            for crd in sorted(bases.glob("*.yaml")):
                shutil.copyfile(crd, staging / "crds" / crd.name)
        if module.files:
            origin = json.loads(_go(["list", "-m", "-json", module.files_from or module.crds_from], module))["Dir"]
            (staging / "files").mkdir()
            for name in module.files:
                if (Path(origin) / name).is_dir():
                    copied = staging / "files" / Path(name).name
                    shutil.copytree(Path(origin) / name, copied, copy_function=shutil.copyfile)
                    # The module cache is read-only; the copy must not be, or the cache entry could not be removed.
                    for directory in (copied, *(p for p in copied.rglob("*") if p.is_dir())):
                        directory.chmod(0o755)
                else:
                    shutil.copyfile(Path(origin) / name, staging / "files" / Path(name).name)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another build finished first: keep its entry
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure(module: BuildModule, report: list[str]) -> Path:
    target = cache_root() / module.cache_key()
    if all((target / p.name).is_file() for p in module.programs):
        report.append(f"{module.directory}: reusing {target}")
        return target
    if target.exists():  # a program was deleted from the cache entry: build the whole entry again
        shutil.rmtree(target)
    started, cpu = time.monotonic(), _children_cpu()
    _build(module, target)
    report.append(
        f"{module.directory}: built {target} in {time.monotonic() - started:.0f}s ({_children_cpu() - cpu:.0f}s of CPU)"
    )
    return target


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (Go and its compilers) so far."""
    usage = os.times()
    return usage.children_user + usage.children_system


def toolchain(report: list[str] | None = None) -> Toolchain:
    """Every program of the end-to-end environment, built unless cached; ``report`` collects one line per module."""
    lines: list[str] = [] if report is None else report
    kube, source, kustomize = (_ensure(module, lines) for module in MODULES)
    return Toolchain(
        etcd=kube / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        source_controller=source / "source-controller",
        kustomize_controller=kustomize / "kustomize-controller",
        crds=tuple(sorted((source / "crds").glob("*.yaml"))) + tuple(sorted((kustomize / "crds").glob("*.yaml"))),
        kubernetes_version=KUBE.required_version("k8s.io/kubernetes"),
        flux_versions={m.directory: m.required_version(m.crds_from) for m in (SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER)},
    )


@dataclass(frozen=True)
class ArgoTools:
    """Argo CD's one binary and its CRDs (Application, AppProject, ApplicationSet) from the same module version."""

    argocd: Path
    crds: tuple[Path, ...]
    version: str


def argocd_tools(report: list[str] | None = None) -> ArgoTools:
    """Argo CD, built unless cached: a build of its own (``python test/e2e/build.py argocd``), so that CI can
    cache it apart from the control plane and Flux."""
    lines: list[str] = [] if report is None else report
    target = _ensure(ARGOCD, lines)
    return ArgoTools(
        argocd=target / "argocd",
        crds=tuple(sorted(p for p in (target / "crds").glob("*.yaml") if p.name != "kustomization.yaml")),
        version=ARGOCD.required_version("github.com/argoproj/argo-cd/v2"),
    )


@dataclass(frozen=True)
class PodTools:
    """What makes Deployments run without containers: kube-controller-manager, kube-scheduler and kwok."""

    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: tuple[Path, ...]
    kwok_version: str


def pod_tools(report: list[str] | None = None) -> PodTools:
    """Built unless cached (``python test/e2e/build.py pods``)."""
    lines: list[str] = [] if report is None else report
    controllers, kwok = _ensure(KUBE_CONTROLLERS, lines), _ensure(KWOK, lines)
    return PodTools(
        kube_controller_manager=controllers / "kube-controller-manager",
        kube_scheduler=controllers / "kube-scheduler",
        kwok=kwok / "kwok",
        kwok_stages=tuple(sorted((kwok / "files").glob("*.yaml"))),
        kwok_version=KWOK.required_version("sigs.k8s.io/kwok"),
    )


@dataclass(frozen=True)
class HelmTools:
    """Flux's helm-controller and its HelmRelease CRD."""

    helm_controller: Path
    crds: tuple[Path, ...]
    version: str


def helm_tools(report: list[str] | None = None) -> HelmTools:
    """Built unless cached (``python test/e2e/build.py helm``)."""
    lines: list[str] = [] if report is None else report
    target = _ensure(HELM_CONTROLLER, lines)
    return HelmTools(
        helm_controller=target / "helm-controller",
        crds=tuple(sorted((target / "crds").glob("*.yaml"))),
        version=HELM_CONTROLLER.required_version("github.com/fluxcd/helm-controller"),
    )


@dataclass(frozen=True)
class GiteaTools:
    """Gitea's binary and the directory to use as its ``STATIC_ROOT_PATH`` (``options/`` and ``templates/``)."""

    gitea: Path
    static_root: Path
    version: str


def gitea_location() -> GiteaTools:
    """Where ``python test/e2e/build.py gitea`` puts Gitea, without building it (the forge tests only look)."""
    target = cache_root() / GITEA.cache_key()
    return GiteaTools(
        gitea=target / "gitea",
        static_root=target / "files",
        version=GITEA.required_version("code.gitea.io/gitea"),
    )


def gitea_tools(report: list[str] | None = None) -> GiteaTools:
    """Built unless cached (``python test/e2e/build.py gitea``)."""
    lines: list[str] = [] if report is None else report
    _ensure(GITEA, lines)
    return gitea_location()


def main(argv: list[str]) -> int:
    started = time.monotonic()
    lines: list[str] = []
    try:
        if argv == ["argocd"]:
            argo = argocd_tools(lines)
            summary = f"argo cd {argo.version}; {len(argo.crds)} CRDs"
        elif argv == ["pods"]:
            pods = pod_tools(lines)
            summary = f"kube-controller-manager, kube-scheduler, kwok {pods.kwok_version}"
        elif argv == ["gitea"]:
            gitea = gitea_tools(lines)
            summary = f"gitea {gitea.version}"
        elif argv == ["helm"]:
            helm = helm_tools(lines)
            summary = f"helm-controller {helm.version}; {len(helm.crds)} CRDs"
        elif not argv:
            tools = toolchain(lines)
            summary = f"kubernetes {tools.kubernetes_version}, flux {tools.flux_versions}; {len(tools.crds)} CRDs"
        else:
            print("usage: build.py [argocd|pods|helm|gitea]", file=sys.stderr)
            return 2
    except BuildError as exc:
        print("\n".join(lines), file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(summary)
    print(f"build took {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
