"""Compose secrets (deployments/secrets/age.py): values reach git only encrypted to the server's age recipient,
re-encrypted only when a value or the recipient changes, and the server's identity opens them."""

import shutil
import subprocess

import pyrage
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from deployments import services
from deployments.models import Environment, Secret
from deployments.rendering import render_tree
from deployments.secrets import age as age_encryption
from deployments.secrets import age_format, sealing
from deployments.selectors import environments_snapshot
from tests.factories import environment_factory, secret_factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def identity():
    return pyrage.x25519.Identity.generate()


def compose_env(identity, **overrides) -> Environment:
    fields = dict(kind=Environment.Kind.COMPOSE, age_recipient=str(identity.to_public()))
    fields.update(overrides)
    return environment_factory(**fields)


def decrypt(identity, armored: str | bytes) -> bytes:
    data = armored.encode() if isinstance(armored, str) else armored
    return pyrage.decrypt(data, [identity])


def test_the_server_identity_decrypts_what_git_holds(identity, settings):
    settings.GITOPS_SOURCE_URL, settings.GITOPS_BRANCH = "https://git.example.com/g.git", "main"
    environment = compose_env(identity)
    secret_factory(environment, key="SECRET_KEY", value="jwt-signing-key-1")
    secret_factory(environment, secret_name="postgres-secret", key="POSTGRES_PASSWORD", value="pg pass with spaces")
    tree = render_tree(environments_snapshot(environment_ids=[environment.pk]))
    prefix = f"environments/{environment.name}/secrets/"
    assert decrypt(identity, tree[prefix + "tesslate-app-secrets/SECRET_KEY.age"]) == b"jwt-signing-key-1"
    assert decrypt(identity, tree[prefix + "postgres-secret/POSTGRES_PASSWORD.age"]) == b"pg pass with spaces"
    # Another identity cannot open them.
    with pytest.raises(pyrage.DecryptError):
        decrypt(pyrage.x25519.Identity.generate(), tree[prefix + "tesslate-app-secrets/SECRET_KEY.age"])
    everything = b"".join(tree.values())
    assert b"jwt-signing-key-1" not in everything and b"pg pass with spaces" not in everything


@pytest.mark.skipif(shutil.which("age") is None or shutil.which("age-keygen") is None,
                    reason="Debian's age CLI is not installed (apt-get install age)")
def test_debian_age_cli_decrypts_with_the_server_key_file(tmp_path):
    key_file = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True,
                               text=True).stdout.strip()
    environment = environment_factory(kind=Environment.Kind.COMPOSE, age_recipient=recipient)
    secret = secret_factory(environment, key="LITELLM_MASTER_KEY", value="sk-round-trip-\u00e9")
    (tmp_path / "value.age").write_text(secret.age_value)
    result = subprocess.run(["age", "--decrypt", "--identity", str(key_file), str(tmp_path / "value.age")],
                            check=True, capture_output=True)
    assert result.stdout.decode() == "sk-round-trip-\u00e9"


def test_encryption_happens_only_when_the_value_or_the_recipient_changes(identity):
    environment = compose_env(identity)
    secret = secret_factory(environment, key="SECRET_KEY", value="value-1")
    first = Secret.objects.get(pk=secret.pk)
    assert first.age_value.startswith("-----BEGIN AGE ENCRYPTED FILE-----") and first.age_for.endswith(";v1")
    # Nothing changed: nothing re-encrypted (age output is randomized, so a new ciphertext would be a git diff).
    assert age_encryption.environment_secrets_age_encrypt(environment=environment) == \
        age_encryption.AgeEncryptResult(0, 1, 0)
    services.secret_store_value(secret=Secret.objects.get(pk=secret.pk), value="value-1")
    assert Secret.objects.get(pk=secret.pk).age_value == first.age_value
    # A new value: encrypted anew by the service, at once.
    services.secret_store_value(secret=Secret.objects.get(pk=secret.pk), value="value-2")
    second = Secret.objects.get(pk=secret.pk)
    assert second.age_value != first.age_value and decrypt(identity, second.age_value) == b"value-2"
    # A new recipient (the server was rebuilt): everything is encrypted for it.
    new_identity = pyrage.x25519.Identity.generate()
    Environment.objects.filter(pk=environment.pk).update(age_recipient=str(new_identity.to_public()))
    environment.refresh_from_db()
    assert sealing.environment_secrets_reseal(environment=environment).sealed == 0
    third = Secret.objects.get(pk=secret.pk)
    assert decrypt(new_identity, third.age_value) == b"value-2"
    # No recipient any more: the ciphertexts are cleared, and the key is left out of the tree.
    Environment.objects.filter(pk=environment.pk).update(age_recipient="")
    environment.refresh_from_db()
    assert age_encryption.environment_secrets_age_encrypt(environment=environment).cleared == 1
    assert Secret.objects.get(pk=secret.pk).age_value == ""


def test_kubernetes_environments_get_no_age_ciphertext(identity):
    minikube = environment_factory(kind=Environment.Kind.MINIKUBE)
    secret = secret_factory(minikube, key="SECRET_KEY")
    assert Secret.objects.get(pk=secret.pk).age_value == ""
    # A recipient typed on a Kubernetes environment is ignored: its secrets are sealed, not age-encrypted.
    Environment.objects.filter(pk=minikube.pk).update(age_recipient=str(identity.to_public()))
    minikube.refresh_from_db()
    assert age_encryption.environment_secrets_age_encrypt(environment=minikube).encrypted == 0


@pytest.mark.parametrize(("text", "code"), [
    ("", "age_recipient_empty"),
    ("age1qqqq", "age_recipient_malformed"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkey", "age_recipient_malformed"),
    ("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ", "age_recipient_private"),
])
def test_recipient_load_refuses_what_is_not_a_recipient(text, code):
    with pytest.raises(ValidationError) as excinfo:
        age_format.recipient_load(text)
    assert excinfo.value.code == code
    if code == "age_recipient_private":
        assert "GFPYYSJZ" not in " ".join(excinfo.value.messages)  # a private key is never echoed


def test_changing_the_recipient_in_the_admin_reencrypts_at_once(client, identity):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    environment = compose_env(identity, app_domain="studio.example.net")
    secret = secret_factory(environment, key="SECRET_KEY", value="admin-value")
    new_identity = pyrage.x25519.Identity.generate()
    from django.forms.models import model_to_dict

    data = {key: ("" if value is None else value) for key, value in model_to_dict(environment).items()}
    data = {key: value for key, value in data.items() if value is not False and key != "id"}
    data.update({"age_recipient": str(new_identity.to_public()), "node_groups-TOTAL_FORMS": "0",
                 "node_groups-INITIAL_FORMS": "0", "secrets-TOTAL_FORMS": "1", "secrets-INITIAL_FORMS": "1",
                 "secrets-0-id": str(secret.pk), "secrets-0-environment": str(environment.pk),
                 "secrets-0-secret_name": secret.secret_name, "secrets-0-key": secret.key,
                 "secrets-0-description": "", "secrets-0-value": ""})
    response = client.post(reverse("admin:deployments_environment_change", args=[environment.pk]), data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert decrypt(new_identity, Secret.objects.get(pk=secret.pk).age_value) == b"admin-value"
