"""Inputs that must not lose data: multi-line secret values round-trip byte for byte through the admin, typed into
the text area (CRLF and trailing newlines kept) or uploaded as a file (exact bytes); the value is never shown."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from deployments.models import Secret
from deployments.secrets import crypto
from tests.factories import environment_factory, secret_factory

pytestmark = pytest.mark.django_db

PEM_BODY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
            "q3BmV2xzc2F0ZS10ZXN0LWtleS1ub3QtcmVhbA==\n-----END PRIVATE KEY-----\n")


@pytest.fixture
def superuser_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


def _data(environment, **overrides):
    data = {"environment": str(environment.pk), "secret_name": "tls-client", "key": "tls.key",
            "description": "client key"}
    data.update(overrides)
    return data


def test_a_pem_with_crlf_and_trailing_newlines_round_trips_through_the_text_area(superuser_client):
    environment = environment_factory(name="lab")
    value = PEM_BODY.replace("\n", "\r\n") + "\r\n\r\n"
    response = superuser_client.post(reverse("admin:deployments_secret_add"), _data(environment, value=value))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    secret = Secret.objects.get(environment=environment, key="tls.key")
    stored = crypto.decrypt(secret.ciphertext)
    assert stored.encode() == value.encode()  # byte for byte: CRLF and the two trailing line breaks kept
    assert stored.count("\r\n") == PEM_BODY.count("\n") + 2


def test_an_uploaded_file_keeps_its_bytes_exactly(superuser_client):
    environment = environment_factory(name="lab")
    content = (PEM_BODY + "\n\n").encode()  # LF line endings, as the file has them
    upload = SimpleUploadedFile("client.key", content, content_type="application/x-pem-file")
    response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                     _data(environment, value="", value_file=upload))
    assert response.status_code == 302
    secret = Secret.objects.get(environment=environment, key="tls.key")
    assert crypto.decrypt(secret.ciphertext).encode() == content


def test_an_upload_rotates_an_existing_value_on_the_environment_page_too(superuser_client):
    environment = environment_factory(name="lab")
    secret = secret_factory(environment, value="old", secret_name="tls-client", key="tls.key")
    page = superuser_client.get(reverse("admin:deployments_environment_change", args=[environment.pk]))
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html  # the inline's file input needs a multipart form
    content = b'{"type": "service_account",\n "private_key": "k"}\n'
    upload = SimpleUploadedFile("sa.json", content)
    response = superuser_client.post(reverse("admin:deployments_secret_change", args=[secret.pk]),
                                     _data(environment, value="", value_file=upload))
    assert response.status_code == 302
    secret.refresh_from_db()
    assert crypto.decrypt(secret.ciphertext).encode() == content and secret.version == 2


def test_a_binary_file_is_a_field_error(superuser_client):
    environment = environment_factory(name="lab")
    upload = SimpleUploadedFile("key.der", b"\x30\x82\xff\xfe")
    response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                     _data(environment, value="", value_file=upload))
    assert response.status_code == 200
    assert "not UTF-8 text" in " ".join(response.context["adminform"].form.errors["value"])
    assert not Secret.objects.exists()


def test_the_text_area_is_never_filled_with_a_value(superuser_client):
    environment = environment_factory(name="lab")
    marker = "multi\r\nline-marker-7f3a\r\n"
    # An error elsewhere (a bad key) sends the form back: the typed value must not be in it.
    response = superuser_client.post(reverse("admin:deployments_secret_add"),
                                     _data(environment, key="bad key", value=marker))
    assert response.status_code == 200
    html = response.content.decode()
    assert "line-marker-7f3a" not in html
    assert '<textarea' in html and 'name="value"' in html and 'name="value_file"' in html
    secret = secret_factory(environment, value=marker, key="K")
    change = superuser_client.get(reverse("admin:deployments_secret_change", args=[secret.pk])).content.decode()
    assert "line-marker-7f3a" not in change
