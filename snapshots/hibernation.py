"""The hibernation job: snapshots first, removal only once every snapshot is ready (DOMAIN.md "Hibernation and
snapshots"; issue 11 item 1).

``hibernation_execute`` runs a queued ``projects.models.HibernationRun`` (``projects.services.project_hibernate``
created it and set the project Hibernating):

a. render and commit the project's environment: a Hibernating project is still rendered, plus a VolumeSnapshot of
   every PVC (``domain.hibernation_snapshot_name``);
b. poll the cluster (``clients.volume_snapshots.read_volume_snapshot`` through ``Environment.kube_context``) with
   backoff, at most ``run.timeout_seconds``, until each VolumeSnapshot is ``readyToUse`` and its bound content
   names the EBS snapshot (``status.snapshotHandle``); record each in the inventory (``snapshot_record``);
c. only then set the project Hibernated and commit the removal of its folder.

A snapshot in error, a timeout, an unreachable cluster or a failed render stops at that step: the project is
Active again with ``hibernation_error`` set, its folder (namespace and volumes) stays in git, nothing is deleted.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from clients.kubernetes import ClusterError
from clients.volume_snapshots import read_volume_snapshot
from deployments import domain, names, runs
from deployments.models import RenderRun
from jobs.models import JobRun
from jobs.progress import Recorder
from jobs.queue import enqueue
from projects.models import Container, HibernationRun, HibernationVolume, Project, VolumeRestore
from snapshots.services import snapshot_record

RENDER_OK = RenderRun.SUCCESSFUL


class HibernationFailed(Exception):
    """A step failed; ``kind`` is the JobRun error kind."""

    def __init__(self, message: str, kind: str = JobRun.ErrorKind.ERROR) -> None:
        super().__init__(message)
        self.kind = kind


def project_volume_names(project: Project) -> list[str]:
    """Every PVC of the project: ``project-storage`` and ``svc-{dir}-data`` per service container, sorted (the
    same list the renderer snapshots: ``deployments.rendering.projects.project_volumes``)."""
    directories = Container.objects.filter(project=project, role__in=Container.SERVICE_ROLES).values_list(
        "directory", flat=True)
    return sorted([domain.PROJECT_VOLUME, *(names.service_data_claim_name(d) for d in directories)])


def _render(run: HibernationRun, reason: str) -> RenderRun:
    request = runs.render_run_request(environment_ids=[run.project.environment_id], user=run.triggered_by,
                                      reason=reason, absorb=False, enqueue=False)
    return runs.render_run_execute(run_id=request.run.pk)


def hibernation_execute(*, run_id: int) -> HibernationRun:
    """Execute a queued hibernation run (module docstring). Returns the run in its final state; a failure is
    recorded on the run and on ``Project.hibernation_error``, never raised. A run no longer queued is returned
    untouched."""
    # Claim the run in one UPDATE: of two jobs for one run (a requeue, a command), only one starts it.
    claimed = HibernationRun.objects.filter(pk=run_id, status=JobRun.Status.QUEUED).update(
        status=JobRun.Status.RUNNING, started_at=timezone.now())
    run = HibernationRun.objects.select_related("project__environment", "triggered_by").get(pk=run_id)
    if not claimed:
        return run
    recorder = Recorder(run)
    project = run.project
    try:
        if project.state != Project.State.HIBERNATING or project.hibernation_stamp != run.stamp:
            raise HibernationFailed(f"{project} is {project.get_state_display().lower()}, not hibernating with "
                                    f"stamp {run.stamp}; nothing was done.", JobRun.ErrorKind.VALIDATION)
        volumes = [HibernationVolume.objects.create(
            run=run, volume_name=volume,
            volume_snapshot_name=domain.hibernation_snapshot_name(str(project.pk), run.stamp, volume))
            for volume in project_volume_names(project)]
        recorder.step(5, f"Committing a VolumeSnapshot of {len(volumes)} volume(s): "
                         + ", ".join(v.volume_snapshot_name for v in volumes))
        render = _render(run, f"Hibernate project {project}: snapshot every volume")
        HibernationRun.objects.filter(pk=run.pk).update(snapshot_render_run=render)
        if render.status not in RENDER_OK:
            raise HibernationFailed(f"The render that adds the VolumeSnapshots failed (run {render.pk}): "
                                    f"{render.error}", render.error_kind or JobRun.ErrorKind.ERROR)
        recorder.step(20, f"Render run {render.pk}: {render.get_status_display()}"
                          + (f", commit {render.commit_sha[:12]}" if render.commit_sha else ""))
        _wait_until_ready(run, project, volumes, recorder)
        for volume in volumes:
            snapshot_record(project=project, volume_name=volume.volume_name,
                            volume_snapshot_name=volume.volume_snapshot_name, ebs_snapshot_id=volume.snapshot_handle,
                            ready_at=volume.ready_at, content_name=volume.volume_snapshot_content_name)
    except HibernationFailed as exc:
        return _fail(run, project, recorder, str(exc), exc.kind)
    # Every volume is safe in an EBS snapshot: now the folder may go (the PVCs go with the namespace, so the
    # restore records of the previous wake go too).
    if not Project.objects.filter(pk=project.pk, state=Project.State.HIBERNATING,
                                  hibernation_stamp=run.stamp).update(state=Project.State.HIBERNATED,
                                                                      hibernation_error="",
                                                                      updated_at=timezone.now()):
        # Recovery gave this run up meanwhile (hibernations_recover): the project is active again; keep it.
        recorder.finish(status=JobRun.Status.FAILED, error_kind=JobRun.ErrorKind.ORPHANED,
                        error="The project is no longer hibernating with this run's stamp; its folder stays.")
        return run
    VolumeRestore.objects.filter(project=project).delete()
    recorder.step(85, "Every snapshot is ready; committing the removal of the project's folder.")
    prune = _render(run, f"Hibernate project {project}: every volume snapshotted, remove the folder")
    HibernationRun.objects.filter(pk=run.pk).update(prune_render_run=prune)
    run.prune_render_run = prune
    if prune.status not in RENDER_OK:
        recorder.warn(f"The snapshots are safe, but the render that removes the folder failed (run {prune.pk}): "
                      f"{prune.error} The next render removes it.")
    else:
        recorder.log(f"Render run {prune.pk}: {prune.get_status_display()}"
                     + (f", commit {prune.commit_sha[:12]}" if prune.commit_sha else ""))
    recorder.finish(status=JobRun.Status.SUCCEEDED)
    return run


def _wait_until_ready(run: HibernationRun, project: Project, volumes: list[HibernationVolume],
                      recorder: Recorder) -> None:
    """Poll until every VolumeSnapshot is ready with an EBS snapshot id; raise HibernationFailed on an error
    status or once ``run.timeout_seconds`` have passed. Waits POLL, 2×POLL, … up to POLL_MAX seconds between
    rounds (``HIBERNATION_POLL_SECONDS`` / ``HIBERNATION_POLL_MAX_SECONDS``)."""
    context = project.environment.kube_context
    deadline = time.monotonic() + run.timeout_seconds
    pause = float(settings.HIBERNATION_POLL_SECONDS)
    pending = {volume.volume_name: volume for volume in volumes}
    why: dict[str, str] = {}
    while True:
        for name, volume in list(pending.items()):
            try:
                info = read_volume_snapshot(context=context, namespace=project.namespace,
                                            name=volume.volume_snapshot_name)
            except ClusterError as exc:
                why[name] = str(exc)
                continue
            if info is None:
                why[name] = "not in the cluster yet (the GitOps tool has not synced it)"
            elif info.error_message:
                raise HibernationFailed(f"VolumeSnapshot {volume.volume_snapshot_name} ({name}) failed: "
                                        f"{info.error_message}", JobRun.ErrorKind.SOURCE)
            elif info.ready_to_use and info.snapshot_handle:
                volume.snapshot_handle = info.snapshot_handle
                volume.volume_snapshot_content_name = info.content_name
                volume.ready_at = timezone.now()
                volume.save(update_fields=["snapshot_handle", "volume_snapshot_content_name", "ready_at"])
                del pending[name]
                recorder.step(20 + 60 * (len(volumes) - len(pending)) // len(volumes),
                              f"{volume.volume_snapshot_name} is ready: {info.snapshot_handle}")
            else:
                why[name] = "not readyToUse yet"
        if not pending:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = "; ".join(f"{pending[name].volume_snapshot_name}: {why.get(name, 'no answer')}"
                               for name in sorted(pending))
            raise HibernationFailed(f"Timed out after {run.timeout_seconds} s waiting for the snapshots to be "
                                    f"ready ({detail}).", JobRun.ErrorKind.SOURCE)
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, float(settings.HIBERNATION_POLL_MAX_SECONDS))


def _fail(run: HibernationRun, project: Project, recorder: Recorder, message: str, kind: str) -> HibernationRun:
    """Keep everything: the project is Active again (its folder and volumes stay), marked with the reason."""
    if Project.objects.filter(pk=project.pk, state=Project.State.HIBERNATING, hibernation_stamp=run.stamp).update(
            state=Project.State.ACTIVE, hibernation_stamp="", hibernation_error=f"{message}"[:1000],
            updated_at=timezone.now()):
        recorder.log("Hibernation failed; the project stays active and nothing is deleted.")
        runs.render_auto_request(environment_ids=[project.environment_id], user=run.triggered_by,
                                 reason=f"Hibernation of {project} failed: the project stays active")
    recorder.finish(status=JobRun.Status.FAILED, error=message, error_kind=kind)
    return run


REQUEUE_LIMIT = 3


def _requeue(run: HibernationRun) -> None:
    def failed(reason: str) -> None:
        HibernationRun.objects.filter(pk=run.pk).update(enqueue_error=reason[:500])

    enqueue("gitops", "snapshots.tasks.hibernation_run_job", run.pk, job_id=f"hibernation-{run.pk}",
            on_failure=failed)


def hibernations_recover(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Scheduled (PORTAL_SCHEDULE ``hibernations-recover``): no project stays Hibernating forever.

    - a queued run whose hand-over to the queue failed (``enqueue_error``) is enqueued again, at most
      ``REQUEUE_LIMIT`` times, then failed (``enqueue``);
    - a running run older than its timeout plus ``HIBERNATION_STALE_SECONDS`` (its worker died) is failed
      (``orphaned``).

    A failed run leaves the project Active with the reason, its folder in git (as any failed hibernation).
    Returns ``{"requeued": [run ids], "failed": [run ids]}``.
    """
    now = now or timezone.now()
    result: dict[str, list[int]] = {"requeued": [], "failed": []}
    for run in HibernationRun.objects.filter(status=JobRun.Status.QUEUED).exclude(enqueue_error=""):
        if run.requeue_count < REQUEUE_LIMIT:
            HibernationRun.objects.filter(pk=run.pk).update(enqueue_error="", requeue_count=F("requeue_count") + 1)
            _requeue(run)
            result["requeued"].append(run.pk)
        elif HibernationRun.objects.filter(pk=run.pk, status=JobRun.Status.QUEUED).update(
                status=JobRun.Status.RUNNING, started_at=now):
            run.refresh_from_db()
            _fail(run, run.project, Recorder(run), f"Could not be queued after {REQUEUE_LIMIT} attempts: "
                  f"{run.enqueue_error}", JobRun.ErrorKind.ENQUEUE)
            result["failed"].append(run.pk)
    stale = float(settings.HIBERNATION_STALE_SECONDS)
    for run in HibernationRun.objects.filter(status=JobRun.Status.RUNNING).select_related("project"):
        if run.started_at and run.started_at + timedelta(seconds=run.timeout_seconds + stale) < now:
            _fail(run, run.project, Recorder(run), "The worker running this hibernation stopped before it ended.",
                  JobRun.ErrorKind.ORPHANED)
            result["failed"].append(run.pk)
    return result
