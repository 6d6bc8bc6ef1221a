"""Key rotation covers the projects' generated credentials too (projects registers its encrypted store)."""

import pytest
from cryptography.fernet import Fernet

from deployments import services
from deployments.secrets import crypto
from projects.credentials import container_credentials_ensure
from projects.models import Container, ServiceCredential
from tests.factories import container_factory, environment_factory, project_factory

pytestmark = pytest.mark.django_db


def test_rotate_encryption_key_reencrypts_generated_credentials(settings):
    project = project_factory(environment_factory(), containers=())
    db = container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16", port=5432)
    container_credentials_ensure(container=db)
    before = {c.key: crypto.decrypt(c.ciphertext) for c in ServiceCredential.objects.filter(container=db)}
    assert set(before) == {"POSTGRES_PASSWORD", "DATABASE_URL"}

    old_keys = list(settings.PORTAL_ENCRYPTION_KEYS)
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old_keys]
    result = services.secret_reencrypt_all()
    assert result.total >= 2 and result.from_older_keys >= 2

    settings.PORTAL_ENCRYPTION_KEYS = settings.PORTAL_ENCRYPTION_KEYS[:1]  # the old key is gone
    after = {c.key: crypto.decrypt(c.ciphertext) for c in ServiceCredential.objects.filter(container=db)}
    assert after == before


def test_an_unreadable_credential_stops_the_rotation_and_is_named(settings):
    project = project_factory(environment_factory(), containers=(), slug="shop")
    db = container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16", port=5432)
    container_credentials_ensure(container=db)
    ServiceCredential.objects.filter(container=db, key="DATABASE_URL").update(ciphertext="gAAAAAbroken")
    untouched = set(ServiceCredential.objects.values_list("ciphertext", flat=True))
    with pytest.raises(crypto.EncryptionKeyError, match="shop/svc-db/DATABASE_URL"):
        services.secret_reencrypt_all()
    assert set(ServiceCredential.objects.values_list("ciphertext", flat=True)) == untouched
