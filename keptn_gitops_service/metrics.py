"""Prometheus metrics of the service (served on ``/metrics`` by :mod:`web.probes`).

Module-level collectors in the default registry, observed where the work happens; names are prefixed
``keptn_gitops_``. Label values are Keptn stage names and results only — never free text — so cardinality stays
bounded by the project's shipyard.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

DEPLOYMENTS = Counter(
    "keptn_gitops_deployments_total", "Finished deployment triggers by stage and result.", ["stage", "result"]
)
ROLLBACKS = Counter(
    "keptn_gitops_rollbacks_total", "Finished rollback triggers by stage and result.", ["stage", "result"]
)
TIME_TO_COMMIT = Histogram(
    "keptn_gitops_time_to_commit_seconds", "From receiving a trigger to its commit being pushed.", buckets=_BUCKETS
)
TIME_TO_RECONCILE = Histogram(
    "keptn_gitops_time_to_reconcile_seconds",
    "From the pushed commit to the controller's verdict (or the timeout).",
    ["outcome"],
    buckets=_BUCKETS,
)
PUSH_RETRIES = Counter("keptn_gitops_push_retries_total", "Pushes rejected because someone else pushed first.")
IN_FLIGHT = Gauge("keptn_gitops_inflight_deployments", "Deployments started and not yet finished by this process.")
WATCH_RECONNECTS = Counter(
    "keptn_gitops_watch_reconnects_total", "Kubernetes watches re-listed after a drop, 410 Gone or an API error."
)
WEBHOOK_REQUESTS = Counter(
    "keptn_gitops_webhook_requests_total",
    "Webhook requests by endpoint (flux, argocd, forge) and HTTP answer (202 accepted as a hint; 400, 401, 413 "
    "refused).",
    ["endpoint", "code"],
)
