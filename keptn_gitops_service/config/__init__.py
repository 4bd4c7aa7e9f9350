"""config sub-package."""
