"""Sealed Secrets delivery for clusters without AWS: keeps each secret's sealed value current.

Sealing is randomized, so it happens here, when a value, the Secret's name or the certificate changes, and the
result is kept in ``Secret.sealed_value``; the renderer only reads it and stays deterministic. The format itself
is in deployments.secrets.kubeseal.
"""

import hashlib
from dataclasses import dataclass

from cryptography import x509
from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from deployments.models import Environment, Secret
from deployments.secrets import age, crypto
from deployments.secrets.crypto import SecretUnreadable
from deployments.secrets.kubeseal import (
    SEALED_NAMESPACE,
    certificate_fingerprint,
    certificate_load,
    seal_label,
    seal_with_key,
)


@dataclass(frozen=True)
class ResealResult:
    sealed: int      # values sealed anew (new version, new certificate or renamed Secret)
    unchanged: int   # already sealed for this certificate, name and version
    cleared: int     # sealed values removed (no certificate any more, or an EKS environment)


def sealed_for(*, certificate_sha256: str, label: bytes, version: int) -> str:
    """What a sealed value was made for, as stored in ``sealed_for`` (at most 100 characters): the certificate's
    SHA-256 (hex), the sealing label (kubeseal's strict scope ``<namespace>/<name>``, hashed because a DNS-1123
    subdomain can be 253 characters) and the value's version. A sealed value whose record differs is sealed again.
    """
    scope = hashlib.sha256(label).hexdigest()[:12]
    return f"cert:{certificate_sha256[:24]};scope:{scope};v{version}"


def _sealed_for(*, certificate_sha256: str, secret: Secret) -> str:
    return sealed_for(certificate_sha256=certificate_sha256,
                      label=seal_label(namespace=SEALED_NAMESPACE, name=secret.secret_name), version=secret.version)


def environment_sealing_certificate(environment: Environment) -> x509.Certificate | None:
    """The certificate to seal with, or None when the environment gets no SealedSecrets.

    Raises ValidationError naming the environment when its certificate cannot seal (expired since it was
    entered, for example).
    """
    if environment.uses_external_secrets or not (environment.sealed_secrets_certificate or "").strip():
        return None
    try:
        return certificate_load(environment.sealed_secrets_certificate)
    except ValidationError as exc:
        raise ValidationError(
            f"Environment {environment.name}: its Sealed Secrets certificate cannot seal: {'; '.join(exc.messages)}",
            code="certificate_unusable",
        ) from None


@sensitive_variables("plaintext")
def _reseal_one(secret: Secret, certificate: x509.Certificate | None, certificate_sha256: str) -> str:
    """Bring one locked row up to date; returns "sealed", "unchanged" or "cleared" (and saves what changed)."""
    if certificate is None or not secret.ciphertext:
        if not (secret.sealed_value or secret.sealed_for):
            return "unchanged"
        secret.sealed_value, secret.sealed_for = "", ""
        secret.save(update_fields=["sealed_value", "sealed_for"])
        return "cleared"
    wanted = _sealed_for(certificate_sha256=certificate_sha256, secret=secret)
    if secret.sealed_value and secret.sealed_for == wanted:
        return "unchanged"
    try:
        plaintext = crypto.decrypt(secret.ciphertext)
    except crypto.EncryptionKeyError:
        raise SecretUnreadable(secret) from None
    secret.sealed_value = seal_with_key(
        certificate.public_key(), label=seal_label(namespace=SEALED_NAMESPACE, name=secret.secret_name),
        value=plaintext.encode(),
    )
    secret.sealed_for = wanted
    secret.save(update_fields=["sealed_value", "sealed_for"])
    return "sealed"


@transaction.atomic
def secret_reseal(*, secret: Secret) -> bool:
    """Seal one secret's current value for its environment's certificate if that is not done yet.

    Returns True when a new sealed value was written. Clears the sealed value where there is nothing to seal
    for (EKS, or no certificate). Compose environments get their age ciphertext brought up to date as well
    (``deployments.secrets.age``), so every caller that stores a value delivers it on every kind of environment.
    """
    environment = Environment.objects.get(pk=secret.environment_id)
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    # Lock the row: a value stored meanwhile must not be overwritten by a seal of the previous version.
    locked = Secret.objects.select_for_update().get(pk=secret.pk)
    outcome = _reseal_one(locked, certificate, certificate_sha256)
    secret.sealed_value, secret.sealed_for = locked.sealed_value, locked.sealed_for
    # Compose servers get the value encrypted to their age recipient instead (same rule: only what changed).
    age.secret_age_encrypt(secret=secret)
    return outcome == "sealed"


@transaction.atomic
def environment_secrets_reseal(*, environment: Environment) -> ResealResult:
    """Make every secret of a non-EKS environment sealed for its current certificate, name and version.

    Only values whose (certificate, name, version) changed are sealed again: sealing is randomized, and
    resealing unchanged values would turn every render into a diff. Compose environments: the same for their age
    recipient (the counts returned are the Sealed Secrets ones).
    """
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    counts = {"sealed": 0, "unchanged": 0, "cleared": 0}
    for secret in Secret.objects.select_for_update().filter(environment_id=environment.pk).order_by("pk"):
        counts[_reseal_one(secret, certificate, certificate_sha256)] += 1
    # Compose servers: age-encrypt for the server's recipient (a render calls this before its snapshot).
    age.environment_secrets_age_encrypt(environment=environment)
    return ResealResult(**counts)
