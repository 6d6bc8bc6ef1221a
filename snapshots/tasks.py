"""RQ jobs of the snapshots app: ids in, one service call."""

from __future__ import annotations

from snapshots.hibernation import hibernation_execute, hibernations_recover
from snapshots.models import AuditReport, SnapshotSyncRun
from snapshots.services import audit_run, snapshot_sync


def snapshot_sync_job(run_id: int) -> None:
    snapshot_sync(run=SnapshotSyncRun.objects.get(pk=run_id))


def snapshot_sync_scheduled_job() -> None:
    """Scheduled (PORTAL_SCHEDULE ``snapshots-sync``): one run over every EKS environment."""
    snapshot_sync(run=SnapshotSyncRun.objects.create(reason="Scheduled sync"))


def audit_run_job(report_id: int) -> None:
    audit_run(report=AuditReport.objects.get(pk=report_id))


def audit_scheduled_job() -> None:
    """Scheduled daily (PORTAL_SCHEDULE ``backup-audit``, cron)."""
    audit_run(report=AuditReport.objects.create(reason="Scheduled daily audit"))


def hibernation_run_job(run_id: int) -> None:
    """Queue ``gitops`` (projects.services.project_hibernate): one hibernation run."""
    hibernation_execute(run_id=run_id)


def hibernations_recover_job() -> None:
    """Scheduled (PORTAL_SCHEDULE ``hibernations-recover``)."""
    hibernations_recover()
