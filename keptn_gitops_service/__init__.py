"""keptn-gitops-service: answer Keptn ``deployment.triggered`` events by committing to a GitOps repository."""

__version__ = "0.1.0"
SERVICE_NAME = "keptn-gitops-service"
