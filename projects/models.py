"""Tesslate Studio user projects: one namespace proj-{uuid} each, with a volume and dev containers."""

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from deployments import domain, names
from deployments import validators as v
from deployments.models import Environment, canonicalize_quantities, check_request_le_limit
from deployments.validation.change_safety import volume_resize_problem
from jobs.models import JobRun

DNS_LABEL_MAX = 63


class Project(models.Model):
    """A user's project. Active projects are rendered into git; hibernated and deleted ones are not."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        HIBERNATING = "hibernating", "Hibernating"
        HIBERNATED = "hibernated", "Hibernated"
        DELETED = "deleted", "Deleted"

    id = models.UUIDField("ID", primary_key=True, default=uuid.uuid4, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=63, validators=[v.validate_dns1123_label],
                            help_text="DNS-1123 label; hosts are {slug}-{dir}.{app domain}.")
    owner = models.CharField(max_length=63, validators=[v.validate_label_value],
                             help_text="Studio user id (goes into the label tesslate.io/user-id).")
    state = models.CharField(max_length=12, choices=State.choices, default=State.ACTIVE)
    volume_size = models.CharField(max_length=16, default="5Gi", validators=[v.validate_storage_quantity])
    last_activity_at = models.DateTimeField(null=True, blank=True)
    restore_snapshot_id = models.CharField("restore snapshot ID",
        max_length=22, blank=True, validators=[v.validate_ebs_snapshot_id],
        help_text="EBS snapshot to restore the project volume from (snap-…). EKS environments only. A wake from "
                  "a hibernation's snapshot set restores every volume instead (Volume restores).",
    )
    hibernation_stamp = models.CharField(
        max_length=15, blank=True, editable=False,
        help_text="YYYYmmdd-HHMMSS (UTC) of the hibernation in progress: names its VolumeSnapshots.")
    hibernation_error = models.CharField(
        max_length=1000, blank=True, editable=False,
        help_text="Why the last hibernation failed (the namespace and its volumes were kept). Empty: none failed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment__name", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "slug"], name="project_unique_slug_per_environment",
                                    violation_error_message="Another project in this environment has this slug."),
        ]
        # An environment's projects in one state (the active-project counts of the dashboard and the environment
        # list) are counted from this index alone, not by reading every project row.
        indexes = [models.Index(fields=["environment", "state"], name="project_environment_state")]

    def __str__(self) -> str:
        return self.slug

    @property
    def namespace(self) -> str:
        return domain.project_namespace(self.id)

    @property
    def is_rendered(self) -> bool:
        """Active and hibernating projects have a namespace in git, and so do hibernated projects of clusters
        without VolumeSnapshots (stopped: zero replicas); the GitOps tool prunes the others."""
        return domain.project_is_rendered(self.state, self.environment.kind, self.environment.storage_provisioner)

    @property
    def hibernation_failed(self) -> bool:
        return bool(self.hibernation_error)

    def host_for(self, directory: str) -> str:
        return domain.project_host(self.slug, directory, self.environment.app_domain)

    def _state_change_problem(self, stored_state: str) -> str:
        """Why the state may not change from ``stored_state`` by editing it, on a cluster with EBS VolumeSnapshots
        (empty: it may). Hibernating removes the namespace and its volumes, so only the hibernation job may set
        it, after every volume is snapshotted (issue 11); waking a project that has snapshots restores them."""
        if not self.environment.supports_snapshots:
            return ""
        if stored_state == self.State.HIBERNATING:
            return "A hibernation of this project is running; its run sets the state when it ends."
        if self.state in (self.State.HIBERNATING, self.State.HIBERNATED):
            return ("Use the action \"Hibernate\": it snapshots every volume before the namespace is removed. "
                    "Setting the state here would delete the volumes without a snapshot.")
        if stored_state == self.State.HIBERNATED and self.state == self.State.ACTIVE and self.hibernation_runs.filter(
                status__in=(JobRun.Status.SUCCEEDED, JobRun.Status.WARNINGS)).exists():
            return ("Use the action \"Wake\": it restores every volume from a snapshot set. Setting the state here "
                    "would start the project with empty volumes.")
        return ""

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        canonicalize_quantities(self, ("volume_size",))
        if not self._state.adding and self.environment_id:
            stored = Project.objects.filter(pk=self.pk).values("volume_size", "state").first()
            env = self.environment
            if stored and all(domain.project_is_rendered(state, env.kind, env.storage_provisioner)
                              for state in (stored["state"], self.state)):  # the PVC exists and stays
                problem = volume_resize_problem(what="The project volume", old_size=stored["volume_size"],
                                                new_size=self.volume_size,
                                                expansion_allowed=self.environment.volume_expansion_allowed)
                if problem:
                    errors["volume_size"] = [problem]
            if stored and stored["state"] != self.state:
                problem = self._state_change_problem(stored["state"])
                if problem:
                    errors["state"] = [problem]
        if self.restore_snapshot_id and self.environment_id and not self.environment.supports_snapshots:
            errors["restore_snapshot_id"] = [
                "This environment has no EBS VolumeSnapshots; it cannot restore a snapshot."]
        if self.slug and self.environment_id and not self._state.adding:
            # A slug change (or a move to another environment) renames every host of the project's containers.
            directories = list(self.containers.values_list("directory", "role"))
            slug_errors = []
            for directory, role in directories:
                slug_errors += names.derived_name_errors(names.container_names(
                    slug=self.slug, directory=directory, app_domain=self.environment.app_domain,
                    service=role in Container.SERVICE_ROLES, input_length=len(self.slug)))[:1]
            if self.state != self.State.DELETED and not slug_errors:
                slug_errors += environment_host_conflicts(
                    environment=self.environment, slug=self.slug,
                    directories=[directory for directory, _ in directories], project_id=self.pk)
            if slug_errors:
                errors["slug"] = slug_errors
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
    cpu_request = models.CharField("CPU request", max_length=16, default="100m", validators=[v.validate_cpu_quantity])
    cpu_limit = models.CharField("CPU limit", max_length=16, default="1", validators=[v.validate_cpu_quantity])
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
        # The project list's role filter (projects with a container of a role) and its count read this index alone
        # (an index-only semi-join on the project key), not every container row.
        indexes = [models.Index(fields=["role", "project"], name="container_role_project")]

    def __str__(self) -> str:
        return self.workload_name

    @property
    def is_service(self) -> bool:
        return domain.is_service_role(self.role)

    @property
    def workload_name(self) -> str:
        return domain.workload_name(self.role, self.directory)

    @property
    def host_label(self) -> str:
        return domain.host_label(self.project.slug, self.directory)

    @property
    def host(self) -> str:
        return self.project.host_for(self.directory)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        canonicalize_quantities(self, ("cpu_request", "cpu_limit", "memory_request", "memory_limit",
                                       "data_volume_size"))
        for low, high in (("cpu_request", "cpu_limit"), ("memory_request", "memory_limit")):
            check_request_le_limit(self, low, high, errors)
        if self.pk and self.project_id and self.is_service:
            stored = Container.objects.filter(pk=self.pk).values("data_volume_size", "role").first()
            if stored and stored["role"] in self.SERVICE_ROLES and self.project.is_rendered:
                problem = volume_resize_problem(
                    what=f"The volume {names.service_data_claim_name(self.directory)}",
                    old_size=stored["data_volume_size"], new_size=self.data_volume_size,
                    expansion_allowed=self.project.environment.volume_expansion_allowed)
                if problem:
                    errors.setdefault("data_volume_size", []).append(problem)
        if self.project_id and self.directory:
            project = self.project
            problems = names.derived_name_errors(names.container_names(
                slug=project.slug, directory=self.directory, app_domain=project.environment.app_domain,
                service=self.is_service))
            if problems:
                errors.setdefault("directory", []).extend(problems)
            elif project.state != Project.State.DELETED:
                conflicts = environment_host_conflicts(environment=project.environment, slug=project.slug,
                                                       directories=[self.directory], project_id=project.pk)
                if conflicts:
                    errors.setdefault("directory", []).extend(conflicts)
        if errors:
            raise ValidationError(errors)


def environment_host_conflicts(*, environment: Environment, slug: str, directories: list[str],
                               project_id=None) -> list[str]:
    """Messages for the hosts ``{slug}-{dir}.{app domain}`` of ``directories`` that another project of
    ``environment`` already claims (empty: none). ``project_id`` is the project the directories belong to (its own
    rows are not conflicts); deleted projects hold no hosts.

    The rule (one host, one project per environment; DOMAIN.md: hosts are one label under the app domain, so
    ``shop``/``api-v2`` and ``shop-api``/``v2`` collide) is checked by ``Project.clean`` (slug changes),
    ``Container.clean``, the admin's container formset, and again by the validation gate
    (rule ``ingress-host-duplicate``)."""
    wanted = {names.host_label(slug, directory): directory for directory in directories}
    if not wanted or environment.pk is None:
        return []
    # Only the (slug, directory) pairs that spell a wanted label can collide: one pair per "-" in the label. The
    # query looks up those slugs through the unique (environment, slug) index (as `slug IN (...)`, which any
    # planner, even with stale statistics, takes over an index on the environment alone) and their directories
    # through the unique (project, directory) one, instead of reading every container of the environment: its
    # cost does not grow with the number of projects. Pairs the IN lists allow but no label spells are dropped below.
    slugs, directories_wanted = set(), set()
    for label in wanted:
        for index, char in enumerate(label):
            if char == "-":
                slugs.add(label[:index])
                directories_wanted.add(label[index + 1:])
    if not slugs:
        return []
    rows = (Container.objects.filter(project__environment_id=environment.pk, project__slug__in=sorted(slugs),
                                     directory__in=sorted(directories_wanted))
            .exclude(project__state=Project.State.DELETED)
            .order_by("project__slug", "directory")  # not the model's ordering: it joins the environments too
            .values_list("project__slug", "directory", "project_id"))
    messages = []
    for other_slug, other_directory, other_project in rows:
        label = names.host_label(other_slug, other_directory)
        if label in wanted and other_project != project_id:
            messages.append(
                f"Host {label}.{environment.app_domain} is already used by project {other_slug} (directory "
                f"{other_directory}) in this environment. Choose another slug or directory.")
    return messages


class HibernationRun(JobRun):
    """One hibernation of a project on a cluster with EBS VolumeSnapshots (DOMAIN.md "Hibernation and snapshots").

    Steps: render and commit the project in state Hibernating with a VolumeSnapshot of every volume
    (``snapshot_render_run``); wait up to ``timeout_seconds`` until the cluster reports each ``readyToUse`` and
    record its EBS snapshot id (``volumes``); only then set the project Hibernated and commit the removal of its
    folder (``prune_render_run``). A failed or late snapshot leaves the project active, its folder in git and the
    reason on ``Project.hibernation_error``. A succeeded run is a *snapshot set* a wake can restore.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hibernation_runs")
    stamp = models.CharField(max_length=15, help_text="YYYYmmdd-HHMMSS (UTC) in the VolumeSnapshot names.")
    timeout_seconds = models.PositiveIntegerField(
        default=300, help_text="How long to wait for every VolumeSnapshot to be readyToUse (DOMAIN.md: 300 s).")
    snapshot_render_run = models.ForeignKey("deployments.RenderRun", null=True, blank=True,
                                            on_delete=models.SET_NULL, related_name="+")
    prune_render_run = models.ForeignKey("deployments.RenderRun", null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="+")

    class Meta(JobRun.Meta):
        verbose_name = "hibernation run"

    def __str__(self) -> str:
        return f"Hibernation {self.pk} of {self.project} ({self.get_status_display()})"

    @property
    def is_complete_set(self) -> bool:
        """Succeeded (with or without warnings), and every volume has its EBS snapshot id."""
        volumes = list(self.volumes.all())
        finished = self.status in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNINGS)
        return finished and bool(volumes) and all(volume.snapshot_handle for volume in volumes)


class HibernationVolume(models.Model):
    """One volume (PVC) of a hibernation: its VolumeSnapshot and, once ready, the EBS snapshot id."""

    run = models.ForeignKey(HibernationRun, on_delete=models.CASCADE, related_name="volumes")
    volume_name = models.CharField(max_length=253, help_text="The PVC: project-storage or svc-{dir}-data.")
    volume_snapshot_name = models.CharField(max_length=253)
    volume_snapshot_content_name = models.CharField(max_length=253, blank=True)
    snapshot_handle = models.CharField(max_length=32, blank=True,
                                       help_text="EBS snapshot id (status.snapshotHandle of the bound content).")
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "volume_name"]
        constraints = [models.UniqueConstraint(fields=["run", "volume_name"], name="hibernationvolume_unique")]

    def __str__(self) -> str:
        return f"{self.volume_name} → {self.snapshot_handle or self.volume_snapshot_name}"


class VolumeRestore(models.Model):
    """A volume of a project restored from an EBS snapshot (DOMAIN.md "Restore"): rendered as a pre-provisioned
    VolumeSnapshotContent, a VolumeSnapshot bound to it and the PVC with ``dataSource`` → that VolumeSnapshot.

    A PVC's ``dataSource`` is immutable, so the row (and the three objects) stay for as long as the project is
    rendered; a wake replaces the rows only after a hibernation removed the namespace and its PVCs.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="volume_restores")
    volume_name = models.CharField(max_length=253, help_text="The PVC: project-storage or svc-{dir}-data.")
    source_snapshot_name = models.CharField(max_length=253,
                                            help_text="The hibernation's VolumeSnapshot (names the restore objects).")
    snapshot_handle = models.CharField(max_length=22, validators=[v.validate_ebs_snapshot_id])
    hibernation_run = models.ForeignKey(HibernationRun, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "volume_name"]
        constraints = [models.UniqueConstraint(fields=["project", "volume_name"], name="volumerestore_unique")]

    def __str__(self) -> str:
        return f"{self.volume_name} ← {self.snapshot_handle}"


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
    # The URL key: what its value was made from (family, Service name, port and the password's fingerprint, never
    # a value), so every render's credentials check compares text instead of decrypting (projects.credentials).
    derived_from = models.CharField(max_length=200, blank=True, editable=False)
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


class RenderToken(models.Model):
    """A project's render change marker: a random token that database triggers (migration 0008) replace whenever
    anything the project's render reads changes (its rendered fields, containers, their generated credentials,
    volume restores), whoever writes it. deployments.rendering hashes it into the project's fingerprint, so a run
    reads only the projects whose token moved since their last render. `token` is written only by the triggers."""

    project = models.OneToOneField(Project, primary_key=True, on_delete=models.CASCADE, related_name="render_token")
    token = models.CharField(max_length=32, editable=False)
    # The token at which every container of the project last had current generated credentials
    # (projects.credentials.environment_credentials_ensure): equal to `token`, nothing needs checking again.
    credentials_checked = models.CharField(max_length=32, blank=True, default="", editable=False)

    def __str__(self) -> str:
        return f"{self.project_id}: {self.token}"


# The triggers of migration 0008 that keep RenderToken current, per database vendor (the selector trusts tokens
# only while all of them exist).
RENDER_TOKEN_TRIGGERS = {
    "postgresql": ("projects_project_render_token", "projects_container_render_token",
                   "projects_volumerestore_render_token", "projects_servicecredential_render_token"),
    "sqlite": ("projects_project_render_token_insert", "projects_project_render_token_update") + tuple(
        f"{table}_render_token_{op}" for table in ("projects_container", "projects_volumerestore",
                                                    "projects_servicecredential")
        for op in ("insert", "update", "delete")),
}
