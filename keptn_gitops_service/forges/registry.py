"""The forge of each repository: located from the configuration, its token read from the environment at each use."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from keptn_gitops_service.clock import Clock
from keptn_gitops_service.config.forge import ForgeLocation, forge_location
from keptn_gitops_service.config.model import Repository
from keptn_gitops_service.errors import ForgeError, WebhookAuthError
from keptn_gitops_service.forges.model import Forge, ForgeRepository, PullRequestEvent

Adapter = Callable[[ForgeRepository, str, Clock], Forge]
WebhookParser = Callable[[Mapping[str, str], bytes, str], PullRequestEvent | None]

ADAPTERS: Mapping[str, tuple[str, str]] = {
    "gitea": ("keptn_gitops_service.forges.gitea", "GiteaForge"),
    "github": ("keptn_gitops_service.forges.github", "GitHubForge"),
    "gitlab": ("keptn_gitops_service.forges.gitlab", "GitLabForge"),
}
"""Each forge's module and adapter class; the module also has ``parse_webhook``. Imported when first used, so a
service without pull requests does not load them."""


def adapter(kind: str) -> tuple[Adapter, WebhookParser]:
    module_name, class_name = ADAPTERS[kind]
    module = importlib.import_module(module_name)
    return getattr(module, class_name), module.parse_webhook


@dataclass
class Forges:
    """One adapter per repository (and token: a rotated token makes a new one)."""

    clock: Clock
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _open: dict[str, tuple[str, Forge]] = field(default_factory=dict)

    def __call__(self, repository: Repository) -> Forge:
        location = _located(repository)
        token = (self.env.get(location.token_env) or "").strip()
        if not token:
            raise ForgeError(
                f"the forge token environment variable {location.token_env} is not set "
                f"(repositories[].forge.tokenEnv of repository '{repository.name}')"
            )
        cached = self._open.get(repository.name)
        if cached is not None and cached[0] == token:
            return cached[1]
        new, _ = adapter(location.type)
        forge = new(ForgeRepository(location.api_url, location.path), token, self.clock)
        self._open[repository.name] = (token, forge)
        return forge

    def webhook(self, repository: Repository, headers: Mapping[str, str], body: bytes) -> PullRequestEvent | None:
        """The pull request a webhook of ``repository``'s forge names, checked against its secret."""
        location = _located(repository)
        secret = (self.env.get(location.webhook_secret_env or "") or "").strip()
        if not secret:
            raise WebhookAuthError(f"repository '{repository.name}' has no forge webhook secret set")
        _, parse = adapter(location.type)
        return parse(headers, body, secret)

    async def close(self) -> None:
        for _, forge in self._open.values():
            await forge.close_session()
        self._open.clear()


def _located(repository: Repository) -> ForgeLocation:
    try:
        return forge_location(repository)
    except ValueError as exc:
        raise ForgeError(str(exc)) from None
