"""The service's own error hierarchy.

Library exceptions (nats, httpx, lightkube, subprocess, yaml) never cross a sub-package boundary: each edge
wraps them into one of these, chaining the cause. Every error's ``str()`` is a complete, human sentence that
can go into a ``deployment.finished`` message as it is — so it must never contain a credential.
Like cloudevents' exceptions, input errors also inherit from :class:`ValueError`.
"""

from __future__ import annotations

import asyncio


class GitOpsServiceError(Exception):
    """Base of every error this package raises on purpose."""


def describe_error(exc: BaseException) -> str:
    """What failed, for a log line: our own errors' sentence; a library exception with its class, and only its
    class when its text is empty (``nats.errors.TimeoutError()`` says nothing by itself)."""
    text = str(exc)
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, GitOpsServiceError):
        return text or name
    return f"{name}: {text}" if text else name


def stop_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` when the running task has been asked to stop.

    nats-py turns a cancellation that arrives while the connection closes into its own errors, so a loop that
    catches those and carries on (a fetch, a lease renewal, the orphan search) would swallow the cancel and run
    forever — and whoever awaits the stopped task with it. Such loops call this in their ``except`` branches."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ConfigError(GitOpsServiceError, ValueError):
    """The configuration file is invalid (carries every problem found, each with file/line/key)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class EventError(GitOpsServiceError, ValueError):
    """An incoming Keptn event is malformed or misses a field we need."""


class TemplateError(GitOpsServiceError, ValueError):
    """A config template could not be rendered for an event (unknown field, missing value, unsafe result)."""


class UnsafePathError(TemplateError):
    """A rendered file path would leave the repository (``..``, absolute path, symlink)."""


class EditError(GitOpsServiceError, ValueError):
    """A YAML edit cannot be made without changing the document beyond the target scalar."""


class EditConflictError(EditError):
    """Someone else changed a value we change while we were writing it; we do not overwrite their change."""


class YamlLimitError(EditError):
    """A file of the repository is beyond a limit the service sets on YAML (size, documents, aliases, nesting)."""


class EditTimeoutError(YamlLimitError):
    """Editing a file took longer than the edit deadline."""


class InvalidImageReferenceError(EditError):
    """A string is not a valid OCI image reference."""


class GitError(GitOpsServiceError):
    """A git operation failed (the message is already scrubbed of credentials)."""


class ReconcileError(GitOpsServiceError):
    """The GitOps controller reported a failure for our revision, or could not be observed."""


class WaitTargetMissingError(ReconcileError):
    """The object a rule waits for does not exist (checked before anything is committed)."""


class KubernetesAccessError(ReconcileError):
    """The Kubernetes API could not be reached or refused us (e.g. RBAC 403)."""


class AccessDeniedError(ReconcileError):
    """An API refused our credentials or their permissions (401, 403), or we have none to offer: retrying the
    same request will not help."""


class KubernetesAccessDeniedError(KubernetesAccessError, AccessDeniedError):
    """The Kubernetes API answered 401 or 403 (RBAC)."""


class ArgoCdAccessError(ReconcileError):
    """Argo CD's API could not be reached or answered with an error."""


class ArgoCdAccessDeniedError(ArgoCdAccessError, AccessDeniedError):
    """Argo CD's API rejected the token (401) or its permissions (403), or no token is configured."""


class TransportError(GitOpsServiceError):
    """The event transport (NATS, distributor) failed."""


class StateError(GitOpsServiceError):
    """The state store could not be read or written."""


class LeaseLostError(StateError):
    """Another replica has taken over a deployment this one was working on (its lease had expired)."""


class CDEventsError(GitOpsServiceError):
    """A CDEvent could not be built or delivered to its sink (HTTP or NATS); the outbox retries delivery."""


class WebhookError(GitOpsServiceError, ValueError):
    """A webhook request is refused; :attr:`status` is the HTTP answer. The message never contains a secret."""

    status = 400


class WebhookAuthError(WebhookError):
    """The request is not authenticated: a missing or wrong signature or shared secret (401)."""

    status = 401


class WebhookTooLargeError(WebhookError):
    """The request body is larger than the endpoint accepts (413)."""

    status = 413


class ForgeError(GitOpsServiceError):
    """A forge (Gitea, GitHub, GitLab) API call failed for good: refused, malformed, or still failing after its
    retries. The message names the forge, the repository and the call, never the token."""


class ForgeAccessDeniedError(ForgeError):
    """The forge rejected the token (401) or its permissions (403)."""
