"""The snapshot inventory (EBS snapshots joined with VolumeSnapshots) and backup audit reports."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q

from deployments.models import Environment
from jobs.models import JobRun
from projects.models import Project


class SnapshotQuerySet(models.QuerySet):
    def current(self) -> SnapshotQuerySet:
        """Snapshots still reported by AWS or the cluster (``gone_at`` unset)."""
        return self.filter(gone_at__isnull=True)

    def orphans(self) -> SnapshotQuerySet:
        """No project, or a deleted one."""
        return self.filter(Q(project__isnull=True) | Q(project__state=Project.State.DELETED))


class Snapshot(models.Model):
    """One volume snapshot of an environment: an EBS snapshot, its VolumeSnapshot(Content), or both.

    ``key`` identifies it within the environment: the EBS snapshot id (``snap-…``) once known, else
    ``vs:<namespace>/<VolumeSnapshot name>`` while the cluster has not reported a handle yet. A hibernation
    records its set as one row per volume (project, ``volume_name``, ``volume_snapshot_name``,
    ``ebs_snapshot_id``, ``ready_at``).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        ERROR = "error", "Error"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="snapshots")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots",
                                help_text="Matched by the project-id tag or label, or the namespace proj-<uuid>.")
    project_ref = models.CharField(max_length=36, blank=True,
                                   help_text="Project id as the snapshot names it (kept when no project matches).")
    key = models.CharField(max_length=300)
    ebs_snapshot_id = models.CharField(max_length=32, blank=True, db_index=True)
    volume_id = models.CharField(max_length=32, blank=True)
    namespace = models.CharField(max_length=63, blank=True)
    volume_name = models.CharField(max_length=253, blank=True, help_text="The PVC (project-storage, svc-*-data).")
    volume_snapshot_name = models.CharField(max_length=253, blank=True)
    volume_snapshot_content_name = models.CharField(max_length=253, blank=True)
    snapshot_type = models.CharField(max_length=32, blank=True, help_text="Label snapshot-type (hibernation, manual).")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    ebs_state = models.CharField(max_length=12, blank=True, help_text="EC2 State (pending, completed, error, …).")
    ebs_state_message = models.CharField(max_length=500, blank=True)
    ready_to_use = models.BooleanField(null=True, help_text="VolumeSnapshot status.readyToUse; empty: not reported.")
    cluster_error = models.CharField(max_length=500, blank=True, help_text="VolumeSnapshot(Content) status.error.")
    size_gib = models.PositiveIntegerField(null=True, blank=True, help_text="Source volume size (GiB).")
    started_at = models.DateTimeField(null=True, blank=True, help_text="EBS StartTime or VolumeSnapshot creationTime.")
    ready_at = models.DateTimeField(null=True, blank=True, help_text="First seen completed / ready to use.")
    encrypted = models.BooleanField(null=True, help_text="EBS Encrypted; empty when AWS has not reported it.")
    monthly_cost = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("0"),
                                       help_text="size_gib × SNAPSHOT_PRICE_PER_GB_MONTH (USD, an upper bound: EBS "
                                                 "bills the changed blocks only).")
    seen_in_aws = models.BooleanField(default=False)
    seen_in_cluster = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    gone_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                   help_text="No longer reported by any source that answered.")

    objects = SnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["environment", "-started_at", "key"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "key"], name="snapshot_unique_key_per_environment"),
        ]
        indexes = [models.Index(fields=["project", "started_at"], name="snapshot_project_started")]

    def __str__(self) -> str:
        return self.ebs_snapshot_id or self.key

    @property
    def error_message(self) -> str:
        return self.cluster_error or (self.ebs_state_message if self.ebs_state == "error" else "")

    @property
    def is_orphan(self) -> bool:
        return self.project_id is None or self.project.state == Project.State.DELETED


class SnapshotSource(models.Model):
    """Health of one data source of one environment: when it last answered, and its last error.

    Pages show ``last_error`` with the age of the last good data; the audit says UNKNOWN for controls that
    depend on a source whose last attempt failed or whose data is too old.
    """

    class Kind(models.TextChoices):
        EBS = "ebs", "AWS EBS snapshots"
        CLUSTER = "cluster", "Cluster VolumeSnapshots"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="snapshot_sources")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_kind = models.CharField(max_length=16, blank=True,
                                       help_text="throttled, credentials, unreachable, error")
    item_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["environment", "kind"]
        constraints = [models.UniqueConstraint(fields=["environment", "kind"], name="snapshot_source_unique")]

    def __str__(self) -> str:
        return f"{self.environment} {self.get_kind_display()}"

    @property
    def failing(self) -> bool:
        """The last attempt failed (or nothing ever succeeded)."""
        return bool(self.last_error) or self.last_success_at is None


class SnapshotSyncRun(JobRun):
    """One run of the inventory sync (one environment, or all that support snapshots)."""

    environment = models.ForeignKey(Environment, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="snapshot_sync_runs", help_text="Empty: every EKS environment.")
    snapshots_total = models.PositiveIntegerField(default=0)
    snapshots_new = models.PositiveIntegerField(default=0)
    snapshots_gone = models.PositiveIntegerField(default=0)
    orphan_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Source calls made, retries included.")

    class Meta(JobRun.Meta):
        verbose_name = "snapshot sync run"


class AuditReport(JobRun):
    """One backup audit: findings per control and resource, with the data sources' timestamps."""

    uuid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    compliant_count = models.PositiveIntegerField(default=0)
    non_compliant_count = models.PositiveIntegerField(default=0)
    unknown_count = models.PositiveIntegerField(default=0)
    data_sources = models.JSONField(default=dict, blank=True,
                                    help_text='{"<source>": {"fetched_at": ISO time or null, "error": text}}')
    s3_uri = models.CharField(max_length=1100, blank=True, help_text="Where the report was uploaded.")

    class Meta(JobRun.Meta):
        verbose_name = "backup audit report"

    @property
    def total(self) -> int:
        return self.compliant_count + self.non_compliant_count + self.unknown_count

    @property
    def compliance_percent(self) -> float | None:
        """Share of COMPLIANT results in percent; None for an empty report."""
        return round(100.0 * self.compliant_count / self.total, 1) if self.total else None


class AuditFinding(models.Model):
    """The result of one control for one resource (the portal, an environment, a project or a snapshot)."""

    class Result(models.TextChoices):
        COMPLIANT = "COMPLIANT", "Compliant"
        NON_COMPLIANT = "NON_COMPLIANT", "Non-compliant"
        UNKNOWN = "UNKNOWN", "Unknown"

    class Scope(models.TextChoices):
        PORTAL = "portal", "Portal"
        ENVIRONMENT = "environment", "Environment"
        PROJECT = "project", "Project"
        SNAPSHOT = "snapshot", "Snapshot"

    report = models.ForeignKey(AuditReport, on_delete=models.CASCADE, related_name="findings")
    control = models.CharField(max_length=40, db_index=True)
    scope = models.CharField(max_length=12, choices=Scope.choices)
    environment_name = models.CharField(max_length=63, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="audit_findings", db_constraint=False)
    resource = models.CharField(max_length=300, blank=True, help_text="Project slug, snapshot id, bucket/prefix, …")
    result = models.CharField(max_length=13, choices=Result.choices)
    detail = models.CharField(max_length=1000, blank=True)
    monthly_cost = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["report", "control", "environment_name", "resource"]
        indexes = [models.Index(fields=["report", "result"], name="finding_report_result")]

    def __str__(self) -> str:
        return f"{self.control} {self.resource}: {self.result}"
