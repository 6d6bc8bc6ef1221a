"""Render runs: the service that renders environments into the GitOps repository and records how it went.

A run is a ``RenderRun`` row. ``render_run_execute`` walks it through:

    wait for the render lock → running → deliver secrets (Secrets Manager / Sealed Secrets) → take the dirty flags
    → snapshot → units → gitops_commit, validated on the changed paths → succeeded / no_change / failed

Two rules keep concurrent workers from losing changes:

* **One run at a time.** The whole snapshot-to-commit sequence runs under one lock per database (a PostgreSQL
  session advisory lock; a file lock on other databases). Without it an older snapshot could commit after a newer
  one and undo it. The lock dies with the connection, so a killed worker never blocks the next run — and it is
  also how a dead run is detected: a run is only ``running`` while its worker holds the lock, so whoever holds
  the lock (or can take it) knows that every other ``running`` run is orphaned.
* **Dirty flags are taken, not cleared afterwards.** A run sets ``needs_render = False`` on its environments
  *before* it reads the snapshot. A change committed earlier is in the snapshot; a change committed later sets the
  flag again and requests another run. A failed or orphaned run sets the flags back. So "cleared after success
  unless changed since the run started" holds without a version counter on the environment.

Auto-render requests (``render_run_request``) collapse: a queued run whose environments cover the request
absorbs it, under a transaction-scoped advisory lock so that two concurrent saves cannot both create a run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import django_rq
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Q, TextField, Value, When
from django.db.models.functions import Concat
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from deployments import jobs
from deployments.git import PreviewResult, gitops_commit, gitops_preview
from deployments.models import Environment, RenderRun
from deployments.rendering import environments_snapshot, snapshot_scopes, tree_units
from deployments.sealing import environment_secrets_reseal
from deployments.secrets_manager import environment_secrets_sync
from deployments.validation import TreeValidationError, tree_validate_or_raise

logger = logging.getLogger(__name__)

QUEUE_NAME = "gitops"
SYSTEM_USERNAME = "system"
# Fixed keys for pg advisory locks; advisory locks are per database, so each portal database has its own.
RUN_LOCK_KEY = zlib.crc32(b"tesslate-portal:render-run")
REQUEST_LOCK_KEY = zlib.crc32(b"tesslate-portal:render-request")

LOG_MAX_CHARS = 200_000
REASON_MAX_CHARS = RenderRun._meta.get_field("reason").max_length
# How long a queued run may wait for the render lock behind other runs before it gives up.
RUN_LOCK_TIMEOUT = 1500
# A queued run whose RQ job vanished (Redis flushed, enqueue lost) is re-enqueued after this long.
QUEUED_JOB_GRACE = timedelta(minutes=2)
REQUEUE_LIMIT = 3
REQUEUED_LINE = "Its queue job was lost or failed; enqueued again."
ORPHANED_MESSAGE = (
    "The worker running this run stopped before it finished (killed, crashed or timed out); its result was not "
    "recorded. A commit it had not pushed is discarded; the environments are marked for another render."
)

ProgressCallback = Callable[[int, str], None]


# --- creating and requesting runs ------------------------------------------------------------------


def _environment_ids(environment_ids: Iterable[int] | None) -> list[int] | None:
    if environment_ids is None:
        return None
    ids = sorted({int(pk) for pk in environment_ids})
    if not ids:
        raise ValidationError("Choose at least one environment to render.")
    found = set(Environment.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise ValidationError(f"No environment with id {', '.join(map(str, missing))}.")
    return ids


def _one_line(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _username(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else SYSTEM_USERNAME


def render_run_create(*, environment_ids: Iterable[int] | None, user, reason: str,
                      dry_run: bool = False) -> RenderRun:
    """A queued run for the given environments; ``environment_ids=None`` renders every environment.

    A run for all environments keeps its environment list empty: it renders the whole tree and prunes the
    folders of environments that no longer exist.
    """
    ids = _environment_ids(environment_ids)
    with transaction.atomic():
        run = RenderRun.objects.create(
            triggered_by=user if user is not None and user.is_authenticated else None,
            reason=_one_line(reason), dry_run=dry_run, status=RenderRun.Status.QUEUED,
        )
        if ids:
            run.environments.set(ids)
    return run


def render_run_enqueue(*, run: RenderRun) -> None:
    """Hand the run to the ``gitops`` queue once the current transaction commits (inline without Redis)."""
    from deployments import tasks  # tasks imports this module

    jobs.enqueue(QUEUE_NAME, tasks.render_run_job, run.pk, job_id=render_run_job_id(run.pk))


def render_run_job_id(run_id: int) -> str:
    return f"render-run-{run_id}"


def render_run_submit(*, environment_ids: Iterable[int] | None, user, reason: str) -> RenderRun:
    """Create a run and enqueue it (the admin's "Render and commit")."""
    with transaction.atomic():
        run = render_run_create(environment_ids=environment_ids, user=user, reason=reason)
        render_run_enqueue(run=run)
    return run


def _request_lock() -> None:
    """Serialize render requests until the transaction ends, so two saves cannot both miss a queued run."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [REQUEST_LOCK_KEY])
    # SQLite (local development) serializes writing transactions by itself.


def _covers(run_ids: set[int], wanted: list[int] | None) -> bool:
    if not run_ids:  # a run for all environments covers everything
        return True
    return wanted is not None and set(wanted) <= run_ids


def _set_needs_render(environment_ids: Iterable[int] | None, value: bool) -> None:
    """Set the dirty flag of environments (None: all of them), locking the rows in id order (no deadlocks)."""
    rows = Environment.objects.all() if environment_ids is None else Environment.objects.filter(pk__in=environment_ids)
    with transaction.atomic():
        ids = list(rows.select_for_update().order_by("pk").values_list("pk", flat=True))
        Environment.objects.filter(pk__in=ids).update(needs_render=value)


def environments_mark_dirty(*, environment_ids: Iterable[int] | None) -> None:
    """Record that environments changed since their last render (None: all of them)."""
    _set_needs_render(environment_ids, True)


def render_run_request(*, environment_ids: Iterable[int] | None, user, reason: str) -> tuple[RenderRun, bool]:
    """Mark the environments dirty and make sure a run will render them: returns (run, created).

    A burst of admin saves gives one run: a queued (not yet started) run whose environments cover the request
    absorbs it, and notes who asked and why. Only a run that has not started can absorb — a running run may have
    read its snapshot already, so a change after its start gets a new queued run.
    """
    ids = _environment_ids(environment_ids)
    reason = _one_line(reason)
    with transaction.atomic():
        environments_mark_dirty(environment_ids=ids)
        _request_lock()
        queued = (RenderRun.objects.select_for_update().filter(status=RenderRun.Status.QUEUED, dry_run=False)
                  .order_by("created_at", "pk"))
        for run in queued:
            if not _covers(set(run.environments.values_list("pk", flat=True)), ids):
                continue
            if reason and reason not in run.reason:
                run.reason = _one_line(f"{run.reason}; {reason}" if run.reason else reason)
            run.log = _append(run.log, _stamp(f"Request absorbed from {_username(user)}: {reason or 'no reason'}"))
            run.save(update_fields=["reason", "log"])
            return run, False
        run = render_run_create(environment_ids=ids, user=user, reason=reason)
        render_run_enqueue(run=run)
        return run, True


def render_auto_request(*, environment_ids: Iterable[int] | None, user, reason: str) -> RenderRun | None:
    """What an admin save calls: mark dirty always; request a run only when GITOPS_AUTO_RENDER is on."""
    if not getattr(settings, "GITOPS_AUTO_RENDER", True):
        environments_mark_dirty(environment_ids=environment_ids)
        return None
    run, _ = render_run_request(environment_ids=environment_ids, user=user, reason=reason)
    return run


# --- the render lock and dead runs -----------------------------------------------------------------


class _RunLock:
    """The render lock (see module docstring). Re-entrant per connection on PostgreSQL, so use it once per run."""

    def __init__(self) -> None:
        self._file_lock = None

    def try_acquire(self) -> bool:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY])
                return bool(cursor.fetchone()[0])
        import filelock

        path = Path(settings.GITOPS_REPO_DIR).parent / ".portal-render-run.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = filelock.FileLock(str(path))
        try:
            self._file_lock.acquire(timeout=0)
            return True
        except filelock.Timeout:
            return False

    def release(self) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RUN_LOCK_KEY])
        elif self._file_lock is not None:
            self._file_lock.release()


class RenderLockTimeout(Exception):
    """Another run held the render lock longer than a queued run is willing to wait."""


@contextmanager
def _render_lock(*, wait: float, on_wait: Callable[[], None] | None = None):
    lock = _RunLock()
    deadline = time.monotonic() + wait
    waited = False
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise RenderLockTimeout(f"Another render held the render lock for more than {int(wait)} s.")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(0.2)
    try:
        yield
    finally:
        lock.release()


def _fail_orphans(*, exclude_id: int | None = None) -> list[int]:
    """Mark every ``running`` run (but ``exclude_id``) failed. Only call while holding the render lock."""
    with transaction.atomic():
        orphans = list(RenderRun.objects.select_for_update().filter(status=RenderRun.Status.RUNNING)
                       .exclude(pk=exclude_id).prefetch_related("environments"))
        now = timezone.now()
        for run in orphans:
            run.status = RenderRun.Status.FAILED
            run.error = ORPHANED_MESSAGE
            run.finished_at = now
            run.log = _append(run.log, _stamp("Marked failed: its worker is gone."))
            run.save(update_fields=["status", "error", "finished_at", "log"])
            if not run.dry_run:
                env_ids = [env.pk for env in run.environments.all()]
                environments_mark_dirty(environment_ids=env_ids or None)
    if orphans:
        logger.warning("Render runs %s were running without a worker; marked failed.", [r.pk for r in orphans])
    return [run.pk for run in orphans]


def render_runs_recover() -> dict[str, list[int]]:
    """Repair what dead workers and lost jobs leave behind; cheap, safe to call from any page or command.

    * ``running`` runs whose worker died are marked failed — detected by taking the render lock: if nobody
      holds it, nobody is running anything.
    * ``queued`` runs whose RQ job no longer exists (Redis restarted or flushed) are enqueued again.
    """
    failed: list[int] = []
    if RenderRun.objects.filter(status=RenderRun.Status.RUNNING).exists():
        lock = _RunLock()
        if lock.try_acquire():
            try:
                failed = _fail_orphans()
            finally:
                lock.release()
    return {"failed": failed, "requeued": _requeue_lost_jobs()}


def _job_alive(job_id: str, redis) -> bool:
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
                                             JobStatus.SCHEDULED)


def _requeue_lost_jobs() -> list[int]:
    """Queued runs whose job is gone, failed or abandoned get a new job (up to REQUEUE_LIMIT times, then fail)."""
    if not settings.REDIS_URL:
        return []
    stale = list(RenderRun.objects.filter(status=RenderRun.Status.QUEUED,
                                          created_at__lt=timezone.now() - QUEUED_JOB_GRACE)
                 .values_list("pk", flat=True))
    if not stale:
        return []
    redis = django_rq.get_connection(QUEUE_NAME)
    # A worker that died while its job waited for the render lock leaves the job "started"; rq's own cleanup moves
    # it to the failed registry once the worker's heartbeat has expired.
    StartedJobRegistry(QUEUE_NAME, connection=redis).cleanup()
    requeued, failed = [], []
    for run_id in stale:
        if _job_alive(render_run_job_id(run_id), redis):
            continue
        with transaction.atomic():
            run = RenderRun.objects.select_for_update().filter(pk=run_id, status=RenderRun.Status.QUEUED).first()
            if run is None:
                continue
            if run.log.count(REQUEUED_LINE) >= REQUEUE_LIMIT:
                run.status, run.finished_at = RenderRun.Status.FAILED, timezone.now()
                run.error = f"Its queue job was lost or failed {REQUEUE_LIMIT + 1} times; see the worker logs."
                run.save(update_fields=["status", "finished_at", "error"])
                failed.append(run_id)
                continue
            run.log = _append(run.log, _stamp(REQUEUED_LINE))
            run.save(update_fields=["log"])
            render_run_enqueue(run=run)
            requeued.append(run_id)
    if requeued or failed:
        logger.warning("Queued render runs whose job was lost: %s enqueued again, %s given up.", requeued, failed)
    return requeued


# --- executing a run --------------------------------------------------------------------------------


def _stamp(line: str) -> str:
    return f"{timezone.now():%H:%M:%S} {line}"


def _append(log: str, line: str) -> str:
    if len(log) >= LOG_MAX_CHARS:
        return log
    log = f"{log}\n{line}" if log else line
    if len(log) >= LOG_MAX_CHARS:
        log = log[:LOG_MAX_CHARS] + "\n… (log truncated)"
    return log


class _Recorder:
    """Saves progress and log lines of a run as it goes, so the admin sees them while it runs.

    Only the changed fields are written (``update_fields``); progress-only updates are throttled, and progress
    never goes backwards. Lines reported from helper threads (parallel validation) are kept in memory and saved
    by the run's own thread, which owns the database connection the run was loaded with.
    """

    def __init__(self, run: RenderRun, callback: ProgressCallback | None) -> None:
        self.run = run
        self.callback = callback
        self._saved_at = 0.0
        self._last_line = ""
        self._dirty: set[str] = set()
        self._owner = threading.get_ident()
        self._mutex = threading.Lock()

    def log(self, line: str, *, percent: int | None = None) -> None:
        with self._mutex:
            if line and line != self._last_line:
                self._last_line = line
                self.run.log = _append(self.run.log, _stamp(line))
                self._dirty.add("log")
            if percent is not None:
                percent = max(0, min(100, int(percent)))
                if percent > self.run.progress:
                    self.run.progress = percent
                    self._dirty.add("progress")
            now = time.monotonic()
            # A new log line is written at once; progress alone at most twice a second.
            if self._dirty and threading.get_ident() == self._owner and (
                    "log" in self._dirty or now - self._saved_at >= 0.5):
                self.run.save(update_fields=sorted(self._dirty))
                self._dirty.clear()
                self._saved_at = now
            current = self.run.progress
        if self.callback is not None:
            self.callback(current, line)

    def step(self, percent: int, line: str) -> None:
        self.log(line, percent=percent)

    def sub(self, start: int, end: int) -> ProgressCallback:
        """A progress callback for a sub-step that maps its 0..100 onto start..end of the run."""

        def progress(percent: int, message: str) -> None:
            self.log(message, percent=start + (end - start) * max(0, min(100, percent)) // 100)

        return progress

    def finish(self, **fields) -> None:
        with self._mutex:
            for name, value in fields.items():
                setattr(self.run, name, value)
            self.run.finished_at = timezone.now()
            if self.run.status != RenderRun.Status.FAILED:
                self.run.progress = 100
            self.run.save(update_fields=[*fields, "finished_at", "progress", "log"])
            self._dirty.clear()
        if self.callback is not None:
            self.callback(self.run.progress, f"{self.run.get_status_display()}.")


def _start(run_id: int) -> RenderRun | None:
    """queued → running, in its own short transaction (so absorbing requests stop picking this run)."""
    with transaction.atomic():
        run = RenderRun.objects.select_for_update().get(pk=run_id)
        if run.status != RenderRun.Status.QUEUED:
            return None
        run.status = RenderRun.Status.RUNNING
        run.started_at = timezone.now()
        run.progress = max(run.progress, 2)
        job_id = os.environ.get("RQ_JOB_ID")
        run.log = _append(run.log, _stamp(f"Started{f' (job {job_id})' if job_id else ''}."))
        run.save(update_fields=["status", "started_at", "progress", "log"])
    return run


def _take_dirty_flags(environment_ids: list[int] | None) -> None:
    _set_needs_render(environment_ids, False)


def _deliver_secrets(environments: list[Environment], recorder: _Recorder) -> None:
    """EKS: write values to AWS Secrets Manager (when enabled); other clusters: reseal for their certificate.

    Runs before the snapshot, because the snapshot reads the sealed values. Log lines carry counts, never values.
    """
    for environment in environments:
        secret_count = environment.secrets.count()
        if environment.uses_external_secrets:
            if not secret_count:
                continue
            if getattr(settings, "SECRETS_MANAGER_SYNC", False):
                result = environment_secrets_sync(environment=environment)
                recorder.log(f"{environment.name}: AWS Secrets Manager: {result.created} created, "
                             f"{result.updated} updated, {result.unchanged} unchanged.")
            else:
                recorder.log(f"{environment.name}: Secrets Manager sync is off (SECRETS_MANAGER_SYNC); "
                             f"the ExternalSecrets reference the values already in AWS.")
            continue
        # Also clears sealed values that no longer apply (certificate removed).
        result = environment_secrets_reseal(environment=environment)
        if not secret_count:
            continue
        if not (environment.sealed_secrets_certificate or "").strip():
            recorder.log(f"WARNING {environment.name}: no Sealed Secrets certificate; {secret_count} secret key(s) "
                         f"do not reach the cluster.")
            continue
        unsealed = environment.secrets.filter(sealed_value="").count()
        recorder.log(f"{environment.name}: Sealed Secrets: {result.sealed} sealed anew, {result.unchanged} current.")
        if unsealed:
            recorder.log(f"WARNING {environment.name}: {unsealed} secret key(s) have no sealed value "
                         f"and are left out of the SealedSecrets.")


def _run_environments(run: RenderRun) -> tuple[list[int] | None, list[Environment]]:
    environments = list(run.environments.order_by("name"))
    if environments:
        return [env.pk for env in environments], environments
    return None, list(Environment.objects.order_by("name"))


def _environments_label(run_ids: list[int] | None, environments: list[Environment]) -> str:
    names = ", ".join(env.name for env in environments)
    return names if run_ids is not None else f"all ({names})" if names else "all"


def _commit_message(run: RenderRun, label: str) -> str:
    summary = f"Render {label}"
    if run.reason:
        summary = f"{summary}: {run.reason}"
    return _one_line(summary, 100)


def _author(user) -> tuple[str, str]:
    if user is None:
        return "Tesslate GitOps portal", f"{SYSTEM_USERNAME}@portal.invalid"
    name = user.get_full_name().strip() or user.get_username()
    return name, user.email or f"{user.get_username()}@portal.invalid"


def _problems_text(problems) -> str:
    return "\n".join(f"{p.file}: [{p.rule}] {p.message}" for p in problems)


def render_run_execute(*, run_id: int, full: bool = False, progress: ProgressCallback | None = None) -> RenderRun:
    """Execute a queued run (see the module docstring). Returns the run in its final state; never raises for a
    failed render — the failure is recorded on the run. A run that is no longer queued is returned untouched.

    ``full`` re-renders every unit even when its fingerprint is unchanged. ``progress(percent, message)`` is
    called for every step (the management command draws its progress bar with it).
    """
    run = RenderRun.objects.get(pk=run_id)
    if run.status != RenderRun.Status.QUEUED:
        return run

    def on_wait() -> None:
        # The run is still queued and absorbing requests may write its log: append in SQL, not from memory.
        line = _stamp("Waiting for the render lock: another run is in progress.")
        RenderRun.objects.filter(pk=run_id).update(
            log=Case(When(log="", then=Value(line)), default=Concat(F("log"), Value("\n" + line)),
                     output_field=TextField()))
        if progress is not None:
            progress(run.progress, line)

    try:
        with _render_lock(wait=getattr(settings, "GITOPS_RUN_LOCK_TIMEOUT", RUN_LOCK_TIMEOUT), on_wait=on_wait):
            started = _start(run_id)
            if started is None:  # another job for the same run got here first
                return RenderRun.objects.get(pk=run_id)
            recorder = _Recorder(started, progress)
            orphans = _fail_orphans(exclude_id=run_id)
            if orphans:
                recorder.log(f"Marked orphaned run(s) {', '.join(f'#{pk}' for pk in orphans)} failed.")
            _execute(recorder, full=full)
            return recorder.run
    except RenderLockTimeout as exc:
        RenderRun.objects.filter(pk=run_id, status=RenderRun.Status.QUEUED).update(
            status=RenderRun.Status.FAILED, error=str(exc), finished_at=timezone.now())
        return RenderRun.objects.get(pk=run_id)


def _execute(recorder: _Recorder, *, full: bool) -> None:
    run = recorder.run
    env_ids, environments = _run_environments(run)
    label = _environments_label(env_ids, environments)
    timings: list[str] = []
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings.append(f"{name} {now - clock:.2f} s")
        clock = now

    try:
        recorder.step(3, f"{'Dry run' if run.dry_run else 'Render'} of {label}"
                         f"{' (full re-render)' if full else ''}, requested by {_username(run.triggered_by)}.")
        if not run.dry_run:
            _deliver_secrets(environments, recorder)
            lap("secrets")
            # Taken before the snapshot: anything committed from now on sets the flag again (module docstring).
            _take_dirty_flags(env_ids)
        recorder.step(8, "Reading the snapshot.")
        snapshot = environments_snapshot(environment_ids=env_ids)
        units = tree_units(snapshot)
        scopes = snapshot_scopes(snapshot)
        lap("snapshot")
        recorder.step(10, f"{len(units)} render unit(s) under {', '.join(scopes)}.")

        if run.dry_run:
            preview = gitops_preview(units=units, scopes=scopes, full=full)
            lap("preview")
            changed = bool(preview.added or preview.changed or preview.deleted)
            recorder.log(f"Preview: {len(preview.added)} added, {len(preview.changed)} changed, "
                         f"{len(preview.deleted)} deleted; nothing committed. Timings: {', '.join(timings)}.")
            recorder.finish(status=RenderRun.Status.SUCCEEDED if changed else RenderRun.Status.NO_CHANGE,
                            files_added=len(preview.added), files_changed=len(preview.changed),
                            files_deleted=len(preview.deleted), diff=preview.diff)
            return

        def validate(root: Path, paths: list[str]) -> None:
            tree_validate_or_raise(root=root, paths=paths, progress=lambda message: recorder.log(message))

        author_name, author_email = _author(run.triggered_by)
        result = gitops_commit(
            units=units, scopes=scopes, message=_commit_message(run, label),
            trailers={"Portal-Run": str(run.pk), "Changed-By": _username(run.triggered_by),
                      "Environments": label, "Reason": _one_line(run.reason) or "-"},
            author_name=author_name, author_email=author_email,
            validate=validate, progress=recorder.sub(10, 98), full=full,
        )
        lap("commit")
        counts = dict(files_added=len(result.added), files_changed=len(result.changed),
                      files_deleted=len(result.deleted))
        if result.sha:
            pushed = f"pushed after {result.push_attempts} attempt(s)" if result.pushed else "not pushed (no remote)"
            recorder.log(f"Committed {result.sha[:12]}: {counts['files_added']} added, {counts['files_changed']} "
                         f"changed, {counts['files_deleted']} deleted; {pushed}. Timings: {', '.join(timings)}.")
            recorder.finish(status=RenderRun.Status.SUCCEEDED, commit_sha=result.sha,
                            diff=result.diff, **counts)
        else:
            recorder.log(f"No change: the repository already matches. Timings: {', '.join(timings)}.")
            recorder.finish(status=RenderRun.Status.NO_CHANGE, **counts)
    except TreeValidationError as exc:
        problems = list(exc.problems)
        first = problems[0] if problems else None
        recorder.log(f"Validation failed with {len(problems)} problem(s); nothing committed.")
        for problem in problems[:50]:
            recorder.log(f"  {problem.file}: [{problem.rule}] {problem.message}")
        _fail(recorder, env_ids, error=f"Validation failed; nothing was committed.\n{_problems_text(problems)}",
              error_file=first.file if first else "")
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the run; the job itself must not crash
        logger.exception("Render run %s failed", run.pk)
        recorder.log(f"Failed: {type(exc).__name__}.")
        _fail(recorder, env_ids, error=f"{type(exc).__name__}: {exc}", error_file="")


def _fail(recorder: _Recorder, env_ids: list[int] | None, *, error: str, error_file: str) -> None:
    if not recorder.run.dry_run:
        # The flags were taken at the start; give them back so the change is rendered by a later run.
        environments_mark_dirty(environment_ids=env_ids)
    recorder.finish(status=RenderRun.Status.FAILED, error=error, error_file=error_file[:1000])


# --- preview ------------------------------------------------------------------------------------------


def environment_preview(*, environment_ids: Iterable[int]) -> PreviewResult:
    """Render the environments into a scratch tree and diff it against the branch head; commits nothing.

    Works for an environment that was never rendered (everything shows as added). Secrets are not resealed or
    synced here (a preview has no side effects), so it shows the sealed values as they are now.
    """
    ids = _environment_ids(environment_ids)
    snapshot = environments_snapshot(environment_ids=ids)
    return gitops_preview(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot))


# --- reads for the admin -------------------------------------------------------------------------------


def environment_recent_runs(*, environment: Environment, limit: int = 10) -> list[RenderRun]:
    """The runs that rendered this environment (runs for all environments included), newest first."""
    return list(
        RenderRun.objects.filter(Q(environments=environment) | Q(environments__isnull=True))
        .select_related("triggered_by").distinct().order_by("-created_at", "-id")[:limit]
    )
