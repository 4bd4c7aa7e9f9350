"""The HTTP surface: health probes (and, later, webhooks and metrics)."""
