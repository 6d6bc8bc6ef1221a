"""RQ jobs: thin. Ids in, one service call."""

from costs import services


def cost_sync_run_job(run_id: int) -> str:
    """Execute one cost sync run; the outcome is recorded on the CostSyncRun row."""
    return services.cost_sync_run_execute(run_id=run_id).status


def cost_sync_scheduled_job() -> str:
    """Scheduled daily: sync every EKS environment (those fetched today already cost nothing)."""
    run = services.cost_sync_run_create(reason="Scheduled daily cost sync")
    return services.cost_sync_run_execute(run_id=run.pk).status
