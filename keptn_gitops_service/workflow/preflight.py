"""What can be checked before the first event: every repository reachable with its credentials, the Kubernetes
configuration loadable when a rule waits through the Kubernetes API (and each cluster's of a ``wait.clusters``), the
Argo CD tokens readable.

``run`` does these checks at start-up (and again, spaced out, until they pass: ``/readyz`` says what is wrong
until then); ``config check --online`` does them from a shell.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from keptn_gitops_service.config.model import ArgoWait, Cluster, ClustersWait, FluxWait, GitOpsConfig, Repository
from keptn_gitops_service.errors import GitOpsServiceError
from keptn_gitops_service.gitops.git import DEFAULT_TIMEOUT, check_access
from keptn_gitops_service.reconcile.argocd_rest import ArgoCdClient, ArgoCdServer
from keptn_gitops_service.reconcile.clusters import check_cluster
from keptn_gitops_service.reconcile.dispatch import argocd_server
from keptn_gitops_service.reconcile.kube import check_kubeconfig


async def startup_problems(
    config: GitOpsConfig,
    *,
    helper_dir: Path,
    kubeconfig: str | None,
    git_timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Every problem found, each a complete sentence naming what is wrong; empty when everything is usable."""
    checks = [_repository(repo, helper_dir, git_timeout) for repo in _distinct(config)]
    kube_rules = [r.index for r in config.rules if _waits_on_kubernetes(r.wait.target)]
    if kube_rules:
        checks.append(_kubeconfig(kubeconfig, kube_rules))
    checks += [
        _cluster(cluster, f"rules[{rule.index}].wait.clusters.targets[{i}]")
        for rule in config.rules
        if isinstance(rule.wait.target, ClustersWait)
        for i, cluster in enumerate(rule.wait.target.targets)
    ]
    found = await asyncio.gather(*checks)
    problems = [p for p in found if p]
    return problems + _argocd_tokens(config)


def _distinct(config: GitOpsConfig) -> list[Repository]:
    """One entry per URL and branch (entries sharing them share credentials: the loader checks it)."""
    first: dict[tuple[str, str], Repository] = {}
    for repository in config.repositories:
        first.setdefault((repository.url, repository.branch), repository)
    return list(first.values())


async def _repository(repository: Repository, helper_dir: Path, timeout: float) -> str | None:
    try:
        await check_access(repository, helper_dir=helper_dir, timeout=timeout)
    except GitOpsServiceError as exc:
        return str(exc)
    return None


def _waits_on_kubernetes(target: object) -> bool:
    return isinstance(target, FluxWait) or (isinstance(target, ArgoWait) and target.api == "kubernetes")


async def _kubeconfig(kubeconfig: str | None, rules: list[int]) -> str | None:
    try:
        await check_kubeconfig(kubeconfig)
    except GitOpsServiceError as exc:
        which = ", ".join(f"rules[{i}]" for i in rules)
        return f"{exc} (needed by the Kubernetes waits of {which})"
    return None


async def _cluster(cluster: Cluster, where: str) -> str | None:
    try:
        await check_cluster(cluster)
    except GitOpsServiceError as exc:
        return f"{exc} (needed by cluster {cluster.name}, {where})"
    return None


def _argocd_tokens(config: GitOpsConfig) -> list[str]:
    problems: list[str] = []
    seen: set[ArgoCdServer] = set()
    for rule in config.rules:
        target = rule.wait.target
        server = argocd_server(target) if isinstance(target, ArgoWait) else None
        if server is None or server in seen:
            continue
        seen.add(server)
        try:
            ArgoCdClient(server).check_token()
        except GitOpsServiceError as exc:
            problems.append(f"{exc} (rules[{rule.index}].wait.argocd, Argo CD at {server.url})")
    return problems
