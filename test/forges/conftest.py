"""Fixtures of the forge tests: one real Gitea for the whole session, a fresh repository for each test.

Gitea is built from its Go module by ``python test/e2e/build.py gitea`` (``./scripts/test`` does it before pytest);
these fixtures only look for the build and fail, saying so, when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from forges.giteaserver import GiteaMissingError, GiteaServer, Repo, running_gitea


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GiteaServer]:
    """A real Gitea on a free loopback port with the users ``owner`` (admin) and ``reviewer``; stopped by its PID
    at the end of the session."""
    try:
        with running_gitea(tmp_path_factory.mktemp("gitea")) as server:
            yield server
    except GiteaMissingError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def repo(gitea: GiteaServer) -> Repo:
    """A new repository of ``owner`` on the session's Gitea: one commit on ``main``, ``reviewer`` may write."""
    return gitea.create_repo()
