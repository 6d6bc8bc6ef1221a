"""Executing a render run: ``render_run_execute``, the one entry point (RQ job, command, tests).

A run is a ``RenderRun`` row walked through:

    wait for the repository lock → running → deliver secrets (Secrets Manager / Sealed Secrets) → take the dirty
    flags → snapshot (selector) → units (renderer) → gitops_commit (git writer, validated on the changed paths)
    → succeeded / succeeded with warnings / no change / failed

Two rules keep concurrent workers from losing changes:

* **One run at a time.** The whole snapshot-to-commit sequence runs under the repository lock
  (deployments.locks). Without it an older snapshot could commit after a newer one and undo it. The lock dies
  with the worker's connection (or process), so a killed worker never blocks the next run.
* **Dirty flags are taken, not cleared afterwards.** A run sets ``needs_render = False`` on its environments
  *before* it reads the snapshot. A change committed earlier is in the snapshot; a change committed later sets the
  flag again and requests another run. A failed or orphaned run sets the flags back.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments.git import (
    GitOpsDeletionRefused,
    GitOpsInvariantError,
    GitOpsRemoteError,
    gitops_commit,
    gitops_preview,
)
from deployments.locks import RepositoryLockTimeout, repository_lock
from deployments.models import Environment, RenderRun
from deployments.rendering import snapshot_scopes, tree_units
from deployments.runs.recovery import fail_orphans
from deployments.runs.request import (
    HEARTBEAT_SECONDS,
    environments_mark_dirty,
    environments_take_dirty,
    one_line,
    username,
)
from deployments.runs.signals import render_run_committed, render_run_starting, render_run_trailers
from deployments.secrets.crypto import SecretUnreadable
from deployments.secrets.delivery import environment_secrets_deliver
from deployments.selectors import environments_snapshot
from deployments.validation import TreeValidationError, tree_validate_or_raise
from jobs.progress import ProgressCallback, Recorder, append_in_sql, stamp

logger = logging.getLogger(__name__)

RUN_LOCK_TIMEOUT = 1500


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
        run.log = (run.log + "\n" if run.log else "") + stamp(f"Started{f' (job {job_id})' if job_id else ''}.")
        run.save(update_fields=["status", "started_at", "progress", "log"])
    return run


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
    return one_line(summary, 100)


def _author(user) -> tuple[str, str]:
    if user is None:
        return "Tesslate GitOps portal", "system@portal.invalid"
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
        line = "Waiting for the render lock: another run is in progress."
        append_in_sql(RenderRun, run_id, line)
        if progress is not None:
            progress(run.progress, line)

    last_beat = 0.0

    def heartbeat() -> None:
        # A run that waits for the lock is alive: it may absorb requests (deployments.runs.request._can_absorb).
        nonlocal last_beat
        if time.monotonic() - last_beat >= HEARTBEAT_SECONDS / 3:
            last_beat = time.monotonic()
            RenderRun.objects.filter(pk=run_id).update(waiting_heartbeat_at=timezone.now())

    heartbeat()
    try:
        with repository_lock(float(getattr(settings, "GITOPS_RUN_LOCK_TIMEOUT", RUN_LOCK_TIMEOUT)), on_wait=on_wait,
                             while_waiting=heartbeat):
            started = _start(run_id)
            if started is None:  # another job for the same run got here first
                return RenderRun.objects.get(pk=run_id)
            recorder = Recorder(started, progress)
            orphans = fail_orphans(exclude_id=run_id)
            if orphans:
                recorder.log(f"Marked orphaned run(s) {', '.join(f'#{pk}' for pk in orphans)} failed.")
            _execute(recorder, full=full)
            return recorder.run
    except RepositoryLockTimeout as exc:
        RenderRun.objects.filter(pk=run_id, status=RenderRun.Status.QUEUED).update(
            status=RenderRun.Status.FAILED, error=f"{exc} (the render lock)",
            error_kind=RenderRun.ErrorKind.LOCK_TIMEOUT, finished_at=timezone.now())
        run = RenderRun.objects.get(pk=run_id)
        if not run.dry_run:
            environments_mark_dirty(environment_ids=list(run.environments.values_list("pk", flat=True)) or None)
        return run


def _execute(recorder: Recorder, *, full: bool) -> None:
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
                         f"{' (full re-render)' if full else ''}, requested by {username(run.triggered_by)}.")
        if not run.dry_run:
            refusals = [answer for _receiver, answer in render_run_starting.send(sender=RenderRun, run=run) if answer]
            if refusals:
                recorder.log(f"Refused before rendering: {'; '.join(refusals)}")
                _fail(recorder, env_ids, error="; ".join(refusals), kind=RenderRun.ErrorKind.REFUSED)
                return
            for environment in environments:
                for line, warning in environment_secrets_deliver(environment=environment):
                    recorder.warn(line) if warning else recorder.log(line)
            lap("secrets")
            # Taken before the snapshot: anything committed from now on sets the flag again (module docstring).
            environments_take_dirty(environment_ids=env_ids)
        snapshot_at = timezone.now()
        recorder.step(8, "Reading the snapshot.")
        # Lazy: only the projects whose render token moved are read in full (by the writer, as it renders them).
        snapshot = environments_snapshot(environment_ids=env_ids, lazy=not run.dry_run)
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

        def validate(root: Path, paths: list[str], read_base, unchanged_since: str | None = None) -> None:
            # read_base(path) gives the file at the repository's head: the change-safety check compares with it;
            # unchanged_since names the mirror's state before the paths were written (the gate's caches trust it).
            tree_validate_or_raise(root=root, paths=paths, read_base=read_base, unchanged_since=unchanged_since,
                                   progress=lambda message: recorder.log(message))

        author_name, author_email = _author(run.triggered_by)
        trailers = {"Portal-Run": str(run.pk), "Changed-By": username(run.triggered_by)}
        for _receiver, extra in render_run_trailers.send(sender=RenderRun, run=run):
            trailers.update({key: one_line(value) for key, value in (extra or {}).items()})
        trailers.update({"Environments": label, "Reason": one_line(run.reason) or "-"})
        extra = {key: value for key, value in trailers.items() if key not in ("Portal-Run", "Environments", "Reason")}
        recorder.log("Commit trailers: " + "; ".join(f"{key}: {value}" for key, value in extra.items()))
        result = gitops_commit(
            units=units, scopes=scopes, message=_commit_message(run, label), trailers=trailers,
            author_name=author_name, author_email=author_email,
            validate=validate, progress=recorder.sub(10, 98), full=full,
            allow_deletions=run.allow_deletions,
        )
        lap("commit")
        counts = dict(files_added=len(result.added), files_changed=len(result.changed),
                      files_deleted=len(result.deleted))
        if result.sha:
            pushed = f"pushed after {result.push_attempts} attempt(s)" if result.pushed else "not pushed (no remote)"
            recorder.log(f"Committed {result.sha[:12]}: {counts['files_added']} added, {counts['files_changed']} "
                         f"changed, {counts['files_deleted']} deleted; {pushed}. Timings: {', '.join(timings)}.")
            recorder.finish(status=RenderRun.Status.SUCCEEDED, commit_sha=result.sha, diff=result.diff, **counts)
        else:
            recorder.log(f"No change: the repository already matches. Timings: {', '.join(timings)}.")
            recorder.finish(status=RenderRun.Status.NO_CHANGE, **counts)
        for receiver, error in render_run_committed.send_robust(sender=RenderRun, run=recorder.run,
                                                                 snapshot_at=snapshot_at):
            if isinstance(error, Exception):  # the commit stands; a receiver's failure is only logged
                logger.error("After run %s: %s failed: %r", run.pk, receiver, error)
    except TreeValidationError as exc:
        problems = list(exc.problems)
        first = problems[0] if problems else None
        recorder.log(f"Validation failed with {len(problems)} problem(s); nothing committed.")
        for problem in problems[:50]:
            recorder.log(f"  {problem.file}: [{problem.rule}] {problem.message}")
        _fail(recorder, env_ids, error=f"Validation failed; nothing was committed.\n{_problems_text(problems)}",
              kind=RenderRun.ErrorKind.VALIDATION, error_file=first.file if first else "",
              error_rule=first.rule if first else "")
    except (GitOpsInvariantError, GitOpsDeletionRefused) as exc:
        recorder.log(f"Refused: {type(exc).__name__}; nothing was pushed.")
        _fail(recorder, env_ids, error=str(exc), kind=RenderRun.ErrorKind.REFUSED)
    except GitOpsRemoteError as exc:  # a push refused or failed, or the fetch before rendering failed
        recorder.log("The remote refused or could not be reached; nothing was pushed.")
        _fail(recorder, env_ids, error=str(exc), kind=RenderRun.ErrorKind.REMOTE)
    except SecretUnreadable as exc:
        _fail(recorder, env_ids, error=str(exc), kind=RenderRun.ErrorKind.ERROR)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the run; the job itself must not crash
        logger.exception("Render run %s failed", run.pk)
        recorder.log(f"Failed: {type(exc).__name__}.")
        _fail(recorder, env_ids, error=f"{type(exc).__name__}: {exc}", kind=RenderRun.ErrorKind.ERROR)


def _fail(recorder: Recorder, env_ids: list[int] | None, *, error: str, kind: str, error_file: str = "",
          error_rule: str = "") -> None:
    if not recorder.run.dry_run:
        # The flags were taken at the start; give them back so the change is rendered by a later run.
        environments_mark_dirty(environment_ids=env_ids)
    recorder.finish(status=RenderRun.Status.FAILED, error=error, error_kind=kind, error_file=error_file[:1000],
                    error_rule=error_rule[:100])
