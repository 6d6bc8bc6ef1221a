"""Requesting render runs: the one public way to start one (``render_run_request``) and the dirty flags.

Auto-render requests collapse: a queued run whose environments cover the request absorbs it, under a
transaction-scoped advisory lock so that two concurrent saves cannot both create a run. Only a *live* queued run
absorbs: one that was handed to the queue (or will be, in this transaction) and whose job still exists. A run
whose enqueue failed, or whose job vanished, never swallows later changes; the recovery job re-enqueues it.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from deployments.models import Environment, RenderRun
from deployments.runs.signals import render_requested
from jobs import queue
from jobs.progress import append, stamp

QUEUE_NAME = "gitops"
JOB_PATH = "deployments.tasks.render_run_job"
SYSTEM_USERNAME = "system"
HEARTBEAT_SECONDS = 15
# A run committed this recently is being handed to the queue; after that only a live job keeps it absorbing.
HANDOVER_GRACE = timedelta(seconds=30)
REQUEST_LOCK_KEY = zlib.crc32(b"tesslate-portal:render-request")
REASON_MAX_CHARS = RenderRun._meta.get_field("reason").max_length


class RunRequest(tuple):
    """``(run, created)`` — unpacks as a pair — plus ``ticket``: what became of the hand-over to the queue
    (``ticket.handed_over`` is known once the transaction committed; None when nothing was enqueued), and
    ``held``: when not None, no run was created (``run`` is None) because the request waits for an approval."""

    def __new__(cls, run: RenderRun | None, created: bool, ticket: queue.Ticket | None, held=None):
        self = super().__new__(cls, (run, created))
        self.ticket = ticket
        self.held = held  # not None: no run; the request waits (e.g. for approval), see runs.signals
        return self

    @property
    def run(self) -> RenderRun:
        return self[0]

    @property
    def created(self) -> bool:
        return self[1]


def environment_ids_check(environment_ids: Iterable[int] | None) -> list[int] | None:
    """Sorted, existing environment ids (None stays None: all environments). ValidationError otherwise."""
    if environment_ids is None:
        return None
    try:
        ids = sorted({int(pk) for pk in environment_ids})
    except (TypeError, ValueError):
        raise ValidationError("Environment ids are numbers.") from None
    if not ids:
        raise ValidationError("Choose at least one environment to render.")
    found = set(Environment.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise ValidationError(f"No environment with id {', '.join(map(str, missing))}.")
    return ids


def one_line(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def username(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else SYSTEM_USERNAME


def render_run_job_id(run_id: int) -> str:
    return f"render-run-{run_id}"


def _set_needs_render(environment_ids: Iterable[int] | None, value: bool) -> None:
    """Set the dirty flag of environments (None: all of them), locking the rows in id order (no deadlocks)."""
    rows = Environment.objects.all() if environment_ids is None else Environment.objects.filter(pk__in=environment_ids)
    with transaction.atomic():
        ids = list(rows.select_for_update().order_by("pk").values_list("pk", flat=True))
        Environment.objects.filter(pk__in=ids).update(needs_render=value)


def environments_mark_dirty(*, environment_ids: Iterable[int] | None) -> None:
    """Record that environments changed since their last render (None: all of them)."""
    _set_needs_render(environment_ids, True)


def environments_take_dirty(*, environment_ids: Iterable[int] | None) -> None:
    """A run takes the flags before it reads its snapshot (see deployments.runs.execute)."""
    _set_needs_render(environment_ids, False)


def _request_lock() -> None:
    """Serialize render requests until the transaction ends, so two saves cannot both miss a queued run."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [REQUEST_LOCK_KEY])
    # SQLite serializes writing transactions by itself.


def _covers(run_ids: set[int], wanted: list[int] | None) -> bool:
    if not run_ids:  # a run for all environments covers everything
        return True
    return wanted is not None and set(wanted) <= run_ids


# Runs created in a transaction that has not committed yet, per thread: they are live although not handed over.
_local = threading.local()


def _pending_runs() -> set[int]:
    if not hasattr(_local, "runs"):
        _local.runs = set()
    return _local.runs


def _mark_pending(run_id: int) -> None:
    pending = _pending_runs()
    pending.add(run_id)
    transaction.on_commit(lambda: pending.discard(run_id))  # a rolled-back id never exists again


def _can_absorb(run: RenderRun) -> bool:
    """A queued run absorbs a request only while it is certain to run: created in this very transaction, picked
    by a worker that waits for the lock (fresh heartbeat), or handed to Redis and its job still there. Inline runs
    of earlier requests never absorb (they ran or died); neither does a run whose enqueue failed."""
    if run.pk in _pending_runs():
        return True
    if run.waiting_heartbeat_at and timezone.now() - run.waiting_heartbeat_at < timedelta(seconds=HEARTBEAT_SECONDS):
        return True  # a worker picked it and waits for the lock
    if run.enqueue_error:
        return False  # Redis said no: the recovery job enqueues it again; until then it must not swallow changes
    if timezone.now() - run.created_at < HANDOVER_GRACE:
        return True  # just committed; its hand-over follows the commit (a failure is recorded within seconds)
    if run.enqueued_at is None or not queue.redis_configured():
        return False
    return queue.job_alive(QUEUE_NAME, render_run_job_id(run.pk)) is True


def render_run_enqueue(*, run: RenderRun) -> queue.Ticket:
    """Hand a queued run to the ``gitops`` queue once the transaction commits (inline without Redis).

    The outcome is recorded on the run: ``enqueued_at`` when Redis took it, ``enqueue_error`` when it did not
    (the run stays queued, and the scheduled recovery enqueues it again). Inline, a job that crashes before it
    records its own outcome fails the run, so no queued run is left behind.
    """
    run_id = run.pk

    def on_success() -> None:
        RenderRun.objects.filter(pk=run_id).update(enqueued_at=timezone.now(), enqueue_error="")

    def on_failure(reason: str) -> None:
        if queue.redis_configured():
            RenderRun.objects.filter(pk=run_id, status=RenderRun.Status.QUEUED).update(enqueue_error=reason[:500])
        else:
            RenderRun.objects.filter(pk=run_id, status__in=[RenderRun.Status.QUEUED, RenderRun.Status.RUNNING]).update(
                status=RenderRun.Status.FAILED, error=reason, error_kind=RenderRun.ErrorKind.ERROR,
                finished_at=timezone.now())

    return queue.enqueue(QUEUE_NAME, JOB_PATH, run_id, job_id=render_run_job_id(run_id), on_failure=on_failure,
                         on_success=on_success)


def render_run_request(*, environment_ids: Iterable[int] | None, user, reason: str, absorb: bool = True,
                       enqueue: bool = True, dry_run: bool = False, allow_deletions: bool = False,
                       approval=None) -> RunRequest:
    """The one way to start a render run: returns ``RunRequest(run, created)`` with the enqueue ``ticket``.

    ``environment_ids=None`` renders every environment (and prunes the folders of removed ones).
    ``absorb`` (default): mark the environments dirty and let a live queued run that covers them absorb the
    request (it notes who asked and why) instead of creating another; ``absorb=False`` always creates a run (the
    admin's "Render and commit", the command). Only a run that has not started
    can absorb: a running run may have read its snapshot already.
    ``enqueue=False`` creates the queued run only (the ``render_gitops`` command executes it in the foreground).
    ``allow_deletions`` lets the run commit more deletions than the deletion budget (an explicit confirmation).
    A receiver of ``runs.signals.render_requested`` may hold the request instead (a protected environment's change
    waits for approval): then ``run`` is None and ``held`` says why. ``approval``: the approval that releases it.
    """
    ids = environment_ids_check(environment_ids)
    reason = one_line(reason)
    with transaction.atomic():
        if not dry_run:
            for _receiver, held in render_requested.send(
                    sender=RenderRun, environment_ids=ids, user=user, reason=reason, absorb=absorb,
                    allow_deletions=allow_deletions, approval=approval):
                if held is not None:
                    return RunRequest(None, False, None, held=held)
        if absorb and not dry_run:
            environments_mark_dirty(environment_ids=ids)
            _request_lock()
            queued = (RenderRun.objects.select_for_update()
                      .filter(status=RenderRun.Status.QUEUED, dry_run=False, allow_deletions=False)
                      .order_by("created_at", "pk"))
            for run in queued:
                if not _covers(set(run.environments.values_list("pk", flat=True)), ids) or not _can_absorb(run):
                    continue
                if reason and reason not in run.reason:
                    run.reason = one_line(f"{run.reason}; {reason}" if run.reason else reason)
                run.log = append(run.log, stamp(f"Request absorbed from {username(user)}: {reason or 'no reason'}"))
                run.save(update_fields=["reason", "log"])
                return RunRequest(run, False, None)
        run = RenderRun.objects.create(
            triggered_by=user if user is not None and user.is_authenticated else None,
            reason=reason, dry_run=dry_run, allow_deletions=allow_deletions, status=RenderRun.Status.QUEUED,
        )
        if ids:
            run.environments.set(ids)
        ticket = None
        if enqueue:
            _mark_pending(run.pk)
            ticket = render_run_enqueue(run=run)
        return RunRequest(run, True, ticket)


def render_auto_request(*, environment_ids: Iterable[int] | None, user, reason: str) -> RunRequest | None:
    """After a change: mark the environments dirty always; request a run only when GITOPS_AUTO_RENDER is on."""
    if not getattr(settings, "GITOPS_AUTO_RENDER", True):
        ids = environment_check_or_none(environment_ids)
        environments_mark_dirty(environment_ids=ids)
        # No run, but a change that needs approval is recorded as waiting for it (runs.signals).
        for _receiver, held in render_requested.send(sender=RenderRun, environment_ids=ids, user=user,
                                                     reason=one_line(reason), absorb=True, allow_deletions=False,
                                                     approval=None):
            if held is not None:
                return RunRequest(None, False, None, held=held)
        return None
    return render_run_request(environment_ids=environment_ids, user=user, reason=reason, absorb=True)


def environment_check_or_none(environment_ids: Iterable[int] | None) -> list[int] | None:
    return None if environment_ids is None else sorted({int(pk) for pk in environment_ids})
