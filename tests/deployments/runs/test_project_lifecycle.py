"""Hibernating, deleting and waking projects reaches git: the GitOps tool prunes what is gone."""

import pytest

from deployments import runs
from projects.demo import demo_project_id
from projects.models import Project
from tests.deployments.runfixtures import demo_load_complete, queued_run


def _render(reason: str):
    run = runs.render_run_execute(run_id=queued_run(environment_ids=None, user=None, reason=reason).pk)
    assert run.status in ("succeeded", "no_change"), run.error
    return run


def _project_dirs(gitops, environment: str) -> set[str]:
    prefix = f"environments/{environment}/projects/"
    return {path[len(prefix):].split("/")[0] for path in gitops.files() if path.startswith(prefix + "proj-")}


@pytest.mark.django_db
def test_hibernate_delete_and_wake_a_project(gitops):
    demo_load_complete()
    _render("first")
    todo = demo_project_id("minikube", "todo-app")
    landing = demo_project_id("minikube", "landing-page")
    assert _project_dirs(gitops, "minikube") == {f"proj-{todo}", f"proj-{landing}"}
    # The demo's hibernated project never had a folder.
    assert f"proj-{demo_project_id('aws-production', 'blog')}" not in _project_dirs(gitops, "aws-production")

    # Minikube has no VolumeSnapshots: a hibernated project is stopped (zero replicas), never pruned.
    Project.objects.filter(id=todo).update(state=Project.State.HIBERNATED)
    run = _render("hibernate todo-app")
    assert run.status == "succeeded" and run.files_deleted == 0 and run.files_changed >= 2
    assert _project_dirs(gitops, "minikube") == {f"proj-{todo}", f"proj-{landing}"}
    assert "replicas: 0" in gitops.show(f"environments/minikube/projects/proj-{todo}/file-manager.yaml")

    Project.objects.filter(id=landing).update(state=Project.State.DELETED)
    run = _render("delete landing-page")
    assert run.files_deleted >= 6
    assert _project_dirs(gitops, "minikube") == {f"proj-{todo}"}
    index = gitops.show("environments/minikube/projects/kustomization.yaml")
    assert f"proj-{todo}" in index and f"proj-{landing}" not in index

    Project.objects.filter(id=todo).update(state=Project.State.ACTIVE)
    run = _render("wake todo-app")
    assert run.files_changed >= 2
    assert "replicas" not in gitops.show(f"environments/minikube/projects/proj-{todo}/file-manager.yaml")
    assert _project_dirs(gitops, "minikube") == {f"proj-{todo}"}
