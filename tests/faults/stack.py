"""A private portal stack for process-level fault tests: PostgreSQL and Redis started in a temp dir on free ports
(so they can be stopped and restarted without touching the shared servers), the portal served by gunicorn and an
RQ worker on them, and a signed-in HTTP client.

The test process never opens a Django connection to the private database: it reads it with ``Stack.sql`` and
writes through ``Stack.shell`` (``manage.py shell`` against the private database) or through the portal's pages.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.portalserver import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PASSWORD = "a-long-fault-password"


def _wait(predicate, what: str, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _stop(process: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Postgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl), run as the ``postgres`` user when the tests run as root."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "pg"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            if self.as_user:
                shutil.chown(self.dir, "postgres", "postgres")
            self._run(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-l", str(self.dir / "server.log"),
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c full_page_writes=off -c synchronous_commit=off", "start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-m", "fast", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, dbname: str = "portal") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


class Redis:
    """``redis-server --save ''``: a restart starts empty, like a Redis without persistence that was replaced."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.log = base / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        import redis

        def answers():
            try:
                return redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
            except redis.RedisError:
                return False

        _wait(answers, f"redis-server on port {self.port}", timeout=20)

    def stop(self) -> None:
        _stop(self.process)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Stack:
    """PostgreSQL + Redis + gunicorn + one RQ worker, all private. ``env`` is the environment of every portal
    process (extra variables through ``start_portal(extra_env)``)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pg = Postgres(base)
        self.redis = Redis(base)
        self.repo_dir = base / "gitops-repo"
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}

    # --- the services ------------------------------------------------------------------------------------

    def start_services(self) -> None:
        self.pg.start()
        self.pg.create_database("portal")
        self.redis.start()
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": self.pg.url(), "REDIS_URL": self.redis.url, "GITOPS_REPO_DIR": str(self.repo_dir),
            "GITOPS_REMOTE_URL": "", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
            "SECURE_SSL_REDIRECT": "false", "SECURE_HSTS_SECONDS": "0", "GITOPS_AUTO_RENDER": "true",
            "PYTHONUNBUFFERED": "1", "SECRETS_MANAGER_SYNC": "false", "GITOPS_LOCK_TTL": "5",
        })
        self.manage("migrate", "--noinput")

    def manage(self, *args: str, env: dict | None = None, timeout: float = 300) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def shell(self, code: str, env: dict | None = None) -> str:
        """Run ``code`` in ``manage.py shell`` on the private database; returns what it printed."""
        return self.manage("shell", "--no-imports", "-c", code, env=env)

    def sql(self, query: str, *params):
        with psycopg.connect(self.pg.url(), connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    # --- the portal --------------------------------------------------------------------------------------

    def start_portal(self, extra_env: dict | None = None) -> None:
        self.env.update(extra_env or {})
        logs = self.base / "logs"
        logs.mkdir(exist_ok=True)
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--threads", "4", "--timeout", "120", "--access-logfile", "-"],
            cwd=ROOT, env=self.env, stdout=(logs / "gunicorn.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.start_worker()
        _wait(lambda: self._answers("/health"), "gunicorn /health", timeout=90)
        _wait(lambda: "Listening on" in self.log("worker"), "the worker to listen", timeout=120)

    def start_worker(self) -> None:
        logs = self.base / "logs"
        self.worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "gitops", "default"], cwd=ROOT, env=self.env,
            stdout=(logs / "worker.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def _answers(self, path: str) -> bool:
        try:
            return requests.get(self.url + path, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log(self, name: str) -> str:
        path = self.base / "logs" / f"{'gunicorn' if name == 'web' else name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        _stop(self.web)
        _stop(self.worker)
        self.redis.stop()
        self.pg.stop()

    # --- a signed-in user --------------------------------------------------------------------------------

    def create_superuser(self, username: str = "engineer") -> None:
        self.shell("from django.contrib.auth import get_user_model; "
                   f"get_user_model().objects.create_superuser('{username}', '{username}@example.com', "
                   f"'{PASSWORD}')")

    def login(self, username: str = "engineer") -> requests.Session:
        session = requests.Session()
        session.get(self.url + "/admin/login/", timeout=30)
        response = session.post(self.url + "/admin/login/?next=/admin/", data={
            "username": username, "password": PASSWORD, "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=30)
        assert response.status_code == 200 and 'id="dashboard"' in response.text, response.text[:2000]
        return session

    def post_form(self, session: requests.Session, path: str, data: dict) -> requests.Response:
        """POST ``data`` over the form at ``path`` (its current values, as a browser would send them)."""
        page = session.get(self.url + path, timeout=60)
        assert page.status_code == 200, page.status_code
        fields = form_values(page.text)
        fields.update(data)
        fields["csrfmiddlewaretoken"] = session.cookies["csrftoken"]
        return session.post(self.url + path, data=fields, timeout=120)


def form_values(html: str) -> dict[str, str]:
    """The submitted values of the inputs, selects and textareas of the page's change form (enough for Django's
    admin forms; checkboxes only when checked)."""
    values: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", html):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag))
        name, kind = attrs.get("name"), attrs.get("type", "text")
        if not name or kind in ("submit", "button", "file"):
            continue
        if kind in ("checkbox", "radio") and "checked" not in tag:
            continue
        values[name] = _unescape(attrs.get("value", "on" if kind == "checkbox" else ""))
    for name, body in re.findall(r'<select\b[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        values[name] = _unescape(chosen.group(1)) if chosen else ""
    for name, body in re.findall(r'<textarea\b[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        values[name] = _unescape(body.lstrip("\n"))
    return values


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


@pytest.fixture
def stack():
    """A private stack, services started (portal not yet: call ``start_portal``); everything stopped after."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (set PG_BIN): cannot start a private one")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found: cannot start a private Redis")
    base = Path(tempfile.mkdtemp(prefix="portal-faults-"))
    os.chmod(base, 0o755)  # the postgres user reaches its data directory below it
    running = Stack(base)
    try:
        running.start_services()
        yield running
    finally:
        running.stop()
        if os.environ.get("KEEP_FAULT_LOGS"):
            print(f"\nFault stack kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
