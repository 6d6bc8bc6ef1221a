"""Writes for environments, node groups and secrets. The admin and the jobs call these."""

import hmac
import secrets as _random
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from deployments import crypto, sealing
from deployments.models import Secret

SECRET_VALUE_MAX_BYTES = 64 * 1024
# What the admin edits, and what storing a value sets. The delivery fields (sealed_value, sealed_for,
# synced_version) are written only by sealing and the Secrets Manager sync, so a save from a form loaded
# earlier cannot put back a stale seal or sync record.
EDITABLE_FIELDS = ("environment", "secret_name", "key", "description", "updated_at")
VALUE_FIELDS = ("ciphertext", "fingerprint", "version", "last_rotated_at")


def _save(secret: Secret, value_fields: tuple[str, ...]) -> None:
    if secret._state.adding:
        secret.save()
    else:
        secret.save(update_fields=[*EDITABLE_FIELDS, *value_fields])


def secret_generate_value() -> crypto.SecretValue:
    """A strong random value: 48 bytes of entropy, URL-safe."""
    return crypto.SecretValue(_random.token_urlsafe(48))


@sensitive_variables()
def secret_value_validate(value: str) -> None:
    """Refuse values Kubernetes or the portal cannot carry. Messages never contain the value."""
    if not isinstance(value, str) or value == "":
        raise ValidationError("The value is empty.", code="secret_value_empty")
    if not value.strip():
        raise ValidationError("The value is only whitespace.", code="secret_value_blank")
    size = len(value.encode())
    if size > SECRET_VALUE_MAX_BYTES:
        raise ValidationError(
            "The value is %(size)s bytes, larger than %(max)s KiB, the most a Kubernetes Secret key should hold here.",
            params={"size": size, "max": SECRET_VALUE_MAX_BYTES // 1024}, code="secret_value_too_large",
        )


@sensitive_variables()
def _same_value(stored_ciphertext: str, stored_fingerprint: str, value: str, new_fingerprint: str) -> bool:
    if hmac.compare_digest(stored_fingerprint, new_fingerprint):
        return True
    # The fingerprint is keyed with SECRET_KEY; after that key changed the same value fingerprints differently.
    # Compare the values themselves then, so that re-entering a value never rolls the pods.
    try:
        old_value = crypto.decrypt(stored_ciphertext)
    except crypto.EncryptionKeyError:
        return False  # the old value is unreadable (lost key): storing a new one is how to recover
    return hmac.compare_digest(old_value.encode(), value.encode())


@sensitive_variables("value")
@transaction.atomic
def secret_store_value(*, secret: Secret, value: str) -> Secret:
    """Validate, encrypt and save a value, then seal it where the environment uses Sealed Secrets.

    Only the ciphertext and a fingerprint reach the database. A new value bumps ``version`` (which rolls the
    pods that read it); storing the same value again keeps the version. Other field changes on ``secret``
    (name, key, description) are saved too.
    """
    secret_value_validate(value)
    crypto.keys_check()  # fail on a missing or malformed key before anything is written
    new_fingerprint = crypto.fingerprint(value)
    current = None
    if secret.pk:
        # Lock the row so two saves of the same secret cannot both read version n and both write n + 1.
        current = (Secret.objects.select_for_update().filter(pk=secret.pk)
                   .values("ciphertext", "fingerprint", "version", "last_rotated_at").first())
    if current and current["ciphertext"] and _same_value(current["ciphertext"], current["fingerprint"], value,
                                                          new_fingerprint):
        secret.ciphertext = current["ciphertext"]
        secret.fingerprint = new_fingerprint
        secret.version = current["version"]
        secret.last_rotated_at = current["last_rotated_at"]
    else:
        secret.ciphertext = crypto.encrypt(value)
        secret.fingerprint = new_fingerprint
        secret.version = (current["version"] if current else secret.version or 0) + 1
        secret.last_rotated_at = timezone.now()
    secret.full_clean()
    _save(secret, VALUE_FIELDS)
    sealing.secret_reseal(secret=secret)
    return secret


@transaction.atomic
def secret_save(*, secret: Secret) -> Secret:
    """Save a secret's name, key or description, keeping its value; reseals it when its name changed.

    (A SealedSecret is bound to the Secret's name, so a renamed secret needs a new seal.)
    """
    secret.full_clean()
    _save(secret, ())
    sealing.secret_reseal(secret=secret)
    return secret


@dataclass(frozen=True)
class ReencryptResult:
    total: int              # values rewritten under the newest key
    from_older_keys: int    # of those, how many were encrypted under an older key before
    keys: int               # keys configured (the newest encrypts, all decrypt)


@transaction.atomic
def secret_reencrypt_all() -> ReencryptResult:
    """Re-encrypt every stored value under the newest key, all or nothing.

    Every value is checked first: if any cannot be opened with the configured keys, nothing is changed and
    EncryptionKeyError names the secrets (never their values).
    """
    keys = crypto.keys_check()
    secrets = list(Secret.objects.select_for_update().exclude(ciphertext="").select_related("environment")
                   .order_by("pk"))
    rewritten, older, unreadable = [], 0, []
    for secret in secrets:
        try:
            if not crypto.is_under_newest_key(secret.ciphertext):
                older += 1
            rewritten.append((secret.pk, crypto.reencrypt(secret.ciphertext)))
        except crypto.EncryptionKeyError:
            unreadable.append(f"{secret.environment.name}/{secret}")
    if unreadable:
        shown = ", ".join(unreadable[:20]) + (f" and {len(unreadable) - 20} more" if len(unreadable) > 20 else "")
        raise crypto.EncryptionKeyError(
            f"{len(unreadable)} of {len(secrets)} stored values cannot be opened with PORTAL_ENCRYPTION_KEYS "
            f"(the key they were encrypted with is missing or wrong): {shown}. Nothing was changed."
        )
    for pk, ciphertext in rewritten:
        Secret.objects.filter(pk=pk).update(ciphertext=ciphertext)
    return ReencryptResult(total=len(rewritten), from_older_keys=older, keys=keys)
