"""The job-run record every background job shares (NetBox's Job model in spirit): one row per run."""

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models


class JobRun(models.Model):
    """Abstract: status, progress, log lines, timings, error, who asked and why.

    Facts are fields (``error_kind``, ``warning_count``, ``requeue_count``), never parsed back out of the log;
    the log is for people. Concrete runs add what they produce (a commit, a report, a snapshot count).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        WARNINGS = "warnings", "Succeeded with warnings"
        NO_CHANGE = "no_change", "No change"
        FAILED = "failed", "Failed"

    class ErrorKind(models.TextChoices):
        NONE = "", "-"
        VALIDATION = "validation", "Validation failed"
        REFUSED = "refused", "Refused by a safety check"
        ORPHANED = "orphaned", "Worker died"
        LOCK_TIMEOUT = "lock_timeout", "Waited too long for the lock"
        ENQUEUE = "enqueue", "Could not be queued"
        REMOTE = "remote", "Remote unreachable or refused"
        SOURCE = "source", "A data source failed"
        CREDENTIALS = "credentials", "Credentials refused"
        ERROR = "error", "Error"

    # Finished without failing: what "the last successful run" means wherever it is asked.
    SUCCESSFUL = (Status.SUCCEEDED, Status.WARNINGS, Status.NO_CHANGE)
    FINISHED = (*SUCCESSFUL, Status.FAILED)
    # Failures that say nothing about the input: the same request may succeed later without anyone changing it.
    # Refused credentials (CREDENTIALS) are not among them: they need a person (a new key, a role, a kubeconfig).
    TRANSIENT_ERRORS = (ErrorKind.ORPHANED, ErrorKind.LOCK_TIMEOUT, ErrorKind.ENQUEUE, ErrorKind.REMOTE,
                        ErrorKind.SOURCE)

    triggered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="%(app_label)s_%(class)s_runs")
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True, default="")
    warning_count = models.PositiveIntegerField(default=0)
    requeue_count = models.PositiveSmallIntegerField(default=0, help_text="How often its lost job was enqueued again.")
    enqueue_error = models.CharField(max_length=500, blank=True,
                                     help_text="Why the last hand-over to the queue failed; empty once it worked.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self._meta.verbose_name.capitalize()} {self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
