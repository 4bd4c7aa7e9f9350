"""The commands the docs show, with their output, run here and print what the docs say they print.

Conventions in README.md and docs/*.md:

* A fenced block whose info string names a file, as in ```` ```yaml file=gitops.yaml ````, is a file the reader is
  shown. It is written into the working directory of every later command block of the same page (a later block with
  the same name replaces it).
* In a shell block (``console``, ``sh``, …) a line that starts with ``$ `` is a command. The lines after it, up to the
  next ``$ `` line or the end of the block, are its output as a terminal shows it (stdout and stderr together).
* Output is compared after normalising what changes from run to run: UUIDs, hex hashes, loopback ports, temporary
  paths and timestamps. A line ``...`` stands for any number of lines; a line ending in ``…`` stands for any line that
  starts with the text before it.

Only the service's own CLI is run (``keptn-gitops-service …`` or ``python -m keptn_gitops_service …``). Any other
command shown with ``$ `` fails the test, so nothing appears in the docs with an output that is not checked.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"console", "sh", "shell", "bash", "zsh", "shell-session"}
COMMAND_TIMEOUT = 300  # seconds; the demo, the slowest command shown, takes a few seconds

_FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S
)
_FILE_ATTRIBUTE = re.compile(r"(?:^|\s)file=(?P<name>[^\s]+)")


@dataclass(frozen=True)
class Command:
    line: int
    command: str
    expected: str


@dataclass(frozen=True)
class Example:
    """One shell block with ``$`` commands, and the files shown on the page before it."""

    doc: Path
    line: int
    commands: tuple[Command, ...]
    files: dict[str, str] = field(hash=False)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def examples(doc: Path) -> list[Example]:
    text = doc.read_text(encoding="utf-8")
    files: dict[str, str] = {}
    found: list[Example] = []
    for block in _FENCE.finditer(text):
        info = block.group("info").strip()
        line = text.count("\n", 0, block.start()) + 1
        body = block.group("body")
        if block.group("indent"):
            body = re.sub(rf"^{block.group('indent')}", "", body, flags=re.M)
        named = _FILE_ATTRIBUTE.search(info)
        if named:
            files[named.group("name")] = body
            continue
        language = info.split(" ")[0].lower() if info else ""
        if language in SHELL_LANGUAGES or not language:
            commands = _commands(body, line)
            if commands:
                found.append(Example(doc, line, tuple(commands), dict(files)))
    return found


def _commands(body: str, block_line: int) -> list[Command]:
    commands: list[Command] = []
    current: tuple[int, str] | None = None
    output: list[str] = []
    for offset, text in enumerate(body.splitlines(), start=1):
        if text.startswith("$ "):
            if current is not None:
                commands.append(Command(current[0], current[1], "\n".join(output)))
            current, output = (block_line + offset, text[2:].strip()), []
        elif current is not None:
            output.append(text)
    if current is not None:
        commands.append(Command(current[0], current[1], "\n".join(output)))
    return commands


def _argv(command: str) -> list[str]:
    """The argument vector for one of our commands (the service's CLI or the demo); anything else is refused."""
    words = shlex.split(command)
    if any(word in {"|", "||", "&&", ";", ">", ">>", "<", "2>&1"} for word in words):
        raise ValueError(f"'{command}': pipes and redirections are not run; show the plain command")
    if words[:1] == ["keptn-gitops-service"]:
        return [sys.executable, "-m", "keptn_gitops_service", *words[1:]]
    if words[:1] == ["keptn-gitops-demo"]:  # the simulator's console script (keptn_gitops_sim), installed here
        return [str(Path(sys.executable).parent / "keptn-gitops-demo"), *words[1:]]
    if words[:3] in (["python", "-m", "keptn_gitops_service"], ["python3", "-m", "keptn_gitops_service"]):
        return [sys.executable, "-m", "keptn_gitops_service", *words[3:]]
    raise ValueError(f"'{command}' is not the service's CLI; only its commands are shown with output")


def normalise(text: str, workdir: Path | None = None) -> str:
    """Replace what differs from run to run by fixed tokens, and drop trailing blanks."""
    if workdir is not None:
        text = text.replace(str(workdir), ".")
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>", text)
    text = re.sub(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<time>", text)
    text = re.sub(r"\b[0-9a-f]{7,64}\b", "<hex>", text)
    text = re.sub(r"\b(127\.0\.0\.1|localhost):\d+", r"\1:<port>", text)
    temp = re.escape(tempfile.gettempdir().rstrip("/"))
    text = re.sub(rf"{temp}/[^\s/'\"]+", "<tmp>", text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def matches(expected: str, actual: str) -> bool:
    """Whether the normalised ``actual`` output is what the (normalised) ``expected`` one shows."""
    pattern = ""
    for line in expected.splitlines():
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        elif line.endswith("…"):
            pattern += re.escape(line[:-1]) + r"[^\n]*\n"
        else:
            pattern += re.escape(line) + r"\n"
    return re.fullmatch(pattern, actual + "\n" if actual else "") is not None


def run(command: str, workdir: Path) -> str:
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as on a terminal
        "TMPDIR": tempfile.gettempdir(),
    }
    proc = subprocess.run(
        _argv(command),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return proc.stdout


ALL_EXAMPLES = [example for doc in DOCS for example in examples(doc)]


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda e: e.where)
def test_the_commands_shown_print_what_the_docs_show(example: Example, tmp_path: Path) -> None:
    for name, content in example.files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    for command in example.commands:
        actual = normalise(run(command.command, tmp_path), tmp_path)
        expected = normalise(command.expected)
        if not matches(expected, actual):
            diff = "\n".join(
                difflib.unified_diff(
                    expected.splitlines(), actual.splitlines(), "shown in the doc", "printed", lineterm=""
                )
            )
            pytest.fail(f"{example.doc.relative_to(ROOT)}:{command.line}: $ {command.command}\n{diff}")


def test_the_pages_show_commands_with_their_output() -> None:
    shown = {(e.doc.name, c.command) for e in ALL_EXAMPLES for c in e.commands}
    assert ("README.md", "keptn-gitops-demo") in shown
    assert ("README.md", "keptn-gitops-service config check gitops.yaml") in shown
    assert any(doc == "troubleshooting.md" for doc, _ in shown)
    for example in ALL_EXAMPLES:
        for command in example.commands:
            _argv(command.command)  # every command shown with output is one the harness runs


def test_the_matcher_tells_a_stale_output_from_a_current_one() -> None:
    shown = "error: a.yaml:7:5: x: unknown key (allowed: a, b)\n..."
    assert matches(normalise(shown), "error: a.yaml:7:5: x: unknown key (allowed: a, b)\nmore\nlines")
    assert not matches(normalise(shown), "error: a.yaml:6:5: x: unknown key (allowed: a, b, c)")
    assert matches("commit <hex>…", normalise("commit 1547820ff8c933e95f39924c9ea7684cfbc47060 and more"))
    assert not matches("one\ntwo", "one\ntwo\nthree"), "lines the doc does not show are a difference"
    temp = tempfile.gettempdir()
    printed = f"at http://127.0.0.1:46135 in {temp}/keptn-demo-x1/f.git"
    assert normalise(printed) == "at http://127.0.0.1:<port> in <tmp>/f.git"


def test_files_and_commands_are_read_from_the_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```yaml file=conf/a.yaml\nkey: 1\n```\n\n"
        "```console\n$ keptn-gitops-service config check conf/a.yaml\nerror: one\nerror: two\n"
        "$ python -m keptn_gitops_service --version\nkeptn-gitops-service 0.1.0\n```\n"
        "```sh\nkeptn-gitops-service run   # no $: shown, not run\n```\n",
        encoding="utf-8",
    )
    [example] = examples(page)
    assert example.files == {"conf/a.yaml": "key: 1\n"}
    assert [(c.command, c.expected) for c in example.commands] == [
        ("keptn-gitops-service config check conf/a.yaml", "error: one\nerror: two"),
        ("python -m keptn_gitops_service --version", "keptn-gitops-service 0.1.0"),
    ]
    with pytest.raises(ValueError, match="not the service's CLI"):
        _argv("kubectl get pods")
    with pytest.raises(ValueError, match="pipes and redirections"):
        _argv("keptn-gitops-service config check a.yaml | head")
