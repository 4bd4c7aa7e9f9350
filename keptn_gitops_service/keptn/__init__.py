"""keptn sub-package."""
