"""The last live view of each environment's cluster, kept so a failing cluster still shows what was last seen."""

from django.db import models

from deployments.models import Environment
from jobs.models import JobRun


class LiveStatus(models.Model):
    """The last successful read of an environment's cluster (``report``: the live view and the diagnostics as
    JSON) and the last failure, if the newest read failed."""

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="live_status")
    report = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    problem_count = models.PositiveIntegerField(default=0, help_text="Diagnostics with a problem at the last read.")
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # credentials | unreachable | error (clients.kubernetes.ClusterError.kind), as cost and snapshot sources keep it.
    last_error_kind = models.CharField(max_length=16, blank=True, editable=False)

    class Meta:
        verbose_name = "live status"
        verbose_name_plural = "live status"
        ordering = ["environment__name"]

    def __str__(self) -> str:
        return f"Live status of {self.environment.name}" if self.environment_id else "Live status"


class LiveRefreshRun(JobRun):
    """One background read of the clusters (scheduled or asked for), with bounded retries per cluster."""

    environments = models.ManyToManyField(Environment, related_name="live_refresh_runs", blank=True)
    refreshed_count = models.PositiveIntegerField(default=0, help_text="Clusters read.")
    failed_count = models.PositiveIntegerField(default=0, help_text="Clusters that stayed unreachable.")
    problem_count = models.PositiveIntegerField(default=0, help_text="Diagnostics with a problem, all clusters.")
    attempt_count = models.PositiveSmallIntegerField(default=0, help_text="Cluster reads, retries included.")

    class Meta(JobRun.Meta):
        verbose_name = "live refresh run"
