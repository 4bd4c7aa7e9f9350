"""Flux HelmRelease verdicts on statuses shaped like the upstream fixtures (helm-controller's spec docs)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from keptn_gitops_service.reconcile.helm_rules import (
    FAILURE_REASONS,
    chart_version_matches,
    describe_helmrelease,
    helmrelease_verdict,
)
from keptn_gitops_service.reconcile.outcome import Verdict

DIGEST = "sha256:e15c415d62760896bd8bec192a44c5716dc224db9e0fc609b9ac14718f8f9e56"
OTHER_DIGEST = "sha256:2598fd0e8c65bae746c6686a61c2b2709f47ba8ed5c36450ae1c30aea9c88e9f"


def flux_file(upstream_fixtures: Path, name: str) -> str:
    return (upstream_fixtures / "gitops" / "flux" / name).read_text()


def helmrelease_in(text: str) -> dict[str, Any]:
    """The HelmRelease document of a (possibly multi-document) upstream file."""
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "HelmRelease"]
    assert len(docs) == 1
    return dict(docs[0])


def cond(kind: str, status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


def snapshot(
    version: str = "6.5.3", status: str = "deployed", digest: str = DIGEST, release: int = 1
) -> dict[str, Any]:
    return {
        "chartName": "podinfo",
        "chartVersion": version,
        "configDigest": digest,
        "digest": "sha256:e59aeb8b854f42e44756c2ef552a073051f1fc4f90e68aacbae7f824139580bc",
        "name": "podinfo",
        "namespace": "default",
        "status": status,
        "version": release,
    }


TEST_OK = (
    "Helm test succeeded for release default/podinfo.v1 with chart podinfo@6.5.3: 3 test hooks completed successfully"
)
INSTALL_OK = "Helm install succeeded for release default/podinfo.v1 with chart podinfo@6.5.3"


def ready_hr() -> dict[str, Any]:
    """helmrelease_ready_describe.txt as an object (kubectl describe output is not YAML; values copied)."""
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": "default", "generation": 1},
        "spec": {"chart": {"spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}},
        "status": {
            "conditions": [
                cond("Ready", "True", "TestSucceeded", TEST_OK),
                cond("Released", "True", "InstallSucceeded", INSTALL_OK),
                cond("TestSuccess", "True", "TestSucceeded", TEST_OK),
            ],
            "helmChart": "default/default-podinfo",
            "history": [snapshot()],
            "lastAttemptedConfigDigest": DIGEST,
            "lastAttemptedGeneration": 1,
            "lastAttemptedReleaseAction": "install",
            "lastAttemptedRevision": "6.5.3",
            "observedGeneration": 1,
            "storageNamespace": "default",
        },
    }


def conditions_of(hr: dict[str, Any]) -> list[dict[str, Any]]:
    return list(hr["status"]["conditions"])


def replace_condition(hr: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    hr = copy.deepcopy(hr)
    hr["status"]["conditions"] = [c for c in conditions_of(hr) if c["type"] != new["type"]] + [new]
    return hr


def test_ready_describe_fixture_passes(upstream_fixtures: Path) -> None:
    text = flux_file(upstream_fixtures, "helmrelease_ready_describe.txt")
    for value in (
        DIGEST,
        "Chart Version:   6.5.3",
        "Status:          deployed",
        TEST_OK,
        "Last Attempted Generation:      1",
    ):
        assert value in text
    obs = helmrelease_verdict(ready_hr(), expected_chart_version="6.5.3", expected_values_digest=DIGEST)
    assert obs.verdict is Verdict.SUCCEEDED
    assert obs.summary == (
        f"HelmRelease default/podinfo: Ready=True (TestSucceeded: {TEST_OK}), "
        "release default/podinfo.v1 deployed with chart podinfo@6.5.3, generation 1 (observed 1, last attempted 1)"
    )


def test_ready_unknown_at_the_start_of_every_reconcile_is_neither_success_nor_failure() -> None:
    """helm-controller marks Ready=Unknown/Progressing "reconciliation in progress" on every reconcile, also the
    periodic ones of an unchanged generation; the release itself is still the good one."""
    opening = replace_condition(ready_hr(), cond("Ready", "Unknown", "Progressing", "reconciliation in progress"))
    opening["status"]["conditions"].append(cond("Reconciling", "True", "Progressing", "Fulfilling prerequisites"))
    obs = helmrelease_verdict(opening, expected_chart_version="6.5.3")
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for Ready=True for the current generation, the running reconcile to finish")
    closing = replace_condition(opening, cond("Reconciling", "False", "Succeeded"))
    closing = replace_condition(closing, cond("Ready", "True", "TestSucceeded", TEST_OK))
    assert helmrelease_verdict(closing, expected_chart_version="6.5.3").verdict is Verdict.SUCCEEDED


def test_testfailed_and_stalled_describe_fixture_fails_with_both_reasons(upstream_fixtures: Path) -> None:
    """helmrelease_testfailed_stalled_describe.txt: Stalled/RetriesExceeded, Ready False/TestFailed with a
    two-line message, Released True; the summary must stay on one line."""
    text = flux_file(upstream_fixtures, "helmrelease_testfailed_stalled_describe.txt")
    failed = (
        "Helm test failed for release podinfo/podinfo.v1 with chart podinfo@6.5.3: 1 error occurred:\n"
        "* pod podinfo-fault-test-a0tew failed"
    )
    assert "Failed to install after 1 attempt(s)" in text and "* pod podinfo-fault-test-a0tew failed" in text
    assert OTHER_DIGEST in text
    hr = ready_hr()
    hr["metadata"]["namespace"] = "podinfo"
    hr["status"]["conditions"] = [
        cond("Stalled", "True", "RetriesExceeded", "Failed to install after 1 attempt(s)"),
        cond("Ready", "False", "TestFailed", failed),
        cond("Released", "True", "InstallSucceeded", INSTALL_OK.replace("default/", "podinfo/")),
        cond("TestSuccess", "False", "TestFailed", failed),
    ]
    hr["status"]["history"] = [snapshot(digest=OTHER_DIGEST)]
    hr["status"]["lastAttemptedConfigDigest"] = OTHER_DIGEST
    obs = helmrelease_verdict(hr, expected_chart_version="6.5.3")
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith("Flux stalled: RetriesExceeded: Failed to install after 1 attempt(s). HelmRelease")
    assert "Ready=False (TestFailed: Helm test failed for release podinfo/podinfo.v1 with chart podinfo@6.5.3: " in (
        obs.summary
    )
    assert "1 error occurred: * pod podinfo-fault-test-a0tew failed)" in obs.summary
    assert "\n" not in obs.summary
    # Before remediation gave up (no Stalled yet) the TestFailed of the current generation already fails fast.
    hr["status"]["conditions"] = hr["status"]["conditions"][1:]
    obs = helmrelease_verdict(hr, expected_chart_version="6.5.3")
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith("Flux failed to release the HelmRelease: TestFailed: Helm test failed for release")


def degraded_testdata(upstream_fixtures: Path) -> dict[str, Any]:
    """argocd_lua_testdata_helmrelease_degraded.yaml: UpgradeFailed (Kyverno admission denial) → RollbackSucceeded,
    Reconciling ProgressingWithRetry. The testdata has no metadata.generation, status.observedGeneration or
    lastAttemptedGeneration; the test sets what helm-controller writes while it retries: generation 5 (the
    conditions' observedGeneration), attempted 5, observedGeneration still 4."""
    hr = helmrelease_in(flux_file(upstream_fixtures, "argocd_lua_testdata_helmrelease_degraded.yaml"))
    assert {c["observedGeneration"] for c in hr["status"]["conditions"]} == {5}
    hr["metadata"]["generation"] = 5
    hr["status"].update(observedGeneration=4, lastAttemptedGeneration=5)
    return hr


def test_rollback_after_upgrade_failed_fails_fast_with_the_root_cause(upstream_fixtures: Path) -> None:
    obs = helmrelease_verdict(degraded_testdata(upstream_fixtures))
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(
        "Flux failed to release the HelmRelease: RollbackSucceeded: Helm rollback to previous release "
        "default/podinfo.v24 with chart podinfo@6.5.4 succeeded; Released=False UpgradeFailed: Helm upgrade failed "
        'for release default/podinfo with chart podinfo@6.5.4: cannot patch "podinfo" with kind Deployment: '
        'admission webhook "validate.kyverno.svc-fail" denied the request: resource Deployment/default/podinfo'
    )
    assert "\n" not in obs.summary


def test_failure_of_a_generation_not_yet_attempted_is_not_ours(upstream_fixtures: Path) -> None:
    """Our commit bumped the spec to generation 6; the rollback conditions are still those of generation 5."""
    hr = degraded_testdata(upstream_fixtures)
    hr["metadata"]["generation"] = 6
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for generation 6 to be reconciled (observedGeneration 4)")
    # Even with a Ready condition claiming the new generation, the attempt must be for it too.
    for c in hr["status"]["conditions"]:
        c["observedGeneration"] = 6
    assert helmrelease_verdict(hr).verdict is Verdict.IN_PROGRESS
    hr["status"]["lastAttemptedGeneration"] = 6
    assert helmrelease_verdict(hr).verdict is Verdict.FAILED


def test_missing_last_attempted_generation_falls_back_to_the_ready_condition(upstream_fixtures: Path) -> None:
    hr = degraded_testdata(upstream_fixtures)
    del hr["status"]["lastAttemptedGeneration"]
    assert helmrelease_verdict(hr).verdict is Verdict.FAILED
    hr["metadata"]["generation"] = 6
    assert helmrelease_verdict(hr).verdict is Verdict.IN_PROGRESS


def test_progressing_testdata_is_in_progress(upstream_fixtures: Path) -> None:
    """argocd_lua_testdata_helmrelease_progressing.yaml: Running 'upgrade' action, Ready Unknown. Generation 3
    (its conditions) is being reconciled, the previous reconcile finished generation 2."""
    hr = helmrelease_in(flux_file(upstream_fixtures, "argocd_lua_testdata_helmrelease_progressing.yaml"))
    hr["metadata"]["generation"] = 3
    hr["status"].update(observedGeneration=2, lastAttemptedGeneration=3)
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert "Ready=Unknown (Progressing: Running 'upgrade' action with timeout of 5m0s)" in obs.summary


def test_healthy_testdata_needs_a_release_history(upstream_fixtures: Path) -> None:
    """argocd_lua_testdata_helmrelease_healthy.yaml is Healthy to Argo CD's Lua check (Ready and Released True)
    but carries no status.history, so the release cannot be checked: in progress until a snapshot is there (the
    test adds the podinfo 6.5.4 release its message names)."""
    hr = helmrelease_in(flux_file(upstream_fixtures, "argocd_lua_testdata_helmrelease_healthy.yaml"))
    hr["metadata"]["generation"] = 2
    hr["status"]["observedGeneration"] = 2
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith(
        "no release in status.history, generation 2 (observed 2, last attempted none)"
        "; waiting for a release in status.history"
    )
    hr["status"]["history"] = [snapshot("6.5.4")]
    hr["status"]["lastAttemptedConfigDigest"] = DIGEST
    assert helmrelease_verdict(hr, expected_chart_version="6.5.4").verdict is Verdict.SUCCEEDED


def history_hr(upstream_fixtures: Path) -> dict[str, Any]:
    """helmrelease_status_history.yaml (docs "History example": OCI chart 6.6.1+0cc9a8446c95 deployed over
    6.6.0+cdd538a0167e); the example has only status.history, the test adds a settled Ready=True and the digest
    Flux last attempted."""
    hr = helmrelease_in(flux_file(upstream_fixtures, "helmrelease_status_history.yaml"))
    hr["metadata"].update(name="podinfo", namespace="podinfo", generation=2)
    hr["status"].update(
        observedGeneration=2,
        lastAttemptedGeneration=2,
        lastAttemptedConfigDigest=hr["status"]["history"][0]["configDigest"],
        conditions=[cond("Ready", "True", "UpgradeSucceeded", "Helm upgrade succeeded", 2)],
    )
    return hr


@pytest.mark.parametrize(
    ("expected", "verdict"),
    [
        ("6.6.1", Verdict.SUCCEEDED),
        ("6.6.1+0cc9a8446c95", Verdict.SUCCEEDED),
        ("6.6.0", Verdict.IN_PROGRESS),
        ("6.6", Verdict.IN_PROGRESS),
        ("6.6.1+cdd538a0167e", Verdict.IN_PROGRESS),
        ("6.6.10", Verdict.IN_PROGRESS),
    ],
)
def test_chart_version_with_digest_suffix(upstream_fixtures: Path, expected: str, verdict: Verdict) -> None:
    obs = helmrelease_verdict(history_hr(upstream_fixtures), expected_chart_version=expected)
    assert obs.verdict is verdict, obs.summary
    if verdict is Verdict.IN_PROGRESS:
        assert obs.summary.endswith(f"; waiting for chart version {expected} (released: 6.6.1+0cc9a8446c95)")


def test_chart_version_matches() -> None:
    assert chart_version_matches("6.6.1+0cc9a8446c95", "6.6.1")
    assert chart_version_matches("6.6.1", "6.6.1")
    assert not chart_version_matches("6.6.1-rc.1", "6.6.1")
    assert not chart_version_matches("6.6.1", "")


def test_values_digest(upstream_fixtures: Path) -> None:
    hr = history_hr(upstream_fixtures)
    assert helmrelease_verdict(hr, expected_values_digest=DIGEST).verdict is Verdict.SUCCEEDED
    obs = helmrelease_verdict(hr, expected_values_digest=OTHER_DIGEST)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith(f"; waiting for values digest {OTHER_DIGEST} (released: {DIGEST})")


def test_values_flux_attempted_are_not_the_released_ones(upstream_fixtures: Path) -> None:
    """lastAttemptedConfigDigest moved on (new values) but history[0] is still the release of the old values."""
    hr = history_hr(upstream_fixtures)
    hr["status"]["lastAttemptedConfigDigest"] = OTHER_DIGEST
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert f"the released values digest {DIGEST} to equal lastAttemptedConfigDigest {OTHER_DIGEST}" in obs.summary


@pytest.mark.parametrize("state", ["failed", "pending-upgrade", "superseded"])
def test_latest_release_must_be_deployed(upstream_fixtures: Path, state: str) -> None:
    hr = history_hr(upstream_fixtures)
    hr["status"]["history"][0]["status"] = state
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert f"the latest release to be deployed (it is {state})" in obs.summary


@pytest.mark.parametrize("reason", sorted(FAILURE_REASONS))
def test_every_failure_reason_of_the_current_generation_fails(reason: str) -> None:
    hr = replace_condition(ready_hr(), cond("Ready", "False", reason, f"{reason} happened"))
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(f"Flux failed to release the HelmRelease: {reason}: {reason} happened. ")


def test_failure_reasons_are_those_of_the_reference() -> None:
    assert {
        "InstallFailed",
        "UpgradeFailed",
        "TestFailed",
        "RollbackSucceeded",
        "RollbackFailed",
        "UninstallSucceeded",
        "UninstallFailed",
        "ArtifactFailed",
        "InitFailed",
    } == FAILURE_REASONS


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("DependencyNotReady", "waits for dependsOn"),
        ("Progressing", "an action is running"),
        ("GetLastReleaseFailed", "an arbitrary controller error is retried, not a release failure"),
    ],
)
def test_ready_false_for_other_reasons_is_waited_out(reason: str, why: str) -> None:
    hr = replace_condition(ready_hr(), cond("Ready", "False", reason, "x"))
    assert helmrelease_verdict(hr).verdict is Verdict.IN_PROGRESS, why


def test_only_ready_false_is_a_failure() -> None:
    """A failure reason on a Ready condition that is not False (e.g. Unknown while the controller retries)."""
    hr = replace_condition(ready_hr(), cond("Ready", "Unknown", "UpgradeFailed", "retrying"))
    assert helmrelease_verdict(hr).verdict is Verdict.IN_PROGRESS


def test_failure_on_a_stale_ready_condition_is_not_current() -> None:
    hr = replace_condition(ready_hr(), cond("Ready", "False", "UpgradeFailed", "old failure", generation=0))
    assert helmrelease_verdict(hr).verdict is Verdict.IN_PROGRESS


def test_ready_true_of_an_older_generation_is_not_success() -> None:
    hr = replace_condition(ready_hr(), cond("Ready", "True", "TestSucceeded", TEST_OK, generation=0))
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for Ready=True for the current generation")


def test_new_generation_not_yet_observed_is_in_progress() -> None:
    hr = ready_hr()
    hr["metadata"]["generation"] = 2
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for generation 2 to be reconciled (observedGeneration 1)")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("RetriesExceeded", "Failed to upgrade after 3 attempt(s)"),
        ("MissingRollbackTarget", "Failed to perform remediation: missing target release for rollback"),
    ],
)
def test_stalled_is_terminal(reason: str, message: str) -> None:
    hr = ready_hr()
    hr["status"]["conditions"].append(cond("Stalled", "True", reason, message))
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(f"Flux stalled: {reason}: {message}. HelmRelease default/podinfo: ")


def test_stalled_false_is_ignored() -> None:
    hr = ready_hr()
    hr["status"]["conditions"].append(cond("Stalled", "False", "Succeeded"))
    assert helmrelease_verdict(hr).verdict is Verdict.SUCCEEDED


def test_suspended_is_in_progress_with_a_note() -> None:
    hr = ready_hr()
    hr["spec"]["suspend"] = True
    hr["status"]["conditions"].append(cond("Stalled", "True", "RetriesExceeded", "x"))
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith(" (suspended)")


def test_flux2_trace_fixture_with_a_pre_v2_status_is_never_a_pass(upstream_fixtures: Path) -> None:
    """flux2_trace_hr_ks_gitrepo.yaml.tmpl: apiVersion v2 but the v2beta1-era status (lastAppliedRevision,
    lastAttemptedValuesChecksum, Ready ReconciliationSucceeded, no history, no generations)."""
    text = flux_file(upstream_fixtures, "flux2_trace_hr_ks_gitrepo.yaml.tmpl")
    hr = helmrelease_in(text.replace("{{ .ns }}", "default").replace("{{ .fluxns }}", "flux-system"))
    assert hr["status"]["lastAppliedRevision"] == "6.3.5"
    obs = helmrelease_verdict(hr, expected_chart_version="6.3.5")
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary == (
        "HelmRelease default/podinfo: Ready=True (ReconciliationSucceeded: Release reconciliation succeeded), "
        "no release in status.history, generation ? (observed none, last attempted none); "
        "waiting for a release in status.history"
    )


def test_describe_without_status() -> None:
    hr = {"metadata": {"name": "podinfo", "namespace": "default", "generation": 1}, "spec": {}}
    assert describe_helmrelease(hr) == (
        "HelmRelease default/podinfo: no Ready condition yet, no release in status.history, "
        "generation 1 (observed none, last attempted none)"
    )
    obs = helmrelease_verdict(hr)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for generation 1 to be reconciled (observedGeneration none)")
