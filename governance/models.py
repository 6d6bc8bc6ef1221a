"""Governance records: who may work where (EnvironmentGrant), changes of protected environments that wait for a
second person (ChangeRequest), and the history of every environment, node group, secret, project and container
(django-simple-history tables in this app, each row linked to the render run and commit that shipped it)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from simple_history import register

from deployments.models import Environment, NodeGroup, RenderRun, Secret
from projects.models import Container, Project


class EnvironmentGrant(models.Model):
    """A user may use their role's permissions in this environment (no environment: in every environment)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="environment_grants")
    environment = models.ForeignKey(Environment, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="grants", help_text="Empty: every environment, present and future.")
    note = models.CharField(max_length=255, blank=True)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username", "environment__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "environment"], name="grant_unique_user_environment",
                                    violation_error_message="This user already has a grant for this environment."),
            models.UniqueConstraint(fields=["user"], condition=models.Q(environment__isnull=True),
                                    name="grant_unique_user_all_environments",
                                    violation_error_message="This user already has a grant for every environment."),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.environment.name if self.environment_id else 'every environment'}"


class ChangeRequest(models.Model):
    """A change of a protected environment, saved in the model but not committed until a second person approves.

    ``environments`` empty with ``all_environments``: the change renders every environment (a removal or move).
    ``diff`` is the dry-run render's unified diff against the branch head, ``diff_sha256`` its SHA-256: an
    approval names the diff it saw, and is refused (the new diff shown) when the model moved on.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting approval"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded by a newer change"

    environments = models.ManyToManyField(Environment, blank=True, related_name="change_requests")
    all_environments = models.BooleanField(default=False)
    environment_names = models.CharField(max_length=500, blank=True, help_text="At the time of the request.")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", help_text="Empty: the system (a scheduled or command request).")
    contributors = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+",
                                          help_text="Everyone whose changes this request ships: none may approve it.")
    reason = models.TextField(blank=True)
    allow_deletions = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    diff = models.TextField(blank=True)
    diff_sha256 = models.CharField(max_length=64, blank=True)
    diff_error = models.TextField(blank=True)
    diff_at = models.DateTimeField(null=True, blank=True)
    files_added = models.PositiveIntegerField(default=0)
    files_changed = models.PositiveIntegerField(default=0)
    files_deleted = models.PositiveIntegerField(default=0)
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", help_text="Who approved or rejected it.")
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(RenderRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The render run the approval started.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("approve_changerequest", "Can approve or reject changes of protected environments")]

    def __str__(self) -> str:
        return f"Change #{self.pk} of {self.environment_names or 'every environment'} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("admin:governance_changerequest_change", args=[self.pk])

    def environment_ids(self) -> set[int] | None:
        """The environments it renders (None: every environment)."""
        return None if self.all_environments else set(self.environments.values_list("pk", flat=True))


class AuditFields(models.Model):
    """Added to every history row: the environment it belongs to and the render run (and commit) that shipped it."""

    audit_environment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    render_run = models.ForeignKey(RenderRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   db_constraint=False)

    class Meta:
        abstract = True


# Secret values never reach history: only the version (a new value bumps it) and when it was rotated.
SECRET_EXCLUDED_FIELDS = ["ciphertext", "fingerprint", "sealed_value"]
AUDITED_MODELS = (Environment, NodeGroup, Secret, Project, Container)

for _model in AUDITED_MODELS:
    register(_model, app="governance", bases=[AuditFields],
             excluded_fields=SECRET_EXCLUDED_FIELDS if _model is Secret else [])
