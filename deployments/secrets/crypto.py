"""Encryption at rest for secret values (MultiFernet, keys newest first from PORTAL_ENCRYPTION_KEYS).

This is the only module that sees key material. Plaintext leaves it only through ``decrypt`` and only for
the code that delivers a value to its destination (AWS Secrets Manager, a SealedSecret). Fernet tokens are
authenticated: a missing or wrong key raises ``EncryptionKeyError``, it never yields garbage.
"""

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

GENERATE_KEY_HINT = (
    "Generate one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
)


class SecretValue(str):
    """A plaintext value whose repr never shows it.

    Error reports (DEBUG pages, mails to admins), debuggers and ``%r`` in log lines print frame locals and
    arguments with repr(); a value passed around as SecretValue shows up there as ``'********'``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'********'"


class EncryptionKeyError(ImproperlyConfigured):
    """No key is configured, a key is malformed, or no configured key opens a stored value."""


class SecretUnreadable(Exception):
    """A stored value that no configured key opens, named (never shown): re-enter the value to recover."""

    def __init__(self, secret) -> None:
        environment = getattr(getattr(secret, "environment", None), "name", "")
        environment = environment or f"environment {secret.environment_id}"
        super().__init__(
            f"Secret {secret.secret_name}/{secret.key} of {environment} is unreadable: no key in "
            "PORTAL_ENCRYPTION_KEYS opens its stored value (the key it was encrypted with is missing or wrong). "
            "Re-enter the value on the secret's page."
        )
        self.secret_id = secret.pk


def is_readable(ciphertext: str) -> bool:
    """Whether a configured key opens this stored value (False for an empty one)."""
    if not ciphertext:
        return False
    try:
        MultiFernet(_fernets()).decrypt(ciphertext.encode())
    except (InvalidToken, EncryptionKeyError):
        return False
    return True


# Error reports (DEBUG pages, mails to admins) list frame locals; here they are keys and plaintext, so every
# function that holds either hides all of its locals (and those of the frames it calls).
@sensitive_variables()
def _fernets() -> list[Fernet]:
    raw = settings.PORTAL_ENCRYPTION_KEYS
    if isinstance(raw, str):  # a setting overridden with a plain string instead of a list
        raw = raw.split(",")
    keys = [key.strip() for key in raw if key and key.strip()]
    if not keys:
        raise EncryptionKeyError(
            f"PORTAL_ENCRYPTION_KEYS is not set: secret values cannot be encrypted or read. {GENERATE_KEY_HINT}"
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # Never echo the key itself: it is the one thing that must not reach a log.
            raise EncryptionKeyError(
                f"Key number {position} in PORTAL_ENCRYPTION_KEYS is not a Fernet key "
                f"(32 url-safe base64-encoded bytes). {GENERATE_KEY_HINT}"
            ) from None
    return fernets


def keys_check() -> int:
    """Raise EncryptionKeyError unless the configured keys are usable; returns how many keys there are."""
    return len(_fernets())


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return MultiFernet(_fernets()).encrypt(plaintext.encode()).decode()


@sensitive_variables()
def decrypt(ciphertext: str) -> str:
    try:
        return SecretValue(MultiFernet(_fernets()).decrypt(ciphertext.encode()).decode())
    except InvalidToken:
        raise EncryptionKeyError(
            "No key in PORTAL_ENCRYPTION_KEYS opens this value: the key it was encrypted with is missing or wrong "
            "(or the stored ciphertext is damaged)."
        ) from None


@sensitive_variables()
def is_under_newest_key(ciphertext: str) -> bool:
    """Whether the newest key (the first) opens the value, i.e. a key rotation would not need to touch it."""
    try:
        _fernets()[0].decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


@sensitive_variables()
def reencrypt(ciphertext: str) -> str:
    """Re-encrypt under the newest key (MultiFernet.rotate)."""
    try:
        return MultiFernet(_fernets()).rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise EncryptionKeyError(
            "No key in PORTAL_ENCRYPTION_KEYS opens this value: the key it was encrypted with is missing or wrong."
        ) from None


@sensitive_variables()
def fingerprint(plaintext: str) -> str:
    """A short keyed hash that tells two values apart without revealing either.

    Keyed with SECRET_KEY so that a fingerprint cannot be brute-forced offline against guesses of short values.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), plaintext.encode(), hashlib.sha256).hexdigest()
    return f"sha256:{digest[:12]}"
