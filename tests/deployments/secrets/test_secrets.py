"""Secret values: encrypted at rest, write-only in the admin, rotated by version, and never anywhere in plaintext."""

import base64
import contextlib
import io
import logging
import os
import secrets as random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.forms.models import model_to_dict
from django.urls import NoReverseMatch, reverse
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from deployments import services
from deployments.models import Environment, Secret
from deployments.secrets import age as age_encryption
from deployments.secrets import crypto, sealing
from deployments.secrets.secrets_manager import environment_secrets_sync
from projects.credentials import container_credentials_ensure, credentials_reseal, credentials_sync
from projects.demo import demo_load
from projects.models import Container, ServiceCredential
from tests.factories import environment_factory, secret_factory

pytest_plugins = ["tests.aws"]
pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


@pytest.fixture
def superuser_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


@pytest.fixture
def marker():
    """A value no code or fixture could contain by chance."""
    return f"mk{random.token_hex(12)}"


def _certificate_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _encoded_forms(marker: str) -> list[str]:
    """The marker and what it looks like inside base64 (as in a Kubernetes Secret's data) at every alignment."""
    forms = [marker]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(b"\0" * offset + marker.encode()).decode()
            # Drop the characters that depend on what precedes / follows the marker.
            forms.append(encoded[(offset * 4 + 2) // 3 + 1: -4])
    return sorted(set(forms))


def _found(text: str, marker: str) -> list[str]:
    return [form for form in _encoded_forms(marker) if form in text]


def _database_hits(marker: str) -> list[str]:
    """Every text, varchar, json and bytea column of every table, searched with SQL for the marker."""
    hits = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type IN "
            "('text', 'character varying', 'character', 'json', 'jsonb', 'bytea') ORDER BY table_name, column_name"
        )
        columns = cursor.fetchall()
        assert len(columns) > 20 and ("deployments_secret", "ciphertext", "text") in columns
        # The audit trail's history tables are scanned too (they keep no value, ciphertext or fingerprint).
        history_columns = {column for table, column, _ in columns if table == "governance_historicalsecret"}
        assert {"key", "description", "secret_name"} <= history_columns
        assert not history_columns & {"ciphertext", "fingerprint", "sealed_value"}
        for form in _encoded_forms(marker):
            for table, column, data_type in columns:
                if data_type == "bytea":
                    condition = f'position(%s::bytea in "{column}") > 0'
                else:
                    condition = f'"{column}"::text LIKE %s'
                    form_arg = f"%{form}%"
                cursor.execute(f'SELECT count(*) FROM "{table}" WHERE {condition}',
                               [form.encode() if data_type == "bytea" else form_arg])
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column} ({form})")
            # Whole rows as text too: catches any column type the list above does not name.
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                           "AND table_type = 'BASE TABLE'")
            for (table,) in cursor.fetchall():
                cursor.execute(f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE %s', [f"%{form}%"])
                if cursor.fetchone()[0]:
                    hits.append(f"{table} row ({form})")
    return hits


def _admin_pages() -> list[str]:
    """Every admin list, add page, and the change form and history of every object."""
    pages = []
    for model in admin.site._registry:
        opts = model._meta
        if not opts.managed:  # e.g. django-rq's dashboard: a page, no table
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
            continue
        for name in ("changelist", "add"):
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}"))
        for pk in model._default_manager.values_list("pk", flat=True):
            for name in ("change", "history"):
                with contextlib.suppress(NoReverseMatch):  # a model admin without a history page
                    pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=[pk]))
    return pages


def _admin_hits(client, marker: str) -> tuple[list[str], int]:
    hits, rendered = [], 0
    for url in _admin_pages():
        response = client.get(url)
        if response.status_code == 403:
            continue  # read-only models have no add page
        assert response.status_code == 200, url
        rendered += 1
        hits += [f"{url} ({form})" for form in _found(response.content.decode(), marker)]
    return hits, rendered


# --- encryption at rest ----------------------------------------------------------------------------------------

def test_values_are_stored_encrypted_and_read_back(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    secret = secret_factory(environment_factory(), value="my-litellm-key")
    row = Secret.objects.filter(pk=secret.pk).values("ciphertext", "fingerprint").get()
    assert "my-litellm-key" not in row["ciphertext"]
    assert crypto.decrypt(row["ciphertext"]) == "my-litellm-key"
    assert row["fingerprint"].startswith("sha256:") and len(row["fingerprint"]) == 19


@pytest.mark.parametrize(("keys", "message"), [
    ([], "PORTAL_ENCRYPTION_KEYS is not set"),
    (["", "  "], "PORTAL_ENCRYPTION_KEYS is not set"),
    (["not-a-fernet-key"], "Key number 1 in PORTAL_ENCRYPTION_KEYS is not a Fernet key"),
    ([KEY_A, "short"], "Key number 2 in PORTAL_ENCRYPTION_KEYS is not a Fernet key"),
])
def test_a_missing_or_malformed_key_is_a_clear_error(settings, keys, message):
    settings.PORTAL_ENCRYPTION_KEYS = keys
    with pytest.raises(crypto.EncryptionKeyError, match=message) as caught:
        crypto.encrypt("value")
    for key in keys:  # a key is never echoed, malformed or not
        assert not key.strip() or key not in str(caught.value)
    environment = environment_factory()
    with pytest.raises(crypto.EncryptionKeyError):
        secret_factory(environment, value="value")
    assert not Secret.objects.exists()


def test_a_wrong_key_raises_and_never_returns_garbage(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    ciphertext = crypto.encrypt("the-value")
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(crypto.EncryptionKeyError, match="missing or wrong"):
        crypto.decrypt(ciphertext)
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]  # older keys still open old values
    assert crypto.decrypt(ciphertext) == "the-value"


def test_plaintext_hides_in_reprs():
    value = crypto.SecretValue("the-value")
    assert value == "the-value" and repr(value) == "'********'" and "the-value" not in f"{value!r}"
    assert repr(crypto.decrypt(crypto.encrypt("the-value"))) == "'********'"
    assert repr(services.secret_generate_value()) == "'********'"


# --- key rotation ----------------------------------------------------------------------------------------------

def _rows():
    return dict(Secret.objects.values_list("pk", "ciphertext"))


def test_rotate_encryption_key_moves_every_value_to_the_newest_key(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    one, two = environment_factory(), environment_factory()
    values = {secret_factory(one, value="v-one").pk: "v-one", secret_factory(one, value="v-two").pk: "v-two",
              secret_factory(two, value="v-three").pk: "v-three"}
    before = {pk: (fingerprint, version) for pk, fingerprint, version in
              Secret.objects.values_list("pk", "fingerprint", "version")}

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "Re-encrypted 3 secret value(s) under the newest of 2 key(s); 3 were under an older key" in out.getvalue()

    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]  # the old key is gone: every value must still open
    for pk, ciphertext in _rows().items():
        assert crypto.decrypt(ciphertext) == values[pk]
    after = {pk: (fingerprint, version) for pk, fingerprint, version in
             Secret.objects.values_list("pk", "fingerprint", "version")}
    assert after == before  # same values: no new version, no rollout

    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "3 secret value(s)" in out.getvalue() and "0 were under an older key" in out.getvalue()


@pytest.mark.parametrize(("keys", "message"), [
    ([KEY_C], "3 of 3 stored values cannot be opened"),
    ([], "PORTAL_ENCRYPTION_KEYS is not set"),
    (["garbage"], "is not a Fernet key"),
])
def test_rotate_encryption_key_with_a_wrong_or_missing_key_changes_nothing(settings, keys, message):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    environment = environment_factory(name="rotation")
    for n in range(3):
        secret_factory(environment, value=f"value-{n}", key=f"K{n}")
    before = _rows()

    settings.PORTAL_ENCRYPTION_KEYS = keys
    with pytest.raises(CommandError, match=message) as caught:
        call_command("rotate_encryption_key", stdout=io.StringIO())

    assert "value-" not in str(caught.value)
    assert _rows() == before


def test_rotate_encryption_key_is_all_or_nothing(settings):
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_A]
    environment = environment_factory(name="mixed")
    secret_factory(environment, value="under-a", key="UNDER_A")
    settings.PORTAL_ENCRYPTION_KEYS = [KEY_B]
    secret_factory(environment, value="under-b", key="UNDER_B")
    before = _rows()

    with pytest.raises(CommandError, match=r"1 of 2 stored values .* mixed/tesslate-app-secrets/UNDER_A\. "
                                           r"Nothing was changed"):
        call_command("rotate_encryption_key", stdout=io.StringIO())
    assert _rows() == before


def test_rotate_encryption_key_runs_as_a_command_line():
    """The real entry point in its own process: exit code 1 and a clear message for a malformed key."""
    from django.conf import settings as django_settings

    database = connection.settings_dict
    result = subprocess.run(
        [sys.executable, "manage.py", "rotate_encryption_key"],
        cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PORTAL_ENCRYPTION_KEYS": "not-a-key",
             "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"},
    )
    assert result.returncode == 1
    assert "Key number 1 in PORTAL_ENCRYPTION_KEYS is not a Fernet key" in result.stderr
    assert "not-a-key" not in result.stderr


# --- versions: rotation reaches the pods, re-entering a value does not ------------------------------------------

def test_a_new_value_bumps_version_and_fingerprint_and_the_old_value_is_gone(marker):
    environment = environment_factory()
    old, new = f"{marker}-old", "brand-new-value"
    secret = secret_factory(environment, value=old)
    first = Secret.objects.filter(pk=secret.pk).values().get()
    assert first["version"] == 1 and _database_hits(marker) == []

    services.secret_store_value(secret=secret, value=new)

    second = Secret.objects.filter(pk=secret.pk).values().get()
    assert second["version"] == 2
    assert second["fingerprint"] != first["fingerprint"]
    assert second["last_rotated_at"] > first["last_rotated_at"]
    assert crypto.decrypt(second["ciphertext"]) == new
    # The old ciphertext is replaced everywhere, so nothing in the database can give the old value back.
    assert _database_hits(first["ciphertext"]) == [] and _database_hits(marker) == []


def test_storing_the_same_value_changes_nothing():
    secret = secret_factory(environment_factory(), value="same-value")
    before = Secret.objects.filter(pk=secret.pk).values().get()

    services.secret_store_value(secret=secret, value="same-value")

    after = Secret.objects.filter(pk=secret.pk).values().get()
    assert {k: after[k] for k in ("ciphertext", "fingerprint", "version", "last_rotated_at")} == \
        {k: before[k] for k in ("ciphertext", "fingerprint", "version", "last_rotated_at")}


def test_the_same_value_after_a_secret_key_change_is_still_the_same_version(settings):
    secret = secret_factory(environment_factory(), value="same-value")
    settings.SECRET_KEY = "another-django-secret-key-for-this-test"
    services.secret_store_value(secret=secret, value="same-value")
    secret.refresh_from_db()
    assert secret.version == 1
    assert secret.fingerprint == crypto.fingerprint("same-value")  # refreshed for the new key


def test_a_stale_object_cannot_lower_the_version():
    secret = secret_factory(environment_factory(), value="one")
    stale = Secret.objects.get(pk=secret.pk)
    services.secret_store_value(secret=secret, value="two")
    services.secret_store_value(secret=stale, value="three")  # stale still says version 1
    assert Secret.objects.get(pk=secret.pk).version == 3


def test_saving_a_stale_object_keeps_the_newer_value_and_delivery_records():
    secret = secret_factory(environment_factory(), value="one")
    stale = Secret.objects.get(pk=secret.pk)
    services.secret_store_value(secret=secret, value="two")
    Secret.objects.filter(pk=secret.pk).update(synced_version=2)

    stale.description = "edited in a form opened before the rotation"
    services.secret_save(secret=stale)

    row = Secret.objects.get(pk=secret.pk)
    assert (row.version, row.synced_version, row.description) == (2, 2, stale.description)
    assert crypto.decrypt(row.ciphertext) == "two"


@pytest.mark.parametrize(("value", "message"), [
    ("", "The value is empty."),
    ("  \t\n ", "The value is only whitespace."),
    ("x" * (64 * 1024 + 1), "larger than 64 KiB"),
    ("é" * (32 * 1024 + 1), "larger than 64 KiB"),  # bytes, not characters
])
def test_the_service_refuses_bad_values_and_saves_nothing(value, message):
    environment = environment_factory()
    with pytest.raises(ValidationError, match=message):
        secret_factory(environment, value=value)
    assert not Secret.objects.exists()


def test_the_largest_value_is_accepted():
    secret = secret_factory(environment_factory(), value="x" * (64 * 1024))
    assert len(crypto.decrypt(secret.ciphertext)) == 64 * 1024


# --- the admin: write-only, field errors, nothing saved half-way -------------------------------------------------

def _secret_add_data(environment, **overrides):
    data = {"environment": str(environment.pk), "secret_name": "tesslate-app-secrets", "key": "LITELLM_MASTER_KEY",
            "description": "LiteLLM proxy master key", "value": "", "generate": ""}
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""} | {"value": data["value"]}


def test_admin_adds_a_secret_without_ever_showing_the_value(superuser_client, marker):
    environment = environment_factory(name="lab")
    response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                     _secret_add_data(environment, value=marker), follow=True)
    assert response.status_code == 200
    secret = Secret.objects.get(environment=environment, key="LITELLM_MASTER_KEY")
    assert secret.version == 1 and crypto.decrypt(secret.ciphertext) == marker
    change = superuser_client.get(reverse("admin:deployments_secret_change", args=[secret.pk])).content.decode()
    assert marker not in change and marker not in response.content.decode()
    assert secret.fingerprint in change  # the fingerprint is what the admin shows instead
    assert '<textarea' in change and 'name="value"' in change  # write-only: rendered empty
    assert not LogEntry.objects.filter(change_message__contains=marker).exists()
    assert LogEntry.objects.filter(object_id=str(secret.pk)).exists()


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    ({"secret_name": "Tesslate_Secrets"}, "secret_name", "is not a DNS-1123 subdomain"),
    ({"secret_name": "-app-"}, "secret_name", "is not a DNS-1123 subdomain"),
    ({"secret_name": "a" * 254}, "secret_name", "at most 253"),
    ({"key": "MASTER KEY"}, "key", "is not a valid Secret key"),
    ({"key": ".."}, "key", "is not a valid Secret key"),
    ({"key": "a/b"}, "key", "is not a valid Secret key"),
    ({"value": ""}, "value", "A new secret needs a value"),
    ({"value": "   \t "}, "value", "The value is only whitespace."),
    ({"value": "y" * (64 * 1024 + 1)}, "value", "larger than 64 KiB"),
    ({"generate": "on"}, "generate", "Either type a value or generate one, not both."),
])
def test_admin_refuses_bad_secret_input_with_a_field_error(superuser_client, marker, overrides, field, fragment):
    environment = environment_factory(name="lab")
    data = _secret_add_data(environment, value=marker)
    data.update(overrides)
    response = superuser_client.post(reverse("admin:deployments_secret_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert fragment in " ".join(errors.get(field, [])), errors
    assert not Secret.objects.exists()
    assert marker not in response.content.decode()  # a form shown again never echoes the value


def test_admin_change_with_an_error_changes_nothing(superuser_client):
    environment = environment_factory(name="lab")
    secret = secret_factory(environment, value="current-value", key="LITELLM_MASTER_KEY")
    before = Secret.objects.filter(pk=secret.pk).values().get()
    data = _secret_add_data(environment, key="BAD KEY", value="a-new-value")
    response = superuser_client.post(reverse("admin:deployments_secret_change", args=[secret.pk]), data)
    assert response.status_code == 200
    assert "is not a valid Secret key" in " ".join(response.context["adminform"].form.errors["key"])
    assert Secret.objects.filter(pk=secret.pk).values().get() == before
    assert "a-new-value" not in response.content.decode()


def test_admin_generate_rotates_and_an_empty_value_keeps_the_current_one(superuser_client):
    environment = environment_factory(name="lab")
    secret = secret_factory(environment, value="current-value", key="LITELLM_MASTER_KEY")
    url = reverse("admin:deployments_secret_change", args=[secret.pk])

    response = superuser_client.post(url, _secret_add_data(environment, description="new words"))
    assert response.status_code == 302
    secret.refresh_from_db()
    assert (secret.version, secret.description, crypto.decrypt(secret.ciphertext)) == (1, "new words",
                                                                                        "current-value")

    response = superuser_client.post(url, _secret_add_data(environment, description="new words", generate="on"))
    assert response.status_code == 302
    secret.refresh_from_db()
    generated = crypto.decrypt(secret.ciphertext)
    assert secret.version == 2 and generated != "current-value" and len(generated) == 64
    assert generated not in superuser_client.get(url).content.decode()


def _environment_data(environment: Environment, **overrides) -> dict:
    data = {key: ("" if value is None else value) for key, value in model_to_dict(environment).items()}
    data = {key: value for key, value in data.items() if value is not False and key != "id"}
    data.update({"node_groups-TOTAL_FORMS": "0", "node_groups-INITIAL_FORMS": "0"})
    secrets = list(environment.secrets.order_by("pk"))
    data.update({"secrets-TOTAL_FORMS": str(len(secrets)), "secrets-INITIAL_FORMS": str(len(secrets))})
    for n, secret in enumerate(secrets):
        data.update({f"secrets-{n}-id": str(secret.pk), f"secrets-{n}-environment": str(environment.pk),
                     f"secrets-{n}-secret_name": secret.secret_name, f"secrets-{n}-key": secret.key,
                     f"secrets-{n}-description": secret.description, f"secrets-{n}-value": ""})
    data.update(overrides)
    return data


def _add_inline_secret(data: dict, environment: Environment, **fields) -> dict:
    n = int(data["secrets-TOTAL_FORMS"])
    data["secrets-TOTAL_FORMS"] = str(n + 1)
    data.update({f"secrets-{n}-environment": str(environment.pk), f"secrets-{n}-secret_name": "tesslate-app-secrets",
                 f"secrets-{n}-description": ""})
    data.update({f"secrets-{n}-{name}": value for name, value in fields.items()})
    return data


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"key": "NEW_KEY", "value": " \n "}, "The value is only whitespace."),
    ({"key": "NEW_KEY", "value": ""}, "A new secret needs a value"),
    ({"key": "NEW KEY", "value": "fine-value"}, "is not a valid Secret key"),
    ({"key": "NEW_KEY", "value": "z" * (64 * 1024 + 1)}, "larger than 64 KiB"),
    ({"key": "EXISTING", "value": "dup-value"}, "Please correct the duplicate data for secret_name and key"),
])
def test_environment_page_refuses_a_bad_inline_secret_and_saves_nothing(superuser_client, fields, fragment):
    environment = environment_factory(name="lab")
    existing = secret_factory(environment, value="existing-value", key="EXISTING")
    before_environment = model_to_dict(Environment.objects.get(pk=environment.pk))
    before_secret = Secret.objects.filter(pk=existing.pk).values().get()
    # Valid changes elsewhere on the page (the environment, the existing secret's value) must not be saved either.
    data = _environment_data(environment, app_domain="changed.example.com", **{"secrets-0-value": "rotated-value"})
    data = _add_inline_secret(data, environment, **fields)

    response = superuser_client.post(reverse("admin:deployments_environment_change", args=[environment.pk]), data)

    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert model_to_dict(Environment.objects.get(pk=environment.pk)) == before_environment
    assert Secret.objects.filter(pk=existing.pk).values().get() == before_secret
    assert Secret.objects.filter(environment=environment).count() == 1
    assert "rotated-value" not in response.content.decode()


def test_environment_page_adds_and_rotates_secrets_in_one_save(superuser_client):
    environment = environment_factory(name="lab")
    existing = secret_factory(environment, value="existing-value", key="EXISTING")
    data = _environment_data(environment, **{"secrets-0-value": "rotated-value"})
    data = _add_inline_secret(data, environment, key="NEW_KEY", value="new-value")

    response = superuser_client.post(reverse("admin:deployments_environment_change", args=[environment.pk]), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    existing.refresh_from_db()
    new = Secret.objects.get(environment=environment, key="NEW_KEY")
    assert (existing.version, crypto.decrypt(existing.ciphertext)) == (2, "rotated-value")
    assert (new.version, crypto.decrypt(new.ciphertext)) == (1, "new-value")
    for entry in LogEntry.objects.all():
        assert "rotated-value" not in entry.change_message and "new-value" not in entry.change_message


@pytest.fixture
def failing_save(monkeypatch):
    """An unexpected failure deep inside saving a secret (after the value was read from the form)."""

    def broken_reseal(*, secret):
        raise RuntimeError("the sealing step broke")

    monkeypatch.setattr(sealing, "secret_reseal", broken_reseal)


def test_error_reports_do_not_show_the_value(superuser_client, failing_save, caplog, marker):
    """DEBUG off (production): the 500 page, and the report logged / mailed to admins, stay clean."""
    superuser_client.raise_request_exception = False
    environment = environment_factory(name="lab")
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                         _secret_add_data(environment, value=marker))

    assert response.status_code == 500 and _found(response.content.decode(), marker) == []
    record = next(r for r in caplog.records if r.name == "django.request")
    report = ExceptionReporter(record.request, *record.exc_info, is_email=True)
    text, html = report.get_traceback_text(), report.get_traceback_html()
    assert "the sealing step broke" in text and "secret_store_value" in text  # a real report of the real frames
    assert _found(text, marker) == [] and _found(html, marker) == []
    assert not Secret.objects.exists()  # the admin's transaction rolled back


@pytest.fixture
def portal_reporter_filter(settings):
    # portal/settings.py sets this (the lead's file); set here too so the test states what it relies on.
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = "deployments.error_reports.SecretSafeExceptionReporterFilter"
    get_default_exception_reporter_filter.cache_clear()  # Django caches the filter instance
    yield
    get_default_exception_reporter_filter.cache_clear()


def test_the_debug_error_page_does_not_show_the_value(superuser_client, failing_save, portal_reporter_filter,
                                                      settings, marker):
    """DEBUG on (make run): Django's own filter shows raw POST data then; the portal's filter does not."""
    settings.DEBUG = True
    superuser_client.raise_request_exception = False
    environment = environment_factory(name="lab")
    response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                     _secret_add_data(environment, value=marker))

    assert response.status_code == 500
    page = response.content.decode()
    assert "the sealing step broke" in page and "secret_store_value" in page  # the technical page, frames and all
    assert "LITELLM_MASTER_KEY" in page  # the other POST fields are shown; only the value is censored
    assert _found(page, marker) == []


# --- the marker scan ---------------------------------------------------------------------------------------------

def _plant_marker_everywhere(client, marker: str, unprotect: bool = False) -> None:
    """Demo data with the marker in every secret value, stored through the admin and the service (``unprotect``:
    without the two-person rule, so that renders commit at once)."""
    demo_load()
    if unprotect:
        Environment.objects.update(protected=False)
    minikube = Environment.objects.get(name="minikube")
    minikube.sealed_secrets_certificate = _certificate_pem()
    minikube.full_clean()
    minikube.save()
    for n, secret in enumerate(Secret.objects.order_by("pk")):
        services.secret_store_value(secret=secret, value=f"{marker}-service-{n}")
    # The projects' generated database and cache passwords (and the URLs that hold them) carry it too.
    generated = iter(range(1000))
    with mock.patch("projects.credentials.password_generate",
                    side_effect=lambda: crypto.SecretValue(f"{marker}pw{next(generated)}")):
        # (Kubernetes environments only: the Compose server's project databases get no generated credentials.)
        for container in Container.objects.filter(role__in=Container.SERVICE_ROLES).exclude(
                project__environment__kind=Environment.Kind.COMPOSE):
            assert container_credentials_ensure(container=container, rotate=True) == 2
    assert ServiceCredential.objects.count() == 4  # two databases: password + URL each
    # Through the admin as well: a new secret, and a rotation on the environment page.
    response = client.post(reverse("admin:deployments_secret_add"),
                           _secret_add_data(minikube, key="INTERNAL_API_SECRET", value=f"{marker}-admin-add"))
    assert response.status_code == 302
    production = Environment.objects.get(name="aws-production")
    data = _environment_data(production, **{"secrets-0-value": f"{marker}-admin-rotate"})
    response = client.post(reverse("admin:deployments_environment_change", args=[production.pk]), data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    # Delivered as a render would: sealed for minikube, written to Secrets Manager for aws-production,
    # age-encrypted for the Compose server single-server (at once, by the service); the projects' generated
    # credentials the same way (projects.credentials, run by every render after the environment's secrets).
    # minikube: 5 app keys + 4 keys of the in-cluster PostgreSQL / Redis + 1 added; aws-production: 5 app keys.
    assert sealing.environment_secrets_reseal(environment=minikube).unchanged == 10
    credentials_reseal(environment=minikube)
    compose = Environment.objects.get(name="single-server")
    assert age_encryption.environment_secrets_age_encrypt(environment=compose).unchanged == 8
    assert environment_secrets_sync(environment=production).created == 5
    credentials_sync(environment=production)
    assert all(crypto.decrypt(c).startswith(marker) for c in Secret.objects.values_list("ciphertext", flat=True))
    assert all(marker in crypto.decrypt(c) for c in ServiceCredential.objects.values_list("ciphertext", flat=True))


def test_marker_never_reaches_the_database_the_logs_or_any_admin_page(aws, superuser_client, caplog, marker):
    caplog.set_level(logging.DEBUG)
    _plant_marker_everywhere(superuser_client, marker)
    assert Secret.objects.count() == 15 + 8 and Secret.objects.exclude(sealed_value="").count() == 10
    assert Secret.objects.exclude(age_value="").count() == 8  # the Compose server's keys, age-encrypted

    # The admin's rotation on the protected aws-production waits for approval: its diff is stored and scanned.
    from governance.models import ChangeRequest
    assert ChangeRequest.objects.filter(status="pending").exclude(diff="").exists()
    assert _database_hits(marker) == []

    hits, rendered = _admin_hits(superuser_client, marker)
    assert hits == []
    assert rendered >= 2 * len(admin.site._registry) + 2 * 15  # lists, add pages, every secret's change + history
    assert _found(caplog.text, marker) == []
    assert any(record.levelno == logging.DEBUG for record in caplog.records)  # the log really was captured

    # The scans can fail: a value pasted where it does not belong (base64-encoded, as in a Kubernetes Secret)
    # is found in the database and on the admin pages.
    leaked = base64.b64encode(f"k={marker}-pasted".encode()).decode()
    Secret.objects.filter(pk=Secret.objects.order_by("pk").first().pk).update(description=leaked)
    assert "deployments_secret.description" in " ".join(_database_hits(marker))
    assert _admin_hits(superuser_client, marker)[0] != []


def test_marker_never_reaches_git_history_or_run_pages(aws, superuser_client, caplog, marker, settings, gitops):
    from deployments.models import RenderRun

    caplog.set_level(logging.DEBUG)
    settings.SECRETS_MANAGER_SYNC = True  # values go to AWS (moto) and only references to git
    # No two-person rule here (the other scan covers its pending change's diff): the commands commit.
    _plant_marker_everywhere(superuser_client, marker, unprotect=True)

    call_command("render_gitops", "--message", "marker scan", stdout=io.StringIO(), stderr=io.StringIO())
    # A rotation, so that the history holds a change of a sealed value too.
    rotated = Secret.objects.filter(environment__name="minikube").order_by("pk").first()
    services.secret_store_value(secret=rotated, value=f"{marker}-rotated")
    call_command("render_gitops", "--message", "marker scan rotation", stdout=io.StringIO(), stderr=io.StringIO())

    # The admin saves above queued automatic renders too; the two command runs are the ones that committed.
    runs = list(RenderRun.objects.order_by("pk"))
    committed = [run for run in runs if run.reason.startswith("marker scan")]
    assert [run.status for run in committed] == [RenderRun.Status.SUCCEEDED] * 2, [run.error for run in committed]
    history = gitops.log_patch()
    assert "kind: SealedSecret" in history and "kind: ExternalSecret" in history  # there was something to leak
    assert "-----BEGIN AGE ENCRYPTED FILE-----" in history  # the Compose server's secrets, age-encrypted
    # The generated credentials reached git too: sealed for their project's namespace, or as references.
    minikube_db = ServiceCredential.objects.filter(container__project__environment__name="minikube").first()
    assert minikube_db.sealed_value and minikube_db.sealed_value in history
    assert "tesslate/aws-production/projects/" in history and "svc-db-credentials" in history
    rotated.refresh_from_db()
    assert rotated.sealed_value and rotated.sealed_value in history  # the rotation reached git, sealed
    assert _found(history, marker) == []
    for run in runs:
        assert _found(f"{run.log}\n{run.diff}\n{run.error}", marker) == []
        page = superuser_client.get(reverse("admin:deployments_renderrun_change", args=[run.pk]))
        assert page.status_code == 200
        assert _found(page.content.decode(), marker) == []
    assert _found(superuser_client.get(reverse("admin:deployments_renderrun_changelist")).content.decode(),
                  marker) == []
    assert _database_hits(marker) == []
    assert _found(caplog.text, marker) == []
