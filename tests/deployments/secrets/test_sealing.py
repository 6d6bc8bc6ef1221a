"""Sealed Secrets: kubeseal's format, certificate checks, and resealing only what changed."""

import base64
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.urls import reverse

from deployments import services
from deployments.models import Environment, Secret
from deployments.secrets import kubeseal, sealing
from deployments.services import secret_store_value
from tests.factories import eks_environment_factory, environment_factory, secret_factory

pytestmark = pytest.mark.django_db


# --- keys and certificates made here, as the controller would make them ----------------------------------------

def _certificate(key, *, not_before=None, not_after=None, common_name="sealed-secret") -> str:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def controller_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_controller_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate_pem(controller_key):
    return _certificate(controller_key)


def unseal(private_key, sealed: str, *, namespace: str, name: str) -> bytes:
    """The controller's side (sealed-secrets HybridDecrypt), written independently of the portal's code."""
    data = base64.b64decode(sealed, validate=True)
    (rsa_length,) = struct.unpack(">H", data[:2])
    rsa_ciphertext, aes_ciphertext = data[2:2 + rsa_length], data[2 + rsa_length:]
    session_key = private_key.decrypt(
        rsa_ciphertext,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(),
                     label=f"{namespace}/{name}".encode()),
    )
    return AESGCM(session_key).decrypt(bytes(12), aes_ciphertext, None)


# --- the format --------------------------------------------------------------------------------------------------

def test_sealed_value_opens_with_the_private_key_for_the_same_namespace_and_name(controller_key, certificate_pem):
    value = "postgresql+asyncpg://tesslate:pässwörd@db:5432/tesslate".encode()
    sealed = kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate",
                                name="tesslate-app-secrets", value=value)

    assert unseal(controller_key, sealed, namespace="tesslate", name="tesslate-app-secrets") == value


def test_sealed_value_has_kubeseals_layout(certificate_pem):
    value = b"x" * 100
    sealed = kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate", name="s", value=value)
    data = base64.b64decode(sealed, validate=True)
    # 2-byte big-endian length, the 2048-bit RSA block, then AES-GCM ciphertext plus its 16-byte tag.
    assert data[:2] == b"\x01\x00"
    assert len(data) == 2 + 256 + len(value) + 16
    # Randomized: a fresh session key every time.
    assert sealed != kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate", name="s", value=value)


@pytest.mark.parametrize(("namespace", "name"), [("default", "tesslate-app-secrets"), ("tesslate", "other-secret"),
                                                 ("", "")])
def test_strict_scope_refuses_another_namespace_or_name(controller_key, certificate_pem, namespace, name):
    sealed = kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate", name="tesslate-app-secrets",
                                value=b"v")
    with pytest.raises(ValueError):  # RSA-OAEP label mismatch
        unseal(controller_key, sealed, namespace=namespace, name=name)


def test_another_controllers_key_cannot_open_it(other_controller_key, certificate_pem):
    sealed = kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate", name="n", value=b"v")
    with pytest.raises(ValueError):
        unseal(other_controller_key, sealed, namespace="tesslate", name="n")


def test_a_tampered_value_does_not_open(controller_key, certificate_pem):
    data = bytearray(base64.b64decode(kubeseal.seal_value(certificate_pem=certificate_pem, namespace="tesslate",
                                                         name="n", value=b"value")))
    data[-1] ^= 1
    with pytest.raises(InvalidTag):
        unseal(controller_key, base64.b64encode(bytes(data)).decode(), namespace="tesslate", name="n")


# --- certificate checks ------------------------------------------------------------------------------------------

def _bad_certificates(controller_key):
    now = datetime.now(UTC)
    pem = _certificate(controller_key)
    private_pem = controller_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()).decode()
    body = pem.splitlines()
    return {
        "not pem": ("hello", "This is not a PEM certificate"),
        "damaged": ("\n".join(body[:3] + body[5:]), "cannot be read"),
        "expired": (_certificate(controller_key, not_before=now - timedelta(days=30),
                                 not_after=now - timedelta(days=1)), "The certificate expired on"),
        "not yet valid": (_certificate(controller_key, not_before=now + timedelta(days=2)),
                          "The certificate is not valid yet"),
        "ec key": (_certificate(ec.generate_private_key(ec.SECP256R1())), "Sealed Secrets seals with RSA keys only"),
        "short rsa": (_certificate(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
                      "at least 2048 are needed"),
        "private key": (private_pem, "This is a private key"),
        "two certificates": (pem + pem, "Paste exactly one certificate (found 2)"),
    }


def test_certificate_load_accepts_a_controller_certificate(certificate_pem):
    assert isinstance(kubeseal.certificate_load(certificate_pem).public_key(), rsa.RSAPublicKey)


@pytest.mark.parametrize("case", ["not pem", "damaged", "expired", "not yet valid", "ec key", "short rsa",
                                  "private key", "two certificates"])
def test_certificate_load_explains_what_is_wrong(controller_key, case):
    pem, message = _bad_certificates(controller_key)[case]
    with pytest.raises(ValidationError) as caught:
        kubeseal.certificate_load(pem)
    assert message in " ".join(caught.value.messages)
    if case == "private key":
        assert "PRIVATE KEY" not in " ".join(caught.value.messages)


@pytest.fixture
def superuser_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


def _environment_change_data(environment: Environment, **overrides) -> dict:
    data = {key: ("" if value is None else value) for key, value in model_to_dict(environment).items()
            if key not in ("id",)}
    data = {key: value for key, value in data.items() if value is not False}
    data.update({"storage_encrypted": "on"} if environment.storage_encrypted else {})
    data.update({"node_groups-TOTAL_FORMS": "0", "node_groups-INITIAL_FORMS": "0",
                 "secrets-TOTAL_FORMS": "0", "secrets-INITIAL_FORMS": "0"})
    data.update(overrides)
    return data


@pytest.mark.parametrize("case", ["not pem", "damaged", "expired", "ec key", "private key"])
def test_environment_admin_refuses_a_bad_certificate_with_a_field_error(superuser_client, controller_key, case):
    environment = environment_factory(name="lab")
    before = model_to_dict(Environment.objects.get(pk=environment.pk))
    pem, message = _bad_certificates(controller_key)[case]
    url = reverse("admin:deployments_environment_change", args=[environment.pk])

    response = superuser_client.post(url, _environment_change_data(environment, sealed_secrets_certificate=pem,
                                                                   app_domain="changed.example.com"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors["sealed_secrets_certificate"])
    assert model_to_dict(Environment.objects.get(pk=environment.pk)) == before


def test_environment_admin_accepts_a_good_certificate_and_seals_at_once(superuser_client, controller_key,
                                                                        certificate_pem):
    environment = environment_factory(name="lab")
    secret = secret_factory(environment, value="sealed-on-upload", key="SECRET_KEY")
    assert Secret.objects.get(pk=secret.pk).sealed_value == ""  # no certificate yet: nothing to seal with
    url = reverse("admin:deployments_environment_change", args=[environment.pk])
    response = superuser_client.post(url, _environment_change_data(environment,
                                                                   sealed_secrets_certificate=certificate_pem))
    assert response.status_code == 302, response.context["adminform"].form.errors
    environment.refresh_from_db()
    assert environment.sealed_secrets_certificate.strip() == certificate_pem.strip()
    secret.refresh_from_db()
    assert unseal(controller_key, secret.sealed_value, namespace="tesslate",
                  name=secret.secret_name) == b"sealed-on-upload"


# --- resealing only what changed ---------------------------------------------------------------------------------

def _sealed(environment) -> dict[str, tuple[str, str]]:
    return {f"{s.secret_name}/{s.key}": (s.sealed_value, s.sealed_for)
            for s in Secret.objects.filter(environment=environment)}


def test_storing_a_value_seals_it_for_the_environments_certificate(controller_key, certificate_pem):
    environment = environment_factory(sealed_secrets_certificate=certificate_pem)
    secret = secret_factory(environment, value="first-value", key="LITELLM_MASTER_KEY")
    secret.refresh_from_db()
    assert unseal(controller_key, secret.sealed_value, namespace="tesslate", name=secret.secret_name) == b"first-value"
    assert secret.sealed_for.endswith(";v1")


def test_reseal_touches_only_changed_versions_and_certificates(controller_key, other_controller_key,
                                                               certificate_pem):
    environment = environment_factory(sealed_secrets_certificate=certificate_pem)
    first = secret_factory(environment, value="value-a", key="A")
    secret_factory(environment, value="value-b", key="B")
    sealed = _sealed(environment)

    # Nothing changed: nothing resealed, the stored bytes stay as they are (no diff in git).
    assert sealing.environment_secrets_reseal(environment=environment) == sealing.ResealResult(0, 2, 0)
    assert _sealed(environment) == sealed

    # A new value is sealed when stored; the other key keeps its sealed bytes.
    secret_store_value(secret=first, value="value-a2")
    after_rotation = _sealed(environment)
    assert after_rotation["tesslate-app-secrets/B"] == sealed["tesslate-app-secrets/B"]
    assert after_rotation["tesslate-app-secrets/A"] != sealed["tesslate-app-secrets/A"]
    assert unseal(controller_key, after_rotation["tesslate-app-secrets/A"][0], namespace="tesslate",
                  name="tesslate-app-secrets") == b"value-a2"
    assert sealing.environment_secrets_reseal(environment=environment).sealed == 0

    # Storing the same value again is no change either.
    secret_store_value(secret=first, value="value-a2")
    assert _sealed(environment) == after_rotation

    # A new controller certificate: every value is sealed again, for the new key.
    environment.sealed_secrets_certificate = _certificate(other_controller_key)
    environment.save()
    assert sealing.environment_secrets_reseal(environment=environment) == sealing.ResealResult(2, 0, 0)
    for secret in Secret.objects.filter(environment=environment):
        plain = unseal(other_controller_key, secret.sealed_value, namespace="tesslate", name=secret.secret_name)
        assert plain == {"A": b"value-a2", "B": b"value-b"}[secret.key]


def test_a_renamed_secret_is_resealed_for_its_new_name(controller_key, certificate_pem):
    environment = environment_factory(sealed_secrets_certificate=certificate_pem)
    secret = secret_factory(environment, value="pg-password", key="POSTGRES_PASSWORD")
    secret.secret_name = "postgres-secret"
    secret.save()

    assert sealing.environment_secrets_reseal(environment=environment).sealed == 1
    secret.refresh_from_db()
    assert unseal(controller_key, secret.sealed_value, namespace="tesslate", name="postgres-secret") == b"pg-password"


def test_renaming_through_the_service_reseals_at_once(controller_key, certificate_pem):
    environment = environment_factory(sealed_secrets_certificate=certificate_pem)
    secret = secret_factory(environment, value="s3-key", key="AWS_SECRET_ACCESS_KEY")
    secret.secret_name = "s3-credentials"
    services.secret_save(secret=secret)
    secret.refresh_from_db()
    assert unseal(controller_key, secret.sealed_value, namespace="tesslate", name="s3-credentials") == b"s3-key"


def test_admin_refuses_a_value_it_could_not_seal(superuser_client, controller_key):
    """The environment's certificate expired after it was entered: a field-level refusal, not a server error."""
    now = datetime.now(UTC)
    environment = environment_factory(name="old-lab")
    Environment.objects.filter(pk=environment.pk).update(sealed_secrets_certificate=_certificate(
        controller_key, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)))
    data = {"environment": str(environment.pk), "secret_name": "tesslate-app-secrets", "key": "SECRET_KEY",
            "description": "", "value": "a-value"}

    response = superuser_client.post(reverse("admin:deployments_secret_add"), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "its Sealed Secrets certificate cannot seal" in " ".join(errors)
    assert not Secret.objects.exists()


def test_removing_the_certificate_clears_sealed_values(certificate_pem):
    environment = environment_factory(sealed_secrets_certificate=certificate_pem)
    secret_factory(environment, value="v1")
    environment.sealed_secrets_certificate = ""
    environment.save()

    assert sealing.environment_secrets_reseal(environment=environment) == sealing.ResealResult(0, 0, 1)
    assert list(Secret.objects.filter(environment=environment).values_list("sealed_value", "sealed_for")) == [("", "")]


def test_eks_environments_get_no_sealed_values(certificate_pem):
    environment = eks_environment_factory(sealed_secrets_certificate=certificate_pem)
    secret_factory(environment, value="v1")
    assert sealing.environment_secrets_reseal(environment=environment) == sealing.ResealResult(0, 1, 0)
    assert Secret.objects.get(environment=environment).sealed_value == ""


def test_a_certificate_that_expired_since_is_reported_by_environment(controller_key):
    now = datetime.now(UTC)
    environment = environment_factory(name="old-lab")
    secret_factory(environment, value="v1")
    # Saved directly: the admin would refuse it, but a certificate can expire after it was entered.
    Environment.objects.filter(pk=environment.pk).update(sealed_secrets_certificate=_certificate(
        controller_key, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)))
    environment.refresh_from_db()
    with pytest.raises(ValidationError, match=r"Environment old-lab: .*expired"):
        sealing.environment_secrets_reseal(environment=environment)
