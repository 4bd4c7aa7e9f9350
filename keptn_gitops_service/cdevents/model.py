"""The CDEvents (spec v0.5.1) a finished task emits, as pure functions: no I/O, no clock, no randomness.

A finished task (:class:`FinishedTask`, the typed data the workflows hand to their observer) becomes at most one
event. Which one depends on what this service emitted before for the same service in the same environment (the
*history*, kept in the state store by :mod:`.outbox`):

- a deployment that passed: ``dev.cdevents.service.deployed.0.3.0`` when the history is empty (the first deployment
  of the service in that environment), else ``dev.cdevents.service.upgraded.0.3.0``;
- a rollback that was applied (status ``succeeded`` with a revert commit; Keptn echoes the failed delivery's
  ``result``, so the result says nothing here): ``dev.cdevents.service.rolledback.0.3.0``, with the artifact that
  ran before this Keptn context's deployment (read from the history);
- anything else (failed, errored, a rollback that found nothing to revert): nothing, see docs/cdevents.md.

The event id is derived from the triggered event's id, so deciding again after a crash (the task is resumed and
finishes a second time) gives the same id and, through the history, the same type: the outbox keeps one copy.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote

from keptn_gitops_service.errors import CDEventsError

SPEC_VERSION: Final = "0.5.1"
DEPLOYED: Final = "dev.cdevents.service.deployed.0.3.0"
UPGRADED: Final = "dev.cdevents.service.upgraded.0.3.0"
ROLLEDBACK: Final = "dev.cdevents.service.rolledback.0.3.0"
SCHEMAS: Final = {
    DEPLOYED: "https://cdevents.dev/0.5.1/schema/service-deployed-event",
    UPGRADED: "https://cdevents.dev/0.5.1/schema/service-upgraded-event",
    ROLLEDBACK: "https://cdevents.dev/0.5.1/schema/service-rolledback-event",
}
"""The ``$id`` of each event type's JSON schema (the CloudEvent's ``dataschema``)."""
DEFAULT_SOURCE: Final = "/keptn-gitops-service"
HISTORY_LIMIT: Final = 20
"""How many events per service and environment the history keeps (a rollback looks back this far)."""
ID_NAMESPACE: Final = uuid.UUID("6f0c3a5e-2b1d-5c8e-9a47-3d2f8b1e4c60")
"""The UUID namespace of the event ids (``uuid5(ID_NAMESPACE, "<task>/<triggered id>")``)."""
CUSTOM_DATA_CONTENT_TYPE: Final = "application/json"

_URI_REFERENCE = re.compile(r"[!#$%&'()*+,\-./0-9:;=?@A-Z\[\]_a-z~]+")


def valid_source(text: str) -> bool:
    """Whether ``text`` can be a CDEvents ``source`` (a URI reference: printable ASCII without spaces, quotes or
    ``<>\\^`{|}``)."""
    return bool(_URI_REFERENCE.fullmatch(text))


@dataclass(frozen=True)
class Artifact:
    """An OCI image as a package URL: ``repository`` is the normalised name (``docker.io/library/carts``)."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not self.repository or not valid_source(self.repository) or "@" in self.repository:
            raise CDEventsError(f"the image repository {self.repository!r} cannot be part of a package URL")
        if self.tag is None and self.digest is None:
            raise CDEventsError(f"the image {self.repository} has neither a tag nor a digest")
        if self.digest is not None and ":" not in self.digest:
            raise CDEventsError(f"the digest {self.digest!r} of {self.repository} is not of the form algorithm:hex")

    @property
    def purl(self) -> str:
        """``pkg:oci/<name>@<digest>?repository_url=<repository>&tag=<tag>`` (purl's OCI type: the name is the
        last path component, the version the digest; qualifiers sorted by key, values percent-encoded); without a
        digest, the tag alone says which version."""
        name = self.repository.rsplit("/", 1)[-1]
        version = f"@{quote(self.digest, safe='')}" if self.digest else ""
        qualifiers = [f"repository_url={quote(self.repository, safe='/')}"]
        if self.tag:
            qualifiers.append(f"tag={quote(self.tag, safe='')}")
        return f"pkg:oci/{name}{version}?{'&'.join(qualifiers)}"


TaskKind = Literal["deployment", "rollback"]


@dataclass(frozen=True)
class FinishedTask:
    """A deployment or rollback that has just sent its ``.finished``: what observers are told."""

    kind: TaskKind
    project: str
    stage: str
    service: str
    keptn_context: str
    triggered_id: str
    status: str
    """``.finished``'s ``status`` (``succeeded``, ``errored``)."""
    result: str
    """``.finished``'s ``result`` (``pass``, ``fail``; a rollback echoes the incoming one)."""
    commit: str
    """The commit the task waited for (``""``: none, e.g. a rollback with nothing to revert)."""
    repository: str
    """The GitOps repository's URL."""
    branch: str
    artifact: Artifact | None
    """The deployed image (``None``: the trigger carried none, e.g. a re-run, or a rollback)."""
    target: str
    """What the wait followed, as a URI reference (the Kubernetes API path of the Flux or Argo CD object, or the
    Argo CD server's application URL); ``""`` when the rule does not wait."""
    finished_at: datetime
    finished_id: str = ""
    """The id of the ``.finished`` event."""

    def __post_init__(self) -> None:
        if self.kind not in ("deployment", "rollback"):
            raise CDEventsError(f"a finished task of kind {self.kind!r} has no CDEvent (deployment or rollback)")
        for name in ("project", "stage", "service", "triggered_id"):
            if not getattr(self, name):
                raise CDEventsError(f"a finished {self.kind} needs a {name.replace('_', ' ')}")
        if self.target and not valid_source(self.target):
            raise CDEventsError(f"the wait target {self.target!r} is not a URI reference")
        if self.finished_at.tzinfo is None:
            raise CDEventsError("the finish time of a task must carry a time zone")

    @property
    def passed(self) -> bool:
        """Whether the task ended with the service running what it deployed (or rolled back to)."""
        if self.kind == "deployment":
            return self.status == "succeeded" and self.result == "pass"
        return self.status == "succeeded" and bool(self.commit)


class TaskObserver(Protocol):
    """Told about every deployment and rollback right after its ``.finished`` was published; must not raise."""

    async def finished(self, task: FinishedTask) -> None: ...


@dataclass(frozen=True)
class Emitted:
    """One event of a service's history in one environment (newest first in the state store)."""

    event_id: str
    type: str
    artifact_id: str
    chain_id: str
    follows: str = ""
    """The event this one follows in its chain (a ``PATH`` link), ``""`` for none."""


@dataclass(frozen=True)
class Skipped:
    """No event for this task, and why (logged)."""

    reason: str


@dataclass(frozen=True)
class Decision:
    """The event to emit and the environment's history with it first."""

    emitted: Emitted
    history: tuple[Emitted, ...]


def event_id(task: FinishedTask) -> str:
    """The event's id, the same however often the task finishes (a resumed task finishes again)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{task.kind}/{task.triggered_id}"))


def decide(task: FinishedTask, history: Sequence[Emitted], chain_last: str = "") -> Decision | Skipped:
    """Which event ``task`` emits, given the environment's ``history`` (newest first) and the last event of the
    task's chain (its Keptn context) in any environment."""
    if not task.passed:
        what = "rollback" if task.kind == "rollback" else "deployment"
        return Skipped(f"the {what} did not pass ({task.status}/{task.result}{'' if task.commit else ', no commit'})")
    this = event_id(task)
    for entry in history:
        if entry.event_id == this:  # decided before (the task finished again after a restart): same event
            return Decision(entry, tuple(history))
    if task.kind == "deployment":
        artifact = task.artifact.purl if task.artifact else (history[0].artifact_id if history else "")
        if not artifact:
            return Skipped(
                "the trigger names no image (data.configurationChange.values.image) and no earlier CDEvent says "
                "which artifact runs there"
            )
        kind = UPGRADED if history else DEPLOYED
        follows = chain_last
    else:
        found = _rolled_back_to(history, task.keptn_context)
        if found is None:
            return Skipped(
                f"no deployment of Keptn context {task.keptn_context} with an earlier artifact is recorded for "
                f"{task.project}/{task.service} in {task.stage}, so the artifact rolled back to is unknown"
            )
        artifact, follows = found
        kind = ROLLEDBACK
    emitted = Emitted(this, kind, artifact, task.keptn_context, "" if follows == this else follows)
    return Decision(emitted, (emitted, *history)[:HISTORY_LIMIT])


def _rolled_back_to(history: Sequence[Emitted], chain: str) -> tuple[str, str] | None:
    """The artifact that ran before ``chain``'s newest deployment, and that deployment's event id; a chain already
    rolled back rolls back to the same artifact again."""
    for index, entry in enumerate(history):
        if entry.chain_id != chain:
            continue
        if entry.type == ROLLEDBACK:
            return entry.artifact_id, entry.event_id
        for earlier in history[index + 1 :]:
            if earlier.chain_id != chain:
                return earlier.artifact_id, entry.event_id
        return None
    return None


def build(task: FinishedTask, emitted: Emitted, *, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The CDEvent (``context``, ``subject``, ``customData``) as the v0.5.1 schema of its type describes it."""
    if not valid_source(source):
        raise CDEventsError(f"the CDEvents source {source!r} is not a URI reference")
    context: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": emitted.event_id,
        "source": source,
        "type": emitted.type,
        "timestamp": timestamp(task.finished_at),
    }
    if task.keptn_context:
        context["chainId"] = task.keptn_context
    if emitted.follows:
        context["links"] = [{"linkType": "PATH", "from": {"contextId": emitted.follows}}]
    environment: dict[str, Any] = {"id": task.stage}
    if task.target:
        environment["source"] = task.target
    keptn = {
        "project": task.project,
        "stage": task.stage,
        "service": task.service,
        "task": task.kind,
        "shkeptncontext": task.keptn_context,
        "triggeredid": task.triggered_id,
    }
    if task.finished_id:
        keptn["finishedid"] = task.finished_id
    return {
        "context": context,
        "subject": {
            "id": f"{task.project}/{task.service}",
            "content": {"environment": environment, "artifactId": emitted.artifact_id},
        },
        "customData": {
            "keptn": keptn,
            "git": {"commit": task.commit, "repository": task.repository, "branch": task.branch},
        },
        "customDataContentType": CUSTOM_DATA_CONTENT_TYPE,
    }


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CDEvents' ``timestamp`` and CloudEvents' ``time`` want it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_history(history: Sequence[Emitted]) -> bytes:
    return json.dumps(
        [
            {"id": e.event_id, "type": e.type, "artifactId": e.artifact_id, "chainId": e.chain_id, "follows": e.follows}
            for e in history
        ],
        separators=(",", ":"),
    ).encode()


def decode_history(value: bytes | None) -> tuple[Emitted, ...]:
    """The stored history; ``None`` (nothing stored) is an empty one."""
    if value is None:
        return ()
    try:
        items = json.loads(value)
        return tuple(
            Emitted(str(i["id"]), str(i["type"]), str(i["artifactId"]), str(i["chainId"]), str(i.get("follows", "")))
            for i in items
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CDEventsError(f"a stored CDEvents history is corrupt: {exc}") from None


def history_key(task: FinishedTask) -> str:
    """Where a service's history in one environment is stored."""
    return f"history/{task.project}/{task.stage}/{task.service}"


def chain_key(chain_id: str) -> str:
    """Where the last event of a chain (a Keptn context) is stored."""
    return f"chain/{chain_id}"


# ---- the CloudEvents binding (cloudevents-binding.md of the spec) ----


def attributes(cdevent: Mapping[str, Any]) -> dict[str, str]:
    """The CloudEvents 1.0 context of a CDEvent: ``id``, ``source``, ``type`` and ``time`` from its context, the
    ``subject`` from its subject's id, the schema of its type as ``dataschema``."""
    try:
        context, subject = cdevent["context"], cdevent["subject"]
        found = {
            "specversion": "1.0",
            "id": str(context["id"]),
            "source": str(context["source"]),
            "type": str(context["type"]),
            "subject": str(subject["id"]),
            "time": str(context["timestamp"]),
            "datacontenttype": "application/json",
        }
    except (KeyError, TypeError) as exc:
        raise CDEventsError(f"a stored CDEvent lacks {exc}") from None
    if found["type"] in SCHEMAS:
        found["dataschema"] = SCHEMAS[found["type"]]
    return found


def binary(body: bytes) -> tuple[dict[str, str], bytes]:
    """HTTP binary content mode: the context in ``ce-`` headers, the CDEvent as the body (``application/json``)."""
    attrs = attributes(_load(body))
    headers = {f"ce-{k}": v for k, v in attrs.items() if k != "datacontenttype"}
    headers["Content-Type"] = "application/json; charset=utf-8"
    return headers, body


def structured(body: bytes) -> tuple[dict[str, str], bytes]:
    """Structured content mode: one ``application/cloudevents+json`` document with the CDEvent as ``data``."""
    cdevent = _load(body)
    document = {**attributes(cdevent), "data": cdevent}
    return {"Content-Type": "application/cloudevents+json; charset=utf-8"}, json.dumps(
        document, separators=(",", ":")
    ).encode()


def _load(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise CDEventsError(f"a stored CDEvent is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CDEventsError("a stored CDEvent is not a JSON object")
    return value
