"""demo sub-package."""
