"""What deployments and rollbacks share about waiting: the rendered target, the timeout, and git ancestry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.model import ArgoWait, Cluster, ClustersWait, FluxWait, GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError, ReconcileError
from keptn_gitops_service.gitops.supersede import superseded
from keptn_gitops_service.gitops.writer import GitWriter
from keptn_gitops_service.reconcile.dispatch import Reconciler, Target
from keptn_gitops_service.workflow.context import TemplateContext


def wait_target(rule: Rule, context: TemplateContext) -> Target:
    """The rule's wait with its templates rendered for this event: the configuration's own wait object with
    rendered names (``None``: do not wait)."""
    target = rule.wait.target
    where = f"rules[{rule.index}].wait"
    if isinstance(target, ClustersWait):
        return replace(
            target,
            targets=tuple(
                _rendered_cluster(cluster, context, f"{where}.clusters.targets[{i}]")
                for i, cluster in enumerate(target.targets)
            ),
        )
    if isinstance(target, FluxWait | ArgoWait):
        return _rendered(target, context, where)
    return None


def _rendered_cluster(cluster: Cluster, context: TemplateContext, where: str) -> Cluster:
    uris = cluster.deployment_uris
    return replace(
        cluster,
        target=_rendered(cluster.target, context, where),
        deployment_uris=replace(
            uris,
            local=tuple(context.render(t, f"{where}.deploymentURIs.local[{i}]") for i, t in enumerate(uris.local)),
            public=tuple(context.render(t, f"{where}.deploymentURIs.public[{i}]") for i, t in enumerate(uris.public)),
        )
        if uris is not None
        else None,
    )


def cluster_uris(target: Target, applied: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The rendered ``deploymentURIs`` of the clusters of a ``wait.clusters`` that applied the commit."""
    local: list[str] = []
    public: list[str] = []
    if isinstance(target, ClustersWait):
        for cluster in target.targets:
            if cluster.name in applied and cluster.deployment_uris is not None:
                local += cluster.deployment_uris.local
                public += cluster.deployment_uris.public
    return local, public


def _rendered(target: FluxWait | ArgoWait, context: TemplateContext, where_wait: str) -> FluxWait | ArgoWait:
    if isinstance(target, ArgoWait):
        where = f"{where_wait}.argocd"
        return replace(
            target,
            application=context.render(target.application, f"{where}.application"),
            namespace=context.render(target.namespace, f"{where}.namespace") if target.namespace else None,
            project=context.render(target.project, f"{where}.project") if target.project else None,
        )
    where = f"{where_wait}.flux"
    parent = target.kustomization
    return replace(
        target,
        namespace=context.render(target.namespace, f"{where}.namespace"),
        name=context.render(target.name, f"{where}.name"),
        kustomization=replace(
            parent,
            namespace=context.render(parent.namespace, f"{where}.kustomization.namespace"),
            name=context.render(parent.name, f"{where}.kustomization.name"),
        )
        if parent is not None
        else None,
        chart_version=context.render(target.chart_version, f"{where}.chartVersion") if target.chart_version else None,
    )


async def check_wait_target(reconciler: Reconciler, rule: Rule, target: Target) -> None:
    """Before committing: the wait can read its target (:meth:`Reconciler.check`), else a :class:`ReconcileError`
    whose message names the rule, the object and the reason, and says that nothing was committed."""
    try:
        await reconciler.check(target)
    except ReconcileError as exc:
        raise type(exc)(
            f"{exc}; nothing was committed (rules[{rule.index}].wait is checked before the commit)"
        ) from None


def wait_timeout(rule: Rule, properties: Mapping[str, Any], where: str) -> float:
    """The rule's timeout in seconds, unless the shipyard task property ``timeout`` overrides it."""
    override = properties.get("timeout")
    if override is None:
        return rule.wait.timeout.total_seconds()
    if not isinstance(override, str):
        raise EventError(f"{where}.timeout must be a duration string such as '15m'")
    try:
        return parse_duration(override).total_seconds()
    except (ValueError, OverflowError) as exc:
        raise EventError(f"{where}.timeout: {exc}") from None


@dataclass(frozen=True)
class RepositoryAncestry:
    """Commit ancestry in the rule's repository (through the writer's clone and lock).

    ``match`` names our change's identifying trailer (``Keptn-Triggered-Id``): in a batched commit only that
    change's files decide whether a descendant still carries it."""

    writer: GitWriter
    config: GitOpsConfig
    rule: Rule
    match: Mapping[str, str] = field(default_factory=dict)

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return await self.writer.is_ancestor(self.config.repository(self.rule.repository), ancestor, descendant)

    async def superseded(self, commit: str, descendant: str) -> str | None:
        repository = self.config.repository(self.rule.repository)
        async with self.writer.lock(repository):
            return await superseded(self.writer.clone(repository), commit, descendant, self.match)
