"""Test environment plugin (loaded with -p, before pytest-django reads the settings).

Real PostgreSQL and Redis, never a silent fallback.

Environment defaults are set here, before pytest-django loads the settings.
"""

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CRDS = ROOT.parent / "shared" / "crds"
_TMP = Path(tempfile.mkdtemp(prefix="portal-tests-"))

os.environ["PORTAL_IGNORE_DOTENV"] = "1"
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ["DEBUG"] = "false"
os.environ["SECRET_KEY"] = "test-secret-key-not-for-production"
os.environ["ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
os.environ["SECURE_SSL_REDIRECT"] = "false"
# A fixed test key; the rotation tests add their own.
os.environ["PORTAL_ENCRYPTION_KEYS"] = "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE="
os.environ["GITOPS_REPO_DIR"] = str(_TMP / "gitops-repo")
os.environ["GITOPS_REMOTE_URL"] = ""
os.environ.setdefault("KUBECTL", shutil.which("kubectl") or "kubectl")
# The Compose Specification schema, read in place (settings.COMPOSE_SCHEMA_PATH); the tests that need it skip
# with a message when it is absent.
SHARED_COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
if SHARED_COMPOSE_SCHEMA.is_file():
    os.environ.setdefault("COMPOSE_SCHEMA_PATH", str(SHARED_COMPOSE_SCHEMA))
if SHARED_CRDS.is_dir():
    os.environ.setdefault("CRD_SCHEMA_DIR", str(SHARED_CRDS))
else:
    os.environ.setdefault("CRD_SCHEMA_DIR", "")


def _unreachable_services() -> list[str]:
    problems = []
    database_url = os.environ["DATABASE_URL"]
    if not database_url.startswith(("postgres://", "postgresql://")):
        problems.append(f"DATABASE_URL={database_url!r} is not PostgreSQL; the suite runs on PostgreSQL only.")
    else:
        import psycopg

        parsed = urlparse(database_url)
        try:
            psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
                            user=parsed.username or "postgres", password=parsed.password or None,
                            dbname="postgres", connect_timeout=3).close()
        except psycopg.Error as exc:
            problems.append(f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} cannot be reached: {exc}".strip())
    import redis

    redis_url = os.environ["REDIS_URL"]
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {redis_url} cannot be reached: {exc}")
    return problems


def pytest_configure(config):
    problems = _unreachable_services()
    if problems:
        pytest.exit(
            "The test suite needs PostgreSQL and Redis and will not fall back to anything else:\n  - "
            + "\n  - ".join(problems)
            + "\nStart them (see README, 'Tests') or point DATABASE_URL / REDIS_URL at running servers.",
            returncode=3,
        )


def pytest_unconfigure(config):
    shutil.rmtree(_TMP, ignore_errors=True)
