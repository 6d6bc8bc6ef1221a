"""Secrets for Docker Compose servers: values encrypted to the server's age recipient (age-encryption.org/v1).

The portal encrypts with ``pyrage``; the server decrypts at deploy time with Debian's ``age`` CLI and its
identity file. Output is ASCII-armored (``-----BEGIN AGE ENCRYPTED FILE-----``), so it diffs as text in git.

age encryption is randomized, so it happens here, in a service, when a value, the Secret's version or the
recipient changes; the ciphertext is kept in ``Secret.age_value`` and the renderer only reads it, which keeps
renders deterministic (as ``deployments.secrets.sealing`` does for Sealed Secrets). The format is in
``deployments.secrets.age_format``.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from deployments.models import Environment, Secret
from deployments.secrets import crypto
from deployments.secrets.age_format import age_encrypt, recipient_fingerprint, recipient_load


@dataclass(frozen=True)
class AgeEncryptResult:
    encrypted: int   # values encrypted anew (new version, new recipient)
    unchanged: int   # already encrypted for this recipient and version
    cleared: int     # ciphertexts removed (no recipient any more, or not a Compose environment)


def _age_for(*, recipient_sha: str, secret: Secret) -> str:
    return f"age:{recipient_sha};v{secret.version}"


def environment_age_recipient(environment: Environment) -> str:
    """The recipient to encrypt to, or "" when the environment's secrets are not age-encrypted."""
    if environment.kind != Environment.Kind.COMPOSE:
        return ""
    return (environment.age_recipient or "").strip()


@sensitive_variables("plaintext")
def _encrypt_one(secret: Secret, recipient: str) -> str:
    """Bring one locked row up to date; returns "encrypted", "unchanged" or "cleared" (and saves what changed)."""
    if not recipient or not secret.ciphertext:
        if not (secret.age_value or secret.age_for):
            return "unchanged"
        secret.age_value, secret.age_for = "", ""
        secret.save(update_fields=["age_value", "age_for"])
        return "cleared"
    wanted = _age_for(recipient_sha=recipient_fingerprint(recipient), secret=secret)
    if secret.age_value and secret.age_for == wanted:
        return "unchanged"
    plaintext = crypto.decrypt(secret.ciphertext)
    secret.age_value = age_encrypt(recipient=recipient, value=plaintext.encode())
    secret.age_for = wanted
    secret.save(update_fields=["age_value", "age_for"])
    return "encrypted"


@transaction.atomic
def secret_age_encrypt(*, secret: Secret) -> bool:
    """Encrypt one secret's current value for its Compose environment's recipient if that is not done yet.

    Returns True when a new ciphertext was written; clears it where there is nothing to encrypt for.
    Raises ValidationError naming the environment when its recipient is malformed.
    """
    environment = Environment.objects.get(pk=secret.environment_id)
    recipient = _checked_recipient(environment)
    locked = Secret.objects.select_for_update().get(pk=secret.pk)
    outcome = _encrypt_one(locked, recipient)
    secret.age_value, secret.age_for = locked.age_value, locked.age_for
    return outcome == "encrypted"


@transaction.atomic
def environment_secrets_age_encrypt(*, environment: Environment) -> AgeEncryptResult:
    """Make every secret of a Compose environment encrypted for its current recipient and version.

    Only values whose (recipient, version) changed are encrypted again, so an unchanged value keeps its
    ciphertext and a render shows no diff.
    """
    recipient = _checked_recipient(environment)
    counts = {"encrypted": 0, "unchanged": 0, "cleared": 0}
    for secret in Secret.objects.select_for_update().filter(environment_id=environment.pk).order_by("pk"):
        counts[_encrypt_one(secret, recipient)] += 1
    return AgeEncryptResult(**counts)


def _checked_recipient(environment: Environment) -> str:
    recipient = environment_age_recipient(environment)
    if recipient:
        try:
            recipient_load(recipient)
        except ValidationError as exc:
            raise ValidationError(
                f"Environment {environment.name}: its age recipient cannot encrypt: {'; '.join(exc.messages)}",
                code="age_recipient_unusable",
            ) from None
    return recipient
