"""Keptn 1.4.5's programs for the Keptn end-to-end scenarios, provided by the user; FerretDB built here.

This project ships no way to build Keptn. ``KEPTN_GITOPS_KEPTN_BIN`` names a directory holding Keptn 1.4.5's own
release artefacts: ``shipyard-controller``, ``resource-service``, ``api-service``, ``distributor`` and the ``keptn``
CLI (see docs/e2e-keptn.md). When it is unset, test_keptn.py is not collected (conftest.py) and ``./scripts/e2e``
says so. When it is set, each program must be there and executable, and what can be checked of its version is:

- the Go build information (``go version -m``): the program's main module is Keptn's (``github.com/keptn/keptn/...``)
  and it requires ``github.com/keptn/go-utils`` v0.20.4, the version Keptn 1.4.5 pins;
- ``keptn version``: a CLI stamped with a version must say 1.4.5 (one built without the release's version flag
  says nothing, and the build information stands).

``python test/e2e/keptnbin.py`` checks the directory, builds (or finds) FerretDB and prints what it found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the suite's package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.build import BuildError, go_binary
from e2e.ferretdb import ferretdb_binary

ENV = "KEPTN_GITOPS_KEPTN_BIN"
KEPTN_VERSION = "1.4.5"
GO_UTILS = "github.com/keptn/go-utils"
GO_UTILS_VERSION = "v0.20.4"
PROGRAMS = {  # program name → the Go main module Keptn 1.4.5 builds it from
    "shipyard-controller": "github.com/keptn/keptn/shipyard-controller",
    "resource-service": "github.com/keptn/keptn/resource-service",
    "api-service": "github.com/keptn/keptn/api",
    "distributor": "github.com/keptn/keptn/distributor",
    "keptn": "github.com/keptn/keptn/cli",
}
NOT_RUN = f"keptn: not run: set {ENV} to a directory with Keptn {KEPTN_VERSION}'s binaries (see docs/e2e-keptn.md)"


class KeptnBinariesError(BuildError):
    """``KEPTN_GITOPS_KEPTN_BIN`` does not hold Keptn 1.4.5's programs; the message says which and why."""


@dataclass(frozen=True)
class KeptnTools:
    """Where Keptn's programs (from ``KEPTN_GITOPS_KEPTN_BIN``) and FerretDB (built) are."""

    binaries: dict[str, Path]
    version: str

    def __getitem__(self, name: str) -> Path:
        return self.binaries[name]


def configured_directory() -> Path | None:
    """The directory ``KEPTN_GITOPS_KEPTN_BIN`` names, or None when it is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def _check_build_info(name: str, binary: Path) -> str:
    """Check the Go build information of ``binary``; returns one line saying what was found."""
    proc = subprocess.run(
        [go_binary(), "version", "-m", str(binary)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return f"{name}: {binary} has no Go build information; its version cannot be checked"
    main = re.search(r"^\s*mod\s+(\S+)", proc.stdout, re.MULTILINE)
    utils = re.search(rf"^\s*dep\s+{re.escape(GO_UTILS)}\s+(\S+)", proc.stdout, re.MULTILINE)
    expected = PROGRAMS[name]
    if main is None or main.group(1) != expected:
        found = main.group(1) if main else "no main module"
        raise KeptnBinariesError(
            f"{binary} is not Keptn's {name}: its Go build information names {found}, not {expected} "
            f"({ENV} must hold Keptn {KEPTN_VERSION}'s programs)."
        )
    if utils is None or utils.group(1) != GO_UTILS_VERSION:
        found = utils.group(1) if utils else "no go-utils"
        raise KeptnBinariesError(
            f"{binary} is not Keptn {KEPTN_VERSION}'s {name}: it was built with {GO_UTILS} {found}, "
            f"while Keptn {KEPTN_VERSION} requires {GO_UTILS_VERSION}."
        )
    return f"{name}: {binary} ({expected}, {GO_UTILS} {GO_UTILS_VERSION})"


def _check_cli_version(binary: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="keptn-cli-") as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "TMPDIR": home}
        proc = subprocess.run(
            [str(binary), "version"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    found = re.search(r"^Keptn CLI version:[ \t]*(\S*)", proc.stdout + proc.stderr, re.MULTILINE)
    if found is None:
        raise KeptnBinariesError(
            f"`{binary} version` did not print `Keptn CLI version:` (exit {proc.returncode}); "
            f"{ENV} must hold Keptn {KEPTN_VERSION}'s CLI."
        )
    version = found.group(1).removeprefix("v")
    if not version:
        return "keptn: `keptn version` names no version (built without the release's version flag)"
    if version != KEPTN_VERSION:
        raise KeptnBinariesError(f"{binary} is Keptn CLI {version}, not {KEPTN_VERSION}.")
    return f"keptn: `keptn version` says {version}"


def _check_libraries(name: str, binary: Path) -> None:
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60, check=False)
    missing = re.findall(r"^\s*(\S+) => not found", proc.stdout, re.MULTILINE)
    if missing:
        raise KeptnBinariesError(
            f"{binary} needs shared libraries this machine lacks: {', '.join(missing)} "
            "(resource-service links libgit2 1.5; on Debian: apt-get install libgit2-1.5)."
        )


def keptn_binaries(report: list[str] | None = None) -> KeptnTools:
    """Keptn's programs from ``KEPTN_GITOPS_KEPTN_BIN``, checked, and FerretDB; ``report`` collects what was found."""
    lines: list[str] = [] if report is None else report
    directory = configured_directory()
    if directory is None:
        raise KeptnBinariesError(f"{ENV} is not set: {NOT_RUN.removeprefix('keptn: not run: ')}.")
    if not directory.is_dir():
        raise KeptnBinariesError(f"{ENV} names {directory}, which is not a directory.")
    binaries: dict[str, Path] = {}
    absent = [name for name in PROGRAMS if not (directory / name).is_file()]
    if absent:
        raise KeptnBinariesError(
            f"{ENV} names {directory}, which lacks Keptn {KEPTN_VERSION}'s {', '.join(absent)} "
            f"(it must hold {', '.join(PROGRAMS)})."
        )
    for name in PROGRAMS:
        binary = (directory / name).resolve()
        if not os.access(binary, os.X_OK):
            raise KeptnBinariesError(f"{directory / name} is not executable.")
        lines.append(_check_build_info(name, binary))
        _check_libraries(name, binary)
        binaries[name] = binary
    lines.append(_check_cli_version(binaries["keptn"]))
    binaries["ferretdb"] = ferretdb_binary(lines)
    return KeptnTools(binaries, KEPTN_VERSION)


if __name__ == "__main__":
    report: list[str] = []
    try:
        keptn_binaries(report)
    except BuildError as exc:
        print("\n".join(report), file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(report))
