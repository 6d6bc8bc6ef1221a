"""Tesslate Studio user projects: one namespace proj-{uuid} each, with a volume and dev containers."""

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from deployments import validators as v
from deployments.models import Environment, check_request_le_limit

DNS_LABEL_MAX = 63


class Project(models.Model):
    """A user's project. Active projects are rendered into git; hibernated and deleted ones are not."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        HIBERNATING = "hibernating", "Hibernating"
        HIBERNATED = "hibernated", "Hibernated"
        DELETED = "deleted", "Deleted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=63, validators=[v.validate_dns1123_label],
                            help_text="DNS-1123 label; hosts are {slug}-{dir}.{app domain}.")
    owner = models.CharField(max_length=63, validators=[v.validate_label_value],
                             help_text="Studio user id (goes into the label tesslate.io/user-id).")
    state = models.CharField(max_length=12, choices=State.choices, default=State.ACTIVE)
    volume_size = models.CharField(max_length=16, default="5Gi", validators=[v.validate_storage_quantity])
    last_activity_at = models.DateTimeField(null=True, blank=True)
    restore_snapshot_id = models.CharField(
        max_length=22, blank=True, validators=[v.validate_ebs_snapshot_id],
        help_text="EBS snapshot to restore the project volume from (snap-…). EKS environments only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment__name", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "slug"], name="project_unique_slug_per_environment",
                                    violation_error_message="Another project in this environment has this slug."),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def namespace(self) -> str:
        return f"proj-{self.id}"

    @property
    def is_rendered(self) -> bool:
        """Only active projects have a namespace in git; the GitOps tool prunes the others."""
        return self.state == self.State.ACTIVE

    def host_for(self, directory: str) -> str:
        return f"{self.slug}-{directory}.{self.environment.app_domain}"

    def clean(self) -> None:
        errors = {}
        if self.restore_snapshot_id and self.environment_id and not self.environment.supports_snapshots:
            errors["restore_snapshot_id"] = "This environment has no EBS VolumeSnapshots; it cannot restore a snapshot."
        if errors:
            raise ValidationError(errors)


class Container(models.Model):
    """A dev container (dev-{dir}) or a service container such as a database (svc-{dir}) of a project."""

    class Role(models.TextChoices):
        FRONTEND = "frontend", "Frontend"
        BACKEND = "backend", "Backend"
        DATABASE = "database", "Database"
        SERVICE = "service", "Other service"

    class Probe(models.TextChoices):
        HTTP = "http", "HTTP GET on the port"
        TCP = "tcp", "TCP connect to the port"

    SERVICE_ROLES = (Role.DATABASE, Role.SERVICE)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="containers")
    directory = models.CharField(max_length=54, validators=[v.validate_dns1123_label],
                                 help_text="Directory in the project; names dev-{dir} or svc-{dir}.")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.FRONTEND)
    image = models.CharField(max_length=255, validators=[v.validate_image],
                             help_text="Image with tag; empty registry means the environment's devserver image.")
    port = models.PositiveIntegerField(default=3000, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    cpu_request = models.CharField(max_length=16, default="100m", validators=[v.validate_cpu_quantity])
    cpu_limit = models.CharField(max_length=16, default="1", validators=[v.validate_cpu_quantity])
    memory_request = models.CharField(max_length=16, default="256Mi", validators=[v.validate_memory_quantity])
    memory_limit = models.CharField(max_length=16, default="1Gi", validators=[v.validate_memory_quantity])
    data_volume_size = models.CharField(max_length=16, default="1Gi", validators=[v.validate_storage_quantity],
                                        help_text="Service containers only: size of the svc-{dir}-data volume.")
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                            help_text="Studio's container id: the pod label tesslate.io/container-id.")
    start_command = models.CharField(
        max_length=1000, blank=True, validators=[v.validate_command_line],
        help_text="Shell command run in /app/{dir}. Empty: the role's default for the devserver image "
                  "(frontend: npm run dev on the port; backend: npm run dev with PORT set), the image's own command "
                  "for other images.",
    )
    env_vars = models.TextField(
        blank=True, validators=[v.validate_env_vars_text],
        help_text="NAME=value, one per line. Plain values written to git: never passwords or tokens.",
    )
    probe = models.CharField(
        max_length=4, choices=Probe.choices, blank=True,
        help_text="Readiness and startup check. Empty: HTTP GET for dev containers, pg_isready for PostgreSQL, "
                  "TCP connect for other services.",
    )
    probe_path = models.CharField(max_length=255, default="/", validators=[v.validate_http_path],
                                  help_text="Path of the HTTP check.")
    startup_timeout_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(30), MaxValueValidator(3600)],
        help_text="How long the first start (dependency install, first build) may take before the pod restarts.",
    )

    class Meta:
        ordering = ["project", "directory"]
        constraints = [
            models.UniqueConstraint(fields=["project", "directory"], name="container_unique_directory_per_project",
                                    violation_error_message="This project already has a container in this directory."),
        ]

    def __str__(self) -> str:
        return self.workload_name

    @property
    def is_service(self) -> bool:
        return self.role in self.SERVICE_ROLES

    @property
    def workload_name(self) -> str:
        return f"{'svc' if self.is_service else 'dev'}-{self.directory}"

    @property
    def host_label(self) -> str:
        return f"{self.project.slug}-{self.directory}"

    @property
    def host(self) -> str:
        return self.project.host_for(self.directory)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for low, high in (("cpu_request", "cpu_limit"), ("memory_request", "memory_limit")):
            check_request_le_limit(self, low, high, errors)
        if self.project_id and self.directory:
            label = f"{self.project.slug}-{self.directory}"
            if len(label) > DNS_LABEL_MAX:
                errors.setdefault("directory", []).append(
                    f"The host label {label} is {len(label)} characters; a DNS label has at most 63. "
                    "Shorten the directory or the project slug."
                )
        if errors:
            raise ValidationError(errors)


class ServiceCredential(models.Model):
    """One key of a service container's generated credentials: the Kubernetes Secret svc-{dir}-credentials in
    the project's namespace (projects.credentials says which keys a database gets).

    Stored like every portal secret: encrypted (deployments.crypto), a fingerprint and a version; git gets the
    value sealed for the project's namespace (SealedSecret) or a reference to AWS Secrets Manager (EKS).
    """

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="credentials")
    key = models.CharField(max_length=64, validators=[v.validate_secret_key_name])
    ciphertext = models.TextField(editable=False, help_text="Fernet token; never the plaintext.")
    fingerprint = models.CharField(max_length=24, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False,
                                          help_text="Increases with every new value; rolls the pods that read it.")
    sealed_value = models.TextField(blank=True, editable=False)
    sealed_for = models.CharField(max_length=100, blank=True, editable=False)
    synced_version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container", "key"]
        constraints = [
            models.UniqueConstraint(fields=["container", "key"], name="servicecredential_unique_key_per_container"),
        ]

    def __str__(self) -> str:
        return f"{self.secret_name}/{self.key}"

    @property
    def secret_name(self) -> str:
        """The Kubernetes Secret in the project's namespace."""
        return f"{self.container.workload_name}-credentials"
