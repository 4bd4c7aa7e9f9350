"""workflow sub-package."""
