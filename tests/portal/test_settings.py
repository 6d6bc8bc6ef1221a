"""Settings from the environment: production refuses to start without what it needs; check --deploy is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "PORTAL_IGNORE_DOTENV": "1",
    "DEBUG": "false",
    "SECRET_KEY": "q8V3m1zX7pL0rT5sY2wK9bN4cJ6hF1dG8aE3uI7oP2lM5nB0vC4xZ9yW6tR1sQ3",
    "ALLOWED_HOSTS": "portal.example.com",
    "PORTAL_ENCRYPTION_KEYS": "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=",
    "DATABASE_URL": "sqlite:////tmp/portal-settings-test.sqlite3",
}


def _manage(*args, env):
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "PORTAL_ENCRYPTION_KEYS", "SECURE_SSL_REDIRECT",
                          "DJANGO_SETTINGS_MODULE"}}
    clean.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_is_clean_when_configured_for_https():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "PORTAL_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_required_values(missing):
    env = dict(PRODUCTION, **{missing: ""})
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is off" in result.stderr


def test_debug_mode_starts_on_embedded_defaults():
    result = _manage("check", env={"PORTAL_IGNORE_DOTENV": "1", "DEBUG": "true", "SECRET_KEY": "",
                                   "ALLOWED_HOSTS": "", "DATABASE_URL": "", "REDIS_URL": ""})
    assert result.returncode == 0, result.stderr
