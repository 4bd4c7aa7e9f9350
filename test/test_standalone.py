"""The repository stands alone: a fresh clone with nothing beside it runs, tests and documents itself."""

from __future__ import annotations

import re
from pathlib import Path

from support import git

ROOT = Path(__file__).resolve().parents[1]
# Documents that live outside this repository (the product brief, its reference notes, a sibling checkout).
OUTSIDE = re.compile(
    r"PRODUCT\.md|reference/(?:keptn-protocol|gitops|anchors)\.md|\.\./shared\b|parents?\[\d\]\.parent / .shared"
)


def test_no_file_points_outside_the_repository() -> None:
    files = git("ls-files", "-z", cwd=ROOT).split("\0")
    offenders = []
    for name in (f for f in files if f):
        if name.startswith("test/fixtures/upstream/"):
            continue  # verbatim upstream samples
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert offenders == []
    assert len(files) > 100  # the listing really covered the repository
