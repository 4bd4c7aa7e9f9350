"""state sub-package."""
