"""Real `manage.py rqworker gitops` processes on real Redis, pointed at the test database.

Two workers take 20 queued renders: commits come out one after another (linear history, no two runs overlapping)
and no change is lost. A worker killed with SIGKILL in the middle of a run leaves the remote as it was, the run is
detected as orphaned (not "running" forever), and the next run converges.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from rq.job import Job

from deployments import runs
from deployments.models import Environment, RenderRun
from tests.deployments.runfixtures import git, queued_run
from tests.factories import environment_factory, project_factory

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": _database_url(),  # the test database, not the configured one
        "REDIS_URL": django_settings.REDIS_URL,
        "GITOPS_REPO_DIR": str(django_settings.GITOPS_REPO_DIR),
        "GITOPS_REMOTE_URL": django_settings.GITOPS_REMOTE_URL,
        "GITOPS_SOURCE_URL": django_settings.GITOPS_SOURCE_URL,
        "GITOPS_BRANCH": django_settings.GITOPS_BRANCH,
        "KUBECTL": django_settings.KUBECTL,
        "SECRETS_MANAGER_SYNC": "false",
        # A killed holder's repository lock expires after this TTL (read once settings.py reads it from the
        # environment; until then the default applies and the kill test waits one default TTL).
        "GITOPS_LOCK_TTL": "5",
    })
    return env


class Workers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, *extra: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "gitops", "--name", f"{name}-{os.getpid()}", *extra],
            cwd=ROOT, env=_worker_environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        process.log_path = self.tmp_path / f"{name}.log"
        self.processes.append(process)
        return process

    def wait_listening(self, timeout: float = 120) -> None:
        """Until every started worker listens on its queue (the portal's worker warms its caches first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("Listening on" in p.log_path.read_text(errors="replace") for p in self.processes):
                return
            time.sleep(0.1)
        raise AssertionError(f"workers did not start listening within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(p.log_path.read_text(errors="replace")[-3000:] for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current job
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers(tmp_path):
    pool = Workers(tmp_path)
    yield pool
    pool.stop()


def _wait(predicate, *, timeout: float, what: str, workers: Workers | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    detail = f"\nworker output:\n{workers.output()}" if workers else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


BURST_RENDERS = 50  # the proof issue: two workers and fifty queued renders


def _enqueue(environment: Environment, reason: str) -> RenderRun:
    run = queued_run(environment_ids=[environment.pk], user=None, reason=reason)
    runs.render_run_enqueue(run=run)  # autocommit: goes to Redis at once
    return run


def test_two_workers_serialize_fifty_queued_renders_and_lose_no_change(gitops, gitops_queue, workers):
    environment = environment_factory()
    workers.start("worker-a", "--max-idle-time", "120")
    workers.start("worker-b", "--max-idle-time", "120")
    workers.wait_listening()  # both take part in the burst below
    projects, queued = [], []
    for number in range(BURST_RENDERS):
        # Every change is followed by a render request while the workers are busy with earlier ones.
        projects.append(project_factory(environment, slug=f"burst-{number}", containers=("frontend",)))
        queued.append(_enqueue(environment, f"change {number}"))
        if number == 0:
            # Let the first run read its snapshot before the burst goes on, however slow the workers start.
            _wait(lambda: RenderRun.objects.get(pk=queued[0].pk).status != RenderRun.Status.QUEUED, timeout=120,
                  what="the first run to start", workers=workers)
        time.sleep(0.15)

    ids = [run.pk for run in queued]
    _wait(lambda: RenderRun.objects.filter(pk__in=ids, status__in=RenderRun.FINISHED).count() == len(ids),
          timeout=600, what=f"{BURST_RENDERS} runs to finish", workers=workers)
    finished = list(RenderRun.objects.filter(pk__in=ids).order_by("started_at"))
    assert [r.status for r in finished if r.status == RenderRun.Status.FAILED] == [], [r.error for r in finished]

    # No two runs overlapped: each started after the previous one finished.
    for before, after in zip(finished, finished[1:], strict=False):
        assert after.started_at >= before.finished_at, (before.pk, after.pk)

    # Linear history, one commit per succeeded run, in the order the runs ran.
    succeeded = [r for r in finished if r.status == RenderRun.Status.SUCCEEDED]
    assert not git(gitops.remote, "rev-list", "--merges", "main").strip()
    assert all(len(line.split()) <= 2 for line in git(gitops.remote, "rev-list", "--parents", "main").splitlines())
    commits = list(reversed(gitops.commits()))
    assert len(commits) == len(succeeded)
    run_trailers = [int(line.split(": ", 1)[1]) for sha in commits
                    for line in gitops.message(sha).splitlines() if line.startswith("Portal-Run: ")]
    assert run_trailers == [r.pk for r in succeeded]
    assert [r.commit_sha for r in succeeded] == commits

    # Every change is in the final tree.
    tree = gitops.files()
    for project in projects:
        assert any(path.startswith(f"environments/{environment.name}/projects/proj-{project.pk}/") for path in tree)
    index = gitops.show(f"environments/{environment.name}/projects/kustomization.yaml")
    assert all(f"proj-{project.pk}" in index for project in projects)
    environment.refresh_from_db()
    assert environment.needs_render is False
    # Both workers took jobs, and commits did follow one another (not one run that picked up everything).
    assert len(succeeded) >= 2
    worker_names = {Job.fetch(runs.render_run_job_id(pk), connection=gitops_queue.connection).worker_name
                    for pk in ids}
    assert len(worker_names) == 2, worker_names


def test_a_worker_killed_mid_run_leaves_the_remote_intact_and_the_next_run_converges(gitops, gitops_queue,
                                                                                      kubectl, workers):
    environment = environment_factory()
    worker = workers.start("victim")
    first = _enqueue(environment, "first render")
    _wait(lambda: RenderRun.objects.get(pk=first.pk).is_finished, timeout=180, what="the first run", workers=workers)
    first.refresh_from_db()
    assert first.status == RenderRun.Status.SUCCEEDED, first.error
    head = gitops.head()
    assert head == first.commit_sha

    project = project_factory(environment, slug="late-change", containers=("frontend",))
    kubectl.sleep()  # validation of the next run hangs in kubectl until we kill the worker
    victim = _enqueue(environment, "killed in validation")
    _wait(kubectl.sleeping_pid_file.exists, timeout=180, what="the run to reach validation", workers=workers)
    assert RenderRun.objects.get(pk=victim.pk).status == RenderRun.Status.RUNNING

    # The machine dies: the work horse (its own process group, with kubectl under it) and the worker.
    sleeping_pid = int(kubectl.sleeping_pid_file.read_text())
    os.killpg(os.getpgid(sleeping_pid), signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    kubectl.sleep(False)

    assert gitops.head() == head, "the remote must not move"
    assert git(gitops.remote, "fsck", "--no-dangling").strip() == ""
    assert RenderRun.objects.get(pk=victim.pk).status == RenderRun.Status.RUNNING  # nobody could record it

    # Detected, not left running forever: the dead session's lock is gone, so the run is orphaned.
    recovered: dict = {}

    def orphan_detected() -> bool:
        recovered.update(runs.render_runs_recover())
        return victim.pk in recovered["failed"]

    _wait(orphan_detected, timeout=30, what="orphan detection")
    victim.refresh_from_db()
    environment.refresh_from_db()
    assert victim.status == RenderRun.Status.FAILED and victim.error == runs.ORPHANED_MESSAGE
    assert environment.needs_render is True

    # The next run, on a fresh worker, converges: the change lands on top of the old head.
    # Recovery itself requested a run for the environment the dead run left dirty (nobody has to ask).
    [retry_id] = recovered["requested"]
    following = _enqueue(environment, "after the crash")
    workers.start("rescuer", "--burst")
    _wait(lambda: all(RenderRun.objects.get(pk=pk).is_finished for pk in (retry_id, following.pk)), timeout=180,
          what="the next runs", workers=workers)
    retry, following = RenderRun.objects.get(pk=retry_id), RenderRun.objects.get(pk=following.pk)
    # One of them (the retry, queued first) commits the change on top of the old head; the other finds nothing.
    committed = [run for run in (retry, following) if run.status == RenderRun.Status.SUCCEEDED]
    assert [run.status for run in (retry, following) if run not in committed] == [RenderRun.Status.NO_CHANGE], \
        (retry.error, following.error)
    [converged] = committed
    assert gitops.head() == converged.commit_sha
    assert git(gitops.remote, "rev-parse", f"{converged.commit_sha}^").strip() == head
    assert any(f"proj-{project.pk}/" in path for path in gitops.files())
    # No working copy to leave dirty: the repository is bare, written from memory.
    assert git(gitops.workdir, "rev-parse", "--is-bare-repository").strip() == "true"
    environment.refresh_from_db()
    assert environment.needs_render is False
