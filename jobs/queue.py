"""The only place that hands work to RQ (or runs it inline): ``enqueue``.

Jobs are named by dotted path (``"deployments.tasks.render_run_job"``), so the code that requests a job never
imports the job's module, and the job's module may import the requester freely.

With REDIS_URL unset, jobs run inline in this process once the transaction commits; with it set, they go to the
named django-rq queue once the transaction commits (a worker never reads rows that are not committed yet). The
hand-over's outcome is the truth shown to the user: the returned ``Ticket`` says, after the commit, whether the
job was queued (or ran inline) and, if not, why — and ``on_failure`` lets the caller record it on its run row so
the run stays retryable (``jobs.recovery``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


@dataclass
class Ticket:
    """What became of one hand-over. ``handed_over`` is None until the transaction committed."""

    job_id: str
    inline: bool
    handed_over: bool | None = None
    error: str = ""


def redis_configured() -> bool:
    return bool(settings.REDIS_URL)


def enqueue(queue_name: str, func_path: str, *args, job_id: str,
            on_failure: Callable[[str], None] | None = None, on_success: Callable[[], None] | None = None) -> Ticket:
    """Run ``func_path(*args)`` on ``queue_name`` once the current transaction commits (at once outside one).

    ``on_failure(reason)`` is called (after the commit, never raising) when the hand-over fails: Redis down, or
    the inline job raising before it could record its own outcome. ``reason`` is one line without secrets.
    """
    ticket = Ticket(job_id=job_id, inline=not redis_configured())

    def failed(reason: str) -> None:
        ticket.handed_over, ticket.error = False, reason
        if on_failure is not None:
            try:
                on_failure(reason)
            except Exception:  # noqa: BLE001 - recording the failure must not hide it
                logger.exception("Recording the failed hand-over of job %s failed", job_id)

    def run_inline() -> None:
        try:
            import_string(func_path)(*args)
        except Exception as exc:  # noqa: BLE001 - the job records its own failures; this is a crash before that
            logger.exception("Inline job %s crashed", job_id)
            failed(f"The job crashed: {type(exc).__name__}.")
            return
        ticket.handed_over = True
        if on_success is not None:
            on_success()

    def push() -> None:
        import django_rq

        try:
            # commit_mode="auto": this callback already runs after the commit; don't let django-rq defer it again.
            django_rq.get_queue(queue_name, commit_mode="auto").enqueue(func_path, *args, job_id=job_id)
        except Exception as exc:  # noqa: BLE001 - any transport failure means "not queued"
            logger.warning("Could not enqueue job %s on %s: %s", job_id, queue_name, type(exc).__name__)
            failed(f"The job queue (Redis) could not be reached: {type(exc).__name__}.")
            return
        ticket.handed_over = True
        if on_success is not None:
            on_success()

    transaction.on_commit(run_inline if ticket.inline else push)
    return ticket


def job_alive(queue_name: str, job_id: str) -> bool | None:
    """Whether RQ still holds the job as queued, started, deferred or scheduled; None when Redis is unreachable
    or jobs run inline (then nobody can tell)."""
    if not redis_configured():
        return None
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    try:
        redis = django_rq.get_connection(queue_name)
        try:
            job = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:
            return False
        return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
                                                 JobStatus.SCHEDULED)
    except Exception:  # noqa: BLE001 - Redis down: unknown
        return None


def started_registry_cleanup(queue_name: str) -> None:
    """Let rq move jobs of dead workers (expired heartbeat) from the started to the failed registry."""
    if not redis_configured():
        return
    import django_rq
    from rq.registry import StartedJobRegistry

    StartedJobRegistry(queue_name, connection=django_rq.get_connection(queue_name)).cleanup()
