"""A real portal for end-to-end tests: gunicorn on 127.0.0.1 and an RQ worker process, both on the test database
and the test Redis (the settings of tests/environment.py), started per test and stopped before its data is flushed.

Use the ``portal_server`` fixture (needs ``transactional_db``: the processes see only committed rows).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PortalServer:
    url: str
    env: dict
    log_dir: Path


def _database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer {url} within {timeout} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def portal_server_env() -> dict:
    """Extra environment variables for the server and the worker (override in a test module)."""
    return {}


@pytest.fixture
def portal_server(transactional_db, tmp_path, settings, portal_server_env):
    """gunicorn (4 threads) + ``manage.py rqworker gitops default``; yields a PortalServer. Extra environment
    variables for both processes may be given by overriding the ``portal_server_env`` fixture."""
    from django.db import connection

    port = free_port()
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": _database_url(connection.settings_dict),
        "GITOPS_REPO_DIR": str(settings.GITOPS_REPO_DIR),
        # Plain HTTP on loopback: cookies without the Secure flag, no redirect to HTTPS.
        "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0", "GITOPS_AUTO_RENDER": "false", "PYTHONUNBUFFERED": "1",
    })
    env.update(portal_server_env)
    log_dir = tmp_path / "server-logs"
    log_dir.mkdir()
    web_log, worker_log = log_dir / "gunicorn.log", log_dir / "worker.log"
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--timeout", "120", "--access-logfile", "-"],
        cwd=ROOT, env=env, stdout=web_log.open("wb"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen([sys.executable, "manage.py", "rqworker", "gitops", "default"], cwd=ROOT, env=env,
                              stdout=worker_log.open("wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", web, web_log)
        yield PortalServer(url=f"http://127.0.0.1:{port}", env=env, log_dir=log_dir)
    finally:
        _stop(web)
        _stop(worker)
        connection.close()
