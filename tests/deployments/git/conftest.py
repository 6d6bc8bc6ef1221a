"""Fixtures shared by the git writer's tests: a unit factory, the portal's repository folder and a bare remote."""

import pytest

from tests.deployments import gitutil as g


@pytest.fixture
def make():
    return g.UnitFactory()


@pytest.fixture
def repo_dir(settings, tmp_path):
    settings.GITOPS_REPO_DIR = tmp_path / "work"
    settings.GITOPS_REMOTE_URL = ""
    settings.GITOPS_BRANCH = "main"
    settings.GITOPS_PUSH_RETRIES = 5
    return settings.GITOPS_REPO_DIR


@pytest.fixture
def remote(settings, repo_dir, tmp_path):
    path = g.bare_remote(tmp_path / "remote.git")
    settings.GITOPS_REMOTE_URL = str(path)
    return path
