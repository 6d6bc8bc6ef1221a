"""Every render ensures the environment's generated credentials: with nothing to change it reads them in a
constant number of queries and writes nothing, whatever the number of projects; a change still gets its new URL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.credentials import environment_credentials_ensure
from projects.models import Container, ServiceCredential
from tests.factories import container_factory, eks_environment_factory, project_factory

pytestmark = pytest.mark.django_db


def _add(environment, count: int, start: int) -> None:
    for number in range(start, start + count):
        project = project_factory(environment, slug=f"p-{number}", containers=("frontend",))
        container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16-alpine",
                          port=5432)


def _ensure_queries(environment) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        changed = environment_credentials_ensure(environment_id=environment.pk)
    return changed, len(ctx)


def test_unchanged_credentials_cost_constant_queries_and_no_write():
    environment = eks_environment_factory()
    _add(environment, 3, 0)
    assert environment_credentials_ensure(environment_id=environment.pk) == 6  # password + URL of 3 databases
    small = _ensure_queries(environment)
    _add(environment, 30, 3)
    assert environment_credentials_ensure(environment_id=environment.pk) == 60
    versions = dict(ServiceCredential.objects.values_list("pk", "version"))
    large = _ensure_queries(environment)
    assert small == large == (0, 2)
    assert dict(ServiceCredential.objects.values_list("pk", "version")) == versions


def test_a_changed_port_still_gets_a_new_url():
    environment = eks_environment_factory()
    _add(environment, 2, 0)
    environment_credentials_ensure(environment_id=environment.pk)
    container = Container.objects.get(project__slug="p-1", directory="db")
    url = ServiceCredential.objects.get(container=container, key="DATABASE_URL")
    container.port = 5433
    container.save()
    assert environment_credentials_ensure(environment_id=environment.pk) == 1
    url_after = ServiceCredential.objects.get(pk=url.pk)
    assert url_after.version == url.version + 1 and url_after.fingerprint != url.fingerprint
    # A container that no longer gets credentials loses them.
    container.image = "tesslate-devserver:latest"
    container.role = Container.Role.BACKEND
    container.save()
    environment_credentials_ensure(environment_id=environment.pk)
    assert not ServiceCredential.objects.filter(container=container).exists()
