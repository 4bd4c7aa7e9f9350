"""gitops sub-package."""
