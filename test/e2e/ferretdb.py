"""Build FerretDB, shipyard-controller's MongoDB in the Keptn end-to-end run, from its Go module once, into the cache.

FerretDB v1.24.2 comes from the Go module proxy, checked against the ``h1:`` sum pinned here. It is built from a
copy of the module with ``build/version/version.txt`` written: the module zip lacks that generated file and the
binary panics at start without it (so a ``go.mod`` with a ``tool`` line, as in build.py, cannot build it). The
binary lands in ``<cache>/e2e/ferretdb-<hash>/ferretdb``, where the hash covers the pins and this recipe; a cached
entry is reused without invoking Go. ``python test/e2e/ferretdb.py`` builds (or finds) it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the suite's package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.build import BUILD_TIMEOUT, BuildError, _go_env, cache_root, go_binary

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_SUM = "h1:trrUU0LbmusMbyubhPS1IELncvrIwKrsRT2LW1UUWCw="
FERRETDB_PACKAGE = "./cmd/ferretdb"
LDFLAGS = "-s -w"


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(argv)}` in {cwd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def _cache_key() -> str:
    recipe = json.dumps([FERRETDB_MODULE, FERRETDB_VERSION, FERRETDB_SUM, FERRETDB_PACKAGE, LDFLAGS, "version.txt"])
    return f"ferretdb-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"


def _source(target: Path) -> None:
    """A writable copy of FerretDB's module (checked against its pinned sum) with ``version.txt`` written."""
    if (target / ".complete").is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    listing = json.loads(
        _run(
            [go_binary(), "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"], target.parent, _go_env()
        )
    )
    if listing.get("Sum") != FERRETDB_SUM:
        raise BuildError(f"{FERRETDB_MODULE}@{FERRETDB_VERSION} has sum {listing.get('Sum')}, not {FERRETDB_SUM}")
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tree = scratch / "tree"
        shutil.copytree(listing["Dir"], tree)
        for path in [tree, *tree.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        (tree / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        (tree / ".complete").write_text(FERRETDB_SUM + "\n")
        try:
            tree.rename(target)
        except OSError:
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ferretdb_binary(report: list[str] | None = None) -> Path:
    """FerretDB's binary, built unless cached; ``report`` collects one line."""
    lines: list[str] = [] if report is None else report
    target = cache_root() / _cache_key()
    binary = target / "ferretdb"
    if binary.is_file():
        lines.append(f"ferretdb: reusing {target}")
        return binary
    if target.exists():
        shutil.rmtree(target)
    started = time.monotonic()
    source = cache_root() / f"ferretdb-src-{FERRETDB_VERSION}"
    _source(source)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _run(
            [
                go_binary(),
                "build",
                "-trimpath",
                f"-ldflags={LDFLAGS}",
                "-o",
                str(staging / "ferretdb"),
                FERRETDB_PACKAGE,
            ],
            source,
            _go_env(),
        )
        try:
            staging.rename(target)
        except OSError:
            if not binary.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lines.append(f"ferretdb: built {target} in {time.monotonic() - started:.0f}s")
    return binary


if __name__ == "__main__":
    report: list[str] = []
    try:
        ferretdb_binary(report)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(report))
    print(f"FerretDB {FERRETDB_VERSION}")
