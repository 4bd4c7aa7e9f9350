"""The CDEvents observer of finished tasks: a :class:`~workflow.lifecycle.FinishedObserver` that reads what a
finished deployment or rollback tells (:class:`~keptn_gitops_service.cdevents.model.FinishedTask`) from its typed
:class:`Trigger` and :class:`Finished` and hands it to the emitter, which writes the event to the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import structlog

from keptn_gitops_service.cdevents.model import Artifact, FinishedTask, TaskKind, TaskObserver
from keptn_gitops_service.config.model import ArgoWait, ClustersWait, FluxWait, GitOpsConfig
from keptn_gitops_service.editing.imageref import normalize_name, parse_image
from keptn_gitops_service.errors import GitOpsServiceError
from keptn_gitops_service.reconcile.dispatch import ARGOCD_NAMESPACE, argocd_server
from keptn_gitops_service.reconcile.kube import APPLICATION, HELM_RELEASE, KUSTOMIZATION
from keptn_gitops_service.workflow.context import TemplateContext
from keptn_gitops_service.workflow.lifecycle import Finished, Trigger

log = structlog.get_logger(__name__)


@dataclass
class CDEventsObserver:
    """Tells ``emitter`` about every deployment and rollback that finished (other tasks, invalid triggers and
    triggers no rule owns any more emit nothing)."""

    config: GitOpsConfig
    emitter: TaskObserver

    async def __call__(self, trigger: Trigger, finished: Finished) -> None:
        task = finished_task(self.config, trigger, finished)
        if task is not None:
            await self.emitter.finished(task)


def finished_task(config: GitOpsConfig, trigger: Trigger, finished: Finished) -> FinishedTask | None:
    """The observer's view of a task that finished (``None`` when it has none, or, logged, when its facts do not
    make one: the task has finished all the same)."""
    if trigger.task not in ("deployment", "rollback") or trigger.problem or trigger.scope is None:
        return None
    if trigger.rule is None or finished.reply is None or finished.reply.time is None:
        return None
    kind: TaskKind = "deployment" if trigger.task == "deployment" else "rollback"
    scope, event = trigger.scope, trigger.event
    artifact = artifact_of(trigger.context) if kind == "deployment" and trigger.context is not None else None
    try:
        repository = config.repository(trigger.rule.repository)
        return FinishedTask(
            kind=kind,
            project=scope.project,
            stage=scope.stage,
            service=scope.service,
            keptn_context=event.shkeptncontext,
            triggered_id=event.id,
            status=finished.status.value,
            result=finished.result.value,
            commit=finished.commit,
            repository=repository.url,
            branch=repository.branch,
            artifact=artifact,
            target=target_uri(finished.target),
            finished_at=finished.reply.time,
            finished_id=finished.reply.id,
        )
    except GitOpsServiceError as exc:
        log.error("the finished task cannot be reported to its observer", triggeredid=event.id, error=str(exc))
        return None


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


def target_uri(target: FluxWait | ArgoWait | ClustersWait | None) -> str:
    """The object a wait follows as a URI reference: its Kubernetes API path, or its URL on Argo CD's API (``""``:
    no wait, or a wait on several clusters, which no one object locates)."""
    if isinstance(target, FluxWait):
        kind = HELM_RELEASE if target.kind == "HelmRelease" else KUSTOMIZATION
        return f"/apis/{kind.group}/{kind.version}/namespaces/{_q(target.namespace)}/{kind.plural}/{_q(target.name)}"
    if isinstance(target, ArgoWait):
        server = argocd_server(target)
        if server is not None:
            where = f"?appNamespace={_q(target.namespace)}" if target.namespace else ""
            return f"{server.url.rstrip('/')}/api/v1/applications/{_q(target.application)}{where}"
        namespace = target.namespace or ARGOCD_NAMESPACE
        a = APPLICATION
        return f"/apis/{a.group}/{a.version}/namespaces/{_q(namespace)}/{a.plural}/{_q(target.application)}"
    return ""


def _q(text: str) -> str:
    return quote(text, safe="")
