"""What a finished deployment or rollback tells its observer (:class:`~keptn_gitops_service.cdevents.model.
FinishedTask`): the typed facts gathered while the task ran, completed when its ``.finished`` is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import structlog

from keptn_gitops_service.cdevents.model import Artifact, FinishedTask, TaskKind
from keptn_gitops_service.config.model import GitOpsConfig, Rule
from keptn_gitops_service.errors import GitOpsServiceError
from keptn_gitops_service.gitops.imageref import normalize_name, parse_image
from keptn_gitops_service.keptn.data import EventScope
from keptn_gitops_service.keptn.events import KeptnEvent
from keptn_gitops_service.reconcile.dispatch import ARGOCD_NAMESPACE, ArgoTarget, FluxTarget, Target
from keptn_gitops_service.reconcile.kube import APPLICATION, HELM_RELEASE, KUSTOMIZATION
from keptn_gitops_service.workflow.context import TemplateContext

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TaskFacts:
    """What a task learnt before it finished: its rule, the image it deployed and what its wait followed."""

    rule: Rule
    artifact: Artifact | None = None
    target: str = ""


def artifact_of(context: TemplateContext) -> Artifact | None:
    """The trigger's image as an :class:`Artifact` (``None``: the trigger has no usable image)."""
    raw = context.values.get("image")
    try:
        if isinstance(raw, Mapping):  # --values image.repository=… image.tag=…
            name = context.resolve("image.name")
            tag = context.resolve("image.tag") if "tag" in raw else None
            digest = context.resolve("image.digest") if "digest" in raw else None
            return Artifact(normalize_name(parse_image(name).name), tag, digest)
        image = context.image()
        return Artifact(normalize_name(image.name), image.tag, image.digest)
    except GitOpsServiceError:
        return None


def target_uri(target: Target) -> str:
    """The object a wait follows as a URI reference: its Kubernetes API path, or its URL on Argo CD's API."""
    if isinstance(target, FluxTarget):
        kind = HELM_RELEASE if target.kind == "HelmRelease" else KUSTOMIZATION
        return f"/apis/{kind.group}/{kind.version}/namespaces/{_q(target.namespace)}/{kind.plural}/{_q(target.name)}"
    if isinstance(target, ArgoTarget):
        if target.server is not None:
            where = f"?appNamespace={_q(target.namespace)}" if target.namespace else ""
            return f"{target.server.url.rstrip('/')}/api/v1/applications/{_q(target.application)}{where}"
        namespace = target.namespace or ARGOCD_NAMESPACE
        a = APPLICATION
        return f"/apis/{a.group}/{a.version}/namespaces/{_q(namespace)}/{a.plural}/{_q(target.application)}"
    return ""


def finished_task(
    kind: TaskKind,
    event: KeptnEvent,
    scope: EventScope,
    facts: TaskFacts,
    config: GitOpsConfig,
    *,
    status: str,
    result: str,
    commit: str,
    now: datetime,
    finished_id: str,
) -> FinishedTask | None:
    """The observer's view of a task that is finishing (``None``, logged, if the facts do not make one: the task
    must finish all the same)."""
    try:
        return _finished_task(
            kind, event, scope, facts, config, status=status, result=result, commit=commit, now=now, reply=finished_id
        )
    except GitOpsServiceError as exc:
        log.error("the finished task cannot be reported to its observer", triggeredid=event.id, error=str(exc))
        return None


def _finished_task(
    kind: TaskKind,
    event: KeptnEvent,
    scope: EventScope,
    facts: TaskFacts,
    config: GitOpsConfig,
    *,
    status: str,
    result: str,
    commit: str,
    now: datetime,
    reply: str,
) -> FinishedTask:
    repository = config.repository(facts.rule.repository)
    return FinishedTask(
        kind=kind,
        project=scope.project,
        stage=scope.stage,
        service=scope.service,
        keptn_context=event.shkeptncontext,
        triggered_id=event.id,
        status=status,
        result=result,
        commit=commit,
        repository=repository.url,
        branch=repository.branch,
        artifact=facts.artifact,
        target=facts.target,
        finished_at=now,
        finished_id=reply,
    )


def _q(text: str) -> str:
    return quote(text, safe="")
