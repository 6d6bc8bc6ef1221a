"""Encryption at rest for secret values (MultiFernet, keys newest first from PORTAL_ENCRYPTION_KEYS).

This is the only module that sees key material. Plaintext leaves it only through ``decrypt`` and
only for the code that delivers a value to its destination (AWS Secrets Manager, a SealedSecret).
"""

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class EncryptionKeyError(ImproperlyConfigured):
    """No key is configured, a key is malformed, or no configured key opens a stored value."""


def _fernets() -> list[Fernet]:
    keys = [key.strip() for key in settings.PORTAL_ENCRYPTION_KEYS if key.strip()]
    if not keys:
        raise EncryptionKeyError(
            "PORTAL_ENCRYPTION_KEYS is not set: secret values cannot be encrypted or read. "
            "Generate one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError) as exc:
            raise EncryptionKeyError(
                f"Key number {position} in PORTAL_ENCRYPTION_KEYS is not a Fernet key (32 url-safe base64 bytes)."
            ) from exc
    return fernets


def encrypt(plaintext: str) -> str:
    return MultiFernet(_fernets()).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return MultiFernet(_fernets()).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise EncryptionKeyError(
            "No key in PORTAL_ENCRYPTION_KEYS opens this value: the key it was encrypted with is missing or wrong."
        ) from exc


def reencrypt(ciphertext: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate)."""
    try:
        return MultiFernet(_fernets()).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise EncryptionKeyError("No key in PORTAL_ENCRYPTION_KEYS opens this value.") from exc


def fingerprint(plaintext: str) -> str:
    """A short keyed hash that tells two values apart without revealing either.

    Keyed with SECRET_KEY so that a fingerprint cannot be brute-forced offline against guesses of short values.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
    return f"sha256:{digest[:12]}"
