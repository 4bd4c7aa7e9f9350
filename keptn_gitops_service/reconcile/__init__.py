"""reconcile sub-package."""
