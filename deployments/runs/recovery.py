"""Recovery of runs that dead workers, lost jobs and queue outages leave behind.

Called by the scheduled job ``deployments.tasks.render_runs_recover_job`` (every RENDER_RECOVERY_INTERVAL
seconds, see settings.PORTAL_SCHEDULE), by ``manage.py recover_runs``, and by every run before it renders
(orphans only). Never by loading a page.

* ``running`` runs whose worker died are failed (kind ``orphaned``) — detected by taking the repository lock: if
  nobody holds it, nobody is running anything — and their environments are requested again.
* ``queued`` runs whose hand-over failed (Redis was down) or whose RQ job vanished, failed or was abandoned are
  enqueued again, up to REQUEUE_LIMIT times; then they fail visibly.
* environments left dirty with no live run and whose last run ended for a transient reason (a dead worker, a
  lock timeout, an unreachable remote, a lost job) get a new run, so every requested change reaches git within
  about one recovery interval of the fault ending, without anyone opening a page. An environment whose last run
  failed validation is not retried: that needs a person (and their next change requests a run anyway).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments.locks import repository_lock_is_free
from deployments.models import Environment, RenderRun
from deployments.runs.request import (
    QUEUE_NAME,
    environments_mark_dirty,
    render_run_enqueue,
    render_run_job_id,
    render_run_request,
)
from jobs import queue
from jobs.progress import append, stamp

logger = logging.getLogger(__name__)

# A queued run younger than this is left alone (its hand-over may still be in flight).
QUEUED_JOB_GRACE = timedelta(minutes=2)
REQUEUE_LIMIT = 3
REQUEUED_LINE = "Its queue job was lost or failed; enqueued again."
ORPHANED_MESSAGE = (
    "The worker running this run stopped before it finished (killed, crashed or timed out); its result was not "
    "recorded. A commit it had not pushed is discarded; the environments are marked for another render."
)
RETRY_REASON = "Retry: the previous run ended without finishing"


def fail_orphans(*, exclude_id: int | None = None) -> list[int]:
    """Mark every ``running`` run (but ``exclude_id``) failed. Only call while holding the repository lock."""
    with transaction.atomic():
        orphans = list(RenderRun.objects.select_for_update().filter(status=RenderRun.Status.RUNNING)
                       .exclude(pk=exclude_id).prefetch_related("environments"))
        now = timezone.now()
        for run in orphans:
            run.status = RenderRun.Status.FAILED
            run.error = ORPHANED_MESSAGE
            run.error_kind = RenderRun.ErrorKind.ORPHANED
            run.finished_at = now
            run.log = append(run.log, stamp("Marked failed: its worker is gone."))
            run.save(update_fields=["status", "error", "error_kind", "finished_at", "log"])
            if not run.dry_run:
                env_ids = [env.pk for env in run.environments.all()]
                environments_mark_dirty(environment_ids=env_ids or None)
    if orphans:
        logger.warning("Render runs %s were running without a worker; marked failed.", [r.pk for r in orphans])
    return [run.pk for run in orphans]


def render_runs_recover() -> dict[str, list[int]]:
    """Repair what dead workers, lost jobs and queue outages left (module docstring); safe to call any time.

    Returns ``{"failed": [run ids failed as orphans or given up], "requeued": [run ids enqueued again],
    "requested": [run ids created for environments left dirty]}``.
    """
    failed: list[int] = []
    if RenderRun.objects.filter(status=RenderRun.Status.RUNNING).exists() and repository_lock_is_free():
        failed = fail_orphans()
    requeued, given_up = _requeue_lost_jobs()
    requested = _request_dirty_environments()
    return {"failed": failed + given_up, "requeued": requeued, "requested": requested}


def _requeue_lost_jobs() -> tuple[list[int], list[int]]:
    """Queued runs whose job is gone, failed or never handed over get a new job (REQUEUE_LIMIT times, then fail)."""
    if not queue.redis_configured():
        # Inline: a queued run older than the grace time will never run (its process is gone): fail it, and let
        # _request_dirty_environments ask for a new one.
        stale = RenderRun.objects.filter(status=RenderRun.Status.QUEUED,
                                         created_at__lt=timezone.now() - QUEUED_JOB_GRACE)
        ids = list(stale.values_list("pk", flat=True))
        stale.update(status=RenderRun.Status.FAILED, error_kind=RenderRun.ErrorKind.ENQUEUE,
                     error="Its inline job never ran (the process that queued it stopped).",
                     finished_at=timezone.now())
        for run in RenderRun.objects.filter(pk__in=ids, dry_run=False):
            environments_mark_dirty(environment_ids=list(run.environments.values_list("pk", flat=True)) or None)
        return [], ids
    candidates = list(RenderRun.objects.filter(status=RenderRun.Status.QUEUED)
                      .filter(created_at__lt=timezone.now() - QUEUED_JOB_GRACE)
                      .values_list("pk", "enqueue_error"))
    # Runs whose hand-over failed need no grace: Redis said no.
    candidates += list(RenderRun.objects.filter(status=RenderRun.Status.QUEUED).exclude(enqueue_error="")
                       .values_list("pk", "enqueue_error"))
    if not candidates:
        return [], []
    try:
        # A worker that died while its job waited for the lock leaves the job "started"; rq's own cleanup moves
        # it to the failed registry once the worker's heartbeat has expired.
        queue.started_registry_cleanup(QUEUE_NAME)
    except Exception as exc:  # noqa: BLE001 - Redis still down: try again next time
        logger.warning("Recovery cannot reach Redis (%s); queued runs wait for the next attempt.", type(exc).__name__)
        return [], []
    requeued, failed = [], []
    for run_id, _ in sorted(set(candidates)):
        if queue.job_alive(QUEUE_NAME, render_run_job_id(run_id)):
            continue
        with transaction.atomic():
            run = RenderRun.objects.select_for_update().filter(pk=run_id, status=RenderRun.Status.QUEUED).first()
            if run is None:
                continue
            if run.requeue_count >= REQUEUE_LIMIT:
                run.status, run.finished_at = RenderRun.Status.FAILED, timezone.now()
                run.error_kind = RenderRun.ErrorKind.ENQUEUE
                run.error = f"Its queue job was lost or failed {REQUEUE_LIMIT + 1} times; see the worker logs."
                run.save(update_fields=["status", "finished_at", "error", "error_kind"])
                failed.append(run_id)
                continue
            run.requeue_count += 1
            run.log = append(run.log, stamp(REQUEUED_LINE))
            run.save(update_fields=["log", "requeue_count"])
            render_run_enqueue(run=run)
            requeued.append(run_id)
    if requeued or failed:
        logger.warning("Queued render runs whose job was lost: %s enqueued again, %s given up.", requeued, failed)
    return requeued, failed


def _request_dirty_environments() -> list[int]:
    """Environments left dirty by a run that ended for a transient reason, with no run pending: request one."""
    if not getattr(settings, "GITOPS_AUTO_RENDER", True):
        return []
    dirty = list(Environment.objects.filter(needs_render=True).values_list("pk", flat=True))
    if not dirty:
        return []
    pending = RenderRun.objects.filter(status__in=[RenderRun.Status.QUEUED, RenderRun.Status.RUNNING], dry_run=False)
    if pending.filter(environments__isnull=True).exists():
        return []  # a run for all environments is on its way
    covered = set(pending.values_list("environments", flat=True))
    retry = []
    for env_id in dirty:
        if env_id in covered:
            continue
        last = (RenderRun.objects.filter(dry_run=False, status__in=RenderRun.FINISHED)
                .filter(environments=env_id).order_by("-created_at", "-pk").first())
        last_all = (RenderRun.objects.filter(dry_run=False, status__in=RenderRun.FINISHED, environments__isnull=True)
                    .order_by("-created_at", "-pk").first())
        if last_all is not None and (last is None or last_all.created_at > last.created_at):
            last = last_all
        transient = last is not None and last.error_kind in RenderRun.TRANSIENT_ERRORS
        if transient and last.status == RenderRun.Status.FAILED:
            retry.append(env_id)
    if not retry:
        return []
    request = render_run_request(environment_ids=retry, user=None, reason=RETRY_REASON, absorb=True)
    if request.run is None:
        logger.warning("Environments %s were left dirty; their render waits: %s", retry, request.held)
        return []
    logger.warning("Environments %s were left dirty by a run that did not finish; requested run %s.", retry,
                   request.run.pk)
    return [request.run.pk]
