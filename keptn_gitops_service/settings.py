"""Process settings from the environment, with Keptn/go-utils names and defaults."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keptn_gitops_service import SERVICE_NAME
from keptn_gitops_service.errors import ConfigError

DEFAULT_TOPICS = (
    "sh.keptn.event.deployment.triggered",
    "sh.keptn.event.rollback.triggered",
    "sh.keptn.event.release.triggered",
)
DEFAULT_ARGOCD_WEBHOOK_HEADER = "X-Webhook-Secret"


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    nats_url: str = "nats://keptn-nats:4222"
    """``NATS_URL``: Keptn's in-cluster NATS."""
    topics: tuple[str, ...] = DEFAULT_TOPICS
    """``PUBSUB_TOPIC``: comma-separated subjects (wildcards allowed); by default the deployment, rollback and
    release triggers, like helm-service. Surrounding spaces and empty entries are ignored; an empty value means the
    default."""
    queue_group: str = SERVICE_NAME
    """``PUBSUB_GROUP``: the NATS queue group, so replicas share the work."""
    config_path: Path | None = None
    """``KEPTN_GITOPS_CONFIG`` (or ``run --config``). ``deploy --config PATH`` too; the option takes precedence over
    the variable."""
    state_dir: Path = field(default_factory=lambda: Path(".keptn-gitops-service"))
    """``KEPTN_GITOPS_STATE_DIR``: working clones and the state store. It holds ``clones/`` (one working clone per
    repository), ``git-home/`` and ``state.sqlite3``. A relative path is relative to the working directory; the
    container image sets ``/var/lib/keptn-gitops-service``, where the chart mounts its volume."""
    kubeconfig: str | None = None
    """``KUBECONFIG``; unset means ``~/.kube/config`` or the in-cluster service account."""
    transport: str = "nats"
    """``KEPTN_TRANSPORT``: ``nats`` (directly) or ``distributor`` (a Keptn distributor sidecar POSTs events to
    ``HTTP_PORT`` at ``/`` and takes replies at ``DISTRIBUTOR_EVENT_URL``). Any other value stops the service at
    start."""
    distributor_event_url: str = "http://localhost:8081/event"
    """``DISTRIBUTOR_EVENT_URL``: the sidecar's event forwarding endpoint."""
    log_level: str = "INFO"
    """``LOG_LEVEL``. Case-insensitive. ``deploy`` logs at ``WARNING`` (console format) unless ``LOG_LEVEL`` is
    set."""
    log_format: str = "json"
    """``LOG_FORMAT``: ``json`` (one object per line) or ``console``."""
    keptn_api_endpoint: str = ""
    """``KEPTN_API_ENDPOINT``: with ``KEPTN_API_TOKEN``, register with the Keptn control plane (uniform
    registration, heartbeat, subscriptions edited in Bridge, ``/v1/log``); e.g. ``http://api-gateway-nginx.keptn/api``.
    Only in ``nats`` transport mode (in distributor mode the distributor registers)."""
    keptn_api_token: str = ""
    """``KEPTN_API_TOKEN``: the Keptn API token (sent as ``x-token``; never logged)."""
    keptn_bridge_url: str = ""
    """``KEPTN_BRIDGE_URL``: Keptn's Bridge (e.g. ``https://keptn.example.com/bridge``); a pull request's description
    then links its sequence there."""
    k8s_namespace: str = "keptn"
    """``K8S_NAMESPACE``: reported at registration."""
    k8s_pod_name: str = ""
    """``K8S_POD_NAME``: reported at registration, and the name this replica holds its state-store leases under
    (``<hostname>-<pid>`` when unset)."""
    k8s_deployment_name: str = ""
    """``K8S_DEPLOYMENT_NAME``: reported at registration as the Deployment that runs the service (go-utils' sdk
    reads the same variable); the service's name when unset."""
    k8s_node_name: str = "keptn-node"
    """``K8S_NODE_NAME``: reported at registration (the control plane derives the integration id from it)."""
    state_store: str = "sqlite"
    """``KEPTN_GITOPS_STATE_STORE``: where in-flight deployments are recorded — ``sqlite`` (a file in
    ``KEPTN_GITOPS_STATE_DIR``; one replica) or ``jetstream`` (a key-value bucket on Keptn's NATS, shared by
    replicas: each deployment is leased by the replica that received it and taken over when that replica dies)."""
    state_lease_seconds: float = 30.0
    """``KEPTN_GITOPS_STATE_LEASE``: seconds a replica's claim on a deployment lasts without renewal (renewed every
    third); after a crash its deployments are resumed by another replica within about 1.5 leases. Also the ack
    wait of the durable JetStream consumers: a trigger a killed replica had fetched but not yet recorded is
    delivered to another one after a lease."""
    git_timeout_seconds: float = 300.0
    """``KEPTN_GITOPS_GIT_TIMEOUT``: seconds any one git command may take before it is killed and the deployment
    ends errored/fail (a remote that accepts connections but never answers)."""
    max_file_bytes: int = 4 * 1024 * 1024
    """``KEPTN_GITOPS_MAX_FILE_BYTES``: the largest file (in bytes) an edit reads from the GitOps repository; a
    larger one fails its deployment with a message naming the file, before it is read."""
    yaml_max_documents: int = 1000
    """``KEPTN_GITOPS_YAML_MAX_DOCUMENTS``: the most YAML documents (``---``) one file may hold."""
    yaml_max_nodes: int = 100_000
    """``KEPTN_GITOPS_YAML_MAX_NODES``: the most nodes YAML aliases may bring into one document when expanded
    (counted on the node graph before anything walks it: a "billion laughs" file is refused at once)."""
    yaml_max_depth: int = 100
    """``KEPTN_GITOPS_YAML_MAX_DEPTH``: the deepest nesting of mappings and sequences in a file, aliases
    followed."""
    edit_timeout_seconds: float = 30.0
    """``KEPTN_GITOPS_EDIT_TIMEOUT``: seconds the YAML work of one change (reading, parsing, editing and
    verifying its files; a rollback's diff of the history) may take in its worker thread before the change
    ends errored/fail naming the file."""
    progress_interval_seconds: float = 30.0
    """``KEPTN_GITOPS_PROGRESS_INTERVAL``: seconds between the info lines a waiting deployment logs, each saying
    what it waits for (the Flux or Argo CD object, our commit) and what it last observed (revision, Ready/Healthy
    and their reasons)."""
    http_port: int | None = 8080
    """``HTTP_PORT``: the probes (``/healthz``, ``/readyz``) and, in distributor mode, the event receiver; ``0``
    picks a free port. (``None``, only when the service is embedded in a program, runs no HTTP server.) From the
    environment: a port number (0 to 65535); the probes cannot be switched off this way."""
    flux_webhook_secret: str | None = field(default=None, repr=False)
    """``FLUX_WEBHOOK_SECRET``: the ``token`` of the Flux notification-controller ``Provider`` of type
    ``generic-hmac`` that POSTs events to ``/webhooks/flux`` on ``HTTP_PORT`` (or ``FLUX_WEBHOOK_SECRET_FILE``:
    a file holding it, e.g. a mounted Secret). Surrounding whitespace is ignored, as Flux does. Unset: the
    endpoint is not served. Events are hints that wake waiting deployments; the Kubernetes status decides."""
    argocd_webhook_secret: str | None = field(default=None, repr=False)
    """``ARGOCD_WEBHOOK_SECRET``: the shared secret an Argo CD notifications webhook sends in the
    ``ARGOCD_WEBHOOK_HEADER`` header to ``/webhooks/argocd`` (or ``ARGOCD_WEBHOOK_SECRET_FILE``: a file holding
    it). Unset: the endpoint is not served."""
    argocd_webhook_header: str = DEFAULT_ARGOCD_WEBHOOK_HEADER
    """``ARGOCD_WEBHOOK_HEADER``: the header that carries ``ARGOCD_WEBHOOK_SECRET`` (with ``Authorization``,
    ``Bearer <secret>`` is accepted too)."""

    cdevents_sink: str = ""
    """``KEPTN_GITOPS_CDEVENTS_SINK``: an ``http://`` or ``https://`` URL that receives a CDEvent (CloudEvents 1.0,
    HTTP binding) for every deployment that passed and every rollback that was applied: ``service.deployed``,
    ``service.upgraded`` or ``service.rolledback`` (see docs/cdevents.md). Unset: no HTTP delivery."""
    cdevents_mode: str = "binary"
    """``KEPTN_GITOPS_CDEVENTS_MODE``: the CloudEvents HTTP content mode, ``binary`` (the context in ``ce-``
    headers, the CDEvent as the body) or ``structured`` (one ``application/cloudevents+json`` document)."""
    cdevents_subject: str = ""
    """``KEPTN_GITOPS_CDEVENTS_SUBJECT``: a NATS subject on ``NATS_URL`` that receives the same CDEvents as
    structured CloudEvents (with ``KEPTN_GITOPS_CDEVENTS_SINK``, both receive every event). Unset: none."""
    cdevents_source: str = "/keptn-gitops-service"
    """``KEPTN_GITOPS_CDEVENTS_SOURCE``: the ``source`` of the CDEvents (a URI reference) that names this
    installation."""

    @property
    def replica_id(self) -> str:
        """The name this replica holds its state-store leases under: the pod name, else ``<hostname>-<pid>``."""
        return self.k8s_pod_name or f"{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        topics = tuple(t.strip() for t in env.get("PUBSUB_TOPIC", "").split(",") if t.strip()) or DEFAULT_TOPICS
        transport = env.get("KEPTN_TRANSPORT", "nats").strip().lower() or "nats"
        if transport not in ("nats", "distributor"):
            raise ConfigError([f"KEPTN_TRANSPORT={transport!r}: must be 'nats' or 'distributor'"])
        if transport == "distributor" and env.get("HTTP_PORT", "8080") == "":
            raise ConfigError(["KEPTN_TRANSPORT=distributor needs HTTP_PORT for the distributor's POSTs"])
        config = env.get("KEPTN_GITOPS_CONFIG")
        state_store = (env.get("KEPTN_GITOPS_STATE_STORE") or "sqlite").strip().lower()
        if state_store not in ("sqlite", "jetstream"):
            raise ConfigError([f"KEPTN_GITOPS_STATE_STORE={state_store!r}: must be 'sqlite' or 'jetstream'"])
        return cls(
            nats_url=env.get("NATS_URL") or cls.nats_url,
            topics=topics,
            queue_group=env.get("PUBSUB_GROUP") or SERVICE_NAME,
            config_path=Path(config) if config else None,
            state_dir=Path(env.get("KEPTN_GITOPS_STATE_DIR") or ".keptn-gitops-service"),
            kubeconfig=env.get("KUBECONFIG") or None,
            transport=transport,
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            log_format=(env.get("LOG_FORMAT") or "json").lower(),
            http_port=_port(env.get("HTTP_PORT", "8080")),
            distributor_event_url=env.get("DISTRIBUTOR_EVENT_URL") or cls.distributor_event_url,
            keptn_api_endpoint=env.get("KEPTN_API_ENDPOINT", "").strip(),
            keptn_api_token=env.get("KEPTN_API_TOKEN", ""),
            k8s_namespace=env.get("K8S_NAMESPACE") or cls.k8s_namespace,
            k8s_pod_name=env.get("K8S_POD_NAME", ""),
            state_store=state_store,
            git_timeout_seconds=_seconds(env.get("KEPTN_GITOPS_GIT_TIMEOUT", "300"), "KEPTN_GITOPS_GIT_TIMEOUT"),
            state_lease_seconds=_seconds(env.get("KEPTN_GITOPS_STATE_LEASE", "30"), "KEPTN_GITOPS_STATE_LEASE"),
            max_file_bytes=_count(env, "KEPTN_GITOPS_MAX_FILE_BYTES", cls.max_file_bytes, 1024, 1 << 30),
            yaml_max_documents=_count(env, "KEPTN_GITOPS_YAML_MAX_DOCUMENTS", cls.yaml_max_documents, 1, 1_000_000),
            yaml_max_nodes=_count(env, "KEPTN_GITOPS_YAML_MAX_NODES", cls.yaml_max_nodes, 0, 100_000_000),
            yaml_max_depth=_count(env, "KEPTN_GITOPS_YAML_MAX_DEPTH", cls.yaml_max_depth, 2, 250),
            edit_timeout_seconds=_seconds(env.get("KEPTN_GITOPS_EDIT_TIMEOUT", "30"), "KEPTN_GITOPS_EDIT_TIMEOUT"),
            progress_interval_seconds=_seconds(
                env.get("KEPTN_GITOPS_PROGRESS_INTERVAL", "30"), "KEPTN_GITOPS_PROGRESS_INTERVAL"
            ),
            k8s_node_name=env.get("K8S_NODE_NAME") or cls.k8s_node_name,
            k8s_deployment_name=env.get("K8S_DEPLOYMENT_NAME", ""),
            keptn_bridge_url=env.get("KEPTN_BRIDGE_URL", "").strip(),
            flux_webhook_secret=_secret(env, "FLUX_WEBHOOK_SECRET"),
            argocd_webhook_secret=_secret(env, "ARGOCD_WEBHOOK_SECRET"),
            argocd_webhook_header=_header(env.get("ARGOCD_WEBHOOK_HEADER") or DEFAULT_ARGOCD_WEBHOOK_HEADER),
            **_cdevents(env),
        )


def _cdevents(env: Mapping[str, str]) -> dict[str, str]:
    """The ``KEPTN_GITOPS_CDEVENTS_*`` settings, checked (messages never show the sink URL: it may hold a token)."""
    sink = env.get("KEPTN_GITOPS_CDEVENTS_SINK", "").strip()
    if sink and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", sink):
        raise ConfigError(["KEPTN_GITOPS_CDEVENTS_SINK: must be an http:// or https:// URL"])
    mode = (env.get("KEPTN_GITOPS_CDEVENTS_MODE") or "binary").strip().lower()
    if mode not in ("binary", "structured"):
        raise ConfigError([f"KEPTN_GITOPS_CDEVENTS_MODE={mode!r}: must be 'binary' or 'structured'"])
    subject = env.get("KEPTN_GITOPS_CDEVENTS_SUBJECT", "").strip()
    if subject and not re.fullmatch(r"[^\s.*>]+(\.[^\s.*>]+)*", subject):
        raise ConfigError(
            [f"KEPTN_GITOPS_CDEVENTS_SUBJECT={subject!r}: must be a NATS subject without wildcards or spaces"]
        )
    source = env.get("KEPTN_GITOPS_CDEVENTS_SOURCE", "").strip() or Settings.cdevents_source
    if not re.fullmatch(r"[!#$%&'()*+,\-./0-9:;=?@A-Z\[\]_a-z~]+", source):
        raise ConfigError([f"KEPTN_GITOPS_CDEVENTS_SOURCE={source!r}: must be a URI reference (no spaces)"])
    return {"cdevents_sink": sink, "cdevents_mode": mode, "cdevents_subject": subject, "cdevents_source": source}


def _seconds(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= 3600.0:
        raise ConfigError([f"{name}={text!r}: must be a number of seconds between 1 and 3600"])
    return value


def _count(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError([f"{name}={text!r}: must be a whole number between {low} and {high}"])
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError([f"HTTP_PORT={text!r}: must be a port number"])
    return int(text)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the contents of the file named by ``NAME_FILE``, stripped; ``None`` when neither is set.

    Messages name the variable and the file, never the value."""
    value, path = env.get(name, "").strip(), env.get(f"{name}_FILE", "").strip()
    if value and path:
        raise ConfigError([f"{name} and {name}_FILE are both set: set one of them"])
    if not path:
        return value or None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}_FILE={path!r}: cannot read the file: {exc.__class__.__name__}"]) from None
    if not text:
        raise ConfigError([f"{name}_FILE={path!r}: the file is empty"])
    return text


def _header(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise ConfigError([f"ARGOCD_WEBHOOK_HEADER={name!r}: must be an HTTP header name (letters, digits, '-')"])
    return name
