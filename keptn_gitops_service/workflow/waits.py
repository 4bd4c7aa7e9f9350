"""What deployments and rollbacks share about waiting: the rendered target, the timeout, and git ancestry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keptn_gitops_service.config.durations import parse_duration
from keptn_gitops_service.config.model import FluxWait, GitOpsConfig, Rule
from keptn_gitops_service.errors import EventError
from keptn_gitops_service.gitops.writer import GitWriter
from keptn_gitops_service.reconcile.dispatch import FluxTarget, Target
from keptn_gitops_service.workflow.context import TemplateContext


def wait_target(rule: Rule, context: TemplateContext) -> Target:
    """The rule's wait with its templates rendered for this event (``None``: do not wait)."""
    target = rule.wait.target
    if not isinstance(target, FluxWait):
        return None
    where = f"rules[{rule.index}].wait.flux"
    return FluxTarget(
        kind=target.kind,
        namespace=context.render(target.namespace, f"{where}.namespace"),
        name=context.render(target.name, f"{where}.name"),
    )


def wait_timeout(rule: Rule, properties: Mapping[str, Any], where: str) -> float:
    """The rule's timeout in seconds, unless the shipyard task property ``timeout`` overrides it."""
    override = properties.get("timeout")
    if override is None:
        return rule.wait.timeout.total_seconds()
    if not isinstance(override, str):
        raise EventError(f"{where}.timeout must be a duration string such as '15m'")
    try:
        return parse_duration(override).total_seconds()
    except ValueError as exc:
        raise EventError(f"{where}.timeout: {exc}") from None


@dataclass(frozen=True)
class RepositoryAncestry:
    """Commit ancestry in the rule's repository (through the writer's clone and lock)."""

    writer: GitWriter
    config: GitOpsConfig
    rule: Rule

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return await self.writer.is_ancestor(self.config.repository(self.rule.repository), ancestor, descendant)
