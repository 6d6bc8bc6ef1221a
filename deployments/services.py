"""Writes for environments, node groups and secrets. The admin and the jobs call these."""

import secrets as _random

from django.db import transaction
from django.utils import timezone

from deployments import crypto
from deployments.models import Environment, Secret

SECRET_VALUE_MAX_BYTES = 64 * 1024


def secret_generate_value() -> str:
    """A strong random value: 48 bytes of entropy, URL-safe."""
    return _random.token_urlsafe(48)


def secret_store_value(*, secret: Secret, value: str) -> Secret:
    """Encrypt and save a new value. Only the ciphertext and a fingerprint reach the database.

    Storing the same value again changes nothing (no new version, no rollout).
    """
    new_fingerprint = crypto.fingerprint(value)
    if secret.pk and secret.ciphertext and secret.fingerprint == new_fingerprint:
        secret.save()
        return secret
    secret.ciphertext = crypto.encrypt(value)
    secret.fingerprint = new_fingerprint
    secret.version = (secret.version or 0) + 1
    secret.last_rotated_at = timezone.now()
    secret.save()
    return secret


def environment_mark_dirty(*, environment_id: int) -> None:
    """Record that an environment changed since its last render."""
    Environment.objects.filter(pk=environment_id).update(needs_render=True)


@transaction.atomic
def secret_reencrypt_all() -> int:
    """Re-encrypt every stored value under the newest key; returns how many rows were rewritten."""
    count = 0
    for secret in Secret.objects.select_for_update().exclude(ciphertext=""):
        secret.ciphertext = crypto.reencrypt(secret.ciphertext)
        secret.save(update_fields=["ciphertext"])
        count += 1
    return count
