"""The writer applies the YAML limits (editing/yamllimits.py) to every file it reads, read from the settings, and
runs the edits off the event loop under a deadline."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from support import make_remote, read_remote, until
from yamlcheck import nested_aliases

from keptn_gitops_service.config.model import Author, Repository
from keptn_gitops_service.editing import yamllimits
from keptn_gitops_service.editing.yamledit import set_scalar
from keptn_gitops_service.editing.yamllimits import YamlLimits
from keptn_gitops_service.errors import ConfigError, EditTimeoutError, YamlLimitError
from keptn_gitops_service.gitops.writer import Change, FileEdit, GitWriter
from keptn_gitops_service.service import new_writer
from keptn_gitops_service.settings import Settings


def test_settings_read_the_limits_and_reject_nonsense() -> None:
    settings = Settings.from_env(
        {
            "KEPTN_GITOPS_MAX_FILE_BYTES": "1048576",
            "KEPTN_GITOPS_YAML_MAX_DOCUMENTS": "10",
            "KEPTN_GITOPS_YAML_MAX_NODES": "5000",
            "KEPTN_GITOPS_YAML_MAX_DEPTH": "40",
            "KEPTN_GITOPS_EDIT_TIMEOUT": "5",
        }
    )
    writer = new_writer(settings)
    assert writer.yaml_limits == YamlLimits(
        max_file_bytes=1_048_576, max_documents=10, max_alias_nodes=5000, max_depth=40
    )
    assert writer.edit_timeout == 5.0
    defaults = new_writer(Settings.from_env({}))
    assert defaults.yaml_limits == YamlLimits(4 * 1024 * 1024, 1000, 100_000, 100) == yamllimits.DEFAULT_LIMITS
    assert defaults.edit_timeout == 30.0
    for name, value in [
        ("KEPTN_GITOPS_MAX_FILE_BYTES", "4MiB"),
        ("KEPTN_GITOPS_YAML_MAX_DEPTH", "100000"),
        ("KEPTN_GITOPS_YAML_MAX_NODES", "-1"),
        ("KEPTN_GITOPS_EDIT_TIMEOUT", "0"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


# ------------------------------------------------------------------------------------------ the writer

VALUES = "image:\n  repository: docker.io/keptnexamples/carts\n  tag: 0.13.0\n"


def repository(remote: Path) -> Repository:
    return Repository(name="fleet", url=f"file://{remote}", author=Author("keptn-bot", "bot@keptn.invalid"))


def change(repo: Repository, triggered_id: str, *edits: FileEdit) -> Change:
    message = f"deploy\n\nKeptn-Triggered-Id: {triggered_id}\n"
    return Change(repo, edits, message, ("Keptn-Triggered-Id", triggered_id))


def set_tag(path: str, tag: str) -> FileEdit:
    return FileEdit(path, lambda text: set_scalar(text, "image.tag", tag))


async def test_the_writer_refuses_a_file_over_the_size_limit_before_reading_it_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    big = VALUES + "# " + "x" * 5000 + "\n"
    remote = make_remote(tmp_path, {"a/values.yaml": big, "b/values.yaml": VALUES})
    repo = repository(remote)
    writer = GitWriter(tmp_path / "state", yaml_limits=YamlLimits(max_file_bytes=4096))
    bad, good = await asyncio.gather(
        writer.write(change(repo, "id-1", set_tag("a/values.yaml", "1"))),
        writer.write(change(repo, "id-2", set_tag("b/values.yaml", "v2"))),
        return_exceptions=True,
    )
    assert isinstance(bad, YamlLimitError)
    assert str(bad) == (
        f"a/values.yaml: the file has {len(big)} bytes, more than the 4096 bytes allowed "
        "(limit KEPTN_GITOPS_MAX_FILE_BYTES)"
    )
    assert not isinstance(good, BaseException) and good.created
    assert read_remote(remote, "a/values.yaml") == big
    assert "tag: v2" in read_remote(remote, "b/values.yaml")


async def test_the_writer_names_the_file_of_an_alias_bomb(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"apps/dev/carts/values.yaml": nested_aliases()})
    writer = GitWriter(tmp_path / "state")
    with pytest.raises(YamlLimitError) as error:
        await writer.write(change(repository(remote), "id-1", set_tag("apps/dev/carts/values.yaml", "v2")))
    assert str(error.value) == (
        "apps/dev/carts/values.yaml: YAML aliases expand to more than 100000 nodes (limit KEPTN_GITOPS_YAML_MAX_NODES)"
    )


async def test_edits_run_off_the_event_loop_and_an_overrun_fails_the_change_alone_naming_the_file(
    tmp_path: Path,
) -> None:
    """An edit that never returns (a stand-in for work the limits cannot see) runs in a worker thread while the
    event loop goes on, is given up after the deadline, and the next change is written."""
    remote = make_remote(tmp_path, {"a/values.yaml": VALUES, "b/values.yaml": VALUES})
    repo = repository(remote)
    writer = GitWriter(tmp_path / "state", edit_timeout=0.2)
    release = threading.Event()
    threads: list[int] = []

    def stuck(text: str) -> str:
        threads.append(threading.get_ident())
        release.wait()
        return text

    pending = asyncio.create_task(writer.write(change(repo, "id-1", FileEdit("a/values.yaml", stuck))))
    try:
        await until(lambda: threads)
        assert not pending.done()  # this coroutine runs on the loop while the edit is stuck in its thread
        assert threads[0] != threading.get_ident()
        with pytest.raises(EditTimeoutError) as error:
            await pending
    finally:
        release.set()
    assert str(error.value) == (
        "a/values.yaml: editing took longer than 0.2 s; the file is too slow to process "
        "(limit KEPTN_GITOPS_EDIT_TIMEOUT)"
    )
    result = await writer.write(change(repo, "id-2", set_tag("b/values.yaml", "v2")))
    assert result.created and "tag: v2" in read_remote(remote, "b/values.yaml")
    assert read_remote(remote, "a/values.yaml") == VALUES
