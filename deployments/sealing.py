"""Sealed Secrets for clusters without AWS: values sealed exactly as `kubeseal` seals them (strict scope).

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
import hashlib
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from deployments import crypto
from deployments.models import Environment, Secret

# The renderer writes every SealedSecret into the platform namespace, named after the Kubernetes Secret.
SEALED_NAMESPACE = "tesslate"
SESSION_KEY_BYTES = 32
GCM_NONCE = bytes(12)  # zero nonce: every session key encrypts exactly one value
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class ResealResult:
    sealed: int      # values sealed anew (new version, new certificate or renamed Secret)
    unchanged: int   # already sealed for this certificate, name and version
    cleared: int     # sealed values removed (no certificate any more, or an EKS environment)


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
def _seal(public_key: rsa.RSAPublicKey, *, label: bytes, value: bytes) -> str:
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
    return _seal(certificate.public_key(), label=seal_label(namespace=namespace, name=name), value=value)


def _sealed_for(*, certificate_sha256: str, secret: Secret) -> str:
    """What a sealed value was made for: the certificate, the Secret's name (the label) and the version.

    The name is hashed because a DNS-1123 subdomain can be 253 characters and the column holds 100.
    """
    scope = hashlib.sha256(
        seal_label(namespace=SEALED_NAMESPACE, name=secret.secret_name)
    ).hexdigest()[:12]
    return f"cert:{certificate_sha256[:24]};scope:{scope};v{secret.version}"


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
    plaintext = crypto.decrypt(secret.ciphertext)
    secret.sealed_value = _seal(
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
    for (EKS, or no certificate).
    """
    environment = Environment.objects.get(pk=secret.environment_id)
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    # Lock the row: a value stored meanwhile must not be overwritten by a seal of the previous version.
    locked = Secret.objects.select_for_update().get(pk=secret.pk)
    outcome = _reseal_one(locked, certificate, certificate_sha256)
    secret.sealed_value, secret.sealed_for = locked.sealed_value, locked.sealed_for
    return outcome == "sealed"


@transaction.atomic
def environment_secrets_reseal(*, environment: Environment) -> ResealResult:
    """Make every secret of a non-EKS environment sealed for its current certificate, name and version.

    Only values whose (certificate, name, version) changed are sealed again: sealing is randomized, and
    resealing unchanged values would turn every render into a diff.
    """
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    counts = {"sealed": 0, "unchanged": 0, "cleared": 0}
    for secret in Secret.objects.select_for_update().filter(environment_id=environment.pk).order_by("pk"):
        counts[_reseal_one(secret, certificate, certificate_sha256)] += 1
    # The projects' generated credentials travel the same way (counted apart: these counts are the platform's).
    project_credentials_reseal(environment=environment)
    return ResealResult(**counts)


@transaction.atomic
def project_credentials_reseal(*, environment: Environment) -> ResealResult:
    """Generate missing service-container credentials of the environment's active projects and seal every one for
    its own namespace and Secret (strict scope ``proj-{id}/svc-{dir}-credentials``), like environment secrets.

    Called by ``environment_secrets_reseal``, so every render of a non-EKS environment delivers them.
    """
    from projects.credentials import environment_credentials_ensure  # projects imports this app's models
    from projects.models import Project, ServiceCredential

    environment_credentials_ensure(environment_id=environment.pk)
    certificate = environment_sealing_certificate(environment)
    certificate_sha256 = certificate_fingerprint(certificate) if certificate is not None else ""
    counts = {"sealed": 0, "unchanged": 0, "cleared": 0}
    credentials = (ServiceCredential.objects.select_for_update(of=("self",)).select_related("container__project")
                   .filter(container__project__environment_id=environment.pk,
                           container__project__state=Project.State.ACTIVE).order_by("pk"))
    for credential in credentials:
        namespace = credential.container.project.namespace
        label = seal_label(namespace=namespace, name=credential.secret_name)
        if certificate is None:
            outcome = "cleared" if credential.sealed_value or credential.sealed_for else "unchanged"
            credential.sealed_value, credential.sealed_for = "", ""
        else:
            wanted = (f"cert:{certificate_sha256[:24]};scope:{hashlib.sha256(label).hexdigest()[:12]};"
                      f"v{credential.version}")
            if credential.sealed_value and credential.sealed_for == wanted:
                outcome = "unchanged"
            else:
                credential.sealed_value = _seal(certificate.public_key(), label=label,
                                                value=crypto.decrypt(credential.ciphertext).encode())
                credential.sealed_for, outcome = wanted, "sealed"
        if outcome != "unchanged":
            credential.save(update_fields=["sealed_value", "sealed_for"])
        counts[outcome] += 1
    return ResealResult(**counts)
