"""Writes of the snapshots app: the inventory sync, the backup audit run, and recording a hibernation's set.

Sync: EBS snapshots (EC2 DescribeSnapshots) and the cluster's VolumeSnapshots/VolumeSnapshotContents are read
(each source retried with exponential backoff), joined on the EBS snapshot id (``snapshotHandle``), matched to
projects, and upserted in one statement. A source that still fails is recorded on ``SnapshotSource`` and leaves
the fields it owns as they were (the page shows the error and the age of the last good data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clients.backup_objects import newest_object, put_object
from clients.ebs_snapshots import AwsSourceError, EbsSnapshot, describe_snapshots
from clients.git_remote import GitRemoteError, redact_url, remote_head
from clients.kubernetes import ClusterError
from clients.volume_snapshots import (
    ClusterSnapshots,
    VolumeSnapshotContentInfo,
    VolumeSnapshotInfo,
    list_volume_snapshots,
)
from deployments.git import gitops_head
from deployments.models import Environment
from jobs.models import JobRun
from jobs.progress import Recorder
from jobs.queue import enqueue
from projects.models import Project
from snapshots import audit, rules
from snapshots.models import AuditFinding, AuditReport, Snapshot, SnapshotSource, SnapshotSyncRun
from snapshots.reports import finding_rows, report_csv, report_json
from snapshots.selectors import audit_inputs

logger = logging.getLogger(__name__)
T = TypeVar("T")

EBS_DRIVER = "ebs.csi.aws.com"
# Fields each source owns; a failed source leaves its fields as they were.
AWS_FIELDS = ("ebs_snapshot_id", "volume_id", "ebs_state", "ebs_state_message", "size_gib", "encrypted")
CLUSTER_FIELDS = ("volume_snapshot_name", "volume_snapshot_content_name", "ready_to_use", "cluster_error",
                  "snapshot_type")
UPSERT_FIELDS = ("project", "project_ref", "ebs_snapshot_id", "volume_id", "namespace", "volume_name",
                 "volume_snapshot_name", "volume_snapshot_content_name", "snapshot_type", "state", "ebs_state",
                 "ebs_state_message", "ready_to_use", "cluster_error", "size_gib", "started_at", "ready_at",
                 "encrypted", "monthly_cost", "seen_in_aws", "seen_in_cluster", "last_seen_at", "gone_at")


def price_per_gb_month() -> Decimal:
    return Decimal(str(settings.SNAPSHOT_PRICE_PER_GB_MONTH))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, AwsSourceError):
        return exc.kind in ("throttled", "unreachable", "error")
    if isinstance(exc, ClusterError):
        return exc.status is None or exc.status >= 429
    return False


def with_backoff(call: Callable[[], T], *, what: str, log: Callable[[str], None] | None = None,
                 counter: list[int] | None = None) -> T:
    """``call()``, retried ``SNAPSHOT_SOURCE_RETRIES`` times on throttling, unreachable endpoints and server errors,
    waiting ``SNAPSHOT_SOURCE_BACKOFF_SECONDS × 2^attempt`` between tries. Refused or expired credentials are not
    retried. Raises the last AwsSourceError / ClusterError."""
    retries = max(0, int(settings.SNAPSHOT_SOURCE_RETRIES))
    for attempt in range(retries + 1):
        if counter is not None:
            counter[0] += 1
        try:
            return call()
        except (AwsSourceError, ClusterError) as exc:
            if attempt >= retries or not _retryable(exc):
                raise
            pause = float(settings.SNAPSHOT_SOURCE_BACKOFF_SECONDS) * (2 ** attempt)
            if log is not None:
                log(f"{what}: {exc}; retry {attempt + 1}/{retries} in {pause:.1f} s")
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class EnvironmentSyncResult:
    """What one environment's sync saw. ``errors``: {source kind: one line} for the sources that failed."""

    environment: str
    total: int = 0
    new: int = 0
    gone: int = 0
    orphans: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    error_kinds: dict[str, str] = field(default_factory=dict)  # source kind -> throttled | credentials | ...
    attempts: int = 0


def _source_done(environment: Environment, kind: str, *, now: datetime, count: int = 0,
                 error: Exception | None = None) -> None:
    values = {"last_attempt_at": now}
    if error is None:
        values.update(last_success_at=now, last_error="", last_error_kind="", item_count=count)
    else:
        kind_text = getattr(error, "kind", "") or "error"
        values.update(last_error=str(error)[:500], last_error_kind=kind_text)
    SnapshotSource.objects.update_or_create(environment=environment, kind=kind, defaults=values)


def _cluster_records(data: ClusterSnapshots, ebs_ids: set[str]) -> dict[str, dict]:
    """Cluster view per key: VolumeSnapshots of project namespaces (or labelled with a project), and retained
    contents whose VolumeSnapshot is gone (a hibernated project's namespace was deleted)."""
    records: dict[str, dict] = {}

    def put(key: str, record: dict) -> None:
        # A restored project has a second VolumeSnapshot on the same handle: keep the one taken from a PVC.
        if key not in records or (record["volume_name"] and not records[key]["volume_name"]):
            records[key] = record

    for snap in data.snapshots:
        snap: VolumeSnapshotInfo
        project_ref = rules.project_id_from(snap.project_id, snap.namespace)
        if not project_ref and not (snap.snapshot_handle and snap.snapshot_handle in ebs_ids):
            continue  # not a project's snapshot
        content = snap.content
        key = snap.snapshot_handle or f"vs:{snap.namespace}/{snap.name}"
        put(key, {
            "project_ref": project_ref, "namespace": snap.namespace, "volume_name": snap.pvc_name,
            "volume_snapshot_name": snap.name, "volume_snapshot_content_name": snap.content_name,
            "snapshot_type": snap.snapshot_type[:32],
            "ready_to_use": snap.ready_to_use if snap.ready_to_use is not None else (
                content.ready_to_use if content else None),
            "cluster_error": (snap.error_message or (content.error_message if content else ""))[:500],
            "started_at": snap.created_at or (content.created_at if content else None),
            "size_gib": rules.quantity_gib(content.restore_size_bytes if content and content.restore_size_bytes
                                           else snap.restore_size),
            "ebs_snapshot_id": snap.snapshot_handle,
        })
    for content in data.unbound_contents:
        content: VolumeSnapshotContentInfo
        project_ref = rules.project_id_from(content.ref_namespace)
        if content.driver != EBS_DRIVER or not content.snapshot_handle or (
                not project_ref and content.snapshot_handle not in ebs_ids):
            continue
        put(content.snapshot_handle, {
            "project_ref": project_ref, "namespace": content.ref_namespace, "volume_name": "",
            "volume_snapshot_name": content.ref_name, "volume_snapshot_content_name": content.name,
            "snapshot_type": "", "ready_to_use": content.ready_to_use, "cluster_error": content.error_message[:500],
            "started_at": content.created_at, "size_gib": rules.quantity_gib(content.restore_size_bytes),
            "ebs_snapshot_id": content.snapshot_handle,
        })
    return records


def _aws_records(snapshots: tuple[EbsSnapshot, ...], cluster_name: str) -> dict[str, dict]:
    records = {}
    for snap in snapshots:
        if snap.cluster_ids and cluster_name and cluster_name not in snap.cluster_ids:
            continue  # another cluster's snapshot in the same account and region
        records[snap.snapshot_id] = {
            "project_ref": rules.project_id_from(snap.project_id, snap.namespace), "namespace": snap.namespace,
            "volume_name": snap.pvc_name, "volume_snapshot_name": snap.volume_snapshot_name,
            "volume_snapshot_content_name": snap.content_name, "ebs_snapshot_id": snap.snapshot_id,
            "volume_id": snap.volume_id, "ebs_state": snap.state[:12], "ebs_state_message": snap.state_message[:500],
            "size_gib": snap.size_gib, "encrypted": snap.encrypted, "started_at": snap.start_time,
        }
    return records


def snapshot_sync_environment(*, environment: Environment, log: Callable[[str], None] | None = None,
                              now: datetime | None = None) -> EnvironmentSyncResult:
    """Refresh one environment's inventory from AWS and its cluster; returns counts and per-source errors.

    Never raises for a source failure: it is recorded on ``SnapshotSource`` and in the result.
    """
    now = now or timezone.now()
    result = EnvironmentSyncResult(environment=environment.name)
    counter = [0]
    ebs_data: tuple[EbsSnapshot, ...] | None = None
    cluster_data: ClusterSnapshots | None = None
    try:
        ebs_data = with_backoff(lambda: describe_snapshots(region=environment.aws_region or None,
                                                           tag_keys=settings.SNAPSHOT_EBS_TAG_KEYS),
                                what="AWS EBS", log=log, counter=counter)
        _source_done(environment, SnapshotSource.Kind.EBS, now=now, count=len(ebs_data))
    except AwsSourceError as exc:
        result.errors[SnapshotSource.Kind.EBS] = str(exc)
        result.error_kinds[SnapshotSource.Kind.EBS] = exc.kind
        _source_done(environment, SnapshotSource.Kind.EBS, now=now, error=exc)
    try:
        cluster_data = with_backoff(lambda: list_volume_snapshots(context=environment.kube_context),
                                    what="Cluster", log=log, counter=counter)
        _source_done(environment, SnapshotSource.Kind.CLUSTER, now=now, count=len(cluster_data.snapshots))
    except ClusterError as exc:
        result.errors[SnapshotSource.Kind.CLUSTER] = str(exc)
        result.error_kinds[SnapshotSource.Kind.CLUSTER] = exc.kind
        _source_done(environment, SnapshotSource.Kind.CLUSTER, now=now, error=exc)
    result.attempts = counter[0]

    aws = _aws_records(ebs_data, environment.eks_cluster_name) if ebs_data is not None else {}
    cluster = _cluster_records(cluster_data, set(aws)) if cluster_data is not None else {}
    _reconcile(environment, aws=aws if ebs_data is not None else None,
               cluster=cluster if cluster_data is not None else None, now=now, result=result)
    return result


def _reconcile(environment: Environment, *, aws: dict[str, dict] | None, cluster: dict[str, dict] | None,
               now: datetime, result: EnvironmentSyncResult) -> None:
    """Merge both views into the stored rows (None: that source failed, keep what it reported last)."""
    price = price_per_gb_month()
    existing = {row.key: row for row in Snapshot.objects.filter(environment=environment)}
    keys = set(existing) | set(aws or {}) | set(cluster or {})
    # A VolumeSnapshot first stored under vs:<ns>/<name> is the same snapshot once its handle is known.
    superseded = {f"vs:{rec['namespace']}/{rec['volume_snapshot_name']}" for key, rec in (cluster or {}).items()
                  if not key.startswith("vs:")}
    stale = [existing[key].pk for key in superseded if key in existing]
    keys -= superseded

    refs = {rec["project_ref"] for source in (aws or {}, cluster or {}) for rec in source.values()} | {
        row.project_ref for row in existing.values()}
    projects = {str(pk): (env_id, state) for pk, env_id, state in Project.objects.filter(
        id__in=[ref for ref in refs if ref]).values_list("id", "environment_id", "state")}

    rows = []
    for key in sorted(keys):
        old = existing.get(key)
        values = {name: getattr(old, name) for name in UPSERT_FIELDS if name != "project"} if old else {
            "project_ref": "", "ebs_snapshot_id": "", "volume_id": "", "namespace": "", "volume_name": "",
            "volume_snapshot_name": "", "volume_snapshot_content_name": "", "snapshot_type": "", "ebs_state": "",
            "ebs_state_message": "", "ready_to_use": None, "cluster_error": "", "size_gib": None, "started_at": None,
            "ready_at": None, "encrypted": None, "seen_in_aws": False, "seen_in_cluster": False,
            "last_seen_at": None, "gone_at": None}
        for source, flag, owned in ((cluster, "seen_in_cluster", CLUSTER_FIELDS), (aws, "seen_in_aws", AWS_FIELDS)):
            if source is None:
                continue
            record = source.get(key)
            values[flag] = record is not None
            if record is None:
                continue
            for name, value in record.items():
                # Owned fields always follow their source; shared ones (names, project) are filled when known.
                if name in owned or (value not in ("", None) and (name not in values or values[name] in ("", None)
                                                                   or source is aws)):
                    values[name] = value
        if not (values["seen_in_aws"] or values["seen_in_cluster"]):
            if old is not None and old.gone_at is None:
                values["gone_at"] = now
                result.gone += 1
        else:
            values["gone_at"] = None
            values["last_seen_at"] = now
            if old is None:
                result.new += 1
        values["state"] = rules.snapshot_state(
            ebs_state=values["ebs_state"], seen_in_aws=values["seen_in_aws"], ready_to_use=values["ready_to_use"],
            cluster_error=values["cluster_error"], seen_in_cluster=values["seen_in_cluster"])
        if values["state"] == rules.STATE_COMPLETED and values["ready_at"] is None:
            values["ready_at"] = now if old is not None else (values["started_at"] or now)
        values["monthly_cost"] = rules.monthly_cost(values["size_gib"], price)
        project = projects.get(values["project_ref"])
        if project is not None and project[0] != environment.pk:
            continue  # the snapshot of another environment's project
        if values["gone_at"] is None:
            result.total += 1
            if project is None or project[1] == Project.State.DELETED:
                result.orphans += 1
        rows.append(Snapshot(environment=environment, key=key, project_id=values["project_ref"] if project else None,
                             **values))
    with transaction.atomic():
        if stale:
            Snapshot.objects.filter(pk__in=stale).delete()
        if rows:
            Snapshot.objects.bulk_create(rows, update_conflicts=True, unique_fields=["environment", "key"],
                                         update_fields=list(UPSERT_FIELDS), batch_size=5000)


def snapshot_environments(environment: Environment | None = None) -> list[Environment]:
    """The environments whose snapshots are synced: EKS with EBS storage (``Environment.supports_snapshots``)."""
    if environment is not None:
        return [environment] if environment.supports_snapshots else []
    return [env for env in Environment.objects.filter(kind=Environment.Kind.EKS) if env.supports_snapshots]


def snapshot_sync(*, run: SnapshotSyncRun, callback=None) -> SnapshotSyncRun:
    """Execute a sync run: every environment of the run, each source retried with backoff.

    Outcome: SUCCEEDED when every source answered, FAILED (the error naming each failed source) when any did not:
    ``error_kind=credentials`` when a source refused the credentials (a person must act), else ``source``. The data
    of the sources that answered is stored either way.
    """
    recorder = Recorder(run, callback)
    run.status, run.started_at = JobRun.Status.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    environments = snapshot_environments(run.environment)
    if run.environment is not None and not environments:
        recorder.finish(status=JobRun.Status.FAILED, error_kind=JobRun.ErrorKind.VALIDATION,
                        error=f"{run.environment} has no EBS VolumeSnapshots (EKS with EBS storage only).")
        return run
    errors, refused = [], False
    totals = {"snapshots_total": 0, "snapshots_new": 0, "snapshots_gone": 0, "orphan_count": 0, "attempts": 0}
    for index, environment in enumerate(environments):
        recorder.step(100 * index // max(1, len(environments)), f"{environment}: reading AWS and the cluster")
        outcome = snapshot_sync_environment(environment=environment, log=recorder.log)
        for name, value in (("snapshots_total", outcome.total), ("snapshots_new", outcome.new),
                            ("snapshots_gone", outcome.gone), ("orphan_count", outcome.orphans),
                            ("attempts", outcome.attempts)):
            totals[name] += value
        recorder.log(f"{environment}: {outcome.total} snapshots ({outcome.new} new, {outcome.gone} gone, "
                     f"{outcome.orphans} orphans)")
        errors += [f"{environment} {kind}: {text}" for kind, text in sorted(outcome.errors.items())]
        refused = refused or "credentials" in outcome.error_kinds.values()
    if not environments:
        recorder.log("No EKS environment with EBS storage: nothing to sync.")
    if errors:
        kind = JobRun.ErrorKind.CREDENTIALS if refused else JobRun.ErrorKind.SOURCE
        recorder.finish(status=JobRun.Status.FAILED, error_kind=kind, error="\n".join(errors), **totals)
    else:
        recorder.finish(status=JobRun.Status.SUCCEEDED, **totals)
    return run


def snapshot_sync_request(*, environment: Environment | None = None, user=None, reason: str = "") -> SnapshotSyncRun:
    """Create a queued sync run and enqueue it (inline without REDIS_URL) after the transaction commits."""
    run = SnapshotSyncRun.objects.create(environment=environment, triggered_by=user, reason=reason[:500])

    def failed(reason_text: str) -> None:
        SnapshotSyncRun.objects.filter(pk=run.pk).update(enqueue_error=reason_text[:500])

    enqueue("default", "snapshots.tasks.snapshot_sync_job", run.pk, job_id=f"snapshot-sync-{run.pk}",
            on_failure=failed)
    return run


def snapshot_record(*, project: Project, volume_name: str, volume_snapshot_name: str, ebs_snapshot_id: str,
                    ready_at: datetime, content_name: str = "", size_gib: int | None = None,
                    snapshot_type: str = "hibernation") -> Snapshot:
    """Record one volume's snapshot of a hibernation as the cluster reported it ready (the hibernation job calls
    this per volume with the bound VolumeSnapshotContent's ``snapshotHandle``). Idempotent per EBS snapshot id;
    the next sync fills in what AWS knows (size, encryption)."""
    values = {"project": project, "project_ref": str(project.pk), "ebs_snapshot_id": ebs_snapshot_id,
              "namespace": project.namespace, "volume_name": volume_name, "volume_snapshot_name": volume_snapshot_name,
              "volume_snapshot_content_name": content_name, "snapshot_type": snapshot_type, "ready_to_use": True,
              "seen_in_cluster": True, "state": Snapshot.State.COMPLETED, "started_at": ready_at,
              "ready_at": ready_at, "last_seen_at": timezone.now(), "gone_at": None}
    if size_gib is not None:
        values.update(size_gib=size_gib, monthly_cost=rules.monthly_cost(size_gib, price_per_gb_month()))
    snapshot, _ = Snapshot.objects.update_or_create(environment=project.environment, key=ebs_snapshot_id,
                                                    defaults=values)
    return snapshot


# --- backup audit ---------------------------------------------------------------------------------
def _database_backup_finding(now: datetime, data_sources: dict) -> audit.Finding:
    """Newest object under BACKUP_AUDIT_DB_BUCKET/PREFIX younger than BACKUP_AUDIT_DB_MAX_AGE_HOURS (the guide's
    backup script uploads one per run). Not configured or S3 failing: UNKNOWN."""
    bucket, prefix = settings.BACKUP_AUDIT_DB_BUCKET, settings.BACKUP_AUDIT_DB_PREFIX
    limit = timedelta(hours=settings.BACKUP_AUDIT_DB_MAX_AGE_HOURS)
    resource = f"s3://{bucket}/{prefix}" if bucket else "(not configured)"

    def finding(result: str, detail: str) -> audit.Finding:
        return audit.Finding(control="database-backup-recent", scope="portal", environment_name="", project_id="",
                             resource=resource, result=result, detail=detail)

    if not bucket:
        data_sources["database-backup"] = {"fetched_at": None, "error": "BACKUP_AUDIT_DB_BUCKET is not set"}
        return finding(audit.UNKNOWN, "no backup bucket configured (BACKUP_AUDIT_DB_BUCKET)")
    try:
        newest = with_backoff(lambda: newest_object(bucket=bucket, prefix=prefix), what="S3")
    except AwsSourceError as exc:
        data_sources["database-backup"] = {"fetched_at": None, "error": str(exc)}
        return finding(audit.UNKNOWN, str(exc))
    data_sources["database-backup"] = {"fetched_at": now.isoformat(), "error": ""}
    if newest is None:
        return finding(audit.NON_COMPLIANT, "no backup object under the prefix")
    age = now - newest.last_modified
    detail = (f"newest {newest.key} is {age.total_seconds() / 3600:.1f} h old "
              f"(limit {limit.total_seconds() / 3600:.0f} h)")
    return finding(audit.NON_COMPLIANT if age > limit else audit.COMPLIANT, detail)


def _gitops_finding(now: datetime, data_sources: dict) -> audit.Finding:
    """``git ls-remote`` of GITOPS_REMOTE_URL's branch equals the working copy's head (what the portal last pushed).

    No remote configured or nothing committed yet: UNKNOWN. Unreachable, missing branch or another commit:
    NON_COMPLIANT (reachability is what this control checks)."""
    url, branch = settings.GITOPS_REMOTE_URL, settings.GITOPS_BRANCH
    resource = f"{redact_url(url)}#{branch}" if url else "(no remote)"

    def finding(result: str, detail: str) -> audit.Finding:
        return audit.Finding(control="gitops-remote-in-sync", scope="portal", environment_name="", project_id="",
                             resource=resource, result=result, detail=detail)

    if not url:
        data_sources["gitops-remote"] = {"fetched_at": None, "error": "GITOPS_REMOTE_URL is not set"}
        return finding(audit.UNKNOWN, "no GitOps remote configured (GITOPS_REMOTE_URL)")
    try:
        local = gitops_head()
    except Exception as exc:  # noqa: BLE001 - a broken working copy means we cannot tell
        data_sources["gitops-remote"] = {"fetched_at": None, "error": f"working copy: {type(exc).__name__}"}
        return finding(audit.UNKNOWN, f"the working copy cannot be read ({type(exc).__name__})")
    try:
        remote = remote_head(url=url, branch=branch)
    except GitRemoteError as exc:
        data_sources["gitops-remote"] = {"fetched_at": None, "error": str(exc)}
        return finding(audit.NON_COMPLIANT, f"remote unreachable: {exc}")
    data_sources["gitops-remote"] = {"fetched_at": now.isoformat(), "error": ""}
    if local is None:
        return finding(audit.UNKNOWN, "the portal has not committed anything yet")
    if remote is None:
        return finding(audit.NON_COMPLIANT, f"branch {branch} does not exist on the remote")
    if remote != local:
        return finding(audit.NON_COMPLIANT, f"remote at {remote[:12]}, the portal last pushed {local[:12]}")
    return finding(audit.COMPLIANT, f"remote and portal at {local[:12]}")


def audit_run(*, report: AuditReport, sync: bool = True, now: datetime | None = None,
              callback=None) -> AuditReport:
    """Execute an audit: refresh the inventory (``sync``), check the portal's own backups, evaluate every control
    (snapshots.audit), store the findings, upload CSV and JSON when BACKUP_AUDIT_REPORT_BUCKET is set.

    Data sources that fail make their controls UNKNOWN and the run "succeeded with warnings"; an unexpected error
    fails the run (``error_kind=error``). Queries: a fixed number whatever the number of projects (sync aside).
    """
    recorder = Recorder(report, callback)
    report.status, report.started_at = JobRun.Status.RUNNING, timezone.now()
    report.save(update_fields=["status", "started_at"])
    try:
        if sync:
            environments = snapshot_environments()
            for index, environment in enumerate(environments):
                recorder.step(60 * index // max(1, len(environments)), f"{environment}: refreshing the inventory")
                outcome = snapshot_sync_environment(environment=environment, log=recorder.log)
                for kind, text in sorted(outcome.errors.items()):
                    recorder.warn(f"{environment} {kind}: {text}")
        now = now or timezone.now()
        data_sources: dict[str, dict] = {}
        recorder.step(60, "Checking the database backup and the GitOps remote")
        portal = [_database_backup_finding(now, data_sources), _gitops_finding(now, data_sources)]
        for name in ("database-backup", "gitops-remote"):
            if data_sources[name]["error"]:
                recorder.warn(f"{name}: {data_sources[name]['error']}")
        recorder.step(70, "Evaluating the controls")
        inputs = audit_inputs()
        names = {env.id: env.name for env in inputs.environments}
        for source in inputs.sources:
            data_sources[f"{names.get(source.environment_id, source.environment_id)}/{source.kind}"] = {
                "fetched_at": source.last_success_at.isoformat() if source.last_success_at else None,
                "error": source.last_error}
        findings = audit.evaluate(
            inputs, now=now, portal_findings=portal,
            max_snapshot_age=timedelta(hours=settings.BACKUP_AUDIT_MAX_SNAPSHOT_AGE_HOURS),
            max_data_age=timedelta(hours=settings.BACKUP_AUDIT_MAX_DATA_AGE_HOURS))
        counts = {result: 0 for result in (audit.COMPLIANT, audit.NON_COMPLIANT, audit.UNKNOWN)}
        for finding in findings:
            counts[finding.result] += 1
        with transaction.atomic():
            AuditFinding.objects.bulk_create([
                AuditFinding(report=report, control=f.control, scope=f.scope, environment_name=f.environment_name,
                             project_id=f.project_id or None, resource=f.resource[:300], result=f.result,
                             detail=f.detail[:1000], monthly_cost=f.monthly_cost) for f in findings])
            report.evaluated_at, report.data_sources = now, data_sources
            report.compliant_count = counts[audit.COMPLIANT]
            report.non_compliant_count = counts[audit.NON_COMPLIANT]
            report.unknown_count = counts[audit.UNKNOWN]
            report.save(update_fields=["evaluated_at", "data_sources", "compliant_count", "non_compliant_count",
                                       "unknown_count"])
        recorder.step(90, f"{len(findings)} findings: {counts[audit.COMPLIANT]} compliant, "
                          f"{counts[audit.NON_COMPLIANT]} non-compliant, {counts[audit.UNKNOWN]} unknown")
        if settings.BACKUP_AUDIT_REPORT_BUCKET:
            _upload(report, recorder)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, which is what the admin shows
        logger.exception("Backup audit %s failed", report.pk)
        recorder.finish(status=JobRun.Status.FAILED, error_kind=JobRun.ErrorKind.ERROR,
                        error=f"{type(exc).__name__}: {exc}"[:2000])
        return report
    recorder.finish(status=JobRun.Status.SUCCEEDED)
    return report


def _upload(report: AuditReport, recorder: Recorder) -> None:
    """CSV and JSON to s3://BACKUP_AUDIT_REPORT_BUCKET/<prefix><date>/<uuid>.{csv,json}; failure is a warning."""
    bucket = settings.BACKUP_AUDIT_REPORT_BUCKET
    base = f"{settings.BACKUP_AUDIT_REPORT_PREFIX}{report.evaluated_at:%Y-%m-%d}/{report.uuid}"
    rows = finding_rows(report)
    try:
        for suffix, body, content_type in (("csv", report_csv(report, rows), "text/csv"),
                                           ("json", report_json(report, rows), "application/json")):
            with_backoff(lambda b=body, s=suffix, c=content_type: put_object(
                bucket=bucket, key=f"{base}.{s}", body=b.encode(), content_type=c), what="S3")
    except AwsSourceError as exc:
        recorder.warn(f"Report upload to s3://{bucket} failed: {exc}")
        return
    report.s3_uri = f"s3://{bucket}/{base}.csv"
    report.save(update_fields=["s3_uri"])
    recorder.log(f"Uploaded to s3://{bucket}/{base}.csv and .json")


def audit_request(*, user=None, reason: str = "") -> AuditReport:
    """Create a queued audit report and enqueue its run (inline without REDIS_URL) after the commit."""
    report = AuditReport.objects.create(triggered_by=user, reason=reason[:500])

    def failed(reason_text: str) -> None:
        AuditReport.objects.filter(pk=report.pk).update(enqueue_error=reason_text[:500])

    enqueue("default", "snapshots.tasks.audit_run_job", report.pk, job_id=f"backup-audit-{report.pk}",
            on_failure=failed)
    return report
