"""Build the Go conformance checker (``test/conformance/go``) once, into a cache outside the repository.

The binary lands in ``${KEPTN_GITOPS_CACHE:-~/.cache/keptn-gitops-service}/conformance/<hash>/keptn-conformance``,
where ``<hash>`` covers ``go.mod``, ``go.sum`` and ``main.go``: editing any of them builds a new binary, and
an unchanged checker is reused without invoking Go at all. Go's own module and build caches stay at their
defaults (``GOMODCACHE``/``GOCACHE`` under ``~``), so only the first build ever downloads go-utils.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "go"
SOURCE_FILES = ("go.mod", "go.sum", "main.go")
BINARY_NAME = "keptn-conformance"
GO_FALLBACK = Path("/usr/local/go/bin/go")


class GoMissingError(RuntimeError):
    """No Go toolchain: the conformance tests cannot run (and must fail, not skip)."""


def cache_root() -> Path:
    configured = os.environ.get("KEPTN_GITOPS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "keptn-gitops-service"


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        content = (SOURCE / name).read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


def go_binary() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
    if not found:
        raise GoMissingError(
            "the Go toolchain is missing: install Go >= 1.22 (https://go.dev/dl/) and put `go` on PATH "
            f"(or at {GO_FALLBACK}); the go-utils conformance tests cannot run without it"
        )
    return found


def conformance_binary() -> Path:
    """The path of the built checker; builds it (and says how long that took) unless already cached."""
    target = cache_root() / "conformance" / source_hash() / BINARY_NAME
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = go_binary()
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    for name in ("GOMODCACHE", "GOCACHE"):  # Go's defaults under ~, shared with every other build
        env.pop(name, None)
    # Build next to the target and rename: concurrent test runs never see a half-written binary.
    fd, partial = tempfile.mkstemp(prefix=f".{BINARY_NAME}-", dir=target.parent)
    os.close(fd)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [go, "build", "-buildvcs=false", "-trimpath", "-o", partial, "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"`go build` of {SOURCE} failed ({result.returncode}):\n{result.stderr}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    print(f"built {target} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return target


if __name__ == "__main__":
    print(conformance_binary())
