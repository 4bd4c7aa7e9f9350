"""Which rule owns an event: the first whose globs match project, stage and service (PRODUCT.md §2.3)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from keptn_gitops_service.config.model import GitOpsConfig, Rule


def find_rule(config: GitOpsConfig, project: str, stage: str, service: str) -> Rule | None:
    """The first matching rule, or ``None`` (then another deployment service may own the event)."""
    for rule in config.rules:
        m = rule.match
        if fnmatchcase(project, m.project) and fnmatchcase(stage, m.stage) and fnmatchcase(service, m.service):
            return rule
    return None
