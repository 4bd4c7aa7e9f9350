"""Static checks of the Dockerfile (there is no Docker engine here): pinned base, multi-stage, non-root, no secrets,
no build tools in the image that ships, and an entry point that really is this package's console script."""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keptn_gitops_service import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE = re.compile(r"^python:3\.11\.(?P<patch>\d+)-slim-bookworm@sha256:(?P<digest>[0-9a-f]{64})$")
SECRETISH = re.compile(r"SECRET|TOKEN|PASSW|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY|AUTH", re.IGNORECASE)
BUILD_TOOLS = ("gcc", "g++", "clang", "build-essential", "make", "cmake", "python3-dev", "libc6-dev", "cargo", "rustc")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def runs(self) -> str:
        return "\n".join(self.args("RUN"))


def parse(text: str) -> list[Stage]:
    """Dockerfile -> stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"unexpected FROM: {line}"
            stages.append(Stage(base=words[0], name=name))
            continue
        assert stages or instruction == "ARG", f"{instruction} before the first FROM"
        if stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec (JSON) form, not {args!r}"
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
    assert args == "[" + ", ".join(f'"{w}"' for w in words) + "]", f"unexpected exec form {args!r}"
    return words


def test_parser_sees_stages_and_continuations() -> None:
    stages = parse("FROM a:1 AS one\nRUN x \\\n    && y\n# c\nFROM b:2\nUSER 5\n")
    assert [(s.base, s.name) for s in stages] == [("a:1", "one"), ("b:2", None)]
    assert stages[0].instructions == [("RUN", "x && y")]
    assert stages[1].args("USER") == ["5"]


def test_base_image_is_pinned_by_full_version_and_digest(stages: list[Stage]) -> None:
    external = [s.base for s in stages if s.base not in {t.name for t in stages}]
    assert external, "no base image"
    for base in external:
        match = BASE.match(base)
        assert match, f"{base}: pin python:3.11.<patch>-slim-bookworm@sha256:<digest>"
    assert len(set(external)) == 1, f"builder and runtime must share one base: {external}"


def test_multi_stage_build_installs_a_wheel_into_a_venv(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name == "builder"
    runs = builder.runs()
    assert re.search(r"pip wheel .*--wheel-dir /wheels \.", runs), runs
    venv = re.search(r"python -m venv (\S+)", runs)
    assert venv, "the builder creates a virtual environment"
    assert re.search(rf"{re.escape(venv.group(1))}/bin/pip install /wheels/keptn_gitops_service-\*\.whl", runs)
    copies = final.args("COPY")
    assert copies == [f"--from=builder {venv.group(1)} {venv.group(1)}"], "the runtime copies only the venv"
    assert any(f'PATH="{venv.group(1)}/bin:' in env for env in final.args("ENV"))


def test_final_stage_runs_as_a_fixed_non_root_user(final: Stage) -> None:
    users = final.args("USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001", "the chart's securityContext runs as 10001"
    assert re.search(r"useradd .*--uid 10001\b", final.runs()), "create the user in the image"
    # nothing after USER switches back
    last_user = max(i for i, (name, _) in enumerate(final.instructions) if name == "USER")
    assert all(name not in {"RUN", "USER"} for name, _ in final.instructions[last_user + 1 :])


def test_no_secret_like_args_or_envs(stages: list[Stage]) -> None:
    for stage in stages:
        for instruction in ("ARG", "ENV"):
            for args in stage.args(instruction):
                names = [w.split("=", 1)[0] for w in shlex.split(args)]
                if instruction == "ENV" and len(names) == 2 and "=" not in args:
                    names = names[:1]  # legacy `ENV NAME value`
                suspicious = [n for n in names if SECRETISH.search(n)]
                assert not suspicious, f"{instruction} {args}: secrets never go into an image"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"id_(rsa|ed25519|ecdsa)|\.ssh/|\.netrc|\.git-credentials", text)


def test_entrypoint_is_the_console_script(final: Stage) -> None:
    [entrypoint] = final.args("ENTRYPOINT")
    assert exec_form(entrypoint) == ["keptn-gitops-service"]
    [command] = final.args("CMD")
    assert exec_form(command) == ["run"]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    scripts = dict(
        (part.strip() for part in line.split("=", 1))
        for line in setup["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts["keptn-gitops-service"] == "keptn_gitops_service.cli:main"
    assert callable(cli.main)


def test_default_command_is_a_real_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--help"])
    assert exited.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_runtime_installs_git_and_ssh_lean(final: Stage) -> None:
    installs = [r for r in final.args("RUN") if "apt-get install" in r]
    assert len(installs) == 1, installs
    run = installs[0]
    packages = set(re.split(r"\s+", run.split("apt-get install", 1)[1].split("&&", 1)[0].strip()))
    assert {"git", "openssh-client"} <= packages
    assert packages - {"git", "openssh-client"} <= {"--yes", "-y", "--no-install-recommends"}
    assert "--no-install-recommends" in packages
    assert "apt-get update" in run and "rm -rf /var/lib/apt/lists/*" in run, "update and clean in the same layer"


def test_no_build_tools_in_the_final_stage(final: Stage) -> None:
    words = set(re.split(r"[\s;&|]+", final.runs()))
    assert not words & set(BUILD_TOOLS), words & set(BUILD_TOOLS)
    assert "pip" not in words and "pip3" not in words, "nothing is built or installed with pip at run time"


def test_exposes_the_http_port(final: Stage) -> None:
    assert final.args("EXPOSE") == ["8080"]


def test_build_context_is_an_allow_list() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start by excluding everything"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert {"setup.cfg", "setup.py", "pyproject.toml", "keptn_gitops_service"} <= allowed
    assert not allowed & {".git", ".venv", "test", "chart", ".keptn-gitops-service"}
