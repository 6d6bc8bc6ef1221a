#!/usr/bin/env python
"""Admin load test: 10,000 projects in PostgreSQL, gunicorn on loopback, 8 concurrent clients with wrk.

Fills a PostgreSQL database of its own (created when missing, emptied first) with --projects projects (2 containers
each) over 4 environments and --runs render runs (each with a 200 kB diff and log), starts gunicorn on 127.0.0.1,
logs in once (a real session), and runs `wrk` (Debian package `wrk`) against each page for --duration seconds with
--connections clients. Prints p50 / p95 latency (ms), requests per second and the gunicorn workers' CPU time
per request (ms, from /proc: what a page costs whatever else runs on the machine) per page, beside the target of the
performance issue (p95 ≤ 250 ms), and one JSON object with every figure as the last line. Any non-2xx answer or
socket error is reported and makes the exit status 1.

Usage: .venv/bin/python benchmarks/admin_load.py [--projects 10000] [--connections 8] [--duration 15]
       [--database-url postgres://postgres@127.0.0.1:5432/portal_load] [--workers 4] [--threads 1]
       [--pages "project list,render run list"]

gunicorn runs as the image's web entry point runs it (deploy/entrypoint.sh): WEB_CONCURRENCY=4 sync workers
(WEB_THREADS=1) unless --workers / --threads say otherwise (--threads 2 or more: gunicorn's gthread worker).
--pages "project list,render run list" measures only those pages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_reference import describe as _reference_text  # noqa: E402
from cpu_reference import reference as cpu_reference  # noqa: E402

TARGET_P95_MS = 250.0

WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('WRK {"p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "rps": %.2f, "requests": %d, ' ..
    '"socket_errors": %d, "non_2xx": %d}\n', latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6), summary.requests, errors,
    summary.errors.status))
end
"""


def _env(database_url: str, workdir: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "false", "SECRET_KEY": "admin-load-benchmark-" + "k" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0", "DATABASE_URL": database_url, "REDIS_URL": "",
        "PORTAL_ENCRYPTION_KEYS": "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=", "GITOPS_AUTO_RENDER": "false",
        "GITOPS_REPO_DIR": str(workdir / "repo"), "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "portal.settings",
    })
    return env


def _create_database(database_url: str) -> None:
    import psycopg

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    admin_url = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _populate(projects: int, runs: int) -> tuple[str, str, int]:
    """Fills the database; returns (session cookie, a project id, an environment id)."""
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connection

    from deployments.models import Environment, RenderRun
    from projects.models import Container, Project

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE projects_container, projects_project, deployments_renderrun_environments, "
                       "deployments_renderrun, deployments_nodegroup, deployments_secret, deployments_environment "
                       "RESTART IDENTITY CASCADE")
    environments = [Environment.objects.create(name=f"load-{index}", app_domain=f"load{index}.example.com",
                                               needs_render=False) for index in range(4)]
    batch = [Project(environment=environments[index % 4], name=f"Project {index}", slug=f"project-{index}",
                     owner=f"user-{index % 500}", state="active" if index % 5 else "hibernated")
             for index in range(projects)]
    Project.objects.bulk_create(batch, batch_size=2000)
    containers = []
    for project in Project.objects.only("id"):
        containers.append(Container(project=project, directory="frontend", role="frontend", image="node:20"))
        containers.append(Container(project=project, directory="db", role="database", image="postgres:16",
                                    port=5432))
    Container.objects.bulk_create(containers, batch_size=4000)
    big = "\n".join(f"+line {i} " + "x" * 60 for i in range(3000))
    for index in range(runs):
        run = RenderRun.objects.create(status="succeeded", progress=100, commit_sha=f"{index:040x}", diff=big,
                                       log=big, reason=f"load run {index}")
        run.environments.add(environments[index % 4])
    with connection.cursor() as cursor:
        # Planner statistics and the visibility map (index-only scans), as autovacuum keeps them on a database in use.
        cursor.execute("VACUUM ANALYZE")
    user, _ = get_user_model().objects.get_or_create(username="load", defaults={"is_staff": True,
                                                                                 "is_superuser": True})
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    project = Project.objects.order_by("slug").first()
    return session.session_key, str(project.pk), environments[0].pk


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer {url}")


def _get(url: str, cookie: str) -> int:
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
        return response.status


def _cpu_seconds(master_pid: int) -> float:
    """User + system CPU seconds used so far by gunicorn's worker processes (children of ``master_pid``; Linux
    /proc). Divided by the requests served, it is a page's own CPU cost, which other work on the machine does not
    change the way it changes latency."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _wrk(url: str, cookie: str, connections: int, duration: int, script: Path) -> dict:
    result = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s",
         str(script), "-H", f"Cookie: sessionid={cookie}", url], capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK "))
    return json.loads(line[4:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (WEB_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (WEB_THREADS)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/portal_load")
    parser.add_argument("--pages", default="", help="comma-separated page names to measure (default: all)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required (Debian: apt-get install -y wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="admin-load-"))
    env = _env(args.database_url, workdir)
    os.environ.update(env)
    _create_database(args.database_url)
    started = time.monotonic()
    cookie, project_id, environment_id = _populate(args.projects, args.runs)
    print(f"Populated {args.projects} projects, {2 * args.projects} containers, {args.runs} runs in "
          f"{time.monotonic() - started:.1f} s.")

    script = workdir / "report.lua"
    script.write_text(WRK_SCRIPT)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers",
         str(args.workers), "--threads", str(args.threads), "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT, env=env)
    pages = {
        "dashboard": "/admin/",
        "project list": "/admin/projects/project/",
        "project search": "/admin/projects/project/?q=project-977",
        "project role filter": "/admin/projects/project/?role=database",
        "project list page 50": "/admin/projects/project/?p=50",
        "project page": f"/admin/projects/project/{project_id}/change/",
        "environment list": "/admin/deployments/environment/",
        "environment page": f"/admin/deployments/environment/{environment_id}/change/",
        "render run list": "/admin/deployments/renderrun/",
        "health": "/health",
    }
    if args.pages:
        wanted = {name.strip() for name in args.pages.split(",")}
        unknown = wanted - set(pages)
        if unknown:
            raise SystemExit(f"unknown pages {sorted(unknown)}; choose from {sorted(pages)}")
        pages = {name: path for name, path in pages.items() if name in wanted}
    results = {}
    reference = {"before": cpu_reference()}
    try:
        _wait(base + "/health", server)
        for name, path in pages.items():
            # Warm-up: a few sequential requests (imports, per-process caches), then a short wrk run, so the
            # figures are the steady state; a slow page never leaves a backlog for the next one.
            for _ in range(args.workers * 2):
                _get(base + path, cookie)
            _wrk(base + path, cookie, args.connections, 3, script)
            _get(base + "/health", cookie)
            cpu_before = _cpu_seconds(server.pid)
            results[name] = _wrk(base + path, cookie, args.connections, args.duration, script)
            cpu = _cpu_seconds(server.pid) - cpu_before
            results[name]["worker_cpu_ms_per_request"] = round(1000 * cpu / max(1, results[name]["requests"]), 2)
            _get(base + "/health", cookie)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    reference["after"] = cpu_reference()
    print(f"\n{args.connections} clients, {args.duration} s per page, gunicorn {args.workers} workers × "
          f"{args.threads} threads, "
          f"{args.projects} projects (target: p95 ≤ {TARGET_P95_MS:.0f} ms); Python reference loop "
          f"{_reference_text(reference['before'])} before, {_reference_text(reference['after'])} after\n")
    print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'rps':>8} {'requests':>9} {'errors':>7} {'cpu ms/req':>10}  "
          "target")
    failed = False
    for name, row in results.items():
        errors = row["socket_errors"] + row["non_2xx"]
        failed |= errors > 0
        verdict = "ok" if row["p95_ms"] <= TARGET_P95_MS else "over"
        print(f"{name:<22} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['rps']:>8.1f} {row['requests']:>9} "
              f"{errors:>7} {row['worker_cpu_ms_per_request']:>10.1f}  {verdict}")
    print(json.dumps({"projects": args.projects, "connections": args.connections, "duration_s": args.duration,
                      "workers": args.workers, "threads": args.threads, "python_reference_loop": reference,
                      "pages": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
