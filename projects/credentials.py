"""Generated credentials of service containers (a project's PostgreSQL or Redis) and the connection settings the
project's other containers get (DOMAIN.md "A user project").

A PostgreSQL container ``svc-{dir}`` gets the Kubernetes Secret ``svc-{dir}-credentials`` with
``POSTGRES_PASSWORD`` and ``DATABASE_URL``; a Redis container gets ``REDIS_PASSWORD`` and ``REDIS_URL``
(``deployments.rendering.common.CREDENTIAL_KEYS``). User and database names are not secret. Values are
generated here, stored encrypted (``ServiceCredential``), and reach the cluster sealed for the project's
namespace (non-EKS) or through AWS Secrets Manager (EKS) by ``credentials_deliver``, which every render runs
after the environment's own secrets (registered with ``deployments.secrets.delivery`` in ProjectsConfig.ready);
git never holds them.
"""

import secrets as _random
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.views.decorators.debug import sensitive_variables

from clients.aws import aws_client
from deployments import domain
from deployments.models import Environment
from deployments.rendering.common import (
    CREDENTIAL_DATABASE,
    CREDENTIAL_KEYS,
    CREDENTIAL_USER,
    credential_family,
    project_credential_path,
)
from deployments.secrets import crypto
from deployments.secrets.kubeseal import certificate_fingerprint, seal_label, seal_with_key
from deployments.secrets.sealing import environment_sealing_certificate, sealed_for
from deployments.secrets.secrets_manager import PATH_PREFIX, existing_secrets, write_secret
from projects.models import Container, Project, RenderToken, ServiceCredential

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


def _derived_from(family: str, *, host: str, port: int, password_fingerprint: str) -> str:
    """What a URL value is made from, as stored in ``ServiceCredential.derived_from`` (no value in it)."""
    return f"{family}|{host}|{port}|{password_fingerprint}"


@sensitive_variables("password")
@transaction.atomic
def container_credentials_ensure(*, container: Container, rotate: bool = False) -> int:
    """Make a service container's generated credentials exist and agree with its name and port.

    Creates the password once (a new one with ``rotate=True``), keeps the URL in step with the password, the
    Service name and the port, and deletes the credentials of a container whose image no longer gets any.
    Records on the URL row what it was made from (``derived_from``), so later checks need no decryption.
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
    derived_from = _derived_from(family, host=container.workload_name, port=container.port,
                                 password_fingerprint=password_row.fingerprint)
    if url_row.derived_from != derived_from:
        url_row.derived_from = derived_from
        if url_row.pk:
            ServiceCredential.objects.filter(pk=url_row.pk).update(derived_from=derived_from)
    changed += int(_store(url_row, _url(family, host=container.workload_name, port=container.port,
                                        password=password)))
    return changed


def project_credentials_ensure(*, project: Project) -> int:
    """``container_credentials_ensure`` for every container of a project; returns the keys that changed."""
    return sum(container_credentials_ensure(container=container) for container in project.containers.all())


def environment_credentials_ensure(*, environment_id: int) -> int:
    """``container_credentials_ensure`` for every container of the environment's active projects whose stored
    credentials are not already what it would make them.

    Every render runs this, so its work follows what changed, not the number of projects: a project whose render
    token (projects.models.RenderToken: replaced by database triggers on any write of its containers or their
    credentials) is the one recorded when its credentials were last found current is not read at all. For the
    others, two queries read the containers' names, images and ports and the stored keys with their fingerprints
    and ``derived_from`` (no ciphertext); a container whose URL row says it was made from the current name, port
    and password is current without any decryption. Only the others are locked and written (or, for rows stored
    before ``derived_from`` existed, decrypted once and then marked). Projects found current are recorded at the
    token read (only if it has not moved since). The projects written here moved their own tokens; they are
    checked once more right away (the same decryption-free check, for those projects only), so the next render
    does not read them again. Returns how many keys got a new value.
    """
    changed, touched = _credentials_ensure_pass(environment_id=environment_id, only=None)
    if touched:
        again, _ = _credentials_ensure_pass(environment_id=environment_id, only=touched)
        changed += again
    return changed


def _credentials_ensure_pass(*, environment_id: int, only: set | None) -> tuple[int, set]:
    """One pass of ``environment_credentials_ensure`` over the environment's unchecked projects (``only``: just
    these project ids). Returns (keys that got a new value, ids of the projects written)."""
    unchecked_projects = Project.objects.filter(environment_id=environment_id, state=Project.State.ACTIVE)
    if only is not None:
        unchecked_projects = unchecked_projects.filter(pk__in=list(only))
    unchecked = dict(
        unchecked_projects.exclude(render_token__credentials_checked=F("render_token__token")).order_by()
        .values_list("id", "render_token__token"))
    if not unchecked:
        return 0, set()
    if len(unchecked) > _BY_ID_MAX:
        in_scope = Q(project__environment_id=environment_id, project__state=Project.State.ACTIVE)
    else:
        in_scope = Q(project_id__in=list(unchecked))
    containers = [row for row in Container.objects.filter(in_scope).order_by().values_list(
        "id", "project_id", "image", "role", "directory", "port") if row[1] in unchecked]
    stored: dict[int, dict[str, tuple[str, str]]] = {}
    for container_id, key, fingerprint, derived_from in ServiceCredential.objects.filter(
            container__in=[row[0] for row in containers] if len(unchecked) <= _BY_ID_MAX else
            Container.objects.filter(in_scope)).order_by().values_list(
            "container_id", "key", "fingerprint", "derived_from"):
        stored.setdefault(container_id, {})[key] = (fingerprint, derived_from)
    states: dict[int, bool | None] = {}
    project_of: dict[int, object] = {}
    for container_id, project_id, image, role, directory, port in containers:
        state = _credentials_state(image=image, role=role, directory=directory, port=port,
                                   stored=stored.get(container_id, {}))
        if state is not True:
            states[container_id] = state
            project_of[container_id] = project_id
    changed = 0
    touched = set()
    for container in Container.objects.filter(pk__in=list(states)).order_by("pk") if states else ():
        if states[container.pk] is False or not _credentials_current(container):
            changed += container_credentials_ensure(container=container)
            touched.add(project_of[container.pk])
    # Record the projects found current at the token read; a project written just now is checked again by the next
    # pass (its token moved with the write), and a token that moved since the read keeps the project unchecked.
    current = {project_id: token for project_id, token in unchecked.items() if project_id not in touched and token}
    if current:
        RenderToken.objects.filter(project_id__in=list(current), token__in=list(current.values())).update(
            credentials_checked=F("token"))
    return changed, touched


# Above this many projects to check, their containers are read for the whole environment instead of by id.
_BY_ID_MAX = 500


def _credentials_state(*, image: str, role: str, directory: str, port: int,
                       stored: dict[str, tuple[str, str]]) -> bool | None:
    """True when the stored keys are the container's keys and its URL row was made from the current name, port
    and password fingerprint; False when the keys or the record differ; None when only a decryption can tell
    (a row stored before the record existed)."""
    is_service = domain.is_service_role(role)
    family = credential_family(image=image, is_service=is_service)
    keys = CREDENTIAL_KEYS.get(family, ())
    if set(stored) != set(keys):
        return False
    if not keys:
        return True
    password_key, url_key = keys
    expected = _derived_from(family, host=domain.workload_name(role, directory), port=port,
                             password_fingerprint=stored[password_key][0])
    recorded = stored[url_key][1]
    return None if not recorded else recorded == expected


@sensitive_variables("password")
def _credentials_current(container: Container) -> bool:
    """Whether ``container_credentials_ensure`` (without rotation) would change nothing, decrypting the password
    to compare the stored URL's fingerprint with the URL it would make. A current container whose URL row has
    no (or an outdated) ``derived_from`` gets it recorded, so the next check needs no decryption."""
    stored = {c.key: c for c in ServiceCredential.objects.filter(container=container)}
    keys = container_credential_keys(container)
    if set(stored) != set(keys):
        return False
    if not keys:
        return True
    password_key, url_key = keys
    try:
        password = crypto.decrypt(stored[password_key].ciphertext)
    except Exception:  # noqa: BLE001 - container_credentials_ensure reports an unreadable value
        return False
    family = credential_family(image=container.image, is_service=container.is_service)
    url = _url(family, host=container.workload_name, port=container.port, password=password)
    current = (crypto.fingerprint(password) == stored[password_key].fingerprint
               and crypto.fingerprint(url) == stored[url_key].fingerprint)
    if current:
        derived_from = _derived_from(family, host=container.workload_name, port=container.port,
                                     password_fingerprint=stored[password_key].fingerprint)
        ServiceCredential.objects.filter(pk=stored[url_key].pk).update(derived_from=derived_from)
    return current


def _active_credentials(environment: Environment):
    return (ServiceCredential.objects.select_related("container__project")
            .filter(container__project__environment_id=environment.pk,
                    container__project__state=Project.State.ACTIVE).order_by("pk"))


@sensitive_variables("plaintext")
@transaction.atomic
def credentials_reseal(*, environment: Environment) -> dict[str, int]:
    """Seal every generated credential of the environment's active projects for its own namespace and Secret
    (strict scope ``proj-{id}/svc-{dir}-credentials``), only where the certificate or version changed (sealing is
    randomized). Clears sealed values when the environment has no certificate. Returns counts."""
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    counts = {"sealed": 0, "unchanged": 0, "cleared": 0}
    for credential in _active_credentials(environment).select_for_update(of=("self",)):
        label = seal_label(namespace=credential.container.project.namespace, name=credential.secret_name)
        if certificate is None:
            outcome = "cleared" if credential.sealed_value or credential.sealed_for else "unchanged"
            credential.sealed_value, credential.sealed_for = "", ""
        else:
            wanted = sealed_for(certificate_sha256=certificate_sha256, label=label, version=credential.version)
            if credential.sealed_value and credential.sealed_for == wanted:
                outcome = "unchanged"
            else:
                plaintext = crypto.decrypt(credential.ciphertext)
                credential.sealed_value = seal_with_key(certificate.public_key(), label=label,
                                                        value=plaintext.encode())
                credential.sealed_for, outcome = wanted, "sealed"
        if outcome != "unchanged":
            credential.save(update_fields=["sealed_value", "sealed_for"])
        counts[outcome] += 1
    return counts


def credentials_sync(*, environment: Environment) -> dict[str, int]:
    """EKS: write every new version of the environment's generated credentials to AWS Secrets Manager under
    ``tesslate/<env>/projects/<project id>/<secret>/<KEY>`` (the ClusterSecretStore ``tesslate-projects`` reads
    them). Same rules as the environment's own secrets (deployments.secrets.secrets_manager)."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    credentials = list(_active_credentials(environment))
    if not credentials:
        return counts
    client = aws_client("secretsmanager", region=environment.aws_region or None)
    try:
        existing = existing_secrets(client, f"{PATH_PREFIX}/{environment.name}/projects/")
        for credential in credentials:
            name = project_credential_path(environment_name=environment.name,
                                           project_id=str(credential.container.project_id),
                                           secret_name=credential.secret_name, key=credential.key)
            current = existing.get(name)
            if current is not None and not current["deleted"] and credential.synced_version == credential.version:
                counts["unchanged"] += 1
                continue
            counts[write_secret(client, environment=environment, secret=credential, name=name, current=current)] += 1
            ServiceCredential.objects.filter(pk=credential.pk, version=credential.version).update(
                synced_version=credential.version)
    finally:
        client.close()
    return counts


def credentials_deliver(environment: Environment) -> Iterator[tuple[str, bool]]:
    """What a render runs for the projects' generated credentials (registered with deployments.secrets.delivery):
    generate the missing ones, then seal them (non-EKS) or write them to AWS Secrets Manager (EKS, when
    SECRETS_MANAGER_SYNC is on). Yields ``(log line, is_warning)`` with counts, never values."""
    if not domain.is_kubernetes(environment.kind):
        return
    generated = environment_credentials_ensure(environment_id=environment.pk)
    total = _active_credentials(environment).count()
    if not total:
        return
    if environment.uses_external_secrets:
        if getattr(settings, "SECRETS_MANAGER_SYNC", False):
            counts = credentials_sync(environment=environment)
            yield (f"{environment.name}: project credentials in AWS Secrets Manager: {counts['created']} created, "
                   f"{counts['updated']} updated, {counts['unchanged']} unchanged ({generated} generated)."), False
        return
    counts = credentials_reseal(environment=environment)
    if not (environment.sealed_secrets_certificate or "").strip():
        yield (f"{environment.name}: no Sealed Secrets certificate; {total} project credential key(s) do not "
               "reach the cluster."), True
        return
    yield (f"{environment.name}: project credentials: {counts['sealed']} sealed anew, {counts['unchanged']} "
           f"current ({generated} generated)."), False
