"""The service's own error hierarchy.

Library exceptions (nats, httpx, lightkube, subprocess, yaml) never cross a sub-package boundary: each edge
wraps them into one of these, chaining the cause. Every error's ``str()`` is a complete, human sentence that
can go into a ``deployment.finished`` message as it is — so it must never contain a credential.
Like cloudevents' exceptions, input errors also inherit from :class:`ValueError`.
"""

from __future__ import annotations


class GitOpsServiceError(Exception):
    """Base of every error this package raises on purpose."""


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


class InvalidImageReferenceError(EditError):
    """A string is not a valid OCI image reference."""


class GitError(GitOpsServiceError):
    """A git operation failed (the message is already scrubbed of credentials)."""


class PushConflictError(GitError):
    """Our target changed under us to something else; re-applying would overwrite someone's change."""


class ReconcileError(GitOpsServiceError):
    """The GitOps controller reported a failure for our revision, or could not be observed."""


class ReconcileTimeoutError(ReconcileError):
    """The wait ran out before the controller applied our revision."""


class KubernetesAccessError(ReconcileError):
    """The Kubernetes API could not be reached or refused us (e.g. RBAC 403)."""


class TransportError(GitOpsServiceError):
    """The event transport (NATS, distributor) failed."""


class StateError(GitOpsServiceError):
    """The state store could not be read or written."""
