"""How an environment's secret values reach its cluster before a render reads the snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.conf import settings

from deployments.models import Environment
from deployments.secrets.sealing import environment_secrets_reseal
from deployments.secrets.secrets_manager import environment_secrets_sync

Deliverer = Callable[[Environment], Iterator[tuple[str, bool]]]
# Other apps' secrets that reach the same clusters (projects: the generated credentials of service containers)
# register here from their AppConfig.ready(), so this package never imports them.
_deliverers: list[Deliverer] = []


def register_deliverer(deliverer: Deliverer) -> None:
    """Add a function ``deliverer(environment) -> Iterator[(log line, is_warning)]`` run after the environment's
    own secrets on every render (idempotent: registering the same function twice keeps one)."""
    if deliverer not in _deliverers:
        _deliverers.append(deliverer)


def environment_secrets_deliver(*, environment: Environment) -> Iterator[tuple[str, bool]]:
    """The environment's own secrets (``_platform_secrets_deliver``), then every registered deliverer's."""
    yield from _platform_secrets_deliver(environment)
    for deliverer in _deliverers:
        yield from deliverer(environment)


def _platform_secrets_deliver(environment: Environment) -> Iterator[tuple[str, bool]]:
    """EKS: write values to AWS Secrets Manager (when SECRETS_MANAGER_SYNC is on); other clusters: reseal for
    the controller's certificate. Yields ``(log line, is_warning)``; lines carry counts, never values.

    A warning means the render's output is incomplete (a key that does not reach the cluster): the run then ends
    as "succeeded with warnings". Raises SecretUnreadable naming a secret no configured key opens.
    """
    secret_count = environment.secrets.count()
    if environment.uses_external_secrets:
        if not secret_count:
            return
        if getattr(settings, "SECRETS_MANAGER_SYNC", False):
            result = environment_secrets_sync(environment=environment)
            yield (f"{environment.name}: AWS Secrets Manager: {result.created} created, {result.updated} updated, "
                   f"{result.unchanged} unchanged."), False
        else:
            yield (f"{environment.name}: Secrets Manager sync is off (SECRETS_MANAGER_SYNC); the ExternalSecrets "
                   "reference the values already in AWS."), False
        return
    # Also clears sealed values that no longer apply (certificate removed); Compose servers get age ciphertext.
    result = environment_secrets_reseal(environment=environment)
    if not secret_count:
        return
    if environment.kind == Environment.Kind.COMPOSE:
        missing = environment.secrets.filter(age_value="").count()
        if not (environment.age_recipient or "").strip():
            yield (f"{environment.name}: no age recipient; {secret_count} secret key(s) do not reach the server "
                   "(paste the server's `age-keygen -y` output on the environment)."), True
        elif missing:
            yield f"{environment.name}: {missing} secret key(s) have no age ciphertext and are left out.", True
        else:
            yield f"{environment.name}: {secret_count} secret key(s) encrypted to the server's age recipient.", False
        return
    if not (environment.sealed_secrets_certificate or "").strip():
        yield (f"{environment.name}: no Sealed Secrets certificate; {secret_count} secret key(s) do not reach the "
               "cluster (upload the controller's certificate on the environment)."), True
        return
    unsealed = environment.secrets.filter(sealed_value="").count()
    yield f"{environment.name}: Sealed Secrets: {result.sealed} sealed anew, {result.unchanged} current.", False
    if unsealed:
        yield f"{environment.name}: {unsealed} secret key(s) have no sealed value and are left out.", True
