"""The configuration file's schema as immutable, documented dataclasses.

Each field carries how it is written in the file — YAML key, documentation, constraints — as
``field(metadata=key(...))`` (see :mod:`.schema`): the loader (:mod:`.loader`) reads the file by it and
``scripts/gen-config-reference`` documents it. The loader is the only producer of these objects; everything else
reads them.
Strings that are templates (see :mod:`.templates`) stay unrendered here — rendering needs an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from keptn_gitops_service.config.schema import Check, Group, Presence, Tagged, When, key

API_VERSION = "gitops.keptn-contrib/v1"
KIND = "GitOpsConfig"
DEFAULT_WAIT_TIMEOUT = timedelta(minutes=10)
CHART_RULES_KEY = "config.rules"
"""Where the rules live in the Helm chart's values, for the message about a configuration without rules."""

# Types the reference shows for keys whose annotation says less.
GLOB = "glob"
PATH_MAP = "mapping of paths to [templates](#templates)"
NAME_MAP = "mapping of names to [templates](#templates)"

_ENV_NAME = Check("[A-Za-z_][A-Za-z0-9_]*", "must be an environment variable name")
FILE_DOC = (
    "The file to edit, relative to the repository root. The rendered path must stay inside the repository (no `..`, "
    "no absolute path, no symlink on the way, nothing under `.git`) and the file must exist (an `argocdSourceFile` is "
    "created when missing)."
)


@dataclass(frozen=True)
class NoAuth:
    """Anonymous access (public https repositories, ``file://``)."""


@dataclass(frozen=True)
class TokenAuth:
    """HTTPS with a token read from the environment variable ``token_env`` when git asks for it.

    The token is handed to git through an askpass helper, never in the URL or on a command line.
    """

    token_env: str = field(
        metadata=key(
            "tokenEnv",
            (
                "The *name* of the environment variable that holds the token (not the token). It is read each time "
                "git runs; when it is unset the deployment fails with `the git token environment variable … is not "
                "set`."
            ),
            checks=(_ENV_NAME,),
        )
    )
    username: str = field(
        default="x-access-token", metadata=key("username", "The HTTPS user name that goes with the token.")
    )


@dataclass(frozen=True)
class SshAuth:
    """SSH with a private key; host keys are checked strictly against ``known_hosts_file``."""

    private_key_file: str = field(
        metadata=key("privateKeyFile", "Path of the private key file (as the service sees it).")
    )
    known_hosts_file: str | None = field(
        default=None,
        metadata=key(
            "knownHostsFile",
            (
                "Host keys are checked strictly (`StrictHostKeyChecking=yes`); without this file ssh only has its "
                "default `known_hosts` files, which a container normally lacks."
            ),
        ),
    )


Auth = NoAuth | TokenAuth | SshAuth


@dataclass(frozen=True)
class Author:
    """The git identity of our commits (author and committer)."""

    name: str = field(
        default="keptn-gitops-service",
        metadata=key(
            "name", "Author and committer name.", required=True, requirement="**required** when `author` is given"
        ),
    )
    email: str = field(
        default="gitops@keptn.invalid",
        metadata=key(
            "email",
            "Must contain `@` and no `<` or `>`.",
            required=True,
            checks=(Check("[^<>]*@[^<>]*", "must be an e-mail address"),),
            requirement="**required** when `author` is given",
        ),
    )


@dataclass(frozen=True)
class CloneOptions:
    """How the working clone is made: shallow and/or partial, for big repositories.

    A shallow clone keeps every commit it fetches after the first clone. Recognising a redelivered trigger's commit
    (by its ``Keptn-Triggered-Id`` trailer, the fallback when the state store lost its record) looks at the newest
    2,000 fetched commits and every commit fetched or pushed since, never deeper. Other reads fetch more history on
    demand (``git fetch --deepen``): a rollback's search deepens until it finds a commit of its context
    (a rollback that finds none has read the whole history once), the wait's ancestry check until its answer is
    certain, and reading a commit's changes fetches its parent. Partial clones fetch missing file contents from the
    server when needed, with the same credentials."""

    depth: int | None = field(
        default=None,
        metadata=key(
            "depth",
            (
                "Clone only the newest ``depth`` commits of the branch (``git clone --depth``); unset: the whole "
                "history. A positive whole number. An existing complete clone stays complete; removing `depth` later "
                "fetches the rest of the history into the existing clone."
            ),
            checks=(Check("[1-9][0-9]{0,8}", "must be a positive whole number of commits"),),
        ),
    )
    filter: str | None = field(
        default=None,
        metadata=key(
            "filter",
            (
                "A partial clone (``git clone --filter``): ``blob:none`` fetches file contents only when an edit "
                "or a rollback reads them, ``tree:0`` trees too, ``blob:limit=<n>[k|m|g]`` only the big ones. The "
                "server must allow filters (GitHub, GitLab and Gitea do; plain git needs ``uploadpack.allowFilter``), "
                "else git clones in full. Only `blob:none`, `tree:0` and `blob:limit=<n>[k|m|g]` are accepted. "
                "Changing it makes a new clone."
            ),
            checks=(
                Check("blob:none|tree:0|blob:limit=[0-9]+[kmg]?", "must be blob:none, tree:0 or blob:limit=<n>[k|m|g]"),
            ),
        ),
    )


def _signing_format(value: str) -> When:
    return When("format", (value,), "required for signing format '{value}'", "not allowed for signing format '{value}'")


_SIGN_SSH, _SIGN_OPENPGP = _signing_format("ssh"), _signing_format("openpgp")


@dataclass(frozen=True)
class Signing:
    """Sign every commit (``git commit -S``) with an SSH key or an OpenPGP key.

    The key must not need a passphrase: git signs without a terminal.

    Check the signatures with ``git verify-commit`` (for SSH keys, ``gpg.ssh.allowedSignersFile`` lists the author's
    e-mail and public key), or let Flux verify OpenPGP signatures (``spec.verify`` of the GitRepository).
    """

    format: str = field(
        metadata=key(
            "format",
            "``ssh`` (``gpg.format=ssh``, signed by ``ssh-keygen -Y sign``) or ``openpgp`` (gpg).",
            checks=(Check("ssh|openpgp", "must be one of: ssh, openpgp"),),
        )
    )
    key_file: str | None = field(
        default=None,
        metadata=key(
            "keyFile",
            (
                "``ssh``: the private key file. ssh-keygen refuses a key file that others can read: mount it with "
                "mode `0400` or `0600`."
            ),
            required=True,
            when=_SIGN_SSH,
        ),
    )
    key_id: str | None = field(
        default=None,
        metadata=key(
            "keyId",
            "``openpgp``: the key id or fingerprint of a secret key in the GnuPG home directory.",
            required=True,
            when=_SIGN_OPENPGP,
        ),
    )
    gnupg_home: str | None = field(
        default=None,
        metadata=key(
            "gnupgHome",
            ("``openpgp``: the GnuPG home directory (``GNUPGHOME``) holding the key; gpg must be able to write to it."),
            required=True,
            when=_SIGN_OPENPGP,
        ),
    )


@dataclass(frozen=True)
class Forge:
    """The forge that hosts the repository (Gitea/Forgejo, GitHub, GitLab): where pull requests are opened for rules
    with ``mode: pullRequest``, with a token that may push branches and open, comment, merge and close pull requests.
    """

    token_env: str = field(
        metadata=key(
            "tokenEnv",
            (
                "The *name* of the environment variable holding the forge API token (from a Secret). Read at each "
                "call; unset, the deployment ends errored before anything is pushed."
            ),
            checks=(_ENV_NAME,),
        )
    )
    type: str | None = field(
        default=None,
        metadata=key(
            "type",
            (
                "`gitea` (also Forgejo), `github` or `gitlab`. Without it, inferred from the URL's host: "
                "`github.com` is `github`, `gitlab.com` is `gitlab`; any other host must say."
            ),
            checks=(Check("gitea|github|gitlab", "must be gitea, github or gitlab"),),
        ),
    )
    api_url: str | None = field(
        default=None,
        metadata=key(
            "apiURL",
            (
                "The API's base URL. Without it: `https://api.github.com` for github.com, else from an http(s) "
                "repository URL `<scheme>://<host>` plus `/api/v1` (Gitea), `/api/v3` (GitHub Enterprise) or "
                "`/api/v4` (GitLab); an SSH repository URL needs it."
            ),
            checks=(Check(r"https?://\S+", "must be an http:// or https:// URL"),),
        ),
    )
    path: str | None = field(
        default=None,
        metadata=key(
            "path",
            "The repository's path on the forge (`owner/name`; GitLab: `group/subgroup/project`). Without it, the "
            "URL's path without `.git`.",
            checks=(Check(r"[^/\s]+(/[^/\s]+)+", "must be owner/name"),),
        ),
    )
    webhook_secret_env: str | None = field(
        default=None,
        metadata=key(
            "webhookSecretEnv",
            (
                "The *name* of the environment variable holding the secret of the forge's webhook. With it, "
                "`POST /webhooks/forges/<repository name>` accepts the forge's pull-request events (Gitea: "
                "`X-Gitea-Signature`, GitHub: `X-Hub-Signature-256`, GitLab: `X-Gitlab-Token`), which wake the wait "
                "for a merge at once; without it the service polls."
            ),
            checks=(_ENV_NAME,),
        ),
    )


@dataclass(frozen=True)
class Repository:
    """A GitOps repository we write to."""

    name: str = field(metadata=key("name", "What `rules[].repository` refers to."))
    url: str = field(
        metadata=key(
            "url",
            (
                "`https://`, `http://`, `ssh://`, `git@host:path` or `file://`. Credentials in the URL "
                "(`https://user:token@host/…`) are refused: use `auth`."
            ),
            checks=(
                Check(
                    r"(https://|http://|ssh://|file://|git@[^:\s]+:)\S+",
                    "must be an https://, ssh://, git@host:path or file:// URL",
                ),
                Check(r"(?!https?://[^/]*@).*", "must not carry credentials; use auth.tokenEnv"),
            ),
        )
    )
    branch: str = field(default="main", metadata=key("branch", "The branch the service commits to and pushes."))
    auth: Auth = field(
        default_factory=NoAuth,
        metadata=key(
            "auth",
            "How git authenticates, see [Credentials](#credentials-repositoriesauth).",
            variants=Tagged("type", {"none": NoAuth, "token": TokenAuth, "ssh": SshAuth}, "auth type"),
        ),
    )
    author: Author = field(
        default_factory=Author, metadata=key("author", "The git identity of the commits, see below.")
    )
    clone: CloneOptions = field(
        default_factory=CloneOptions,
        metadata=key("clone", "Shallow and/or partial clones for big repositories, see below.", requirement="optional"),
    )
    signing: Signing | None = field(default=None, metadata=key("signing", "Sign every commit, see below."))
    forge: Forge | None = field(
        default=None,
        metadata=key("forge", "The forge that hosts it, for rules with `mode: pullRequest`; see below."),
    )


@dataclass(frozen=True)
class Match:
    """Which events a rule owns: shell-style globs (``*``, ``?``, ``[...]``) on project, stage and service."""

    project: str = field(
        default="*", metadata=key("project", "Matched against `data.project` (case-sensitive).", type=GLOB)
    )
    stage: str = field(default="*", metadata=key("stage", "Matched against `data.stage`.", type=GLOB))
    service: str = field(default="*", metadata=key("service", "Matched against `data.service`.", type=GLOB))


@dataclass(frozen=True)
class KustomizeImageUpdate:
    """Set ``newTag`` (and ``newName``/``digest`` when they change) of a kustomize ``images:`` entry."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    name: str = field(
        metadata=key(
            "kustomizeImage.name",
            (
                "The `images[].name` to update: the entry with exactly this name, else the one naming the same "
                "repository after Docker normalisation (`carts` = `docker.io/library/carts`). A missing entry is an "
                "error that lists the entries the file has, unless `create` is set."
            ),
            template=True,
        )
    )
    image: str = field(
        default="{image}",
        metadata=key(
            "kustomizeImage.image",
            (
                "The image to deploy. It must be a valid OCI reference with a tag or a digest; `newTag`/`digest` are "
                "set from it, `newName` only when it names another repository than the entry (which "
                "`allowRepositoryChange` must allow)."
            ),
            template=True,
        ),
    )
    create: bool = field(
        default=False,
        metadata=key(
            "kustomizeImage.create",
            (
                "Append the entry (and create ``images:``) when no entry has the name. Without it a missing entry is "
                "an error listing the entries: an entry that names no container deploys nothing."
            ),
        ),
    )
    allow_repository_change: bool = field(
        default=False,
        metadata=key(
            "allowRepositoryChange",
            (
                "Let the image move the entry to another repository (``newName``). Without it, an image whose "
                "repository differs from the one the entry deploys (``newName``, else ``name``) is refused. On the "
                "update, next to `file`. When allowed, the finished message says `image repository changed from <old> "
                "to <new>`. A `name` that is no image reference (a placeholder such as `${IMAGE}`) deploys no "
                "repository, so its first `newName` is no change. The same holds for the repository a `marker` of "
                "`policy` holds (full-reference and `:name` markers) and an `argocdSourceFile` entry `<old>=<new>` "
                "deploys."
            ),
            elsewhere="can change an image repository",
        ),
    )


@dataclass(frozen=True)
class YamlPathUpdate:
    """Set one scalar, addressed by a dotted path, to a rendered template."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    yaml_path: str = field(
        metadata=key(
            "yamlPath",
            (
                "Paths: `image.tag`; list items by `[0]` or `[name=carts]` (the one item whose `name` is `carts`); "
                'keys with dots or brackets quoted, `annotations["a.b/c"]`. The path is a template too '
                "(`containers[name={service}].image`), checked when it is rendered. In a file with several documents "
                "the path must exist in exactly one of them. Block scalars (`|`, `>`), aliases, anchored or "
                "explicitly tagged scalars are refused."
            ),
            template=True,
        )
    )
    value: str = field(
        metadata=key(
            "value",
            (
                "The new value (may render empty). It must render to a single line. Quoting style is kept; a plain "
                "scalar is double-quoted only when the new value would otherwise read as another type (`1.10`, "
                "`true`)."
            ),
            template=True,
            allow_empty=True,
        )
    )


TemplateMap = tuple[tuple[str, str], ...]
"""``(key template, value template)`` pairs in file order: values paths or parameter names to new values."""


@dataclass(frozen=True)
class MarkerUpdate:
    """Set the scalars tagged with a setter comment after them on their line. Flux's
    ``# {"$imagepolicy": "<ns>:<name>"}`` and its ``:tag``, ``:name`` and ``:digest`` forms get what Flux image
    automation would write for ``image`` (always as a string); our own ``# {"keptn": "<template>"}`` gets its
    template (with the fields of every [template](#templates)) rendered for the event, and the scalar keeps its
    type. The comments stay, so Flux can keep working on the same file."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    image: str = field(
        default="{image}",
        metadata=key(
            "marker.image",
            (
                "The image for the Flux markers: a valid OCI reference. A ``:tag`` marker needs a tag, a ``:digest`` "
                "marker a digest, a full-reference marker either."
            ),
            template=True,
        ),
    )
    policy: str | None = field(
        default=None,
        metadata=key(
            "marker.policy",
            (
                "``<namespace>:<name>`` of the ImagePolicy whose markers are set. Without it, a full-reference or "
                "``:name`` marker is set when its current value names the same repository as ``image`` "
                "(Docker-normalised), together with the ``:tag`` and ``:digest`` markers of its policy. A file with "
                "no marker to set is an error."
            ),
            template=True,
            checks=(Check(r"[^:\s]+:[^:\s]+", "must have the form '<namespace>:<name>'"),),
        ),
    )
    allow_repository_change: bool = field(
        default=False,
        metadata=key(
            "allowRepositoryChange",
            (
                "Let the image change the repository a full-reference or ``:name`` marker of ``policy`` holds. "
                "Without it, such a change is refused. On the update, next to `file`. Only markers selected by "
                "`policy` can hold another repository. When allowed, the finished message says `image repository "
                "changed from <old> to <new>`."
            ),
            elsewhere="can change an image repository",
        ),
    )


@dataclass(frozen=True)
class ContainerImageUpdate:
    """Point every container of plain Kubernetes manifests whose image names the same repository as the new image
    at the new image: the ``containers``, ``initContainers`` and ``ephemeralContainers`` of every Pod, Deployment,
    StatefulSet, DaemonSet, ReplicaSet, Job and CronJob in the file (all its documents). Old tags and digests do
    not matter; other documents, such as a ConfigMap that mentions the image, are left alone."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    image: str = field(
        default="{image}",
        metadata=key(
            "containerImage.image",
            (
                "The image to deploy: a valid OCI reference with a tag or a digest, written as it is spelled. "
                "Matching is after Docker normalisation (``carts`` = ``docker.io/library/carts``). A file in which no "
                "container matches is an error."
            ),
            template=True,
        ),
    )


_CHART_OR_VALUES = Group("needs chartVersion, values or both")
_PARAMETERS_OR_VALUES = Group("needs parameters, values or both")
_IMAGE_OR_PARAMETERS = Group("needs exactly one of: kustomizeImage, helmParameters", exactly=True)


@dataclass(frozen=True)
class HelmReleaseUpdate:
    """Set a Flux ``HelmRelease``'s chart version (``spec.chart.spec.version``) and/or scalars of its inline
    ``spec.values``."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    name: str | None = field(
        default=None,
        metadata=key(
            "helmRelease.name",
            "``metadata.name`` of the HelmRelease to change; needed only when the file holds several.",
            template=True,
        ),
    )
    chart_version: str | None = field(
        default=None,
        metadata=key(
            "helmRelease.chartVersion",
            (
                "The chart version, written as a string. Inserted after ``chart`` when the key is missing. A "
                "HelmRelease with ``spec.chartRef`` is refused: its version is set in the referenced OCIRepository or "
                "HelmChart."
            ),
            template=True,
            group=_CHART_OR_VALUES,
        ),
    )
    values: TemplateMap = field(
        default=(),
        metadata=key(
            "helmRelease.values",
            (
                "Paths below ``spec.values`` (the syntax of ``yamlPath``, templates too) mapped to new values. Each "
                "path must exist as a scalar: values are changed, never created, so a typo cannot add a value the "
                "chart ignores (values from ``spec.valuesFrom`` are not edited). A scalar keeps its type, like with "
                "``yamlPath``."
            ),
            type=PATH_MAP,
            group=_CHART_OR_VALUES,
        ),
    )


@dataclass(frozen=True)
class ArgoCDApplicationUpdate:
    """Set Helm parameters and ``helm.valuesObject`` scalars of an Argo CD ``Application`` kept in Git (app of
    apps), in its ``spec.source`` or one of its ``spec.sources``. The file must hold exactly one Application. Only
    what exists is changed: a missing parameter or value is an error."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    source: int | None = field(
        default=None,
        metadata=key(
            "argocdApplication.source",
            (
                "The index in ``spec.sources`` (from 0). Without it: the only source of ``spec.sources``, or the only "
                "one with ``helm``, or ``spec.source`` when there is no ``spec.sources`` (Argo CD ignores "
                "``spec.source`` once ``spec.sources`` is set)."
            ),
            checks=(Check("0|[1-9][0-9]*", "must be the index of a source in spec.sources: 0, 1, …"),),
        ),
    )
    parameters: TemplateMap = field(
        default=(),
        metadata=key(
            "argocdApplication.parameters",
            "Names of existing ``helm.parameters`` entries mapped to their new ``value``, written as a string.",
            type=NAME_MAP,
            group=_PARAMETERS_OR_VALUES,
        ),
    )
    values: TemplateMap = field(
        default=(),
        metadata=key(
            "argocdApplication.values",
            (
                "Paths below ``helm.valuesObject`` (the syntax of ``yamlPath``, templates too) mapped to new values. "
                "The scalar keeps its type; ``helm.values`` (a YAML string) is not edited."
            ),
            type=PATH_MAP,
            group=_PARAMETERS_OR_VALUES,
        ),
    )


@dataclass(frozen=True)
class ArgoCDSourceFileUpdate:
    """Write the parameter overrides of a ``.argocd-source-<app>.yaml`` file, as argocd-image-updater's ``git``
    write-back does; Argo CD's repo-server merges the file into the Application's source. Existing entries change
    in place and new ones are appended as new lines, in the layout argocd-image-updater writes; nothing is
    reordered, so comments survive. A missing file is created with the first update, as argocd-image-updater
    does."""

    file: str = field(metadata=key("file", FILE_DOC, template=True))
    kustomize_image: str | None = field(
        default=None,
        metadata=key(
            "argocdSourceFile.kustomizeImage",
            (
                "The image for ``kustomize.images`` (a valid OCI reference with a tag or a digest): the entry naming "
                "the same repository is replaced, keeping an ``<old>=`` prefix, else the image is appended (to a list "
                "with entries only with ``create``)."
            ),
            template=True,
            group=_IMAGE_OR_PARAMETERS,
        ),
    )
    helm_parameters: TemplateMap = field(
        default=(),
        metadata=key(
            "argocdSourceFile.helmParameters",
            (
                "Names of ``helm.parameters`` mapped to new values: an existing parameter's ``value`` changes in "
                "place, missing ones are appended (sorted by name), each with ``forcestring: true`` (to a list with "
                "entries only with ``create``)."
            ),
            type=NAME_MAP,
            group=_IMAGE_OR_PARAMETERS,
        ),
    )
    create: bool = field(
        default=False,
        metadata=key(
            "argocdSourceFile.create",
            (
                "Append an image or parameter to a list that has entries but none for it. Without it that is an error "
                "listing the entries (a missing file or section is still written)."
            ),
        ),
    )
    allow_repository_change: bool = field(
        default=False,
        metadata=key(
            "allowRepositoryChange",
            (
                "Let the image change the repository an ``<old>=<new>`` entry deploys. Without it, such a change is "
                "refused. On the update, next to `file`. When allowed, the finished message says `image repository "
                "changed from <old> to <new>`."
            ),
            elsewhere="can change an image repository",
        ),
    )


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

    name: str = field(metadata=key("name", "The Kustomization's name.", template=True))
    namespace: str = field(metadata=key("namespace", "The Kustomization's namespace.", template=True))


_HELM_RELEASE = When(
    "kind",
    ("HelmRelease",),
    "required with kind HelmRelease: the Kustomization that applies it",
    "only allowed with kind HelmRelease",
)


@dataclass(frozen=True)
class FluxWait:
    """Wait for a Flux object to apply our commit: a ``Kustomization``, or a ``HelmRelease`` together with the
    Kustomization that applies it.

    ``Kustomization``: done when its ``lastAppliedRevision`` is the commit or a descendant of it that still holds
    the values the commit set, with ``Ready=True`` at the current generation, not reconciling, and ``Healthy=True``
    where health checks are configured. Failed at once when it is ``Stalled``, or ``Ready=False`` (other than
    progressing, waiting for a dependency or suspended) for an attempted revision that is the commit or a newer one,
    or when the applied (or attempted) revision is a descendant in which a later commit changed those values again
    (``superseded``, e.g. a rollback committed meanwhile). The service asks Flux to reconcile now by annotating the
    Kustomization's GitRepository with ``reconcile.fluxcd.io/requestedAt``. ``HelmRelease``: first its
    ``kustomization`` must have applied the commit as above; then the service asks helm-controller to reconcile the
    HelmRelease (the same annotation) and judges only a status written after that request: done when
    ``observedGeneration`` is current, ``Ready=True``, the newest ``status.history`` entry is ``deployed`` with the
    values digest Flux last attempted (and ``chartVersion``, when given); failed at once on ``InstallFailed``,
    ``UpgradeFailed``, ``TestFailed``, a rollback or uninstall, ``ArtifactFailed``, ``InitFailed``, or ``Stalled``."""

    kind: str = field(
        metadata=key(
            "kind",
            "`Kustomization` or `HelmRelease`.",
            checks=(Check("Kustomization|HelmRelease", "must be Kustomization or HelmRelease"),),
        )
    )
    name: str = field(metadata=key("name", "The Kustomization's or HelmRelease's name.", template=True))
    namespace: str = field(metadata=key("namespace", "The Kustomization's or HelmRelease's namespace.", template=True))
    kustomization: KustomizationRef | None = field(
        default=None,
        metadata=key(
            "kustomization",
            (
                "The Kustomization that applies the HelmRelease from the repository, see below. Helm releases carry "
                "no Git revision: the Kustomization's `lastAppliedRevision` ties the release to the commit."
            ),
            required=True,
            when=_HELM_RELEASE,
        ),
    )
    chart_version: str | None = field(
        default=None,
        metadata=key(
            "chartVersion",
            (
                "The chart version the release must show (`status.history[0].chartVersion`; helm-controller's "
                "`+<digest>` suffix of OCI charts is accepted), e.g. `{values.chartVersion}`. An exact version, not a "
                "range. Without it, any chart version counts."
            ),
            template=True,
            when=_HELM_RELEASE,
        ),
    )
    may_appear: bool = field(
        default=False,
        metadata=key(
            "mayAppear",
            (
                "Before committing, the service reads the object(s) it will wait for (for a HelmRelease also its "
                "Kustomization), with the credentials the wait uses, and refuses to commit when one does not exist "
                "(`Flux <kind> <namespace>/<name> does not exist in the cluster …; nothing was committed`). `true`: "
                "the commit itself may create them (a new service's first deployment), so a missing object is waited "
                "for. A refused read (403) or an unusable kubeconfig still ends the deployment before the commit."
            ),
        ),
    )


_REST = When("api", ("rest",), "required with api: rest", "only allowed with api: rest")
_ONE_TOKEN = Group("api: rest needs exactly one of tokenEnv, tokenFile", exactly=True, when=_REST)


@dataclass(frozen=True)
class ArgoWait:
    """Wait for an Argo CD Application to sync our commit and report it ``Healthy``, through the Kubernetes API or
    through Argo CD's REST API.

    Done when no operation is pending, the last operation ``Succeeded`` and the Application was reconciled after it
    (health read right after a sync may be stale), ``status.sync.revision`` (or the ``sourceIndex`` entry of
    ``revisions``) is the commit or a descendant of it that still holds the values the commit set, the sync status
    is ``Synced`` and health is ``Healthy``. Failed at once when that revision is a descendant in which a later
    commit changed those values again (``superseded``; the service then never syncs the commit over it), when the
    operation for the commit ends ``Failed`` or ``Error``, when a ``SyncError``, ``ComparisonError`` or
    ``InvalidSpecError`` condition stands after the refresh, or when the Application stays ``Degraded`` on the
    commit longer than ``degradedGrace``. One Kubernetes watch (or one Argo CD application stream) per namespace
    serves every deployment."""

    application: str = field(metadata=key("application", "The Application's name.", template=True))
    namespace: str | None = field(
        default=None,
        metadata=key(
            "namespace",
            (
                "The Application's namespace. `kubernetes`: where the Application objects are (default `argocd`); "
                "`rest`: sent as `appNamespace` (Applications in any namespace); omit it for Argo CD's own namespace."
            ),
            template=True,
        ),
    )
    api: str = field(
        default="kubernetes",
        metadata=key(
            "api",
            (
                "`kubernetes`: watch the Application objects through the Kubernetes API of the cluster the service "
                "runs in (Argo CD runs there). `rest`: Argo CD's REST API at `server`, for a Keptn cluster that is "
                "not the Argo CD cluster."
            ),
            checks=(Check("kubernetes|rest", "must be kubernetes or rest"),),
        ),
    )
    server: str | None = field(
        default=None,
        metadata=key(
            "server",
            (
                "Argo CD's URL (`https://` or `http://`, no credentials in it), as the `argocd` CLI's `--server` with "
                "a scheme."
            ),
            required=True,
            when=_REST,
            checks=(Check(r"https?://[^\s/@]+(/\S*)?", "must be an https:// or http:// URL without credentials"),),
        ),
    )
    token_env: str | None = field(
        default=None,
        metadata=key(
            "tokenEnv",
            (
                "The *name* of the environment variable holding an Argo CD API token (`argocd account "
                "generate-token`), read at every request and sent only as `Authorization: Bearer`."
            ),
            checks=(_ENV_NAME,),
            when=_REST,
            group=_ONE_TOKEN,
        ),
    )
    token_file: str | None = field(
        default=None,
        metadata=key(
            "tokenFile",
            (
                "A file holding the token (e.g. a mounted Secret), read at every request, so a rotated token is used "
                "without a restart."
            ),
            when=_REST,
            group=_ONE_TOKEN,
        ),
    )
    ca_file: str | None = field(
        default=None,
        metadata=key(
            "caFile",
            "CA certificates (PEM) to verify `server`'s certificate with, instead of the system's.",
            when=_REST,
        ),
    )
    project: str | None = field(
        default=None,
        metadata=key(
            "project",
            (
                "The Application's Argo CD project. With it, Argo CD tells an Application that does not exist (404: "
                "waited for) from one the token may not read (403: the deployment fails at once); without it, both "
                "look like 403. Either way the Application must be readable before the commit: the check before the "
                "commit refuses one Argo CD does not show."
            ),
            template=True,
            when=_REST,
        ),
    )
    refresh: bool = field(
        default=True,
        metadata=key(
            "refresh",
            (
                "Ask Argo CD to refresh the Application right after the push (the `argocd.argoproj.io/refresh` "
                "annotation, or `GET …?refresh=normal`) instead of waiting for its 3-minute poll. Errors and "
                "`Degraded` are only believed once the refresh is done."
            ),
        ),
    )
    sync: bool = field(
        default=False,
        metadata=key(
            "sync",
            (
                "Also ask for a sync of the commit (for Applications without auto-sync), once, after the refresh, "
                "when no operation runs and the commit is not synced yet. The operation's `info` carries "
                "`shkeptncontext` and `triggeredid`, so Argo CD's UI links back to Keptn. When Argo CD's target is "
                "already a newer commit, that one is synced instead, never taking a change back."
            ),
        ),
    )
    source_index: int | None = field(
        default=None,
        metadata=key(
            "sourceIndex",
            (
                "For a multi-source Application: the index in `spec.sources` of the source fed by the repository "
                "(e.g. the `ref: values` source next to a Helm chart). Unset: every source must be at the commit or a "
                "descendant."
            ),
            checks=(Check("[0-9]+", "must be a whole number, 0 or more (0 is the first of spec.sources)"),),
        ),
    )
    degraded_grace: timedelta = field(
        default=timedelta(minutes=1),
        metadata=key(
            "degradedGrace",
            (
                "How long the Application may stay `Degraded` on the commit before the deployment fails (rolling "
                "updates pass through `Degraded` briefly)."
            ),
        ),
    )


_AT_LEAST = When("policy", ("atLeast",), "required with policy: atLeast", "only allowed with policy: atLeast")
_CONNECTION = Group("a cluster needs kubeconfig, context or inCluster: true")


@dataclass(frozen=True)
class Cluster:
    """One cluster of a multi-cluster wait: how to reach its Kubernetes API, and the Flux object or Argo CD
    Application that must apply the commit there. Each cluster (connection) has its own shared watches, one per kind
    and namespace, serving every deployment that waits on it."""

    name: str = field(
        metadata=key(
            "name",
            "The cluster's name in messages, progress lines and `deploymentURIs`; unique within the wait.",
            checks=(
                Check(
                    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
                    "must be lower-case letters, digits and '-' (at most 63), starting and ending with a letter or "
                    "digit",
                ),
            ),
        )
    )
    target: FluxWait | ArgoWait = field(
        metadata=key(
            None,
            variants=Presence({"flux": FluxWait, "argocd": ArgoWait}, "needs exactly one of: flux, argocd"),
        )
    )
    kubeconfig: str | None = field(
        default=None,
        metadata=key(
            "kubeconfig",
            (
                "A kubeconfig file for this cluster (e.g. a mounted Secret); its current context unless `context` "
                "names another."
            ),
            group=_CONNECTION,
        ),
    )
    context: str | None = field(
        default=None,
        metadata=key(
            "context",
            (
                "A context of `kubeconfig`, or without it of the kubeconfig the service uses (`KUBECONFIG`, "
                "`~/.kube/config`)."
            ),
            group=_CONNECTION,
        ),
    )
    in_cluster: bool | None = field(
        default=None,
        metadata=key(
            "inCluster",
            "`true`: the cluster the service runs in, through its service account (not with `kubeconfig`/`context`).",
            group=_CONNECTION,
        ),
    )
    deployment_uris: DeploymentURIs | None = field(
        default=None,
        metadata=key(
            "deploymentURIs",
            (
                "This cluster's URIs: added to the finished event's `deploymentURIsLocal`/`deploymentURIsPublic` "
                "when the cluster applied the commit."
            ),
        ),
    )


@dataclass(frozen=True)
class ClustersWait:
    """Wait for several clusters to apply the commit (a fleet repository, one Flux or Argo CD per cluster), each as
    `flux` or `argocd` above, all at once. ``policy`` says when the deployment passes: ``all`` clusters applied it
    (the first cluster that fails or times out fails the deployment at once), ``any`` one did (the first that applies
    it passes the deployment), or ``atLeast`` N did (it fails as soon as N can no longer be reached). The finished
    message gives each cluster's outcome (``applied``, ``failed``, ``timed out`` with the reason, or, when the policy
    decided before it finished, what it showed then). Before the commit every cluster's object is read, so an
    unreachable cluster, a 403 or a missing object ends the deployment naming the cluster, and nothing is committed.
    While waiting, a progress line per cluster."""

    targets: tuple[Cluster, ...] = field(
        metadata=key("targets", "The clusters; each `name` once.", empty="at least one cluster is needed")
    )
    policy: str = field(
        default="all",
        metadata=key(
            "policy",
            "`all`, `any` or `atLeast` (with `atLeast: N`): how many clusters must apply the commit.",
            checks=(Check("all|any|atLeast", "must be all, any or atLeast"),),
        ),
    )
    at_least: int | None = field(
        default=None,
        metadata=key(
            "atLeast",
            "How many clusters must apply the commit (1 to the number of `targets`).",
            when=_AT_LEAST,
            required=True,
            checks=(Check("[1-9][0-9]*", "must be a whole number, 1 or more"),),
        ),
    )


@dataclass(frozen=True)
class NoWait:
    """Finish right after the push.

    An empty mapping: ``none: {}``."""


WaitTarget = FluxWait | ArgoWait | ClustersWait | NoWait


@dataclass(frozen=True)
class Wait:
    """How to decide that the deployment is done, and for how long to try."""

    target: WaitTarget = field(
        default_factory=NoWait,
        metadata=key(
            None,
            variants=Presence(
                {"argocd": ArgoWait, "flux": FluxWait, "clusters": ClustersWait, "none": NoWait},
                "needs exactly one of: argocd, flux, clusters, none",
            ),
        ),
    )
    timeout: timedelta = field(
        default=DEFAULT_WAIT_TIMEOUT,
        metadata=key(
            "timeout",
            (
                "How long to wait for the GitOps controller. The shipyard property `timeout` of the `deployment` task "
                "(`data.deployment.timeout`, e.g. `properties: {timeout: 15m}`) overrides it per event."
            ),
        ),
    )


@dataclass(frozen=True)
class DeploymentURIs:
    """Templates for ``deployment.deploymentURIsLocal/Public`` of the finished event."""

    local: tuple[str, ...] = field(
        default=(),
        metadata=key(
            "local", "Rendered into `deployment.deploymentURIsLocal` (what Keptn's test tasks call).", template=True
        ),
    )
    public: tuple[str, ...] = field(
        default=(), metadata=key("public", "Rendered into `deployment.deploymentURIsPublic`.", template=True)
    )


@dataclass(frozen=True)
class PullRequestOptions:
    """How a rule with ``mode: pullRequest`` opens and waits for its pull requests.

    The change is committed on the deployment branch's tip and pushed to the branch
    ``keptn/<project>/<stage>/<service>/<hash of the triggered id>``; a pull request into the deployment branch is
    opened (or found, after a restart or a redelivery: never a second one). ``.started`` names it. Its merge — by
    people, or by the service with ``autoMerge`` through the forge's merge API — is waited for, then the merge commit is
    waited for exactly like a pushed one. Closed without merge: ``fail`` naming who closed it. A newer deployment of
    the same project/stage/service closes the older pull request with a comment linking the new one (the older
    trigger finishes ``fail``, superseded)."""

    labels: tuple[str, ...] = field(default=(), metadata=key("labels", "Labels to put on the pull request."))
    reviewers: tuple[str, ...] = field(default=(), metadata=key("reviewers", "User names asked for a review."))
    auto_merge: bool = field(
        default=False,
        metadata=key(
            "autoMerge",
            (
                "Merge as soon as the forge says the pull request is mergeable (required checks green, approvals "
                "present), through the forge's merge API — never around branch protection."
            ),
        ),
    )
    merge_method: str = field(
        default="merge",
        metadata=key(
            "mergeMethod",
            "With `autoMerge`: `merge`, `squash` or `rebase`.",
            checks=(Check("merge|squash|rebase", "must be merge, squash or rebase"),),
        ),
    )
    timeout: timedelta = field(
        default=timedelta(hours=24),
        metadata=key(
            "timeout",
            (
                "How long to wait for the merge; then the deployment finishes `fail`. The wait for the cluster "
                "(`wait.timeout`) starts after the merge."
            ),
        ),
    )
    close_on_timeout: bool = field(
        default=True,
        metadata=key("closeOnTimeout", "Close the pull request with a comment when the merge did not come in time."),
    )
    poll_interval: timedelta = field(
        default=timedelta(seconds=30),
        metadata=key(
            "pollInterval",
            (
                "The longest pause between two looks at the pull request (the first come sooner, growing from 2 s); a "
                "forge webhook wakes the wait at once."
            ),
        ),
    )


@dataclass(frozen=True)
class Rule:
    """Routes matching events to a repository, the edits to make, and the wait."""

    index: int = field(metadata=key(None))
    match: Match = field(metadata=key("match", "Which events the rule owns; `match: {}` owns every event."))
    repository: str = field(metadata=key("repository", "The `name` of one of `repositories[]`."))
    updates: tuple[Update, ...] = field(
        metadata=key(
            "updates",
            (
                "The edits to make. All of them go into one commit; when none of them changes anything (the version "
                "is already in place), no commit is made: the deployment waits until the branch's current commit is "
                "applied, and its message starts with `no commit made: …`. A trigger without "
                "`configurationChange.values` (a sequence re-run) edits nothing and is handled the same way. An "
                "update whose target the file does not have is an error naming what the file has."
            ),
            variants=Presence(
                {
                    "kustomizeImage": KustomizeImageUpdate,
                    "yamlPath": YamlPathUpdate,
                    "marker": MarkerUpdate,
                    "containerImage": ContainerImageUpdate,
                    "helmRelease": HelmReleaseUpdate,
                    "argocdApplication": ArgoCDApplicationUpdate,
                    "argocdSourceFile": ArgoCDSourceFileUpdate,
                },
                "needs exactly one edit strategy: kustomizeImage, yamlPath, marker, containerImage, helmRelease, "
                "argocdApplication or argocdSourceFile",
            ),
            empty="at least one update is needed",
        )
    )
    wait: Wait = field(
        default_factory=Wait,
        metadata=key(
            "wait", "When the deployment counts as done. Without `wait` the service finishes right after the push."
        ),
    )
    deployment_uris: DeploymentURIs | None = field(
        default=None,
        metadata=key(
            "deploymentURIs",
            "Without it, the `deploymentURIsLocal`/`deploymentURIsPublic` of the triggered event are passed on.",
        ),
    )
    mode: str = field(
        default="direct",
        metadata=key(
            "mode",
            (
                "`direct`: commit to the repository's branch and push. `pullRequest`: push a branch, open a pull "
                "request into the repository's branch and wait for its merge (the repository needs a `forge`). The "
                "shipyard property `mode` of the `deployment` task (`data.deployment.mode`) overrides it per stage."
            ),
            checks=(Check("direct|pullRequest", "must be direct or pullRequest"),),
        ),
    )
    pull_request: PullRequestOptions = field(
        default_factory=PullRequestOptions,
        metadata=key("pullRequest", "How pull requests are opened and waited for, see below."),
    )


@dataclass(frozen=True)
class GitOpsConfig:
    """The whole configuration file.

    One YAML document. Strict: unknown keys, wrong types, unknown template fields and references to undefined
    repositories are errors, all reported at once as ``file:line:column: key: message``."""

    repositories: tuple[Repository, ...] = field(
        metadata=key("repositories", "The GitOps repositories the service writes to. Each `name` may be defined once.")
    )
    rules: tuple[Rule, ...] = field(
        metadata=key(
            "rules",
            (
                "Tried in order: the first rule whose `match` fits the event's project, stage and service owns the "
                "event. An event no rule matches is not answered (another deployment service may own it)."
            ),
            required=False,
            empty=(
                "at least one rule is needed: without rules the service owns no deployment "
                f"(with the Helm chart, set the values key {CHART_RULES_KEY})"
            ),
        )
    )
    source: str = field(default="<memory>", metadata=key(None))

    def repository(self, name: str) -> Repository:
        """The repository called ``name`` (the loader guarantees rules only name existing ones)."""
        for repo in self.repositories:
            if repo.name == name:
                return repo
        raise KeyError(name)
