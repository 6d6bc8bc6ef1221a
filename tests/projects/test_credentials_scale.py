"""Every render ensures the environment's generated credentials: with nothing to change it reads them in a
constant number of queries and writes nothing, whatever the number of projects; a change still gets its new URL."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.credentials import environment_credentials_ensure
from projects.models import Container, RenderToken, ServiceCredential
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
    assert _ensure_queries(environment) == (0, 1)  # what it wrote was checked at once: nothing left to read
    RenderToken.objects.update(credentials_checked="")
    assert _ensure_queries(environment) == (0, 4)  # projects to check, containers, credentials, record
    small = _ensure_queries(environment)
    _add(environment, 30, 3)
    assert environment_credentials_ensure(environment_id=environment.pk) == 60
    versions = dict(ServiceCredential.objects.values_list("pk", "version"))
    RenderToken.objects.update(credentials_checked="")
    assert _ensure_queries(environment) == (0, 4)
    large = _ensure_queries(environment)
    assert small == large == (0, 1)  # only the projects to check: none
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


def _count_decrypts(monkeypatch) -> list[int]:
    from deployments.secrets import crypto

    calls = [0]
    real = crypto.decrypt

    def counting(ciphertext):
        calls[0] += 1
        return real(ciphertext)

    monkeypatch.setattr(crypto, "decrypt", counting)
    return calls


def test_current_credentials_are_checked_without_decrypting(monkeypatch):
    environment = eks_environment_factory()
    _add(environment, 5, 0)
    environment_credentials_ensure(environment_id=environment.pk)
    calls = _count_decrypts(monkeypatch)
    assert environment_credentials_ensure(environment_id=environment.pk) == 0
    assert calls[0] == 0
    # A changed port is still found (the record names the old port): one container decrypted and re-made.
    container = Container.objects.get(project__slug="p-3", directory="db")
    container.port = 6543
    container.save()
    assert environment_credentials_ensure(environment_id=environment.pk) == 1
    assert calls[0] == 1
    url = ServiceCredential.objects.get(container=container, key="DATABASE_URL")
    password = ServiceCredential.objects.get(container=container, key="POSTGRES_PASSWORD")
    assert url.derived_from == f"postgres|svc-db|6543|{password.fingerprint}"


def test_rows_without_a_record_are_decrypted_once_then_marked(monkeypatch):
    environment = eks_environment_factory()
    _add(environment, 4, 0)
    environment_credentials_ensure(environment_id=environment.pk)
    versions = dict(ServiceCredential.objects.values_list("pk", "version"))
    ServiceCredential.objects.update(derived_from="")  # rows stored before the record existed
    RenderToken.objects.update(credentials_checked="")
    calls = _count_decrypts(monkeypatch)
    assert environment_credentials_ensure(environment_id=environment.pk) == 0
    assert calls[0] == 4  # one password each, nothing re-made
    assert dict(ServiceCredential.objects.values_list("pk", "version")) == versions
    assert environment_credentials_ensure(environment_id=environment.pk) == 0
    assert calls[0] == 4  # marked: the second check decrypts nothing


def test_a_password_that_changed_behind_the_record_remakes_the_url():
    from deployments.secrets import crypto

    environment = eks_environment_factory()
    _add(environment, 2, 0)
    environment_credentials_ensure(environment_id=environment.pk)
    container = Container.objects.get(project__slug="p-0", directory="db")
    password = ServiceCredential.objects.get(container=container, key="POSTGRES_PASSWORD")
    ServiceCredential.objects.filter(pk=password.pk).update(ciphertext=crypto.encrypt("another-password"),
                                                            fingerprint=crypto.fingerprint("another-password"))
    assert environment_credentials_ensure(environment_id=environment.pk) == 1
    url = ServiceCredential.objects.get(container=container, key="DATABASE_URL")
    assert "another-password" in crypto.decrypt(url.ciphertext)


def test_a_project_whose_token_did_not_move_is_not_read_again():
    environment = eks_environment_factory()
    _add(environment, 3, 0)
    environment_credentials_ensure(environment_id=environment.pk)  # writes, then checks what it wrote: recorded
    assert set(RenderToken.objects.values_list("credentials_checked", flat=True)) == \
        set(RenderToken.objects.values_list("token", flat=True))
    assert environment_credentials_ensure(environment_id=environment.pk) == 0  # nothing read
    assert set(RenderToken.objects.values_list("credentials_checked", flat=True)) == \
        set(RenderToken.objects.values_list("token", flat=True))
    # A change to one container moves its project's token: only that project is read (and its URL re-made).
    container = Container.objects.get(project__slug="p-2", directory="db")
    Container.objects.filter(pk=container.pk).update(port=7777)
    assert environment_credentials_ensure(environment_id=environment.pk) == 1
    assert ServiceCredential.objects.get(container=container, key="DATABASE_URL").derived_from.startswith(
        "postgres|svc-db|7777|")
    # A credential row deleted by hand moves the token too: the key is made again.
    ServiceCredential.objects.filter(container=container, key="POSTGRES_PASSWORD").delete()
    assert environment_credentials_ensure(environment_id=environment.pk) == 2
