"""Flux Kustomization verdicts on statuses shaped like the upstream fixtures (kustomize-controller's spec docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from keptn_gitops_service.reconcile.flux_rules import describe, kustomization_verdict
from keptn_gitops_service.reconcile.outcome import Verdict
from keptn_gitops_service.reconcile.revisions import revision_sha, split_revision

SHA = "67e2c98a60dc92283531412a9e604dd4bae005a9"


def kustomization_in(text: str) -> dict[str, Any]:
    """The Kustomization document of a (possibly multi-document) upstream file."""
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "Kustomization"]
    assert len(docs) == 1
    return dict(docs[0])


def load(upstream_fixtures: Path, name: str) -> dict[str, Any]:
    return kustomization_in((upstream_fixtures / "gitops" / "flux" / name).read_text())


def ks(*conditions: dict[str, Any], generation: int = 3, applied: str = "", attempted: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "carts", "namespace": "sockshop-dev", "generation": generation},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"}},
        "status": {"conditions": list(conditions), "lastAppliedRevision": applied, "lastAttemptedRevision": attempted},
    }


def cond(kind: str, status: str, reason: str, message: str = "", generation: int = 3) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


READY = cond("Ready", "True", "ReconciliationSucceeded", f"Applied revision: main@sha1:{SHA}")


def test_applied_ready_and_current_generation_passes() -> None:
    obs = kustomization_verdict(ks(READY, applied=f"main@sha1:{SHA}"), applied_ours=True, attempted_ours=True)
    assert obs.verdict is Verdict.SUCCEEDED
    assert obs.summary == (
        f"Kustomization sockshop-dev/carts: Ready=True (ReconciliationSucceeded: Applied revision: main@sha1:{SHA}), "
        f"lastAppliedRevision main@sha1:{SHA}, lastAttemptedRevision none"
    )


@pytest.mark.parametrize(
    ("obj", "applied_ours", "why"),
    [
        (ks(READY), False, "an older revision is applied"),
        (ks(cond("Ready", "True", "ReconciliationSucceeded", generation=2)), True, "Ready is for an older generation"),
        (ks(cond("Ready", "Unknown", "Progressing", "Reconciliation in progress")), True, "Ready Unknown"),
        (ks(READY, cond("Reconciling", "True", "Progressing")), True, "still reconciling"),
        (ks(READY, cond("Healthy", "Unknown", "Progressing")), True, "health checks still running"),
        (ks(cond("Ready", "False", "DependencyNotReady", "dependency 'infra' is not ready")), True, "blocked"),
        ({**ks(READY), "spec": {"suspend": True}}, True, "suspended"),
        (ks(), True, "no conditions yet"),
    ],
)
def test_still_in_progress(obj: dict[str, Any], applied_ours: bool, why: str) -> None:
    assert kustomization_verdict(obj, applied_ours=applied_ours, attempted_ours=True).verdict is Verdict.IN_PROGRESS, (
        why
    )


def test_healthy_true_passes_where_health_checks_exist() -> None:
    obj = ks(READY, cond("Healthy", "True", "Succeeded", "Health check passed in 2s"))
    assert kustomization_verdict(obj, applied_ours=True, attempted_ours=True).verdict is Verdict.SUCCEEDED


def test_failure_for_our_attempted_revision_fails_fast_with_reason_and_message() -> None:
    failed = cond("Ready", "False", "BuildFailed", "kustomize build failed: accumulating resources")
    obs = kustomization_verdict(ks(failed, attempted=f"main@sha1:{SHA}"), applied_ours=False, attempted_ours=True)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(
        "Flux failed to apply the revision: BuildFailed: kustomize build failed: accumulating resources. "
    )


def test_failure_of_an_older_revision_is_not_ours() -> None:
    failed = cond("Ready", "False", "BuildFailed", "broken")
    assert kustomization_verdict(ks(failed), applied_ours=False, attempted_ours=False).verdict is Verdict.IN_PROGRESS


def test_stalled_is_terminal() -> None:
    stalled = cond("Stalled", "True", "AccessDenied", "cross-namespace references are not allowed")
    assert kustomization_verdict(ks(stalled), applied_ours=False, attempted_ours=False).verdict is Verdict.FAILED


def test_upstream_failed_describe_fixture(upstream_fixtures: Path) -> None:
    """kustomization_failed_describe.txt: Reconciling/ProgressingWithRetry + Ready False/ArtifactFailed, legacy
    ``master/<sha>`` revisions, applied == attempted == ours (the path was removed in that commit)."""
    text = (upstream_fixtures / "gitops" / "flux" / "kustomization_failed_describe.txt").read_text()
    assert "ArtifactFailed" in text and f"master/{SHA}" in text
    obj = ks(
        cond("Reconciling", "True", "ProgressingWithRetry", f"Fetching manifests for revision master/{SHA}"),
        cond("Ready", "False", "ArtifactFailed", "kustomization path not found: stat /tmp/k/invalid: no such file"),
        applied=f"master/{SHA}",
        attempted=f"master/{SHA}",
    )
    obs = kustomization_verdict(obj, applied_ours=True, attempted_ours=True)
    assert obs.verdict is Verdict.FAILED and "ArtifactFailed: kustomization path not found" in obs.summary


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("argocd_lua_testdata_kustomization_healthy.yaml", Verdict.SUCCEEDED),
        ("argocd_lua_testdata_kustomization_progressing.yaml", Verdict.IN_PROGRESS),
        ("argocd_lua_testdata_kustomization_degraded.yaml", Verdict.FAILED),
    ],
)
def test_argocd_health_testdata(upstream_fixtures: Path, name: str, verdict: Verdict) -> None:
    """The testdata has no metadata.generation: use the one its Ready condition observed (controller caught up),
    and check that a newer generation (a spec change not yet reconciled) is never a pass."""
    obj = load(upstream_fixtures, name)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    obj["metadata"]["generation"] = ready["observedGeneration"]
    got = kustomization_verdict(obj, applied_ours=True, attempted_ours=True).verdict
    assert got is verdict, describe(obj)
    obj["metadata"]["generation"] += 1
    assert kustomization_verdict(obj, applied_ours=True, attempted_ours=True).verdict is Verdict.IN_PROGRESS


def test_flux2_cli_testdata_ready_kustomization(upstream_fixtures: Path) -> None:
    text = (upstream_fixtures / "gitops" / "flux" / "flux2_kustomization_ready.yaml.tmpl").read_text()
    obj = kustomization_in(text.replace("{{ .ns }}", "flux-system").replace("{{ .fluxns }}", "flux-system"))
    sha = revision_sha(obj["status"]["lastAppliedRevision"])
    assert sha
    assert kustomization_verdict(obj, applied_ours=True, attempted_ours=True).verdict is Verdict.SUCCEEDED


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        (f"main@sha1:{SHA}", ("main", SHA)),
        (f"feature/x@sha1:{SHA}", ("feature/x", SHA)),
        (f"refs/heads/main@sha1:{SHA}", ("refs/heads/main", SHA)),
        (f"main/{SHA}", ("main", SHA)),
        (f"HEAD/{SHA}", ("", SHA)),
        (f"sha1:{SHA}", ("", SHA)),
        (SHA, ("", SHA)),
        ("", ("", "")),
    ],
)
def test_both_revision_formats(revision: str, expected: tuple[str, str]) -> None:
    assert split_revision(revision) == expected
    assert revision_sha(revision) == expected[1]


def test_revision_without_sha() -> None:
    assert revision_sha("v1.2.3") == ""
    assert revision_sha(f"main@sha1:{SHA.upper()}") == SHA
