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
# The tests' own Redis database index (15 unless REDIS_URL names another); they empty it between tests, so it must
# hold nothing but theirs: the first run marks it (REDIS_OWNER_KEY) and a database with other keys is refused.
TEST_REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/15"
REDIS_OWNER_KEY = "portal-tests:owner"
os.environ.setdefault("REDIS_URL", TEST_REDIS_URL_DEFAULT)
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
        connection = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
        connection.ping()
        problem = redis_claim(connection, redis_url)
        if problem:
            problems.append(problem)
    except redis.RedisError as exc:
        problems.append(f"Redis at {redis_url} cannot be reached: {exc}")
    return problems


def redis_claim(connection, redis_url: str) -> str | None:
    """Mark the Redis database as the tests' own; a problem message when it holds someone else's keys."""
    if connection.exists(REDIS_OWNER_KEY):
        return None
    if connection.dbsize() == 0:
        connection.set(REDIS_OWNER_KEY, "1")
        return None
    index = connection.connection_pool.connection_kwargs.get("db", 0)
    return (f"Redis database {index} at {redis_url} holds {connection.dbsize()} key(s) that are not the tests'; "
            "the tests empty their database between tests and will not touch it. Point REDIS_URL at an empty "
            f"database index (the default is {TEST_REDIS_URL_DEFAULT}), or empty this one yourself if it is "
            f"only test leftovers (redis-cli -n {index} flushdb).")


def redis_flush_own(connection) -> None:
    """Empty the tests' Redis database, and only that one (it carries REDIS_OWNER_KEY)."""
    if not connection.exists(REDIS_OWNER_KEY):
        raise RuntimeError("Refusing to flush a Redis database the tests have not claimed (no "
                           f"{REDIS_OWNER_KEY} key); see tests/environment.py.")
    connection.flushdb()
    connection.set(REDIS_OWNER_KEY, "1")


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
