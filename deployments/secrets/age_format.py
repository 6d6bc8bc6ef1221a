"""The age format for Docker Compose servers (age-encryption.org/v1): parse a recipient, encrypt to it.

Pure (no models): the models validate a recipient with it, and ``deployments.secrets.age`` encrypts with it.
The portal encrypts with ``pyrage``; the server decrypts with Debian's ``age`` CLI. Output is ASCII-armored.
"""

import hashlib

import pyrage
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

ARMOR_HEADER = "-----BEGIN AGE ENCRYPTED FILE-----"


def recipient_load(text: str) -> pyrage.x25519.Recipient:
    """Parse an age X25519 recipient (``age1…``, the output of ``age-keygen -y``).

    Raises ValidationError for an empty value, a pasted identity (private key, ``AGE-SECRET-KEY-1…``, never
    echoed) or anything that is not a recipient.
    """
    value = (text or "").strip()
    if not value:
        raise ValidationError("The age recipient is empty.", code="age_recipient_empty")
    if value.upper().startswith("AGE-SECRET-KEY-"):
        raise ValidationError(
            "This is an age identity (a private key). Paste only the public recipient (age1…, "
            "`age-keygen -y key.txt`); the identity stays on the server.", code="age_recipient_private",
        )
    try:
        return pyrage.x25519.Recipient.from_str(value)
    except pyrage.RecipientError:
        raise ValidationError(
            "%(value)s is not an age X25519 recipient: it starts with age1 and is 62 characters "
            "(`age-keygen -y key.txt` prints it).", params={"value": value[:80]}, code="age_recipient_malformed",
        ) from None


def recipient_fingerprint(recipient_text: str) -> str:
    """A short hash of the recipient text, stored with each ciphertext to notice a changed recipient."""
    return hashlib.sha256(recipient_text.strip().encode()).hexdigest()[:24]


@sensitive_variables("value")
def age_encrypt(*, recipient: str, value: bytes) -> str:
    """``value`` encrypted to one age recipient, ASCII-armored (what ``age -a -r RECIPIENT`` writes)."""
    ciphertext = pyrage.encrypt(value, [recipient_load(recipient)], armored=True)
    return ciphertext.decode("ascii")
