"""Argo CD Application verdicts on statuses shaped like the upstream fixtures (Argo CD's application status)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from keptn_gitops_service.reconcile.argo_rules import (
    FAILED_PHASES,
    application_verdict,
    describe_application,
    refresh_patch,
    sync_operation,
)
from keptn_gitops_service.reconcile.outcome import Observation, Verdict

SHA = "ea8759964626a583667a2bfd08f334ec2070040a"  # the fixture's syncResult/history revision
NEWER = "1f0c2d7e9b8a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"  # someone else's commit on top of ours
OLDER = "0123456789abcdef0123456789abcdef01234567"  # before ours
FINISHED = datetime(2024, 3, 5, 7, 33, 4, tzinfo=UTC)  # the fixture's operationState.finishedAt
NOW = FINISHED + timedelta(seconds=5)


def ours_or_descendant(revision: str) -> bool:
    """Linear history OLDER → SHA → NEWER: SHA and NEWER contain our commit."""
    return revision in (SHA, NEWER)


def fixture_app(upstream_fixtures: Path) -> dict[str, Any]:
    """application_status_synced_succeeded.yaml (argo-cd controller/testdata/diff-cache.yaml). Its sync.revision
    is the test placeholder ``rev1`` while syncResult/history say ea87599…; a live controller writes the resolved
    SHA there (controller/state.go CompareAppState), so this helper sets sync.revision = syncResult.revision."""
    app = dict(
        yaml.safe_load(
            (upstream_fixtures / "gitops" / "argocd" / "application_status_synced_succeeded.yaml").read_text()
        )
    )
    assert app["status"]["sync"]["revision"] == "rev1"
    assert app["status"]["operationState"]["syncResult"]["revision"] == SHA
    app["status"]["sync"]["revision"] = SHA
    return app


def judge(app: dict[str, Any], **kwargs: Any) -> Observation:
    options: dict[str, Any] = {"commit_matches": ours_or_descendant, "now": NOW}
    options.update(kwargs)
    return application_verdict(app, **options)


def test_fixture_synced_succeeded_passes(upstream_fixtures: Path) -> None:
    obs = judge(fixture_app(upstream_fixtures))
    assert obs.verdict is Verdict.SUCCEEDED
    assert obs.summary == (
        "Application argo-cd/velero-test: sync Synced to ea8759964626, health Healthy, "
        "last operation Succeeded for ea8759964626 (finished 2024-03-05T07:33:04Z), reconciledAt 2024-03-05T07:33:04Z"
    )


def test_fixture_placeholder_revision_is_not_our_commit(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"]["revision"] = "rev1"
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for Argo CD to sync our commit or a newer one")


def test_a_newer_commit_from_someone_else_applied_before_ours_is_seen(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"]["revision"] = NEWER
    app["status"]["operationState"]["syncResult"]["revision"] = NEWER
    asked: list[str] = []

    def matches(revision: str) -> bool:
        asked.append(revision)
        return ours_or_descendant(revision)

    assert judge(app, commit_matches=matches).verdict is Verdict.SUCCEEDED
    assert asked and set(asked) == {NEWER}
    # The same status judged for a commit that NEWER does not contain stays in progress.
    assert judge(app, commit_matches=lambda r: r == SHA).verdict is Verdict.IN_PROGRESS


def test_an_older_revision_is_in_progress(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"]["revision"] = OLDER
    assert judge(app).verdict is Verdict.IN_PROGRESS


def test_stale_health_right_after_a_sync(upstream_fixtures: Path) -> None:
    """reconciledAt < finishedAt: the health loop has not run since the operation finished (akuity/kargo#2196);
    the fixture's equal timestamps are the boundary that counts as reconciled."""
    app = fixture_app(upstream_fixtures)
    app["status"]["reconciledAt"] = "2024-03-05T07:33:03Z"
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; health not trusted yet: the Application was not reconciled after its last operation")
    del app["status"]["reconciledAt"]
    assert judge(app).verdict is Verdict.IN_PROGRESS
    app["status"]["reconciledAt"] = "2024-03-05T07:33:05Z"
    assert judge(app).verdict is Verdict.SUCCEEDED


def test_stale_degraded_health_does_not_fail_either(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["reconciledAt"] = "2024-03-05T07:30:00Z"
    app["status"]["health"] = {"status": "Degraded", "lastTransitionTime": "2024-03-05T07:00:00Z"}
    assert judge(app, now=FINISHED + timedelta(hours=1)).verdict is Verdict.IN_PROGRESS


def test_pending_operation(upstream_fixtures: Path) -> None:
    """A requested operation (top-level ``operation``) makes the old operationState and health irrelevant."""
    app = fixture_app(upstream_fixtures)
    app["operation"] = sync_operation(NEWER, shkeptncontext="ctx", triggeredid="tid")
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; a sync operation is requested but has not started")


def test_running_operation(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    ops = app["status"]["operationState"]
    ops.update(phase="Running", message="one or more tasks are running")
    del ops["finishedAt"]
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert "last operation Running for ea8759964626 (started 2024-03-05T07:33:03Z)" in obs.summary
    assert obs.summary.endswith("; the operation has not finished")


def test_running_operation_while_the_operation_is_still_set_says_what_it_runs(upstream_fixtures: Path) -> None:
    """Argo CD v2.14 keeps ``operation`` until the write that ends it; the first ``Running`` writes have no
    ``syncResult`` yet, the revision is in ``operationState.operation.sync``."""
    app = fixture_app(upstream_fixtures)
    app["operation"] = {"sync": {"revision": NEWER}, "initiatedBy": {"automated": True}}
    ops = app["status"]["operationState"]
    ops.update(phase="Running", message="one or more tasks are running", operation=app["operation"])
    del ops["finishedAt"], ops["syncResult"]
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert f"last operation Running for {NEWER[:12]} (started " in obs.summary
    assert obs.summary.endswith("; the sync operation is Running: one or more tasks are running")


@pytest.mark.parametrize("between_attempts", [True, False])
def test_a_retried_sync_reports_the_attempts_and_argos_message(upstream_fixtures: Path, between_attempts: bool) -> None:
    """Auto-sync retries a failed sync (5 times by default): the operation stays ``Running`` with ``retryCount``,
    ``finishedAt`` set between attempts, and Argo CD's message — not "requested but has not started"."""
    app = fixture_app(upstream_fixtures)
    message = (
        'one or more objects failed to apply, reason: ConfigMap "orders" is invalid: metadata.labels: Invalid '
        'value: "docker.io/x:1" due to application controller sync timeout. Retrying attempt #2 at 7:34AM.'
    )
    app["operation"] = {"sync": {"revision": SHA}, "initiatedBy": {"automated": True}, "retry": {"limit": 5}}
    ops = app["status"]["operationState"]
    ops.update(phase="Running", message=message, retryCount=2, operation=app["operation"])
    del ops["syncResult"]
    if not between_attempts:
        del ops["finishedAt"]
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    waiting = "waiting to retry" if between_attempts else "retrying"
    assert obs.summary.endswith(
        f"; the sync operation is Running, {waiting} after 2 failed attempt(s): {' '.join(message.split())}"
    ), obs.summary
    if between_attempts:
        assert f"last operation Running for {SHA[:12]} (attempt 2 failed 2024-03-05T07:33:04Z)" in obs.summary


def test_succeeded_phase_without_finished_at_is_not_trusted(upstream_fixtures: Path) -> None:
    """The inconsistent terminal state argoproj/argo-cd#29636 reports after a controller restart (phase
    Succeeded, no finishedAt): like ``argocd app wait``, only finishedAt ends an operation."""
    app = fixture_app(upstream_fixtures)
    del app["status"]["operationState"]["finishedAt"]
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; the operation has not finished")


@pytest.mark.parametrize("phase", ["Failed", "Error"])
def test_failed_sync_of_our_revision_fails_with_the_operation_message(upstream_fixtures: Path, phase: str) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"].update(revision=OLDER, status="OutOfSync")
    app["status"]["operationState"].update(
        phase=phase,
        message='one or more objects failed to apply, reason: Deployment.apps "test-lla" is invalid:\n'
        "spec.template.spec.containers[0].image: Required value",
    )
    obs = judge(app)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(
        f"Argo CD sync failed ({phase}): one or more objects failed to apply, reason: "
        'Deployment.apps "test-lla" is invalid: spec.template.spec.containers[0].image: Required value. '
        "Application argo-cd/velero-test: sync OutOfSync to 0123456789ab"
    )


def test_failed_sync_of_an_older_revision_is_not_ours(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"]["revision"] = OLDER
    app["status"]["operationState"]["phase"] = "Failed"
    app["status"]["operationState"]["syncResult"]["revision"] = OLDER
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    # Ours got synced without an operation (no manifest change): the old failure still blocks a pass.
    app["status"]["sync"]["revision"] = SHA
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith("; waiting for a successful sync operation")


def test_failed_phases_are_those_of_the_on_sync_failed_trigger(upstream_fixtures: Path) -> None:
    text = (upstream_fixtures / "gitops" / "argocd" / "notifications_trigger_on-sync-failed.yaml").read_text()
    trigger = yaml.safe_load(text)[0]
    assert trigger["oncePer"] == "app.status.operationState?.syncResult?.revision"
    listed = re.search(r"phase in \[([^\]]*)\]", trigger["when"])
    assert listed is not None
    assert {p.strip().strip("'") for p in listed.group(1).split(",")} == FAILED_PHASES


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("SyncError", "Failed last sync attempt to [ea8759964626a583667a2bfd08f334ec2070040a]: one or more objects"),
        ("ComparisonError", "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error"),
        ("InvalidSpecError", "application destination server 'https://x' and namespace 'y' do not match"),
    ],
)
def test_error_conditions_fail_with_their_message(upstream_fixtures: Path, kind: str, message: str) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["conditions"] = [
        {"type": "OrphanedResourceWarning", "message": "1 orphaned resource"},
        {"type": kind, "message": message, "lastTransitionTime": "2024-03-05T07:33:04Z"},
    ]
    obs = judge(app)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(f"Argo CD reports {kind}: {message}. Application argo-cd/velero-test: ")
    assert obs.summary.endswith(f", conditions OrphanedResourceWarning, {kind}")


def test_warning_conditions_do_not_fail(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["conditions"] = [{"type": "SharedResourceWarning", "message": "shared with app x"}]
    assert judge(app).verdict is Verdict.SUCCEEDED


def test_error_conditions_wait_for_a_requested_refresh(upstream_fixtures: Path) -> None:
    """A ComparisonError of the broken commit we are fixing forward: while our refresh request is pending the
    condition may predate our commit (sync.revision is only the unresolved targetRevision then)."""
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"].update(revision="test-lla", status="Unknown")
    app["status"]["conditions"] = [{"type": "ComparisonError", "message": "Failed to load target state: boom"}]
    app["metadata"]["annotations"].update(refresh_patch()["metadata"]["annotations"])
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary.endswith(
        ", conditions ComparisonError, normal refresh requested; waiting for the requested "
        "refresh before trusting errors"
    )
    del app["metadata"]["annotations"]["argocd.argoproj.io/refresh"]
    assert judge(app).verdict is Verdict.FAILED


def test_no_operation_state_at_all(upstream_fixtures: Path) -> None:
    """Legacy/odd objects: an Application synced by auto-sync without ever recording an operation, and one
    without reconciledAt; only sync and health count then."""
    app = fixture_app(upstream_fixtures)
    del app["status"]["operationState"]
    del app["status"]["reconciledAt"]
    obs = judge(app)
    assert obs.verdict is Verdict.SUCCEEDED
    assert obs.summary.endswith("no operation yet, reconciledAt never")
    del app["status"]["health"]
    assert judge(app).verdict is Verdict.IN_PROGRESS


def test_no_status_at_all() -> None:
    app = {"metadata": {"name": "carts", "namespace": "argocd"}, "spec": {"source": {"repoURL": "x"}}}
    obs = judge(app)
    assert obs.verdict is Verdict.IN_PROGRESS
    assert obs.summary == (
        "Application argocd/carts: sync unknown to no revision, health unknown, no operation yet, reconciledAt never; "
        "waiting for Argo CD to sync our commit or a newer one"
    )


@pytest.mark.parametrize(
    ("sync_status", "health", "why"),
    [
        ("OutOfSync", "Healthy", "our revision compared but not applied yet"),
        ("Unknown", "Healthy", "comparison failed"),
        ("Synced", "Progressing", "rolling out"),
        ("Synced", "Suspended", "paused rollout"),
        ("Synced", "Missing", "resources not created yet"),
        ("Synced", "Unknown", "health unknown"),
    ],
)
def test_still_in_progress(upstream_fixtures: Path, sync_status: str, health: str, why: str) -> None:
    app = fixture_app(upstream_fixtures)
    app["status"]["sync"]["status"] = sync_status
    app["status"]["health"] = {"status": health}
    assert judge(app, now=NOW + timedelta(hours=1)).verdict is Verdict.IN_PROGRESS, why


def degraded(upstream_fixtures: Path, since: str | None) -> dict[str, Any]:
    app = fixture_app(upstream_fixtures)
    app["status"]["health"] = {"status": "Degraded", "message": 'Deployment "test-lla" exceeded its progress deadline'}
    if since:
        app["status"]["health"]["lastTransitionTime"] = since
    return app


def test_degraded_within_and_after_the_grace_period(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, "2024-03-05T07:33:10Z")
    since = datetime(2024, 3, 5, 7, 33, 10, tzinfo=UTC)
    assert judge(app, now=since + timedelta(seconds=60)).verdict is Verdict.IN_PROGRESS
    obs = judge(app, now=since + timedelta(seconds=61))
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(
        "Argo CD reports the Application Degraded for 1m1s. Application argo-cd/velero-test: sync Synced to "
        'ea8759964626, health Degraded (Deployment "test-lla" exceeded its progress deadline)'
    )
    assert judge(app, now=since + timedelta(minutes=5), degraded_grace=timedelta(minutes=10)).verdict is (
        Verdict.IN_PROGRESS
    )


def test_degraded_since_the_caller_first_saw_it_when_health_has_no_transition_time(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, None)
    seen = FINISHED + timedelta(seconds=30)
    assert judge(app, now=seen + timedelta(seconds=30), degraded_since=seen).verdict is Verdict.IN_PROGRESS
    assert judge(app, now=seen + timedelta(seconds=90), degraded_since=seen).verdict is Verdict.FAILED
    # Neither time known: waited out until the caller's deadline.
    assert judge(app, now=seen + timedelta(hours=1)).verdict is Verdict.IN_PROGRESS
    # The status's own time wins over the caller's.
    app["status"]["health"]["lastTransitionTime"] = "2024-03-05T08:00:00Z"
    late = datetime(2024, 3, 5, 8, 0, 30, tzinfo=UTC)
    assert judge(app, now=late, degraded_since=seen).verdict is Verdict.IN_PROGRESS


def test_degraded_clock_starts_when_our_sync_finished(upstream_fixtures: Path) -> None:
    """Health was already Degraded (the previous version) long before our operation finished."""
    app = degraded(upstream_fixtures, "2024-03-05T06:00:00Z")
    assert judge(app, now=FINISHED + timedelta(seconds=59)).verdict is Verdict.IN_PROGRESS
    assert judge(app, now=FINISHED + timedelta(seconds=61)).verdict is Verdict.FAILED


def test_degraded_on_another_revision_never_fails(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, "2024-03-05T07:33:04Z")
    app["status"]["sync"]["revision"] = OLDER
    assert judge(app, now=FINISHED + timedelta(hours=1)).verdict is Verdict.IN_PROGRESS


def test_degraded_does_not_fail_while_a_refresh_is_pending(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, "2024-03-05T07:33:04Z")
    app["metadata"]["annotations"].update(refresh_patch(hard=True)["metadata"]["annotations"])
    assert judge(app, now=FINISHED + timedelta(hours=1)).verdict is Verdict.IN_PROGRESS


def test_naive_now_is_utc(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, "2024-03-05T07:33:04Z")
    assert judge(app, now=datetime(2024, 3, 5, 7, 34, 0)).verdict is Verdict.IN_PROGRESS
    assert judge(app, now=datetime(2024, 3, 5, 7, 34, 10)).verdict is Verdict.FAILED


CHART = "1.2.3"


def multi_source(upstream_fixtures: Path) -> dict[str, Any]:
    """The fixture turned into a two-source Application: a Helm chart (revision = chart version) and the GitOps
    repository with the values (``ref: values``), the shape of argo-cd's multi-source docs."""
    app = fixture_app(upstream_fixtures)
    git = copy.deepcopy(app["spec"].pop("source"))
    chart = {"repoURL": "https://charts.example.com", "chart": "velero", "targetRevision": CHART}
    app["spec"]["sources"] = [chart, {**git, "ref": "values"}]
    app["status"]["sync"].pop("revision")
    app["status"]["sync"]["revisions"] = [CHART, SHA]
    result = app["status"]["operationState"]["syncResult"]
    result.pop("revision")
    result["revisions"] = [CHART, SHA]
    return app


def test_multi_source_counts_the_source_given_by_index(upstream_fixtures: Path) -> None:
    app = multi_source(upstream_fixtures)
    obs = judge(app, source_index=1)
    assert obs.verdict is Verdict.SUCCEEDED
    assert "sync Synced to 1.2.3, ea8759964626" in obs.summary
    assert judge(app, source_index=0).verdict is Verdict.IN_PROGRESS
    # Without an index every source must be our commit (or newer): the chart version is not.
    assert judge(app).verdict is Verdict.IN_PROGRESS
    app["status"]["sync"]["revisions"] = [CHART, OLDER]
    assert judge(app, source_index=1).verdict is Verdict.IN_PROGRESS


def test_multi_source_all_sources_from_our_repository(upstream_fixtures: Path) -> None:
    app = multi_source(upstream_fixtures)
    app["status"]["sync"]["revisions"] = [SHA, NEWER]
    assert judge(app).verdict is Verdict.SUCCEEDED
    app["status"]["sync"]["revisions"] = [OLDER, NEWER]
    assert judge(app).verdict is Verdict.IN_PROGRESS


def test_multi_source_failed_sync_of_our_source(upstream_fixtures: Path) -> None:
    app = multi_source(upstream_fixtures)
    app["status"]["operationState"].update(phase="Failed", message="ComparisonError: values file not found")
    assert judge(app, source_index=1).verdict is Verdict.FAILED
    app["status"]["operationState"]["syncResult"]["revisions"] = [CHART, OLDER]
    assert judge(app, source_index=1).verdict is Verdict.IN_PROGRESS


def test_multi_source_status_shorter_than_the_index(upstream_fixtures: Path) -> None:
    """Right after a source was added the status still lists the old sources only."""
    app = multi_source(upstream_fixtures)
    app["status"]["sync"]["revisions"] = [CHART]
    assert judge(app, source_index=1).verdict is Verdict.IN_PROGRESS


@pytest.mark.parametrize("index", [2, -1])
def test_source_index_out_of_range_is_a_configuration_failure(upstream_fixtures: Path, index: int) -> None:
    obs = judge(multi_source(upstream_fixtures), source_index=index)
    assert obs.verdict is Verdict.FAILED
    assert obs.summary.startswith(f"source index {index} is out of range: the Application has 2 source(s). ")


def test_single_source_index_zero(upstream_fixtures: Path) -> None:
    assert judge(fixture_app(upstream_fixtures), source_index=0).verdict is Verdict.SUCCEEDED
    assert judge(fixture_app(upstream_fixtures), source_index=1).verdict is Verdict.FAILED


def test_empty_revisions_are_never_passed_to_commit_matches(upstream_fixtures: Path) -> None:
    app = multi_source(upstream_fixtures)
    app["status"]["sync"]["revisions"] = ["", SHA]
    seen: list[str] = []

    def everything(revision: str) -> bool:
        seen.append(revision)
        return True

    assert judge(app, commit_matches=everything).verdict is Verdict.IN_PROGRESS
    assert "" not in seen


def test_sync_operation_single_source() -> None:
    op = sync_operation(SHA, shkeptncontext="3f9640b6-1d2e-4b1b-a2b3-d6a5c4e3b2a1", triggeredid="0b9f1c")
    assert op == {
        "initiatedBy": {"username": "keptn-gitops-service"},
        "info": [
            {"name": "shkeptncontext", "value": "3f9640b6-1d2e-4b1b-a2b3-d6a5c4e3b2a1"},
            {"name": "triggeredid", "value": "0b9f1c"},
        ],
        "sync": {"revision": SHA},
    }
    assert json.loads(json.dumps(op)) == op


def test_sync_operation_multi_source_keeps_the_other_sources_on_their_target_revision() -> None:
    op = sync_operation(SHA, shkeptncontext="c", triggeredid="t", source_index=1, source_count=3)
    assert op["sync"] == {"revisions": ["", SHA, ""]}


@pytest.mark.parametrize(("index", "count"), [(1, None), (3, 3), (-1, 2)])
def test_sync_operation_multi_source_needs_a_source_count(index: int, count: int | None) -> None:
    with pytest.raises(ValueError, match="source_count"):
        sync_operation(SHA, shkeptncontext="c", triggeredid="t", source_index=index, source_count=count)


def test_sync_operation_copies_sync_options_and_retry_from_the_sync_policy(upstream_fixtures: Path) -> None:
    policy = fixture_app(upstream_fixtures)["spec"]["syncPolicy"]
    op = sync_operation(SHA, shkeptncontext="c", triggeredid="t", sync_policy=policy)
    assert op["sync"]["syncOptions"] == policy["syncOptions"]
    assert op["retry"] == {"backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}, "limit": 10}
    op["sync"]["syncOptions"].append("Prune=false")
    assert "Prune=false" not in policy["syncOptions"]


def test_sync_operation_shape_matches_the_fixture_operation(upstream_fixtures: Path) -> None:
    """The fixture's recorded operation has the same keys our body uses (initiatedBy.username, sync.revision,
    sync.syncOptions, retry)."""
    recorded = fixture_app(upstream_fixtures)["status"]["operationState"]["operation"]
    ours = sync_operation(
        SHA, shkeptncontext="c", triggeredid="t", sync_policy={"syncOptions": ["A=b"], "retry": {"limit": 1}}
    )
    assert set(ours) <= set(recorded) | {"info"}
    assert set(ours["sync"]) <= set(recorded["sync"])
    assert ours["sync"]["revision"] == recorded["sync"]["revision"]


@pytest.mark.parametrize(("hard", "value"), [(False, "normal"), (True, "hard")])
def test_refresh_patch(hard: bool, value: str) -> None:
    assert refresh_patch(hard) == {"metadata": {"annotations": {"argocd.argoproj.io/refresh": value}}}


def test_refresh_patch_with_timestamp() -> None:
    patch = refresh_patch(now=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    assert patch["metadata"]["annotations"] == {
        "argocd.argoproj.io/refresh": "normal",
        "argocd.argoproj.io/refresh-timestamp": "2026-01-02T03:04:05.678000Z",
    }


def test_describe_is_one_line(upstream_fixtures: Path) -> None:
    app = degraded(upstream_fixtures, None)
    app["status"]["health"]["message"] = "line one\nline two"
    assert describe_application(app).count("\n") == 0
    assert "health Degraded (line one line two)" in describe_application(app)


def never(_: str) -> bool:
    raise AssertionError("not asked")


def test_pending_operation_is_decided_without_asking_git(upstream_fixtures: Path) -> None:
    app = fixture_app(upstream_fixtures)
    app["operation"] = {"sync": {"revision": SHA}}
    check: Callable[[str], bool] = never
    assert judge(app, commit_matches=check).verdict is Verdict.IN_PROGRESS


def test_a_degraded_application_names_its_degraded_resources(upstream_fixtures: Path) -> None:
    """Argo CD v2.14 writes no ``health.message`` for the Application: the reasons come from its resources."""
    app = fixture_app(upstream_fixtures)
    app["status"]["health"] = {"status": "Degraded", "lastTransitionTime": "2024-03-05T07:33:04Z"}
    app["status"]["resources"] = [
        {"kind": "Service", "name": "carts", "health": {"status": "Healthy"}},
        {
            "kind": "Deployment",
            "name": "carts",
            "health": {"status": "Degraded", "message": 'Deployment "carts" exceeded its progress deadline'},
        },
    ]
    obs = judge(app, now=FINISHED + timedelta(minutes=5))
    assert obs.verdict is Verdict.FAILED
    assert 'health Degraded (Deployment carts: Deployment "carts" exceeded its progress deadline)' in obs.summary
