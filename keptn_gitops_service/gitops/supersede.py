"""Whether a descendant of our commit still carries what our commit changed.

A controller that applied a descendant of our commit applied our change only if nothing in between undid it: a
rollback committed while our deployment waited, or a later deployment of the same service that set the same
scalar to another value. :func:`superseded` compares the scalars our commit changed (:func:`.revert.scalar_changes`,
only in the files that are our change's own in a batched commit) with their values at the descendant, and names
the first later commit that changed one of them.

Files our commit created, deleted or changed beyond plain scalars are not compared (there is no scalar to follow);
for them a descendant counts as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from keptn_gitops_service.editing.imageref import show
from keptn_gitops_service.editing.revert import ScalarChange, scalar_changes
from keptn_gitops_service.editing.trailers import carries
from keptn_gitops_service.editing.yamledit import get_scalar
from keptn_gitops_service.errors import GitOpsServiceError
from keptn_gitops_service.gitops.clone import WorkingClone
from keptn_gitops_service.gitops.writer import batch_files

__all__ = ["superseded"]

_SUBJECT_LIMIT = 72


async def superseded(clone: WorkingClone, commit: str, descendant: str, match: Mapping[str, str]) -> str | None:
    """Why ``descendant`` (a descendant of ``commit``) no longer holds a value ``commit`` set, or ``None``.

    ``match`` identifies our change (its ``Keptn-Triggered-Id`` trailer): in a batched commit only its files count,
    and a commit that does not carry it (a deployment that had nothing to change reports the tip) is not followed.
    Both commits must be in the clone (the caller has just answered their ancestry)."""
    message = await clone.message(commit)
    own = batch_files(message, match)
    if own is None and match and not carries(message, match.items()):
        return None  # not our commit (nothing had to change, and the deployment reported the tip): nothing to follow
    for path, before, after in await clone.file_versions(commit):
        if (own is not None and path not in own) or before is None or after is None:
            continue
        try:
            changes = scalar_changes(before, after)
        except GitOpsServiceError:
            continue
        now = await clone.show(descendant, path)
        for change in changes:
            if _value(now, change) != change.after:
                return await _explain(clone, commit, descendant, path, change)
    return None


def _value(text: str | None, change: ScalarChange) -> str | None:
    """The scalar ``change`` is about in ``text`` (``None``: the file or the scalar is not there)."""
    if text is None:
        return None
    try:
        return get_scalar(text, change.path, document=change.document)
    except GitOpsServiceError:
        return None


async def _explain(clone: WorkingClone, commit: str, descendant: str, path: str, change: ScalarChange) -> str:
    """Name the first commit after ``commit`` that changed the scalar away from our value."""
    out = await clone.run("log", "--reverse", "--format=%H%x00%s", f"{commit}..{descendant}", "--", path)
    culprit, subject, text = descendant, "", await clone.show(descendant, path)
    for line in out.splitlines():
        sha, _, title = line.partition("\0")
        version = await clone.show(sha, path)
        if _value(version, change) != change.after:
            culprit, subject, text = sha, title, version
            break
    if not subject:
        subject = (await clone.run("log", "-1", "--format=%s", culprit)).strip()
    value = _value(text, change)
    where = change.path if change.document == 0 else f"{change.path} (document {change.document + 1})"
    if text is None:
        what = f"removed {path}"
    elif value is None:
        what = f"changed {path} so that {where} is no longer a plain value"
    elif value == change.before:
        what = f"changed {path} {where} back to {show(value)}"
    else:
        what = f"changed {path} {where} from {show(change.after)} to {show(value)}"
    title = "".join(ch if ch.isprintable() else "?" for ch in subject)
    title = title if len(title) <= _SUBJECT_LIMIT else title[:_SUBJECT_LIMIT] + "…"
    return f"superseded: commit {culprit[:12]} ({title}) {what} before commit {commit[:12]} was applied"
