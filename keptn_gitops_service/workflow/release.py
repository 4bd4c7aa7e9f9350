"""``release.triggered``: direct GitOps has nothing to promote, so answer like helm-service does for ``direct``
deployments — ``release.started`` then ``release.finished`` echoing the incoming result
[keptn@0.18.1:helm-service/controller/release_handler.go]."""

from __future__ import annotations

from keptn_gitops_service.keptn.data import Status, echoed_result
from keptn_gitops_service.workflow.lifecycle import Finished, Job, TaskBody


class ReleaseBody(TaskBody):
    """The body of a release: nothing to do but echo the incoming result."""

    async def run(self, job: Job) -> Finished:
        return Finished(Status.SUCCEEDED, echoed_result(job.event.data), "Finished release")
