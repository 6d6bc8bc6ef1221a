"""Render runs, split by concern:

* ``request``  — the one way to start a run (``render_run_request``) and the environments' dirty flags;
* ``execute``  — the one way to execute it (``render_run_execute``): lock, secrets, snapshot, render, commit;
* ``recovery`` — what a scheduled job repairs after dead workers, lost jobs and queue outages;
* ``preview``  — what a render would commit now, without committing.

Progress and log lines go through ``jobs.progress.Recorder``; the run row is ``deployments.models.RenderRun``
(a ``jobs.models.JobRun``). The RQ job (``deployments.tasks.render_run_job``) is enqueued by its dotted path,
so this package never imports the tasks module.
"""

from deployments.runs.execute import render_run_execute
from deployments.runs.preview import environment_preview
from deployments.runs.recovery import ORPHANED_MESSAGE, REQUEUE_LIMIT, fail_orphans, render_runs_recover
from deployments.runs.request import (
    QUEUE_NAME,
    SYSTEM_USERNAME,
    RunRequest,
    environment_ids_check,
    environments_mark_dirty,
    render_auto_request,
    render_run_enqueue,
    render_run_job_id,
    render_run_request,
)

__all__ = [
    "ORPHANED_MESSAGE",
    "QUEUE_NAME",
    "REQUEUE_LIMIT",
    "SYSTEM_USERNAME",
    "RunRequest",
    "environment_ids_check",
    "environment_preview",
    "environments_mark_dirty",
    "fail_orphans",
    "render_auto_request",
    "render_run_enqueue",
    "render_run_execute",
    "render_run_job_id",
    "render_run_request",
    "render_runs_recover",
]
