"""Where a repository's forge API is: its type, base URL and the repository's path there, from ``forge`` and the
repository URL (``github.com`` and ``gitlab.com`` are recognised; any other host must give ``forge.type``).

The API's address defaults to ``https://api.github.com`` for github.com, else to the repository host's
``/api/v1`` (Gitea), ``/api/v3`` (GitHub Enterprise) or ``/api/v4`` (GitLab) for http(s)
URLs; an SSH URL needs ``forge.apiURL``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from keptn_gitops_service.config.model import Repository

_KNOWN_HOSTS = {"github.com": "github", "gitlab.com": "gitlab"}
_API_PATH = {"gitea": "/api/v1", "github": "/api/v3", "gitlab": "/api/v4"}
_SCP_LIKE = re.compile(r"git@([^:\s]+):(\S+)")


@dataclass(frozen=True)
class ForgeLocation:
    type: str
    """``gitea``, ``github`` or ``gitlab``."""
    api_url: str
    path: str
    """``owner/name`` (GitLab: the full project path)."""
    token_env: str
    webhook_secret_env: str | None


def forge_location(repository: Repository) -> ForgeLocation:
    """The forge of ``repository``; :class:`ValueError` saying what is missing (no ``forge``, an unknown host …)."""
    forge = repository.forge
    if forge is None:
        raise ValueError(f"repository '{repository.name}' has no forge: pull requests need repositories[].forge")
    scheme, host, path = _split(repository.url)
    kind = forge.type or _KNOWN_HOSTS.get(host.lower())
    if kind is None:
        raise ValueError(
            f"cannot tell which forge hosts {host or repository.url!r}: set forge.type (gitea, github or gitlab)"
        )
    api_url = forge.api_url
    if api_url is None and host.lower() == "github.com":
        api_url = "https://api.github.com"
    elif api_url is None and scheme in ("http", "https"):
        api_url = f"{scheme}://{host}{_API_PATH[kind]}"
    elif api_url is None:
        raise ValueError(f"set forge.apiURL: the {kind} API's address cannot be told from {repository.url!r}")
    repo_path = forge.path or path.removesuffix(".git").strip("/")
    if len([part for part in repo_path.split("/") if part]) < 2:
        raise ValueError(f"set forge.path (owner/name): it cannot be told from {repository.url!r}")
    return ForgeLocation(kind, api_url.rstrip("/"), repo_path, forge.token_env, forge.webhook_secret_env)


def _split(url: str) -> tuple[str, str, str]:
    """``(scheme, host with port, path)`` of an https/http/ssh/file URL or of ``git@host:path``."""
    scp = _SCP_LIKE.fullmatch(url)
    if scp:
        return "ssh", scp.group(1), scp.group(2)
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rpartition("@")[2], parts.path
