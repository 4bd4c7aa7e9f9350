"""The configuration file's schema as immutable, documented dataclasses (PRODUCT.md §2.3).

The loader (:mod:`.loader`) is the only producer of these objects; everything else reads them.
Strings that are templates (see :mod:`.templates`) stay unrendered here — rendering needs an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

API_VERSION = "gitops.keptn-contrib/v1"
KIND = "GitOpsConfig"
DEFAULT_WAIT_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class NoAuth:
    """Anonymous access (public https repositories, ``file://``)."""


@dataclass(frozen=True)
class TokenAuth:
    """HTTPS with a token read from the environment variable ``token_env`` when git asks for it.

    The token is handed to git through an askpass helper, never in the URL or on a command line.
    """

    token_env: str
    username: str = "x-access-token"


@dataclass(frozen=True)
class SshAuth:
    """SSH with a private key; host keys are checked strictly against ``known_hosts_file``."""

    private_key_file: str
    known_hosts_file: str | None = None


Auth = NoAuth | TokenAuth | SshAuth


@dataclass(frozen=True)
class Author:
    """The git identity of our commits (author and committer)."""

    name: str = "keptn-gitops-service"
    email: str = "gitops@keptn.invalid"


@dataclass(frozen=True)
class Repository:
    """A GitOps repository we write to."""

    name: str
    url: str
    branch: str = "main"
    auth: Auth = field(default_factory=NoAuth)
    author: Author = field(default_factory=Author)


@dataclass(frozen=True)
class Match:
    """Which events a rule owns: shell-style globs (``*``, ``?``, ``[...]``) on project, stage and service."""

    project: str = "*"
    stage: str = "*"
    service: str = "*"


@dataclass(frozen=True)
class KustomizeImageUpdate:
    """Set ``newTag`` (and ``newName``/``digest`` when they change) of a kustomize ``images:`` entry."""

    file: str
    name: str
    image: str = "{image}"


@dataclass(frozen=True)
class YamlPathUpdate:
    """Set one scalar, addressed by a dotted path, to a rendered template."""

    file: str
    yaml_path: str
    value: str


Update = KustomizeImageUpdate | YamlPathUpdate


@dataclass(frozen=True)
class FluxWait:
    """Wait for a Flux object to apply our commit (``Kustomization`` in this version)."""

    kind: str
    name: str
    namespace: str


@dataclass(frozen=True)
class NoWait:
    """Finish right after the push."""


WaitTarget = FluxWait | NoWait


@dataclass(frozen=True)
class Wait:
    """How to decide that the deployment is done, and for how long to try."""

    target: WaitTarget = field(default_factory=NoWait)
    timeout: timedelta = DEFAULT_WAIT_TIMEOUT


@dataclass(frozen=True)
class DeploymentURIs:
    """Templates for ``deployment.deploymentURIsLocal/Public`` of the finished event."""

    local: tuple[str, ...] = ()
    public: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Routes matching events to a repository, the edits to make, and the wait."""

    index: int
    match: Match
    repository: str
    updates: tuple[Update, ...]
    wait: Wait = field(default_factory=Wait)
    deployment_uris: DeploymentURIs | None = None


@dataclass(frozen=True)
class GitOpsConfig:
    """The whole configuration file."""

    repositories: tuple[Repository, ...]
    rules: tuple[Rule, ...]
    source: str = "<memory>"

    def repository(self, name: str) -> Repository:
        """The repository called ``name`` (the loader guarantees rules only name existing ones)."""
        for repo in self.repositories:
            if repo.name == name:
                return repo
        raise KeyError(name)
