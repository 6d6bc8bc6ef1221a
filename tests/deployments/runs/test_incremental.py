"""Incremental renders: a run reads in full only the projects whose render token moved (projects.models.RenderToken,
kept current by database triggers), and what it commits is exactly what a full render of the same data gives.

Every kind of input a project's render reads is changed here, through the ORM, a queryset update() or raw SQL (the
triggers see every write); after each change an incremental commit must leave the repository holding exactly the
full render (``render_tree`` of an eager snapshot), and must have read only the projects that changed.
"""

import importlib

import pytest
from django.db import connection

from deployments import selectors
from deployments.git import gitops_commit
from deployments.git.manifest import MANIFEST_PATH
from deployments.models import Environment, NodeGroup, Secret
from deployments.rendering import render_tree, snapshot_scopes, tree_units
from deployments.selectors import environments_snapshot, render_tokens_trusted
from projects.credentials import container_credentials_ensure, environment_credentials_ensure
from projects.models import Container, Project, RenderToken, ServiceCredential, VolumeRestore
from tests.deployments import gitutil as g
from tests.factories import (
    container_factory,
    eks_environment_factory,
    environment_factory,
    node_group_factory,
    project_factory,
    secret_factory,
)

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("projects.migrations.0008_render_token")


@pytest.fixture
def repo(settings, tmp_path):
    settings.GITOPS_REMOTE_URL = ""
    settings.GITOPS_REPO_DIR = tmp_path / "repo"
    settings.GITOPS_BRANCH = "main"
    return tmp_path / "repo"


@pytest.fixture
def world():
    """A Minikube and an EKS environment, three projects each, one with a database (generated credentials)."""
    minikube = environment_factory(name="mini")
    eks = eks_environment_factory(name="eks")
    node_group_factory(eks, name="spot", capacity_type="SPOT", hosts="user-projects",
                       labels="tesslate.io/workload-type=user-project", taints="tesslate.io/spot=true:NoSchedule")
    projects = {}
    for environment in (minikube, eks):
        for number in range(3):
            project = project_factory(environment, slug=f"{environment.name}-p{number}",
                                      containers=("frontend", "backend"))
            projects[f"{environment.name}-{number}"] = project
        db = container_factory(projects[f"{environment.name}-0"], directory="db", role=Container.Role.DATABASE,
                               image="postgres:16-alpine", port=5432)
        container_credentials_ensure(container=db)
    return {"mini": minikube, "eks": eks, "projects": projects}


def _commit(loaded: list[str] | None = None, monkeypatch=None):
    if monkeypatch is not None:
        real = selectors._load_projects

        def spy(environment_id, project_ids):
            loaded.extend(project_ids)
            return real(environment_id, project_ids)

        monkeypatch.setattr(selectors, "_load_projects", spy)
    snapshot = environments_snapshot(lazy=True)
    assert all(env.lazy_projects and not env.projects for env in snapshot.environments)
    return gitops_commit(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot), message="test",
                         trailers={}, author_name="t", author_email="t@portal.invalid")


def _assert_tree_is_the_full_render(repo) -> None:
    committed = {path: data for path, data in g.tree_files(repo).items() if path != MANIFEST_PATH}
    assert committed == render_tree(environments_snapshot())


def _container(world, key, directory="frontend"):
    return Container.objects.get(project=world["projects"][key], directory=directory)


CHANGES = {
    "container port (save)": (lambda w: _save(_container(w, "mini-1"), port=3001), ["mini-1"]),
    "container image (queryset update)": (
        lambda w: Container.objects.filter(pk=_container(w, "eks-2").pk).update(image="node:22"), ["eks-2"]),
    "container env vars (raw SQL)": (
        lambda w: _sql("UPDATE projects_container SET env_vars = %s WHERE id = %s",
                       ["NODE_ENV=production", _container(w, "mini-2", "backend").pk]), ["mini-2"]),
    "container added (bulk_create)": (
        lambda w: Container.objects.bulk_create([Container(project=w["projects"]["eks-1"], directory="worker",
                                                           image="tesslate-devserver:latest", port=9000)]),
        ["eks-1"]),
    "container deleted": (lambda w: _container(w, "mini-0", "backend").delete(), ["mini-0"]),
    "project owner (queryset update)": (
        lambda w: Project.objects.filter(pk=w["projects"]["eks-0"].pk).update(owner="someone-else"), ["eks-0"]),
    "project volume size (save)": (lambda w: _save(w["projects"]["mini-2"], volume_size="9Gi"), ["mini-2"]),
    "project stopped (Minikube hibernation)": (
        lambda w: Project.objects.filter(pk=w["projects"]["mini-1"].pk).update(state=Project.State.HIBERNATED),
        ["mini-1"]),
    "project hibernating (EKS VolumeSnapshots)": (
        lambda w: Project.objects.filter(pk=w["projects"]["eks-1"].pk).update(
            state=Project.State.HIBERNATING, hibernation_stamp="20261130-120000"), ["eks-1"]),
    "project deleted (state)": (
        lambda w: Project.objects.filter(pk=w["projects"]["eks-2"].pk).update(state=Project.State.DELETED), []),
    "credentials rotated": (
        lambda w: container_credentials_ensure(container=_container(w, "eks-0", "db"), rotate=True), ["eks-0"]),
    "credential sealed value (queryset update)": (
        lambda w: ServiceCredential.objects.filter(container=_container(w, "mini-0", "db")).update(
            version=7, sealed_value="AgBsealed-by-hand"), ["mini-0"]),
    "volume restore added": (
        lambda w: VolumeRestore.objects.create(project=w["projects"]["eks-2"], volume_name="project-storage",
                                               source_snapshot_name="hib-20261130-project-storage",
                                               snapshot_handle="snap-0123456789abcdef0"), ["eks-2"]),
    "restore snapshot id (save)": (
        lambda w: _save(w["projects"]["eks-1"], restore_snapshot_id="snap-0fedcba9876543210"), ["eks-1"]),
}

ENVIRONMENT_CHANGES = {
    "environment image tag": lambda w: Environment.objects.filter(pk=w["eks"].pk).update(image_tag="v9"),
    "environment app domain": lambda w: Environment.objects.filter(pk=w["mini"].pk).update(
        app_domain="other.example.com"),
    "node group taints": lambda w: NodeGroup.objects.filter(environment=w["eks"]).update(
        taints="tesslate.io/spot=yes:NoExecute"),
    "secret added": lambda w: secret_factory(w["mini"], key="API_TOKEN"),
}


def _save(instance, **fields):
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.save()


def _sql(statement, params):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_the_token_triggers_exist_and_cover_every_column_the_snapshot_reads():
    assert render_tokens_trusted()
    read = {"slug", "owner", "volume_size", "restore_snapshot_id", "state", "hibernation_stamp", "environment_id"}
    assert read <= set(MIGRATION.PROJECT_COLUMNS)
    assert {"container_id", "key", "version", "sealed_value"} <= set(MIGRATION.CREDENTIAL_COLUMNS)
    project = project_factory(environment_factory(), containers=())
    assert RenderToken.objects.filter(project=project).exists()  # created with the project
    before = RenderToken.objects.get(project=project).token
    Project.objects.filter(pk=project.pk).update(name="Renamed", last_activity_at=None)  # nothing rendered
    assert RenderToken.objects.get(project=project).token == before
    Project.objects.filter(pk=project.pk).update(owner="x")
    assert RenderToken.objects.get(project=project).token != before


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_incremental_run_commits_exactly_the_full_render_and_reads_only_the_changed_project(
        repo, world, monkeypatch, change):
    first = _commit()
    assert first.sha
    _assert_tree_is_the_full_render(repo)
    mutate, changed = CHANGES[change]
    mutate(world)
    loaded: list[str] = []
    result = _commit(loaded, monkeypatch)
    assert result.sha, "the change was not committed"
    _assert_tree_is_the_full_render(repo)
    assert sorted(loaded) == sorted(str(world["projects"][key].pk) for key in changed)
    # And the next run, with nothing changed, reads no project and commits nothing.
    loaded.clear()
    assert _commit(loaded, monkeypatch).sha is None and loaded == []


@pytest.mark.parametrize("change", list(ENVIRONMENT_CHANGES))
def test_an_environment_change_re_renders_what_it_affects_like_a_full_render(repo, world, change):
    _commit()
    ENVIRONMENT_CHANGES[change](world)
    result = _commit()
    assert result.sha
    _assert_tree_is_the_full_render(repo)


def test_credentials_generated_by_a_render_reach_the_commit(repo, world):
    _commit()
    db = container_factory(world["projects"]["eks-2"], directory="cache", role=Container.Role.DATABASE,
                           image="redis:7-alpine", port=6379)
    ServiceCredential.objects.filter(container=db).delete()
    assert environment_credentials_ensure(environment_id=world["eks"].pk) == 2
    assert _commit().sha
    _assert_tree_is_the_full_render(repo)


def test_without_the_triggers_the_snapshot_falls_back_to_content_fingerprints(repo, world, monkeypatch):
    monkeypatch.setattr(selectors, "render_tokens_trusted", lambda: False)
    snapshot = environments_snapshot(lazy=True)
    assert all(env.projects and not env.lazy_projects for env in snapshot.environments)
    assert snapshot.load_projects is None


def test_a_project_that_stops_being_rendered_mid_run_fails_the_run_clearly(repo, world):
    from deployments.rendering.snapshot import ProjectsChanged

    _commit()
    _save(_container(world, "mini-1"), port=3002)
    snapshot = environments_snapshot(lazy=True)
    Project.objects.filter(pk=world["projects"]["mini-1"].pk).update(state=Project.State.DELETED)
    with pytest.raises(ProjectsChanged, match="stopped being rendered"):
        gitops_commit(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot), message="test", trailers={},
                      author_name="t", author_email="t@portal.invalid")
    assert Secret.objects.count() == 0  # nothing else touched
