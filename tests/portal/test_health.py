"""Health endpoints against a real Redis server that the test stops and starts again."""

import shutil
import socket
import subprocess
import time

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on a free loopback port."""

    def __init__(self):
        self.port = _free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def test_health_answers_while_the_process_lives(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_follows_redis_down_and_back(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}

    redis_server.stop()
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("failed: ")

    redis_server.start()
    assert client.get("/ready").status_code == 200


def test_ready_without_redis_configured_checks_only_the_database(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


def test_public_config_lists_only_modes_and_domains_and_nothing_secret(client):
    call_command("load_demo")
    response = client.get("/api/config")
    assert response.status_code == 200
    body = response.json()
    assert body["deployment_modes"] == ["docker", "kubernetes"]  # the demo's single server runs Docker Compose
    assert sorted(body["app_domains"]) == ["localhost", "studio.example.com", "studio.example.org"]
    # Only what the guide's public config names: no environment names, kinds, version or job setup.
    assert set(body) == {"deployment_modes", "app_domains"}
    text = response.content.decode()
    from deployments.models import Environment
    for name in Environment.objects.values_list("name", flat=True):
        assert f'"{name}"' not in text
    from deployments.models import Secret
    from deployments.secrets.crypto import decrypt
    for secret in Secret.objects.all():
        assert decrypt(secret.ciphertext) not in text
        assert secret.ciphertext not in text


def test_health_endpoints_need_no_login_and_refuse_writes(client):
    for url in ("/health", "/ready", "/api/config"):
        assert client.get(url).status_code in (200, 503)
        assert client.post(url).status_code == 405
