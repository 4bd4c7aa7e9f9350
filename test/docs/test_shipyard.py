"""Every shipyard in the docs is valid for Keptn: checked against the spec's own shipyard JSON schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)


def shipyards() -> list[dict[str, object]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for block in BLOCK.findall(page.read_text()):
            if "Shipyard" not in block:
                continue
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and doc.get("kind") == "Shipyard":
                    found.append(doc)
    return found


def test_the_docs_shipyards_follow_keptns_schema_and_use_our_tasks(upstream_fixtures: Path) -> None:
    schema = json.loads((upstream_fixtures / "keptn" / "spec-schemas-shipyard.json").read_text())
    documents = shipyards()
    assert documents, "the docs show no shipyard"
    for shipyard in documents:
        jsonschema.validate(shipyard, schema)
        tasks = {
            task["name"]
            for stage in shipyard["spec"]["stages"]  # type: ignore[index]
            for sequence in stage["sequences"]
            for task in sequence["tasks"]
        }
        assert {"deployment", "release", "rollback"} <= tasks
