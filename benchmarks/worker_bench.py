#!/usr/bin/env python
"""Benchmark: a one-project change at 10,000 projects through a real `manage.py rqworker`, and a project save.

Seeds one EKS environment with N projects (3 containers each) in its own PostgreSQL database
(``<DATABASE_URL name>_worker_bench``), commits the first render into a fresh local repository (its validation
mirror included; that setup commit is not validated, since a whole-tree validation at 10,000 projects is
benchmarked by gitops_bench.py), then for each worker class:

  start a fresh ``manage.py rqworker gitops`` (a cold worker: it has run no job), wait until it listens, the
  setup's writes are on disk (os.sync: without it the kernel writes back the setup's 80,000 files during the
  measurement, which made the figure swing between 0.7 and 1.2 s) and the machine's cores are idle
  (cpu_reference.wait_idle; the database was vacuumed and analyzed after the setup, as autovacuum keeps a database
  in use), change one container's port through ``projects.services.container_save`` (the admin's path: the change
  requests a render, which is handed to Redis when the transaction commits), and time until the run has finished
  (``change_to_done_s``: end to end, the worker's first job), then twice more, each right after the previous one
  finished (``warm_s``: the same worker's next jobs; each waits for the parent's warm-up after the job before it).
  ``run_s`` is the run's own duration (started → finished) of the first job. The portal's worker is started
  ``--cold-workers`` times (default 3), one fresh worker after another: ``change_to_done_s`` is the median of
  their cold changes (every sample is printed and kept in ``cold_samples_s``), ``warm_s`` the median of all their
  next changes (``warm_samples_s``); one sample moved by 0.3 s between runs minutes apart on this machine.

The worker classes are the portal's (settings.RQ["WORKER_CLASS"], deployments.worker.GitOpsWorker: the gate's
caches warmed in the parent before it forks each job) and rq's plain forking ``rq.worker.Worker`` as the baseline,
side by side in one run.

It also times ``projects.services.project_save`` (auto-render off) on a project of a 100-project environment and
of the N-project one (``save_100_ms``, ``save_n_ms``, ``save_ratio``; target ≤ 1.3): both environments are
seeded and the database settled first, then the two saves alternate, so both sizes meet the same database state
and the same noise (the median of each).

Usage: .venv/bin/python benchmarks/worker_bench.py [--projects 10000] [--keep] [--cold-workers 3]
       (BENCH_WORKER_WRAP: a profiler command the portal's worker runs under, e.g. py-spy record -s ... --;
       BENCH_WORKER_LOG_LEVEL: the workers' LOG_LEVEL, INFO unless set: DEBUG logs every git command and the
       validation's steps with their times in the kept worker logs)
       (DATABASE_URL: PostgreSQL; REDIS_URL: a Redis database the benchmark may empty; CRD_SCHEMA_DIR, KUBECTL)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_reference import settle  # noqa: E402


def _setup_django(workdir: Path) -> None:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
    parsed = urlparse(base)
    name = f"{parsed.path.lstrip('/') or 'portal'}_worker_bench"
    import psycopg

    with psycopg.connect(host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432,
                         user=parsed.username or "postgres", password=parsed.password or None, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("REDIS_URL must name a Redis database the benchmark may empty")
    os.environ["DATABASE_URL"] = urlunparse(parsed._replace(path=f"/{name}"))
    os.environ.update(PORTAL_IGNORE_DOTENV="1", DEBUG="true", GITOPS_REMOTE_URL="", LOG_LEVEL="WARNING",
                      DJANGO_SETTINGS_MODULE="portal.settings", GITOPS_REPO_DIR=str(workdir / "repo"),
                      SECRETS_MANAGER_SYNC="false")
    os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import django_rq

    django_rq.get_connection("gitops").flushdb()


def _populate(name: str, size: int):
    from deployments.models import Environment, NodeGroup
    from projects.models import Container, Project

    environment = Environment.objects.create(
        name=name, kind="eks", app_domain=f"{name}.example.com", tls_mode="cert-manager-dns01",
        acme_email="ops@example.com", storage_provisioner="ebs-gp3",
        image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        image_tag="production", aws_account_id="123456789012", aws_region="us-east-1", eks_cluster_name=name,
    )
    NodeGroup.objects.create(environment=environment, name="spot", capacity_type="SPOT", instance_types="t3.large",
                             min_size=0, desired_size=0, max_size=10, labels="tesslate.io/workload-type=user-project",
                             taints="tesslate.io/spot=true:PreferNoSchedule", hosts="user-projects")
    projects = Project.objects.bulk_create(
        Project(environment=environment, name=f"Project {i}", slug=f"{name}-p{i}", owner=f"user-{i % 97}")
        for i in range(size))
    roles = [("frontend", "frontend", 5173), ("backend", "backend", 8000), ("db", "database", 5432)]
    Container.objects.bulk_create(
        Container(project=project, directory=directory, role=role, port=port,
                  image="postgres:16-alpine" if role == "database" else "tesslate-devserver:latest")
        for project in projects for directory, role, port in roles)
    Environment.objects.filter(pk=environment.pk).update(needs_render=False)
    return environment, projects


def _first_commit() -> None:
    """The tree as a previous validated run left it: one render run, in process (setup only: its whole-tree
    validation is skipped here, see the module docstring)."""
    from deployments import runs
    from deployments.runs import execute

    run = runs.render_run_request(environment_ids=None, user=None, reason="setup", enqueue=False, absorb=False).run
    original = execute.tree_validate_or_raise
    execute.tree_validate_or_raise = lambda **kwargs: None
    try:
        run = runs.render_run_execute(run_id=run.pk)
    finally:
        execute.tree_validate_or_raise = original
    if run.status != run.Status.SUCCEEDED:
        raise SystemExit(f"setup run {run.status}: {run.error}")


def _settle_database() -> None:
    """The database as one in use keeps it: planner statistics and the visibility map of the 40,000 rows just
    inserted (what autovacuum would do a minute later, during the measurement), and their pages written out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")


def _save_ms(projects: list, rounds: int = 15) -> list[float]:
    """Median milliseconds of ``project_save`` for each project, the projects saved in turn ``rounds`` times (the
    first round left out: it fills the process's caches)."""
    from django.conf import settings

    from projects.services import project_save

    settings.GITOPS_AUTO_RENDER = False
    times = [[] for _ in projects]
    try:
        for number in range(rounds):
            for project, taken in zip(projects, times, strict=True):
                project.name = f"renamed {number}"
                started = time.perf_counter()
                project_save(project=project)
                taken.append(time.perf_counter() - started)
    finally:
        settings.GITOPS_AUTO_RENDER = True
    return [statistics.median(taken[1:]) * 1000 for taken in times]


def _change_and_wait(project, number: int, timeout: float = 600) -> tuple[float, float, str]:
    """Change one container through the service; (seconds until its run finished, the run's own seconds, the
    run's "Timings:" split from its log: secrets, snapshot, commit; the validation's own lines follow; then where
    the time outside the run went: save → handed to Redis → the run started in the job → finished → seen here)."""
    from deployments.models import RenderRun
    from projects.services import container_save

    before = RenderRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    container = project.containers.order_by("directory").first()
    container.port = 20000 + number
    wall = time.time()
    started = time.perf_counter()
    container_save(container=container)
    deadline = started + timeout
    while time.perf_counter() < deadline:
        run = RenderRun.objects.filter(pk__gt=before).order_by("pk").first()
        if run is not None and run.status in RenderRun.FINISHED:
            elapsed = time.perf_counter() - started
            if run.status not in (RenderRun.Status.SUCCEEDED,):
                raise SystemExit(f"run {run.pk} ended {run.status}: {run.error}")
            timings = "; ".join(line.split("Timings: ", 1)[1].rstrip(".") for line in run.log.splitlines()
                                if "Timings: " in line)
            validation = [line.split("] ", 1)[-1] for line in run.log.splitlines() if "alidat" in line]
            seen = wall + elapsed
            latency = (f"save→enqueued {run.enqueued_at.timestamp() - wall:.3f} s, enqueued→started "
                       f"{(run.started_at - run.enqueued_at).total_seconds():.3f} s, run "
                       f"{(run.finished_at - run.started_at).total_seconds():.3f} s, finished→seen "
                       f"{seen - run.finished_at.timestamp():.3f} s" if run.enqueued_at else "not enqueued")
            return (elapsed, (run.finished_at - run.started_at).total_seconds(),
                    " | ".join([timings, *validation[-3:], latency]))
        time.sleep(0.01)
    raise SystemExit("the run did not finish in time")


def _wrap(worker_class: str | None) -> list[str]:
    """BENCH_WORKER_WRAP's command, which the portal's worker (not the comparison) runs under: a profiler, e.g.
    "py-spy record --idle -f raw -o /tmp/worker.txt --" (it is stopped with SIGINT, on which py-spy writes)."""
    return shlex.split(os.environ.get("BENCH_WORKER_WRAP", "")) if worker_class is None else []


def _worker(worker_class: str | None, log: Path) -> subprocess.Popen:
    command = [*_wrap(worker_class), sys.executable, "manage.py", "rqworker", "gitops",
               "--name", f"bench-{os.getpid()}-{time.time_ns()}"]
    if worker_class:
        command += ["--worker-class", worker_class]
    env = {**os.environ, "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "INFO")}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_idle(process: subprocess.Popen, log: Path, timeout: float = 900) -> float:
    """Seconds until the worker listens on its queue (after its start-up warm-up, when it has one)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"worker exited:\n{log.read_text(errors='replace')[-3000:]}")
        text = log.read_text(errors="replace")
        if "Listening on" in text or "*** Listening" in text:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise SystemExit("worker did not start")


def _one_worker(worker_class: str | None, projects: list, workdir: Path, offset: int) -> dict:
    """Start one fresh worker, time a change on it (cold) and two more right after (warm)."""
    log = workdir / f"worker-{offset}.log"
    process = _worker(worker_class, log)
    try:
        startup = _wait_idle(process, log)
        # The change comes to a worker that waits for work, not one still finishing its start-up's writes.
        started = time.perf_counter()
        busy = settle()  # the setup's and the start-up's writes reach the disk now, not during the measurement
        settled = f"machine idle after {time.perf_counter() - started:.1f} s ({busy:.0%} busy)"
        cold, cold_run, split = _change_and_wait(projects[offset], offset)
        warm = [_change_and_wait(projects[offset + k], offset + k)[0] for k in (1, 2)]
    finally:
        if _wrap(worker_class):
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return {"startup": startup, "cold": cold, "cold_run": cold_run, "warm": warm, "log": f"{split} | {settled}"}


def measure_worker(worker_class: str | None, projects: list, workdir: Path, offset: int, workers: int = 1) -> dict:
    """``workers`` fresh workers one after another (each: one cold change, two warm ones): the medians, every cold
    sample, and the first run's log split of the worker whose cold change was the median."""
    samples = [_one_worker(worker_class, projects, workdir, offset + 3 * number) for number in range(workers)]
    middle = sorted(samples, key=lambda sample: sample["cold"])[len(samples) // 2]
    return {"worker": worker_class or "settings.RQ WORKER_CLASS",
            "startup_s": round(statistics.median(sample["startup"] for sample in samples), 2),
            "change_to_done_s": round(middle["cold"], 3), "run_s": round(middle["cold_run"], 3),
            "cold_samples_s": [round(sample["cold"], 3) for sample in samples],
            "warm_s": round(statistics.median(t for sample in samples for t in sample["warm"]), 3),
            "warm_samples_s": [round(t, 3) for sample in samples for t in sample["warm"]],
            "first_run_log": middle["log"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (repository, worker logs)")
    parser.add_argument("--cold-workers", type=int, default=3,
                        help="fresh portal workers started one after another (the cold figure is their median)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="portal-worker-bench-"))
    try:
        _setup_django(workdir)
        from django.conf import settings

        _, small_projects = _populate("small", 100)
        _, projects = _populate("bench", args.projects)
        _settle_database()
        save_small, save_large = _save_ms([small_projects[50], projects[args.projects // 2]])
        started = time.perf_counter()
        _first_commit()
        setup_s = time.perf_counter() - started
        _settle_database()
        rows = [measure_worker(None, projects, workdir, 10, workers=args.cold_workers),
                measure_worker("rq.worker.Worker", projects, workdir, 10 + 3 * args.cold_workers)]
        assert settings.RQ.get("WORKER_CLASS")
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.projects:,} projects; setup commit {setup_s:.1f} s")
    print(f"{'worker':>28} | {'startup_s':>9} | {'change_to_done_s':>16} | {'run_s':>6} | {'warm_s':>6}")
    for row in rows:
        print(f"{row['worker']:>28} | {row['startup_s']:>9} | {row['change_to_done_s']:>16} | {row['run_s']:>6} | "
              f"{row['warm_s']:>6}")
        if len(row["cold_samples_s"]) > 1:
            print(f"{'':>28}   cold changes of {len(row['cold_samples_s'])} fresh workers: "
                  f"{', '.join(map(str, row['cold_samples_s']))} s; their next changes: "
                  f"{', '.join(map(str, row['warm_samples_s']))} s (medians above)")
        print(f"{'':>28}   first run's log: {row['first_run_log']}")
    save = {"save_100_ms": round(save_small, 1), "save_n_ms": round(save_large, 1),
            "save_ratio": round(save_large / save_small, 2)}
    print(f"project save: 100 projects {save['save_100_ms']} ms, {args.projects:,} projects {save['save_n_ms']} ms "
          f"(ratio {save['save_ratio']}, target ≤ 1.3)")
    print(json.dumps({"projects": args.projects, "workers": rows, **save,
                      "targets": {"change_to_done_s_max": 1.0, "save_ratio_max": 1.3}}, sort_keys=True))


if __name__ == "__main__":
    main()
