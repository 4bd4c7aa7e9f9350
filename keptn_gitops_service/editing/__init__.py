"""editing sub-package."""
