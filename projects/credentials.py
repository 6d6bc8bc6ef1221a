"""Generated credentials of service containers (a project's PostgreSQL or Redis) and the connection settings the
project's other containers get (DOMAIN.md "A user project").

A PostgreSQL container ``svc-{dir}`` gets the Kubernetes Secret ``svc-{dir}-credentials`` with
``POSTGRES_PASSWORD`` and ``DATABASE_URL``; a Redis container gets ``REDIS_PASSWORD`` and ``REDIS_URL``
(``deployments.rendering.common.CREDENTIAL_KEYS``). User and database names are not secret. Values are
generated here, stored encrypted (``ServiceCredential``), and reach the cluster sealed for the project's
namespace (non-EKS, ``deployments.sealing.project_credentials_reseal``) or through AWS Secrets Manager (EKS,
``deployments.secrets_manager.project_credentials_sync``); git never holds them.
"""

import secrets as _random

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from deployments import crypto
from deployments.rendering.common import CREDENTIAL_DATABASE, CREDENTIAL_KEYS, CREDENTIAL_USER, credential_family
from projects.models import Container, Project, ServiceCredential

POSTGRES, REDIS = "postgres", "redis"


def container_credential_keys(container: Container) -> tuple[str, ...]:
    """(password key, URL key) of the container's credentials Secret, or () when its image gets none."""
    return CREDENTIAL_KEYS.get(credential_family(image=container.image, is_service=container.is_service), ())


@sensitive_variables("password")
def _url(family: str, *, host: str, port: int, password: str) -> str:
    if family == POSTGRES:
        return f"postgresql://{CREDENTIAL_USER}:{password}@{host}:{port}/{CREDENTIAL_DATABASE}"
    return f"redis://:{password}@{host}:{port}/0"


def password_generate() -> crypto.SecretValue:
    """32 random URL-safe characters (192 bits): safe inside a connection URL without escaping."""
    return crypto.SecretValue(_random.token_urlsafe(24))


@sensitive_variables("value")
def _store(credential: ServiceCredential, value: str) -> bool:
    """Store a value; bumps the version (and drops the stale sealed value) only when it changed."""
    fingerprint = crypto.fingerprint(value)
    if credential.pk and credential.fingerprint == fingerprint:
        return False
    if credential.pk:
        credential.version += 1
    credential.ciphertext, credential.fingerprint = crypto.encrypt(value), fingerprint
    credential.sealed_value, credential.sealed_for = "", ""
    credential.save()
    return True


@sensitive_variables("password")
@transaction.atomic
def container_credentials_ensure(*, container: Container, rotate: bool = False) -> int:
    """Make a service container's generated credentials exist and agree with its name and port.

    Creates the password once (a new one with ``rotate=True``), keeps the URL in step with the password, the
    Service name and the port, and deletes the credentials of a container whose image no longer gets any.
    Returns how many keys got a new value (each bumps its version, which rolls the pods that read it).
    """
    keys = container_credential_keys(container)
    existing = {c.key: c for c in ServiceCredential.objects.select_for_update().filter(container=container)}
    stale = [c.pk for key, c in existing.items() if key not in keys]
    if stale:
        ServiceCredential.objects.filter(pk__in=stale).delete()
    if not keys:
        return 0
    password_key, url_key = keys
    family = credential_family(image=container.image, is_service=container.is_service)
    password_row = existing.get(password_key) or ServiceCredential(container=container, key=password_key)
    password = (password_generate() if rotate or not password_row.pk
                else crypto.decrypt(password_row.ciphertext))
    changed = int(_store(password_row, password))
    url_row = existing.get(url_key) or ServiceCredential(container=container, key=url_key)
    changed += int(_store(url_row, _url(family, host=container.workload_name, port=container.port,
                                        password=password)))
    return changed


def project_credentials_ensure(*, project: Project) -> int:
    """``container_credentials_ensure`` for every container of a project; returns the keys that changed."""
    return sum(container_credentials_ensure(container=container) for container in project.containers.all())


def environment_credentials_ensure(*, environment_id: int) -> int:
    """``container_credentials_ensure`` for every container of the environment's active projects."""
    containers = Container.objects.filter(project__environment_id=environment_id,
                                          project__state=Project.State.ACTIVE).select_related("project")
    return sum(container_credentials_ensure(container=container) for container in containers)
