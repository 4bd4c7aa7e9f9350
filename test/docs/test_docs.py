"""The user documentation (docs/*.md and README.md) stays true to the code.

* every relative link points to an existing file (and, for a ``#fragment`` into Markdown, to an existing heading);
* every YAML block that claims to be our configuration (``apiVersion: gitops.keptn-contrib/v1``) loads with the
  real loader, except an example of a broken file, marked ``invalid`` in its info string (```` ```yaml file=x.yaml
  invalid ````): that one must not load;
* every ``keptn-gitops-service <subcommand>`` (or ``python -m keptn_gitops_service <subcommand>``) written in a
  shell block or inline code exists in the CLI parser, with the options it is given.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from keptn_gitops_service.cli import _parser
from keptn_gitops_service.config.loader import parse_config
from keptn_gitops_service.config.model import API_VERSION
from keptn_gitops_service.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SHELL_LANGUAGES = {"sh", "shell", "bash", "console", "zsh"}

_FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S
)
_INLINE_CODE = re.compile(r"(`+)(?P<code>.+?)\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_COMMAND = re.compile(
    r"(?:^|[\s$;&|(]|--[ \t])(?:keptn-gitops-service|python3? -m keptn_gitops_service)[ \t]+(?P<args>[a-z][^\n`|;&#]*)"
)


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    info: str
    body: str
    invalid: bool = False


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    return [
        Block(
            doc,
            text.count("\n", 0, m.start()) + 1,
            m.group("info").strip().split(" ")[0].lower(),
            m.group("body"),
            "invalid" in m.group("info").split(),
        )
        for m in _FENCE.finditer(text)
    ]


def _prose(doc: Path) -> str:
    """The text outside fenced blocks (blocks become blank lines, so line numbers stay)."""
    text = doc.read_text(encoding="utf-8")
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(doc).splitlines():
        found = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not found:
            continue
        slug = _slug(found.group(1))
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    anchors.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", doc.read_text(encoding="utf-8")))
    return anchors


def test_the_docs_exist() -> None:
    names = {doc.name for doc in DOCS}
    for name in (
        "configuration.md",
        "flux-walkthrough.md",
        "argocd-walkthrough.md",
        "troubleshooting.md",
        "architecture.md",
        "migration-from-helm-service.md",
    ):
        assert name in names, f"docs/{name} is missing"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_point_to_existing_files(doc: Path) -> None:
    broken = []
    prose = _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), _prose(doc))
    for found in _LINK.finditer(prose):
        target = found.group("target").strip("<>")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # https:, mailto: …
        path_part, _, fragment = target.partition("#")
        line = prose.count("\n", 0, found.start()) + 1
        destination = (doc.parent / path_part).resolve() if path_part else doc
        if not destination.exists():
            broken.append(f"{_rel(doc)}:{line}: {target} (no such file)")
        elif fragment and destination.suffix == ".md" and fragment not in _anchors(destination):
            broken.append(f"{_rel(doc)}:{line}: {target} (no heading '#{fragment}' in {destination.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _config_blocks() -> list[Block]:
    """YAML blocks that are our configuration, as they are, or as the chart's ``config`` value."""
    found = []
    for doc in DOCS:
        for block in _blocks(doc):
            if block.info not in ("yaml", "yml"):
                continue
            if block.body.lstrip().startswith(f"apiVersion: {API_VERSION}"):
                found.append(block)
                continue
            data = yaml.safe_load(block.body) if "config:" in block.body else None
            config = data.get("config") if isinstance(data, dict) else None
            if isinstance(config, dict) and config.get("apiVersion") == API_VERSION:
                found.append(Block(block.doc, block.line, "chart values", yaml.safe_dump(config, sort_keys=False)))
    return found


def test_there_are_config_examples_to_check() -> None:
    docs = {block.doc.name for block in _config_blocks()}
    assert {"configuration.md", "flux-walkthrough.md", "migration-from-helm-service.md"} <= docs
    assert any(block.info == "chart values" for block in _config_blocks()), "the chart values example is checked"


@pytest.mark.parametrize("block", _config_blocks(), ids=lambda b: f"{_rel(b.doc)}:{b.line}")
def test_config_examples_load(block: Block) -> None:
    if block.invalid:
        with pytest.raises(ConfigError):
            parse_config(block.body, f"{_rel(block.doc)}:{block.line}")
        return
    try:
        parse_config(block.body, f"{_rel(block.doc)}:{block.line}")
    except ConfigError as exc:
        pytest.fail(f"the config example ({block.info}) at {_rel(block.doc)}:{block.line} does not load:\n{exc}")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _commands() -> list[tuple[str, str]]:
    """``(where, arguments)`` for every CLI invocation in shell blocks and inline code."""
    found = []
    for doc in DOCS:
        for block in _blocks(doc):
            if block.info in SHELL_LANGUAGES:
                offset = 1
                for line in re.split(r"(?<!\\)\n", block.body):  # a line continued with "\" is one command
                    where = f"{_rel(doc)}:{block.line + offset}"
                    found += [(where, m.group("args")) for m in _COMMAND.finditer(line.replace("\\\n", " "))]
                    offset += line.count("\n") + 1
        prose = _prose(doc)
        for code in _INLINE_CODE.finditer(prose):
            line = prose.count("\n", 0, code.start()) + 1
            found += [(f"{_rel(doc)}:{line}", m.group("args")) for m in _COMMAND.finditer(code.group("code"))]
    return found


def _check_command(arguments: str) -> str | None:
    """Why ``keptn-gitops-service <arguments>`` is not a valid invocation, or ``None``."""
    parser = _parser()
    words = arguments.split()
    path = []
    while words and (choices := _subparsers(parser)) and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        if words[0] not in choices:
            return f"'{' '.join([*path, words[0]])}' is not a subcommand (known: {', '.join(sorted(choices))})"
        path.append(words.pop(0))
        parser = choices[path[-1]]
    if not path:
        return f"no subcommand in '{arguments.strip()}'"
    if _subparsers(parser):
        return f"'{' '.join(path)}' needs a subcommand (one of {', '.join(sorted(_subparsers(parser)))})"
    for word in words:
        option = re.match(r"^\[?(--?[a-z][a-z0-9-]*)", word)
        if option and option.group(1) not in _options(parser):
            return f"'{' '.join(path)}' has no option {option.group(1)}"
    return None


def test_cli_invocations_in_the_docs_exist() -> None:
    commands = _commands()
    assert len(commands) >= 10, "the docs show the CLI in several places"
    problems = [
        f"{where}: keptn-gitops-service {args.strip()}: {why}"
        for where, args in commands
        if (why := _check_command(args))
    ]
    assert not problems, "CLI invocations the parser does not know:\n" + "\n".join(problems)


def test_the_cli_check_rejects_what_does_not_exist() -> None:
    assert _check_command("rollback --project p") is not None
    assert _check_command("config validate x.yaml") is not None
    assert _check_command("config") is not None
    assert _check_command("deploy --project p --stage s --service c --image i --dry-run") is not None
    assert _check_command("deploy --project p --stage s --service c --image i [--no-wait]") is None
    assert _check_command("config check gitops.yaml") is None
