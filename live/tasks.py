"""RQ jobs: thin. Ids in, one service call."""

from live import services


def live_refresh_run_job(run_id: int) -> str:
    """Execute one live refresh run; the outcome is recorded on the LiveRefreshRun row."""
    return services.live_refresh_run_execute(run_id=run_id).status


def live_refresh_scheduled_job() -> str:
    """Scheduled: read every Kubernetes environment's cluster so the live view and diagnostics stay current."""
    run = services.live_refresh_run_create(reason="Scheduled live refresh")
    return services.live_refresh_run_execute(run_id=run.pk).status
