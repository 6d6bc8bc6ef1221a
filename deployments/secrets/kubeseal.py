"""The kubeseal format: values sealed exactly as `kubeseal` seals them (strict scope). Pure: no models.

Format (bitnami-labs/sealed-secrets, pkg/crypto/crypto.go ``HybridEncrypt`` and
pkg/apis/sealedsecrets/v1alpha1 ``EncryptionLabel``):

- a fresh 32-byte session key, encrypted with RSA-OAEP (SHA-256 for the hash and MGF1) under the controller's
  public key, with label ``"<namespace>/<name>"`` for strict scope, so the sealed value only opens for a Secret
  of that name in that namespace;
- the value encrypted with AES-256-GCM under the session key with an all-zero 12-byte nonce (the key is used
  once) and no additional data;
- output: 2-byte big-endian length of the RSA ciphertext || RSA ciphertext || AES-GCM ciphertext and tag,
  base64 (standard alphabet, padded), as in ``spec.encryptedData``.

Sealing is randomized, so it happens here, in services, when a value or the certificate changes, and the
result is kept in ``Secret.sealed_value``; the renderer only reads it and stays deterministic.
"""

import base64
import os
import struct
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

# The renderer writes every SealedSecret into the platform namespace, named after the Kubernetes Secret.
SEALED_NAMESPACE = "tesslate"
SESSION_KEY_BYTES = 32
GCM_NONCE = bytes(12)  # zero nonce: every session key encrypts exactly one value
MIN_RSA_BITS = 2048


def certificate_load(pem: str) -> x509.Certificate:
    """Parse the controller's certificate (`kubeseal --fetch-cert`) and check that it can seal.

    Raises ValidationError with a message an operator can act on: malformed PEM, more than one certificate,
    a private key pasted by mistake, not yet valid, expired, or a key that is not RSA (or too short).
    """
    text = (pem or "").strip()
    if not text:
        raise ValidationError("The certificate is empty.", code="certificate_empty")
    if "PRIVATE KEY-----" in text:
        # Never echo it back: the page would then show the controller's private key.
        raise ValidationError(
            "This is a private key. Paste only the controller's public certificate (`kubeseal --fetch-cert`); "
            "the private key must never leave the cluster.", code="certificate_private_key",
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValidationError(
            "This is not a PEM certificate: expected a block starting with -----BEGIN CERTIFICATE----- "
            "(the output of `kubeseal --fetch-cert`).", code="certificate_malformed",
        )
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValidationError(
            "The certificate cannot be read: the PEM block is damaged or incomplete. "
            "Paste the whole output of `kubeseal --fetch-cert`.", code="certificate_malformed",
        ) from None
    if len(certificates) != 1:
        raise ValidationError(
            "Paste exactly one certificate (found %(count)s): the controller's current one.",
            params={"count": len(certificates)}, code="certificate_count",
        )
    certificate = certificates[0]
    now = datetime.now(UTC)
    if certificate.not_valid_before_utc > now:
        raise ValidationError(
            "The certificate is not valid yet: it becomes valid on %(date)s (UTC).",
            params={"date": certificate.not_valid_before_utc.strftime("%Y-%m-%d %H:%M")},
            code="certificate_not_yet_valid",
        )
    if certificate.not_valid_after_utc < now:
        raise ValidationError(
            "The certificate expired on %(date)s (UTC). "
            "Fetch the controller's current one with `kubeseal --fetch-cert`.",
            params={"date": certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M")}, code="certificate_expired",
        )
    try:
        public_key = certificate.public_key()
    except (ValueError, TypeError):
        raise ValidationError("The certificate's public key cannot be read.", code="certificate_key") from None
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValidationError(
            "The certificate holds a %(kind)s key; Sealed Secrets seals with RSA keys only.",
            params={"kind": _key_kind(public_key)},
            code="certificate_not_rsa",
        )
    if public_key.key_size < MIN_RSA_BITS:
        raise ValidationError(
            "The certificate's RSA key has %(bits)s bits; at least %(min)s are needed.",
            params={"bits": public_key.key_size, "min": MIN_RSA_BITS}, code="certificate_weak",
        )
    return certificate


def _key_kind(public_key) -> str:
    for kind, name in ((ec.EllipticCurvePublicKey, "elliptic-curve (EC)"), (ed25519.Ed25519PublicKey, "Ed25519"),
                       (ed448.Ed448PublicKey, "Ed448"), (dsa.DSAPublicKey, "DSA")):
        if isinstance(public_key, kind):
            return name
    return "non-RSA"


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 over the DER certificate (what `openssl x509 -fingerprint -sha256` shows, lowercase, no colons)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def seal_label(*, namespace: str, name: str) -> bytes:
    """The RSA-OAEP label of strict scope: the sealed value opens only for this namespace and name."""
    return f"{namespace}/{name}".encode()


@sensitive_variables("value", "session_key")
def seal_with_key(public_key: rsa.RSAPublicKey, *, label: bytes, value: bytes) -> str:
    session_key = os.urandom(SESSION_KEY_BYTES)
    rsa_ciphertext = public_key.encrypt(
        session_key,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    aes_ciphertext = AESGCM(session_key).encrypt(GCM_NONCE, value, None)
    sealed = struct.pack(">H", len(rsa_ciphertext)) + rsa_ciphertext + aes_ciphertext
    return base64.b64encode(sealed).decode("ascii")


@sensitive_variables("value")
def seal_value(*, certificate_pem: str, namespace: str, name: str, value: bytes) -> str:
    """Seal one value for a Secret ``name`` in ``namespace`` (strict scope), as `kubeseal --raw` would."""
    certificate = certificate_load(certificate_pem)
    return seal_with_key(certificate.public_key(), label=seal_label(namespace=namespace, name=name), value=value)


