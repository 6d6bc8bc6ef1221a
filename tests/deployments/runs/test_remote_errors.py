"""A remote that cannot be read before rendering is a remote error (kind "remote", transient: the recovery asks
for the environment again), not a generic one; the same goes for a push the remote refuses. The process-level
version with a git daemon is tests/faults/test_remote_faults.py."""

import shutil

import pytest

from deployments import runs
from deployments.models import Environment, RenderRun
from tests.deployments.runfixtures import queued_run
from tests.factories import environment_factory, project_factory

pytestmark = pytest.mark.django_db


def test_an_unreadable_remote_fails_the_run_as_remote_and_the_recovery_asks_again(gitops, settings, tmp_path):
    env = environment_factory()
    project_factory(env)
    first = runs.render_run_execute(run_id=queued_run(environment_ids=[env.pk], user=None, reason="first").pk)
    assert first.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), first.error

    shutil.move(gitops.remote, tmp_path / "away.git")  # the remote is gone before the next run fetches
    Environment.objects.filter(pk=env.pk).update(backend_replicas=3, needs_render=True)
    run = runs.render_run_execute(run_id=queued_run(environment_ids=[env.pk], user=None, reason="second").pk)
    assert run.status == RenderRun.Status.FAILED and run.error_kind == RenderRun.ErrorKind.REMOTE, run.error
    assert "git fetch from" in run.error and not run.commit_sha
    assert Environment.objects.get(pk=env.pk).needs_render

    settings.GITOPS_AUTO_RENDER = True
    result = runs.render_runs_recover()
    assert result["requested"], result  # transient: a new run is requested for the environment left dirty
