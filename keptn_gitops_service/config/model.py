"""The configuration file's schema as immutable, documented dataclasses.

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
class CloneOptions:
    """How the working clone is made: shallow and/or partial, for big repositories."""

    depth: int | None = None
    """Clone only the newest ``depth`` commits of the branch (``git clone --depth``); unset: the whole history."""
    filter: str | None = None
    """A partial clone (``git clone --filter``): ``blob:none`` fetches file contents only when an edit or a
    rollback reads them, ``tree:0`` trees too, ``blob:limit=<n>[k|m|g]`` only the big ones. The server must allow
    filters (GitHub, GitLab and Gitea do; plain git needs ``uploadpack.allowFilter``), else git clones in full."""


@dataclass(frozen=True)
class Signing:
    """Sign every commit (``git commit -S``) with an SSH key or an OpenPGP key.

    The key must not need a passphrase: git signs without a terminal.
    """

    format: str
    """``ssh`` (``gpg.format=ssh``, signed by ``ssh-keygen -Y sign``) or ``openpgp`` (gpg)."""
    key_file: str | None = None
    """``ssh``: the private key file."""
    key_id: str | None = None
    """``openpgp``: the key id or fingerprint of a secret key in the GnuPG home directory."""
    gnupg_home: str | None = None
    """``openpgp``: the GnuPG home directory (``GNUPGHOME``) holding the key; gpg must be able to write to it."""


@dataclass(frozen=True)
class Repository:
    """A GitOps repository we write to."""

    name: str
    url: str
    branch: str = "main"
    auth: Auth = field(default_factory=NoAuth)
    author: Author = field(default_factory=Author)
    clone: CloneOptions = field(default_factory=CloneOptions)
    signing: Signing | None = None


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
    create: bool = False
    """Append the entry (and create ``images:``) when no entry has the name. Without it a missing entry is an error
    listing the entries: an entry that names no container deploys nothing."""
    allow_repository_change: bool = False
    """Let the image move the entry to another repository (``newName``). Without it, an image whose repository
    differs from the one the entry deploys (``newName``, else ``name``) is refused."""


@dataclass(frozen=True)
class YamlPathUpdate:
    """Set one scalar, addressed by a dotted path, to a rendered template."""

    file: str
    yaml_path: str
    value: str


TemplateMap = tuple[tuple[str, str], ...]
"""``(key template, value template)`` pairs in file order: values paths or parameter names to new values."""


@dataclass(frozen=True)
class MarkerUpdate:
    """Set the scalars tagged with a setter comment after them on their line. Flux's
    ``# {"$imagepolicy": "<ns>:<name>"}`` and its ``:tag``, ``:name`` and ``:digest`` forms get what Flux image
    automation would write for ``image`` (always as a string); our own ``# {"keptn": "<template>"}`` gets its
    template (with the fields of every [template](#templates)) rendered for the event, and the scalar keeps its
    type. The comments stay, so Flux can keep working on the same file."""

    file: str
    image: str = "{image}"
    """The image for the Flux markers: a valid OCI reference. A ``:tag`` marker needs a tag, a ``:digest`` marker
    a digest, a full-reference marker either."""
    policy: str | None = None
    """``<namespace>:<name>`` of the ImagePolicy whose markers are set. Without it, a full-reference or ``:name``
    marker is set when its current value names the same repository as ``image`` (Docker-normalised), together
    with the ``:tag`` and ``:digest`` markers of its policy. A file with no marker to set is an error."""
    allow_repository_change: bool = False
    """Let the image change the repository a full-reference or ``:name`` marker of ``policy`` holds. Without it,
    such a change is refused."""


@dataclass(frozen=True)
class ContainerImageUpdate:
    """Point every container of plain Kubernetes manifests whose image names the same repository as the new image
    at the new image: the ``containers``, ``initContainers`` and ``ephemeralContainers`` of every Pod, Deployment,
    StatefulSet, DaemonSet, ReplicaSet, Job and CronJob in the file (all its documents). Old tags and digests do
    not matter; other documents, such as a ConfigMap that mentions the image, are left alone."""

    file: str
    image: str = "{image}"
    """The image to deploy: a valid OCI reference with a tag or a digest, written as it is spelled. Matching is
    after Docker normalisation (``carts`` = ``docker.io/library/carts``). A file in which no container matches is
    an error."""


@dataclass(frozen=True)
class HelmReleaseUpdate:
    """Set a Flux ``HelmRelease``'s chart version (``spec.chart.spec.version``) and/or scalars of its inline
    ``spec.values``."""

    file: str
    name: str | None = None
    """``metadata.name`` of the HelmRelease to change; needed only when the file holds several."""
    chart_version: str | None = None
    """The chart version, written as a string. Inserted after ``chart`` when the key is missing. A HelmRelease
    with ``spec.chartRef`` is refused: its version is set in the referenced OCIRepository or HelmChart."""
    values: TemplateMap = ()
    """Paths below ``spec.values`` (the syntax of ``yamlPath``, templates too) mapped to new values. Each path must
    exist as a scalar: values are changed, never created, so a typo cannot add a value the chart ignores
    (values from ``spec.valuesFrom`` are not edited). A scalar keeps its type, like with ``yamlPath``."""


@dataclass(frozen=True)
class ArgoCDApplicationUpdate:
    """Set Helm parameters and ``helm.valuesObject`` scalars of an Argo CD ``Application`` kept in Git (app of
    apps), in its ``spec.source`` or one of its ``spec.sources``. The file must hold exactly one Application. Only
    what exists is changed: a missing parameter or value is an error."""

    file: str
    source: int | None = None
    """The index in ``spec.sources`` (from 0). Without it: the only source of ``spec.sources``, or the only one
    with ``helm``, or ``spec.source`` when there is no ``spec.sources`` (Argo CD ignores ``spec.source`` once
    ``spec.sources`` is set)."""
    parameters: TemplateMap = ()
    """Names of existing ``helm.parameters`` entries mapped to their new ``value``, written as a string."""
    values: TemplateMap = ()
    """Paths below ``helm.valuesObject`` (the syntax of ``yamlPath``, templates too) mapped to new values. The
    scalar keeps its type; ``helm.values`` (a YAML string) is not edited."""


@dataclass(frozen=True)
class ArgoCDSourceFileUpdate:
    """Write the parameter overrides of a ``.argocd-source-<app>.yaml`` file, as argocd-image-updater's ``git``
    write-back does; Argo CD's repo-server merges the file into the Application's source. Existing entries change
    in place and new ones are appended as new lines, in the layout argocd-image-updater writes; nothing is
    reordered, so comments survive. A missing file is created with the first update, as argocd-image-updater
    does."""

    file: str
    kustomize_image: str | None = None
    """The image for ``kustomize.images`` (a valid OCI reference with a tag or a digest): the entry naming the same
    repository is replaced, keeping an ``<old>=`` prefix, else the image is appended (to a list with entries only
    with ``create``)."""
    helm_parameters: TemplateMap = ()
    """Names of ``helm.parameters`` mapped to new values: an existing parameter's ``value`` changes in place,
    missing ones are appended (sorted by name), each with ``forcestring: true`` (to a list with entries only with
    ``create``)."""
    create: bool = False
    """Append an image or parameter to a list that has entries but none for it. Without it that is an error listing
    the entries (a missing file or section is still written)."""
    allow_repository_change: bool = False
    """Let the image change the repository an ``<old>=<new>`` entry deploys. Without it, such a change is
    refused."""


Update = (
    KustomizeImageUpdate
    | YamlPathUpdate
    | MarkerUpdate
    | ContainerImageUpdate
    | HelmReleaseUpdate
    | ArgoCDApplicationUpdate
    | ArgoCDSourceFileUpdate
)


@dataclass(frozen=True)
class KustomizationRef:
    """The Flux Kustomization that applies the HelmRelease from the repository: it ties the release to the commit."""

    name: str
    namespace: str


@dataclass(frozen=True)
class FluxWait:
    """Wait for a Flux object to apply our commit: a ``Kustomization``, or a ``HelmRelease`` together with the
    Kustomization that applies it."""

    kind: str
    name: str
    namespace: str
    kustomization: KustomizationRef | None = None
    chart_version: str | None = None
    may_appear: bool = False  # the objects may not exist before the commit (documented in gen-config-reference)


@dataclass(frozen=True)
class ArgoWait:
    """Wait for an Argo CD Application to sync our commit and report it ``Healthy``, through the Kubernetes API or
    through Argo CD's REST API."""

    application: str
    namespace: str | None = None
    api: str = "kubernetes"
    server: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    project: str | None = None
    refresh: bool = True
    sync: bool = False
    source_index: int | None = None
    degraded_grace: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class NoWait:
    """Finish right after the push."""


WaitTarget = FluxWait | ArgoWait | NoWait


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
