"""Bad input for projects and containers, and the environment-wide host rules."""

import pytest
from django.db import IntegrityError, transaction

from projects.models import Container, Project
from tests.factories import (
    assert_field_error,
    container_factory,
    eks_environment_factory,
    environment_factory,
    field_errors,
    project_factory,
)

pytestmark = pytest.mark.django_db


PROJECT_CASES = [
    (dict(slug="My_App"), "slug", "not a DNS-1123 label"),
    (dict(slug="app-"), "slug", "not a DNS-1123 label"),
    (dict(slug="a" * 64), "slug", "at most 63"),
    (dict(owner="alice@example.com"), "owner", "not a valid label value"),
    (dict(owner="x" * 64), "owner", "at most 63"),
    (dict(owner="alice\n"), "owner", "not a valid label value"),  # a `$` anchor used to let this through
    (dict(owner="alice٣"), "owner", "not a valid label value"),
    (dict(slug="shop\n"), "slug", "not a DNS-1123 label"),
    (dict(volume_size="5Gi\n"), "volume_size", "not a Kubernetes quantity"),
    (dict(restore_snapshot_id="snap-01234567\n"), "restore_snapshot_id", "not an EBS snapshot id"),
    (dict(volume_size="5GB"), "volume_size", "not a Kubernetes quantity"),
    (dict(volume_size="512Mi"), "volume_size", "smaller than 1Gi"),
    (dict(volume_size="5"), "volume_size", "less than 1Mi"),
    (dict(state="frozen"), "state", "not a valid choice"),
    (dict(restore_snapshot_id="snapshot-1"), "restore_snapshot_id", "not an EBS snapshot id"),
    (dict(restore_snapshot_id="snap-0123456789abcdef0"), "restore_snapshot_id", "no EBS VolumeSnapshots"),
    (dict(name=""), "name", "cannot be blank"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), PROJECT_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(PROJECT_CASES)])
def test_project_rejects_bad_input(overrides, field, fragment):
    fields = dict(environment=environment_factory(), name="Todo", slug="todo", owner="user-1")
    fields.update(overrides)
    assert_field_error(Project(**fields), field, fragment)


def test_project_can_restore_on_eks_and_has_its_namespace():
    project = Project(environment=eks_environment_factory(), name="Todo", slug="todo", owner="user-1",
                      restore_snapshot_id="snap-0123456789abcdef0")
    project.full_clean()
    project.save()
    assert project.namespace == f"proj-{project.id}"


def test_project_slug_is_unique_per_environment():
    environment = environment_factory()
    project_factory(environment, slug="todo")
    errors = field_errors(Project(environment=environment, name="Todo 2", slug="todo", owner="u"))
    assert "Another project in this environment has this slug." in errors["__all__"]
    # The same slug in another environment is fine.
    Project(environment=environment_factory(), name="Todo", slug="todo", owner="u").full_clean()


CONTAINER_CASES = [
    (dict(directory="Front_End"), "directory", "not a DNS-1123 label"),
    (dict(directory="d" * 55), "directory", "at most 54"),
    (dict(directory="web\n"), "directory", "not a DNS-1123 label"),  # made every later render fail
    (dict(image="nginx:1.27\n"), "image", "not an image tag"),
    (dict(cpu_request="100m\n"), "cpu_request", "not a Kubernetes quantity"),
    (dict(image="Nginx:latest"), "image", "not an image registry or repository"),
    (dict(image="nginx:-bad"), "image", "not an image tag"),
    (dict(image="nginx@sha256:abc"), "image", "invalid digest"),
    (dict(port=0), "port", "greater than or equal to 1"),
    (dict(port=70000), "port", "less than or equal to 65535"),
    (dict(cpu_request="2", cpu_limit="1"), "cpu_request", "larger than the limit"),
    (dict(memory_request="2Gi", memory_limit="1Gi"), "memory_request", "larger than the limit"),
    (dict(memory_limit="1Gb"), "memory_limit", "not a Kubernetes quantity"),
    (dict(cpu_limit="1Gi"), "cpu_limit", "not a CPU quantity"),
    (dict(role="cache"), "role", "not a valid choice"),
    (dict(data_volume_size="100Mi"), "data_volume_size", "smaller than 1Gi"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), CONTAINER_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(CONTAINER_CASES)])
def test_container_rejects_bad_input(overrides, field, fragment):
    project = project_factory(containers=())
    fields = dict(project=project, directory="frontend", image="tesslate-devserver:latest", port=5173)
    fields.update(overrides)
    assert_field_error(Container(**fields), field, fragment)


def test_container_host_must_fit_a_dns_label():
    project = project_factory(slug="a" * 40, containers=())
    errors = field_errors(Container(project=project, directory="d" * 23, image="tesslate-devserver:latest"))
    assert "a DNS label has at most 63" in errors["directory"][0]
    Container(project=project, directory="d" * 22, image="tesslate-devserver:latest").full_clean()


def test_container_directory_is_unique_per_project():
    project = project_factory(containers=("frontend",))
    with pytest.raises(IntegrityError), transaction.atomic():
        Container.objects.create(project=project, directory="frontend", image="tesslate-devserver:latest")


def test_service_containers_are_named_svc():
    project = project_factory(containers=())
    database = container_factory(project, directory="db", role="database", image="postgres:16-alpine", port=5432)
    frontend = container_factory(project, directory="web")
    assert (database.workload_name, frontend.workload_name) == ("svc-db", "dev-web")
    assert frontend.host == f"{project.slug}-web.{project.environment.app_domain}"


def test_quantities_are_stored_in_the_form_the_api_server_keeps():
    project = project_factory(containers=(), volume_size="5120Mi")
    assert project.volume_size == "5Gi"
    container = container_factory(project, cpu_request="0.25", cpu_limit="1000m", memory_request="1024Mi",
                                  memory_limit="1.5Gi")
    container.refresh_from_db()
    assert (container.cpu_request, container.cpu_limit, container.memory_request, container.memory_limit) == (
        "250m", "1", "1Gi", "1536Mi")
